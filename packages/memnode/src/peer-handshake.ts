// The acceptor's side of a peer handshake (the dialer's is in cluster/peer-links.ts; the proofs in
// @tmem/protocol peer-auth.ts). A node with a cluster secret admits a peer only after the peer proved the
// secret over both nonces; a node without one admits peers only when told explicitly that it is insecure.

import {
  ErrorCode,
  ProtocolError,
  newPeerNonce,
  peerProof,
  peerProofMatches,
  type ClientFrame,
  type Hello,
  type PeerAuthNonces,
} from '@tmem/protocol';

/** How this node admits peers. */
export interface PeerAdmission {
  /** The cluster secret; undefined admits no peer unless `insecurePeers`. */
  clusterSecret: string | undefined;
  /** Without a secret, admit any connection that says it is a peer (a trusted loopback only). */
  insecurePeers: boolean;
  nodeId: string;
}

/** A peer hello answered with our challenge, waiting for the peer's proof. */
export interface PeerChallenge {
  identity: string;
  url: string | undefined;
  nonces: PeerAuthNonces;
}

/** What to do with a peer's hello: admit it now, or challenge it first (the welcome carries `nonce`, `proof`). */
export type PeerHelloAnswer =
  { admit: true } | { admit: false; challenge: PeerChallenge; welcome: { nonce: string; proof: string } };

function unauthorized(message: string): ProtocolError {
  return new ProtocolError(ErrorCode.Unauthorized, message);
}

/** Answers a hello with `role: 'peer'`; throws UNAUTHORIZED when this node admits no such peer. */
export function answerPeerHello(hello: Hello, admission: PeerAdmission): PeerHelloAnswer {
  const { clusterSecret: secret } = admission;
  if (secret === undefined) {
    if (admission.insecurePeers) return { admit: true };
    throw unauthorized(
      'this node has no cluster secret and admits no peers; set the same TMEM_CLUSTER_SECRET on every node',
    );
  }
  if (hello.nonce === undefined) {
    throw unauthorized('peer handshake without a challenge nonce; both nodes must run this protocol version');
  }
  const nonces = { dialer: hello.nonce, acceptor: newPeerNonce() };
  return {
    admit: false,
    challenge: { identity: hello.identity, url: hello.url, nonces },
    welcome: { nonce: nonces.acceptor, proof: peerProof(secret, 'acceptor', nonces, admission.nodeId) },
  };
}

/** Checks the frame after a challenge: it must be the peer's valid `peerAuth`, or UNAUTHORIZED is thrown. */
export function verifyPeerAuth(frame: ClientFrame, challenge: PeerChallenge, admission: PeerAdmission): void {
  const proof = frame.t === 'peerAuth' ? frame.proof : undefined;
  const secret = admission.clusterSecret ?? '';
  if (!peerProofMatches(secret, 'dialer', challenge.nonces, challenge.identity, proof)) {
    throw unauthorized(
      'peer did not prove the cluster secret; every node needs the same TMEM_CLUSTER_SECRET',
    );
  }
}
