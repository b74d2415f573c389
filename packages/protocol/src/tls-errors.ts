// Telling a certificate that failed verification apart from a network failure. Both reach a WebSocket as an
// 'error' event, but only the first is a configuration problem that no retry will fix: the dialler must say
// so (CERTIFICATE_REJECTED, naming the reason) instead of reporting a lost connection and trying again.
import { ErrorCode, TmemError } from './errors.ts';

/**
 * OpenSSL's verification codes and Node's host-name check, as Node puts them in `error.code`. A wss:// dial to
 * a node whose certificate is untrusted, for another host, or out of its validity fails with one of these.
 */
const CERTIFICATE_ERROR_CODES: ReadonlySet<string> = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'CERT_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'CERT_REVOKED',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_CHAIN_TOO_LONG',
  'INVALID_CA',
  'INVALID_PURPOSE',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'HOSTNAME_MISMATCH',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** The verification code of `error` when it is a rejected TLS certificate, else undefined. */
export function certificateErrorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' && CERTIFICATE_ERROR_CODES.has(code) ? code : undefined;
}

/**
 * CERTIFICATE_REJECTED for a dial to `url` that failed because the node's certificate did not verify, or
 * undefined for any other failure. The message names the reason and what to pass: the CA that signed the
 * node's certificate.
 */
export function certificateRejection(url: string, error: unknown, caOption: string): TmemError | undefined {
  const reason = certificateErrorCode(error);
  if (reason === undefined) return undefined;
  const message = error instanceof Error ? error.message : String(error);
  return new TmemError(
    ErrorCode.CertificateRejected,
    `the TLS certificate of ${url} was rejected (${reason}: ${message}); pass ${caOption} with the CA that signed it`,
    { cause: error, details: { node: url, reason } },
  );
}
