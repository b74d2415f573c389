// Peer authentication by challenge and response: both sides prove they hold the cluster secret without sending
// it. The dialer's hello carries a fresh nonce; the acceptor's welcome carries its own nonce and its proof; the
// dialer's `peerAuth` frame carries the dialer's proof. Each proof is an HMAC-SHA256 under the secret of both
// nonces, the prover's role and its node id, so a proof can be replayed on no other connection, by no other
// node, and in no other direction. A passive observer learns nothing it could use.

import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** Which side of the handshake a proof speaks for. */
export type PeerAuthRole = 'dialer' | 'acceptor';

/** The nonces of one handshake. */
export interface PeerAuthNonces {
  dialer: string;
  acceptor: string;
}

/** A fresh nonce: 32 random bytes, base64url. */
export function newPeerNonce(): string {
  return randomBytes(32).toString('base64url');
}

/** The proof that `nodeId`, acting as `role` in the handshake of `nonces`, holds `secret`. */
export function peerProof(
  secret: string,
  role: PeerAuthRole,
  nonces: PeerAuthNonces,
  nodeId: string,
): string {
  return createHmac('sha256', secret)
    .update(`tmem-peer-auth-v1\n${role}\n${nonces.dialer}\n${nonces.acceptor}\n${nodeId}`)
    .digest('base64url');
}

/** Constant-time check of an offered proof against the one expected. */
export function peerProofMatches(
  secret: string,
  role: PeerAuthRole,
  nonces: PeerAuthNonces,
  nodeId: string,
  offered: string | undefined,
): boolean {
  if (offered === undefined) return false;
  const expected = Buffer.from(peerProof(secret, role, nonces, nodeId));
  const given = Buffer.from(offered);
  return expected.length === given.length && timingSafeEqual(expected, given);
}
