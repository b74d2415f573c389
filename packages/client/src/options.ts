import { randomBytes, randomUUID } from 'node:crypto';
import { isIP } from 'node:net';
import {
  DEFAULT_MAX_FRAME_BYTES,
  ErrorCode,
  MAX_BATCH_OPS,
  MAX_IDENTITY_LENGTH,
  SessionId,
  TmemError,
} from '@tmem/protocol';
import { resolveTlsOptions, type ClientTlsOptions, type ResolvedTls } from './tls-options.ts';

/** A structured logger; pino's loggers fit. Fields come first, the message second. */
export interface Logger {
  debug(fields: object, message?: string): void;
  info(fields: object, message?: string): void;
  warn(fields: object, message?: string): void;
  error(fields: object, message?: string): void;
}

/** Options of `connect`. */
export interface ConnectOptions {
  /**
   * WebSocket URLs of memory nodes (`ws://host:port`, or `wss://host:port` for a TLS cluster), tried in order
   * until one answers with the cluster state; the client learns every other member from that state. The seeds
   * are asked again only when no member of the cluster the client knows can be reached.
   */
  seeds: string[];
  /**
   * The client identity that owns this client's private pools; another identity can never see them.
   * @default `client-${randomUUID()}`
   */
  identity?: string;
  /**
   * Bearer token proving the identity, issued by `tmem token <identity>`, for nodes that authenticate clients
   * (every node not started with --open). The identity is read from the token when not given.
   * @default none
   */
  token?: string;
  /**
   * The client session (32 lowercase hex digits) the pools this client creates belong to. It is sent on every
   * (re)connection: the nodes keep the session's pools while a client of it is connected and for their session
   * grace period (`--session-grace-ms`, 30 s by default) after it went away, then destroy them; `close()` ends it
   * at once. Pass the `session` of an earlier client of the same identity to continue its session, e.g. from a
   * restarted process within the grace period.
   * @default 16 random bytes, drawn at connect
   */
  session?: string;
  /**
   * Time each operation may take, in milliseconds, counted from the call: queueing, reconnecting and retries
   * all spend from it. An op that runs out rejects with TimeoutError (code TIMEOUT) and is never retried.
   * @default 5000
   */
  timeoutMs?: number;
  /**
   * Time to open a connection to one seed and complete the handshake, in milliseconds.
   * @default 5000
   */
  connectTimeoutMs?: number;
  /**
   * How often the client pings each node it is connected to, in milliseconds. With pongTimeoutMs it finds a
   * connection that stalled (the node cut off by a firewall, its host gone without closing the socket), which
   * TCP alone notices only after minutes, and fails over to the other nodes.
   * @default 1000
   */
  pingIntervalMs?: number;
  /**
   * How long a ping may go unanswered before the connection is closed as dead, in milliseconds: its ops in
   * flight fail with CONNECTION_LOST (and are retried elsewhere within their timeout).
   * @default 3000
   */
  pongTimeoutMs?: number;
  /**
   * Most page ops coalesced into one batch frame (1..MAX_BATCH_OPS).
   * @default 256
   */
  maxBatchOps?: number;
  /**
   * Most bytes of pages and object ids one batch frame may carry, counting a get's page in its reply, so that
   * neither the batch nor its reply exceeds it. An op larger than this travels alone.
   * @default 1048576 (1 MiB)
   */
  maxBatchBytes?: number;
  /**
   * Most frames awaiting a reply on one connection; further ops wait in the client until a reply frees a slot.
   * @default 16
   */
  maxFramesInFlight?: number;
  /**
   * How many times an op whose connection was lost (or whose node could not be reached) is retried, after
   * refreshing the cluster state, within its timeout. Error replies from a node and timeouts are never retried,
   * except the topology answers STALE_STATE, NOT_SERVING and NO_COORDINATOR: those are retried after a refresh
   * for as long as the op's timeout lasts, without spending from this budget.
   * @default 2
   */
  retries?: number;
  /**
   * How often the client asks a node for the cluster state, in milliseconds, besides the updates nodes push:
   * the safety net when pushes are lost.
   * @default 2000
   */
  stateRefreshMs?: number;
  /**
   * Local IP address every connection of the client is made from (e.g. `127.0.0.2` on loopback), passed to the
   * socket as its `localAddress`. Lets a test tell its clients apart at a proxy between them and the nodes;
   * the address must belong to this host.
   * @default chosen by the operating system
   */
  localAddress?: string;
  /**
   * How nodes dialled over `wss://` are verified: `ca` for a cluster whose certificates a private CA signed.
   * A certificate that does not verify fails the connection with CERTIFICATE_REJECTED. Ignored for `ws://`.
   * @default verify against Node's bundled root CAs
   */
  tls?: ClientTlsOptions;
  /**
   * Where the client logs connection changes (info, warn), corrupt pages (warn) and late replies (debug).
   * @default none: the library is silent
   */
  logger?: Logger;
}

/** ConnectOptions with every default filled in and every value checked. */
export interface ResolvedOptions {
  seeds: readonly string[];
  identity: string;
  token: string | undefined;
  session: string;
  timeoutMs: number;
  connectTimeoutMs: number;
  pingIntervalMs: number;
  pongTimeoutMs: number;
  maxBatchOps: number;
  maxBatchBytes: number;
  maxFramesInFlight: number;
  retries: number;
  stateRefreshMs: number;
  localAddress: string | undefined;
  tls: ResolvedTls;
  logger: Logger;
}

/** Longest delay setTimeout honours; longer ones fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

function noop(): void {}

/** A logger that drops everything: the library stays silent unless the application passes its own. */
export const silentLogger: Logger = { debug: noop, info: noop, warn: noop, error: noop };

function badOption(name: string, rule: string, value: unknown): TmemError {
  return new TmemError(ErrorCode.BadArgument, `option ${name} must be ${rule}`, {
    details: { option: name, value },
  });
}

function integerIn(name: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw badOption(name, `an integer from ${min} to ${max}`, value);
  }
  return value;
}

function isWebSocketUrl(url: unknown): boolean {
  if (typeof url !== 'string') return false;
  try {
    const { protocol } = new URL(url);
    return protocol === 'ws:' || protocol === 'wss:';
  } catch {
    return false;
  }
}

/** Fills in defaults and checks every option; throws BAD_ARGUMENT naming the option to change. */
export function resolveOptions(options: ConnectOptions): ResolvedOptions {
  const seeds: unknown = options.seeds;
  if (!Array.isArray(seeds) || seeds.length === 0 || !seeds.every(isWebSocketUrl)) {
    throw badOption('seeds', 'a non-empty array of ws:// or wss:// URLs', seeds);
  }
  const token: unknown = options.token;
  if (
    token !== undefined &&
    (typeof token !== 'string' || token.lastIndexOf('.') < 1 || token.length > 512)
  ) {
    throw badOption('token', 'a token from `tmem token <identity>`', '<redacted>');
  }
  const tokenIdentity = token === undefined ? undefined : token.slice(0, token.lastIndexOf('.'));
  const identity = options.identity ?? tokenIdentity ?? `client-${randomUUID()}`;
  if (typeof identity !== 'string' || identity.length === 0 || identity.length > MAX_IDENTITY_LENGTH) {
    throw badOption('identity', `a string of 1 to ${MAX_IDENTITY_LENGTH} characters`, identity);
  }
  if (tokenIdentity !== undefined && identity !== tokenIdentity) {
    throw badOption('identity', `the identity of the token ("${tokenIdentity}")`, identity);
  }
  const session: unknown = options.session ?? randomBytes(16).toString('hex');
  if (!SessionId.safeParse(session).success) {
    throw badOption('session', 'a session id of 32 lowercase hex digits (client.session)', session);
  }
  const localAddress: unknown = options.localAddress;
  // Checked here rather than left to the socket: a bad address would fail every connection, one by one.
  if (localAddress !== undefined && (typeof localAddress !== 'string' || isIP(localAddress) === 0)) {
    throw badOption('localAddress', 'an IPv4 or IPv6 address of this host, such as 127.0.0.2', localAddress);
  }
  return {
    seeds: [...(seeds as string[])],
    identity,
    token,
    session: session as string,
    timeoutMs: integerIn('timeoutMs', options.timeoutMs ?? 5000, 1, MAX_TIMER_MS),
    connectTimeoutMs: integerIn('connectTimeoutMs', options.connectTimeoutMs ?? 5000, 1, MAX_TIMER_MS),
    pingIntervalMs: integerIn('pingIntervalMs', options.pingIntervalMs ?? 1000, 1, MAX_TIMER_MS),
    pongTimeoutMs: integerIn('pongTimeoutMs', options.pongTimeoutMs ?? 3000, 1, MAX_TIMER_MS),
    maxBatchOps: integerIn('maxBatchOps', options.maxBatchOps ?? 256, 1, MAX_BATCH_OPS),
    // A batch and its reply must stay within the frame limit that nodes and this client decode.
    maxBatchBytes: integerIn(
      'maxBatchBytes',
      options.maxBatchBytes ?? 1024 * 1024,
      1,
      DEFAULT_MAX_FRAME_BYTES,
    ),
    maxFramesInFlight: integerIn('maxFramesInFlight', options.maxFramesInFlight ?? 16, 1, 1_000_000),
    retries: integerIn('retries', options.retries ?? 2, 0, 1000),
    stateRefreshMs: integerIn('stateRefreshMs', options.stateRefreshMs ?? 2000, 1, MAX_TIMER_MS),
    localAddress,
    tls: resolveTlsOptions(options.tls),
    logger: options.logger ?? silentLogger,
  };
}
