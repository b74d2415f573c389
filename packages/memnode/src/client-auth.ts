// Client authentication: a client proves its identity with a bearer token. Tokens are random and issued by
// `tmem token <identity>`; a node keeps only their SHA-256 (a tokens file of `<identity> <sha256-hex>` lines),
// so its configuration never holds a usable secret. A plain hash is enough because tokens carry 256 random
// bits: there is nothing to guess, so a slow password hash would only add latency to every handshake.

import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ErrorCode, MAX_IDENTITY_LENGTH, ProtocolError } from '@tmem/protocol';

/** Token hashes (hex SHA-256) to the identity each token proves. */
export type ClientTokens = ReadonlyMap<string, string>;

/** SHA-256 of a token, in hex: what the tokens file stores. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/**
 * A new token for `identity` and its tokens-file line. The token is `<identity>.<43 base64url chars>`: the
 * client reads its identity from it, and the node checks the hash, never the prefix.
 */
export function issueToken(identity: string): { token: string; line: string } {
  if (identity.length === 0 || identity.length > MAX_IDENTITY_LENGTH || /\s/.test(identity)) {
    throw new RangeError(`an identity is 1 to ${MAX_IDENTITY_LENGTH} characters without spaces`);
  }
  const token = `${identity}.${randomBytes(32).toString('base64url')}`;
  return { token, line: `${identity} ${hashToken(token)}` };
}

/** Reads a tokens file: `<identity> <sha256-hex>` per line; blank lines and `#` comments are skipped. */
export function parseTokens(text: string, source = 'tokens file'): ClientTokens {
  const tokens = new Map<string, string>();
  text.split('\n').forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const match = /^(\S{1,128})\s+([0-9a-f]{64})$/i.exec(line);
    if (match === null) {
      throw new RangeError(
        `${source}, line ${index + 1}: expected "<identity> <sha256 hex>" (see tmem token)`,
      );
    }
    tokens.set(match[2]!.toLowerCase(), match[1]!);
  });
  if (tokens.size === 0)
    throw new RangeError(`${source} holds no tokens; add some with tmem token <identity>`);
  return tokens;
}

export function loadTokens(path: string): ClientTokens {
  return parseTokens(readFileSync(path, 'utf8'), path);
}

/**
 * Checks a client's hello against the tokens: the token must be known and prove the identity the hello
 * names. Throws UNAUTHORIZED otherwise, with the same message for an unknown token and another identity's,
 * so a refusal tells nothing about which tokens exist.
 */
export function authenticateClient(tokens: ClientTokens, identity: string, token: string | undefined): void {
  if (token === undefined || tokens.get(hashToken(token)) !== identity) {
    throw new ProtocolError(
      ErrorCode.Unauthorized,
      'client handshake without a valid token for its identity; ask the operator for one (tmem token)',
    );
  }
}
