/**
 * Stable error codes shared by nodes and clients. Callers branch on these, never on message text.
 */
export const ErrorCode = {
  /** The bytes are not a msgpack value, or carry trailing garbage. */
  MalformedFrame: 'MALFORMED_FRAME',
  /** The bytes end before the msgpack value does. */
  TruncatedFrame: 'TRUNCATED_FRAME',
  /** The frame is larger than the configured maximum. */
  FrameTooLarge: 'FRAME_TOO_LARGE',
  /** The frame holds more values or deeper nesting than the decode budget allows (see msgpack-budget.ts). */
  FrameTooComplex: 'FRAME_TOO_COMPLEX',
  /** The frame decodes but does not match any schema (missing field, wrong type, unknown `t`). */
  InvalidFrame: 'INVALID_FRAME',
  /** The peer speaks another protocol version. */
  VersionMismatch: 'VERSION_MISMATCH',
  /**
   * A peer handshake without the right cluster secret, or a client joining a shared pool its identity is not
   * authorised for (UnauthorizedError).
   */
  Unauthorized: 'UNAUTHORIZED',
  /**
   * The node's TLS certificate could not be verified (signed by a CA this side does not trust, issued for
   * another host, expired). `details.reason` is the TLS library's code, e.g. SELF_SIGNED_CERT_IN_CHAIN.
   */
  CertificateRejected: 'CERTIFICATE_REJECTED',
  /** An op arrived before the handshake. */
  HandshakeRequired: 'HANDSHAKE_REQUIRED',
  /** The pool does not exist or belongs to another identity (the two are indistinguishable on purpose). */
  UnknownPool: 'UNKNOWN_POOL',
  /** A pool page size that is not a power of two in range, or a page whose length differs from its pool's. */
  BadPageSize: 'BAD_PAGE_SIZE',
  /** An argument is out of range: an object id too long or empty, an index that is not a u32. */
  BadArgument: 'BAD_ARGUMENT',
  /** No reply arrived within the operation timeout; the op may or may not have taken effect. */
  Timeout: 'TIMEOUT',
  /** The connection closed before the reply arrived; the op may or may not have taken effect. */
  ConnectionLost: 'CONNECTION_LOST',
  /** The client was closed by the application. */
  ClientClosed: 'CLIENT_CLOSED',
  /** No node could be reached. */
  NoNodes: 'NO_NODES',
  /** The request was routed by another cluster-state version; `details.version` is the node's. Refresh, retry. */
  StaleState: 'STALE_STATE',
  /** The node does not serve this partition right now (no lease, or ownership is moving). Refresh, retry. */
  NotServing: 'NOT_SERVING',
  /** No coordinator could commit the change in time (election under way, no majority). Retry later. */
  NoCoordinator: 'NO_COORDINATOR',
  /** Every copy of an accepted persistent page was lost; the page cannot be read. */
  DataLost: 'DATA_LOST',
  /** A page's bytes do not match the checksum computed when it was put: corrupted on the way or in memory. */
  ChecksumMismatch: 'CHECKSUM_MISMATCH',
  /** A per-node or per-identity limit was reached (connections, pools); `details` names the limit. */
  LimitExceeded: 'LIMIT_EXCEEDED',
  /**
   * The cluster is not the one this pool (or peer) belongs to: it was restarted as a new cluster, whose pool
   * ids and versions start again. The pool is gone; create a new one. `details` name both cluster ids.
   */
  ClusterChanged: 'CLUSTER_CHANGED',
  /** The node is shutting down and takes no new work. */
  ShuttingDown: 'SHUTTING_DOWN',
  /** A bug on the node; the op changed nothing that a later op could observe half-done. */
  Internal: 'INTERNAL',
} as const;

/** One of the stable error codes. */
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const KNOWN_CODES = new Set<string>(Object.values(ErrorCode));

/** True when `code` is one of the codes this version knows. */
export function isErrorCode(code: string): code is ErrorCode {
  return KNOWN_CODES.has(code);
}

/** Options common to every tmem error. */
export interface TmemErrorOptions {
  /** Machine-readable facts about the failure (limits, offending values). */
  details?: Record<string, unknown>;
  /** The lower-level error that caused this one. */
  cause?: unknown;
}

/** Base class of every error this project raises; `code` is stable, `message` says what to change. */
export class TmemError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: TmemErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TmemError';
    this.code = code;
    this.details = options.details ?? {};
  }
}

/** A frame could not be decoded or validated. */
export class ProtocolError extends TmemError {
  constructor(code: ErrorCode, message: string, options: TmemErrorOptions = {}) {
    super(code, message, options);
    this.name = 'ProtocolError';
  }
}

/** No reply within the operation timeout. The op is in doubt: it may have been applied. */
export class TimeoutError extends TmemError {
  readonly timeoutMs: number;
  constructor(timeoutMs: number, options: TmemErrorOptions = {}) {
    super(ErrorCode.Timeout, `no reply within ${timeoutMs} ms; raise timeoutMs or check the node`, {
      ...options,
      // timeoutMs last: details.timeoutMs always agrees with the field.
      details: { ...options.details, timeoutMs },
    });
    this.name = 'TimeoutError';
    this.timeoutMs = timeoutMs;
  }
}

/** The connection dropped before the reply. The op is in doubt: it may have been applied. */
export class ConnectionLostError extends TmemError {
  constructor(message: string, options: TmemErrorOptions = {}) {
    super(ErrorCode.ConnectionLost, message, options);
    this.name = 'ConnectionLostError';
  }
}

/** The pool does not exist for this identity (never created, destroyed, or someone else's). */
export class UnknownPoolError extends TmemError {
  constructor(message: string, options: TmemErrorOptions = {}) {
    super(ErrorCode.UnknownPool, message, options);
    this.name = 'UnknownPoolError';
  }
}

/** A page size that is not allowed, or a page that is not exactly its pool's page size. */
export class BadPageSizeError extends TmemError {
  constructor(message: string, options: TmemErrorOptions = {}) {
    super(ErrorCode.BadPageSize, message, options);
    this.name = 'BadPageSizeError';
  }
}

/**
 * Every copy of an accepted persistent page was lost (more owners failed than the pool's replication allows).
 * Never a silent miss and never old data: the caller must recover the page from elsewhere.
 */
export class DataLostError extends TmemError {
  constructor(message: string, options: TmemErrorOptions = {}) {
    super(ErrorCode.DataLost, message, options);
    this.name = 'DataLostError';
  }
}

/** A page's bytes do not match its checksum (CHECKSUM_MISMATCH): the copy was corrupted and is not used. */
export class ChecksumError extends TmemError {
  constructor(message: string, options: TmemErrorOptions = {}) {
    super(ErrorCode.ChecksumMismatch, message, options);
    this.name = 'ChecksumError';
  }
}

/**
 * The cluster a pool or peer belongs to is gone: the nodes now serve another cluster (a whole-cluster restart
 * draws a new cluster id, a new pool-id key and starts its pool count again). Never a silent miss: the pool's pages are lost.
 */
export class ClusterChangedError extends TmemError {
  /** The cluster id the pool or peer belongs to, if known. */
  readonly expectedClusterId: string | undefined;
  /** The cluster id the nodes serve now, if known. */
  readonly actualClusterId: string | undefined;
  constructor(message: string, options: TmemErrorOptions = {}) {
    super(ErrorCode.ClusterChanged, message, options);
    this.name = 'ClusterChangedError';
    const { expected, actual } = this.details;
    this.expectedClusterId = typeof expected === 'string' ? expected : undefined;
    this.actualClusterId = typeof actual === 'string' ? actual : undefined;
  }
}

/**
 * UNAUTHORIZED: the identity may not do this. A peer handshake without the cluster secret, or a client joining
 * a shared pool the node does not authorise it for (`details.shared` names the UUID). A ProtocolError, as
 * before this class existed, so callers that branched on that still do.
 */
export class UnauthorizedError extends ProtocolError {
  constructor(message: string, options: TmemErrorOptions = {}) {
    super(ErrorCode.Unauthorized, message, options);
    this.name = 'UnauthorizedError';
  }
}

/** The wire shape of an error reply. */
export interface WireError {
  code: string;
  message: string;
  details?: Record<string, unknown> | undefined;
}

/** Turns an error into its wire shape; errors that are not TmemErrors become INTERNAL without leaking internals. */
export function errorToWire(error: unknown): WireError {
  if (error instanceof TmemError) {
    return { code: error.code, message: error.message, details: error.details };
  }
  return { code: ErrorCode.Internal, message: 'internal error on the node' };
}

const PROTOCOL_CODES = new Set<string>([
  ErrorCode.MalformedFrame,
  ErrorCode.TruncatedFrame,
  ErrorCode.FrameTooLarge,
  ErrorCode.FrameTooComplex,
  ErrorCode.InvalidFrame,
  ErrorCode.VersionMismatch,
  ErrorCode.HandshakeRequired,
  ErrorCode.Unauthorized,
]);

/** Maps a wire error back to the typed class callers branch on. Unknown codes become INTERNAL. */
export function errorFromWire(wire: WireError): TmemError {
  const options = { details: { ...wire.details, remote: true } };
  const code = isErrorCode(wire.code) ? wire.code : ErrorCode.Internal;
  if (code === ErrorCode.Unauthorized) return new UnauthorizedError(wire.message, options);
  if (PROTOCOL_CODES.has(code)) return new ProtocolError(code, wire.message, options);
  switch (code) {
    case ErrorCode.UnknownPool:
      return new UnknownPoolError(wire.message, options);
    case ErrorCode.BadPageSize:
      return new BadPageSizeError(wire.message, options);
    case ErrorCode.ConnectionLost:
      return new ConnectionLostError(wire.message, options);
    case ErrorCode.DataLost:
      return new DataLostError(wire.message, options);
    case ErrorCode.ChecksumMismatch:
      return new ChecksumError(wire.message, options);
    case ErrorCode.ClusterChanged:
      return new ClusterChangedError(wire.message, options);
    default:
      return new TmemError(code, wire.message, options);
  }
}
