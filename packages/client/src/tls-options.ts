// The client's TLS option, checked like every other option: an unknown key is refused rather than ignored,
// because a misspelt `rejectUnauthorized` or `ca` that went unnoticed would change what the client trusts.
import { ErrorCode, TmemError } from '@tmem/protocol';

/** PEM text or bytes of one or more CA certificates. */
export type CaCertificates = string | Uint8Array | readonly (string | Uint8Array)[];

/** How the client verifies nodes it dials over `wss://`. */
export interface ClientTlsOptions {
  /**
   * CA certificates (PEM) a node's certificate must chain to, for a cluster with a private CA.
   * @default Node's bundled root CAs
   */
  ca?: CaCertificates;
  /**
   * Verify each node's certificate (its CA, its host name, its validity). Turning it off lets anyone between
   * the client and the nodes read and change every page: for a throwaway test only.
   * @default true
   */
  rejectUnauthorized?: boolean;
}

/** What the WebSocket of each connection is given. */
export interface ResolvedTls {
  ca: string | Buffer | (string | Buffer)[] | undefined;
  rejectUnauthorized: boolean;
}

const TLS_KEYS: ReadonlySet<string> = new Set(['ca', 'rejectUnauthorized']);

function badTls(name: string, rule: string, value: unknown): TmemError {
  return new TmemError(ErrorCode.BadArgument, `option ${name} must be ${rule}`, {
    details: { option: name, value },
  });
}

function isPem(value: unknown): value is string | Uint8Array {
  return (typeof value === 'string' && value.length > 0) || value instanceof Uint8Array;
}

/** One PEM value as tls.connect takes it: Buffer for bytes (a Uint8Array that is no Buffer is wrapped). */
function asPem(value: string | Uint8Array): string | Buffer {
  return typeof value === 'string' || Buffer.isBuffer(value) ? value : Buffer.from(value);
}

/** Checks `tls`; throws BAD_ARGUMENT naming the key to change. Undefined: verify with the bundled CAs. */
export function resolveTlsOptions(tls: unknown): ResolvedTls {
  if (tls === undefined) return { ca: undefined, rejectUnauthorized: true };
  if (typeof tls !== 'object' || tls === null || Array.isArray(tls)) {
    throw badTls('tls', 'an object { ca?, rejectUnauthorized? }', tls);
  }
  const unknown = Object.keys(tls).find((key) => !TLS_KEYS.has(key));
  if (unknown !== undefined)
    throw badTls(`tls.${unknown}`, 'absent: tls takes ca and rejectUnauthorized', '?');
  const { ca, rejectUnauthorized } = tls as ClientTlsOptions;
  if (rejectUnauthorized !== undefined && typeof rejectUnauthorized !== 'boolean') {
    throw badTls('tls.rejectUnauthorized', 'a boolean', rejectUnauthorized);
  }
  const caRule = 'PEM text or bytes of CA certificates, or an array of them';
  let resolvedCa: ResolvedTls['ca'];
  if (ca === undefined) resolvedCa = undefined;
  else if (isPem(ca)) resolvedCa = asPem(ca);
  else if (Array.isArray(ca) && ca.length > 0 && ca.every(isPem)) resolvedCa = ca.map(asPem);
  else throw badTls('tls.ca', caRule, typeof ca);
  return { ca: resolvedCa, rejectUnauthorized: rejectUnauthorized ?? true };
}
