import { setMaxListeners } from 'node:events';
import {
  BadPageSizeError,
  COMPRESSIONS,
  DEFAULT_PAGE_SIZE,
  MAX_REPLICATION,
  ErrorCode,
  MAX_PAGE_SIZE,
  MIN_PAGE_SIZE,
  TmemError,
  createCodec,
  isCompression,
  isValidPageSize,
  SharedPoolUuid,
  type Compression,
  type NodeStats,
  type PoolKind,
} from '@tmem/protocol';
import { createViewTracker, type ClientEvents, type ClusterView } from './cluster-view.ts';
import { createConnectionPool } from './connection-pool.ts';
import { openNodeConnection, type NodeConnection, type NodeConnectionOptions } from './node-connection.ts';
import { endSession } from './session-end.ts';
import { resolveOptions, type ConnectOptions, type ResolvedOptions } from './options.ts';
import { createPageBatch } from './page-batch.ts';
import { createPoolHandle, type Pool } from './pool.ts';
import { createRouter } from './router.ts';
import { createStateSync } from './state-sync.ts';

/** Options of `createPool`. */
/** The keys of CreatePoolOptions, checked at run time for callers without types. */
const POOL_OPTIONS: ReadonlySet<string> = new Set([
  'kind',
  'pageSize',
  'replication',
  'compression',
  'shared',
]);

export interface CreatePoolOptions {
  /** Ephemeral (a cache: pages may vanish) or persistent (puts may be refused, accepted pages stay). */
  kind: PoolKind;
  /**
   * Bytes per page: a power of two from MIN_PAGE_SIZE (512) to MAX_PAGE_SIZE (65536).
   * @default DEFAULT_PAGE_SIZE (4096)
   */
  pageSize?: number;
  /**
   * Copies the cluster keeps of each page of a persistent pool (1..16); ephemeral pools keep one.
   * @default the cluster's replication factor
   */
  replication?: number;
  /**
   * Store the pool's pages compressed on the nodes ('lz4'): a page that shrinks by at least an eighth of a
   * page is kept in a smaller slot and charged that against the node's capacity; one that does not is stored
   * raw. Gets return the page exactly as it was put, and checksums cover it as written.
   * @default undefined (pages stored as written)
   */
  compression?: Compression;
  /**
   * Join the shared pool of this UUID (any case; sent lowercase) instead of creating a private pool; the first
   * sharer's join creates it, with this page size and compression, which later joins must match. Ephemeral
   * only (a persistent one is BAD_ARGUMENT, nothing sent). An identity the node does not authorise for the
   * UUID gets UnauthorizedError; never a private pool. Gets leave the page for the other sharers;
   * `destroy()` leaves the pool, flushing the objects this identity put to last, and the last sharer's leave
   * destroys it.
   * @default undefined (a private pool)
   */
  shared?: string;
}

/**
 * The canonical (lowercase) UUID of a `shared` option, or undefined for a private pool. Throws BAD_ARGUMENT for
 * anything but a UUID, or a shared persistent pool: nothing is sent.
 */
function sharedUuidOf(shared: unknown, kind: PoolKind): string | undefined {
  if (shared === undefined) return undefined;
  const uuid = typeof shared === 'string' ? shared.toLowerCase() : undefined;
  if (uuid === undefined || !SharedPoolUuid.safeParse(uuid).success) {
    throw new TmemError(ErrorCode.BadArgument, 'shared must be a UUID (8-4-4-4-12 hex digits)', {
      details: { shared },
    });
  }
  if (kind !== 'ephemeral') {
    throw new TmemError(ErrorCode.BadArgument, 'only ephemeral pools can be shared', {
      details: { reason: 'shared-persistent', kind },
    });
  }
  return uuid;
}

/** A connection to a tmem cluster, made by `connect`. */
export interface TmemClient {
  /** The identity that owns this client's private pools. */
  readonly identity: string;
  /**
   * The client's session (32 hex digits): the pools it creates belong to it and are destroyed when it ends,
   * by `close()` or after the nodes' grace period without any connection. Pass it to `connect({ session })`
   * to continue the session from another client of the same identity.
   */
  readonly session: string;
  /**
   * Creates a private pool, or with `shared` joins a shared one. Rejects with BadPageSizeError, before anything is sent, when pageSize is not
   * allowed. Retried while no coordinator can commit it (NO_COORDINATOR) within the timeout, but not after a
   * lost connection, because the cluster may have created the pool already.
   */
  createPool(options: CreatePoolOptions): Promise<Pool>;
  /**
   * Handles to the pools of this client's session in its current view of the cluster: after
   * `connect({ session })` continued an earlier client's session, that client's pools (within the grace period
   * after it went away), and those this client created. Pools of other sessions are not listed.
   */
  sessionPools(): Pool[];
  /**
   * Statistics of every member of the cluster, one entry per member, in the order of `view().members`. Rejects
   * like any op when a member cannot be reached within the retries and the timeout.
   */
  stats(): Promise<NodeStats[]>;
  /**
   * The client's current view of the cluster: the state version it routes by, the members and the
   * coordinator. Kept current by updates the nodes push, refreshes when a node reports another version, and a
   * periodic refresh (`stateRefreshMs`). The same object is returned until the view changes.
   */
  view(): ClusterView;
  /**
   * Calls `listener` with the new view whenever the client learns a newer cluster state (once per version).
   * Listeners run synchronously; one that throws is logged and does not disturb the client.
   */
  on<E extends keyof ClientEvents>(event: E, listener: ClientEvents[E]): this;
  /** Removes a listener added with `on`. */
  off<E extends keyof ClientEvents>(event: E, listener: ClientEvents[E]): this;
  /**
   * Ends the client's session, destroying every pool created in it cluster-wide, then closes every
   * connection. With `keepPools: true` it only closes: the pools stay for the nodes' session grace period
   * (`--session-grace-ms`, 30 s by default), in which a client connected with the same identity and `session`
   * keeps them, and go after it. Ops still waiting reject with TmemError CLIENT_CLOSED, and so does every later
   * call. Resolves once the sockets are closed; calling it again returns the same promise. A session that cannot
   * be ended within the op timeout (no node reachable) is left to expire after the grace period, and the close
   * goes on.
   */
  close(options?: CloseOptions): Promise<void>;
}

/** How a client closes. */
export interface CloseOptions {
  /**
   * Leave the session's pools to the nodes' session grace period instead of destroying them now, so that a
   * client that connects with the same identity and `session` (a restarted process, say) keeps them.
   * @default false
   */
  keepPools?: boolean;
}

function clientClosed(): TmemError {
  return new TmemError(ErrorCode.ClientClosed, 'the client is closed; call connect() again to continue');
}

/**
 * Connects to a tmem cluster: asks the seeds, in order, for the cluster state, and subscribes to its updates
 * on the first that answers. Connections to the other members open when an op first needs them. Rejects with
 * NO_NODES, whose `details.failures` lists each seed's error, when no seed answers; with BAD_ARGUMENT for a
 * bad option.
 */
export async function connect(options: ConnectOptions): Promise<TmemClient> {
  // A session the caller names may hold pools already (an earlier client's): close() ends it even when this
  // client created none. A fresh one holds pools only once this client created some.
  const { client, ready } = createClient(resolveOptions(options), options.session !== undefined);
  try {
    await ready;
  } catch (error) {
    // Nothing was created through a client that never connected; a named session's pools wait for their grace.
    await client.close({ keepPools: true });
    throw error;
  }
  return client;
}

function createClient(
  options: ResolvedOptions,
  continuesSession: boolean,
): { client: TmemClient; ready: Promise<void> } {
  const { logger: log, timeoutMs } = options;
  const codec = createCodec();
  // Aborted by close(): stops connecting, backoff pauses and retries, with CLIENT_CLOSED as the reason.
  const closer = new AbortController();
  // Every op pausing before a retry and every connection being opened listens to it, and stops when done:
  // thousands at once is normal under load, not a leak.
  setMaxListeners(0, closer.signal);
  let closing: Promise<void> | undefined;
  /** Whether the session may hold pools, so that close() has a session to end. */
  let sessionUsed = continuesSession;

  const tracker = createViewTracker((error) =>
    log.error({ error: error instanceof Error ? error.message : String(error) }, 'a view listener threw'),
  );
  /** A connection to `url` with the client's identity, token and session, on its own (no close hooks). */
  function dial(url: string, extra: Partial<NodeConnectionOptions> = {}): Promise<NodeConnection> {
    return openNodeConnection({
      url,
      identity: options.identity,
      token: options.token,
      session: options.session,
      codec,
      logger: log,
      connectTimeoutMs: options.connectTimeoutMs,
      pingIntervalMs: options.pingIntervalMs,
      pongTimeoutMs: options.pongTimeoutMs,
      timeoutMs,
      maxBatchOps: options.maxBatchOps,
      maxBatchBytes: options.maxBatchBytes,
      maxFramesInFlight: options.maxFramesInFlight,
      localAddress: options.localAddress,
      tls: options.tls,
      ...extra,
    });
  }
  // Connections report closes and pushed states to the pool and the sync, made below: none opens before.
  function open(url: string): Promise<NodeConnection> {
    return dial(url, {
      signal: closer.signal,
      onClose: (connection) => {
        pool.forget(connection);
        sync.connectionClosed(connection);
      },
      onStatePush: (connection, frame) => sync.pushed(connection, frame),
    });
  }

  const pool = createConnectionPool({ open });
  const sync = createStateSync({
    seeds: options.seeds,
    tracker,
    pool,
    openSeed: open,
    timeoutMs,
    stateRefreshMs: options.stateRefreshMs,
    logger: log,
    signal: closer.signal,
  });
  const router = createRouter({
    tracker,
    pool,
    sync,
    timeoutMs,
    retries: options.retries,
    signal: closer.signal,
    closedError: clientClosed,
    logger: log,
  });

  const runMany = createPageBatch({
    tracker,
    pool,
    execute: router.execute,
    timeoutMs,
    logger: log,
    refresh: (source) => sync.refresh(source),
    signal: closer.signal,
    closedError: clientClosed,
  });

  const client: TmemClient = {
    identity: options.identity,
    session: options.session,

    async createPool(poolOptions) {
      // An option this client does not know (a shared pool, say) is refused, never dropped: the caller would
      // otherwise believe it got a pool the cluster never made.
      for (const option of Object.keys(poolOptions)) {
        if (!POOL_OPTIONS.has(option)) {
          throw new TmemError(ErrorCode.BadArgument, `createPool has no option '${option}'`, {
            details: { option },
          });
        }
      }
      const { kind, pageSize = DEFAULT_PAGE_SIZE, replication, compression } = poolOptions;
      const shared = sharedUuidOf(poolOptions.shared, kind);
      if (kind !== 'ephemeral' && kind !== 'persistent') {
        throw new TmemError(ErrorCode.BadArgument, "pool kind must be 'ephemeral' or 'persistent'", {
          details: { kind },
        });
      }
      if (!isValidPageSize(pageSize)) {
        throw new BadPageSizeError(
          `page size must be a power of two from ${MIN_PAGE_SIZE} to ${MAX_PAGE_SIZE} bytes, got ${pageSize}`,
          { details: { pageSize, min: MIN_PAGE_SIZE, max: MAX_PAGE_SIZE } },
        );
      }
      if (
        replication !== undefined &&
        (!Number.isInteger(replication) || replication < 1 || replication > MAX_REPLICATION)
      ) {
        throw new TmemError(ErrorCode.BadArgument, 'replication must be an integer from 1 to 16', {
          details: { replication },
        });
      }
      if (compression !== undefined && !isCompression(compression)) {
        throw new TmemError(
          ErrorCode.BadArgument,
          `compression must be one of ${COMPRESSIONS.join(', ')} or absent, got ${String(compression)}`,
          { details: { compression } },
        );
      }
      const request = {
        t: 'newPool' as const,
        kind,
        pageSize,
        ...(replication === undefined ? {} : { replication }),
        ...(compression === undefined ? {} : { compression }),
        ...(shared === undefined ? {} : { shared }),
      };
      // Before the request: a create whose answer is lost may still have made a pool in the session.
      sessionUsed = true;
      const reply = await router.execute(request, { retry: false });
      // The handle knows the pool's kind; its replication the router reads from the cluster state, which holds
      // the pool from the version that created it on.
      // The pool belongs to the cluster that created it: after a whole-cluster restart its id means nothing.
      const clusterId = reply.clusterId ?? tracker.state?.clusterId;
      return createPoolHandle(
        {
          id: reply.pool,
          kind: reply.kind,
          pageSize: reply.pageSize,
          ...(reply.compression === undefined ? {} : { compression: reply.compression }),
          ...(reply.shared === undefined ? {} : { shared: reply.shared }),
          ...(clusterId === undefined ? {} : { clusterId }),
          ...(reply.version === undefined ? {} : { createdVersion: reply.version }),
        },
        router.execute,
        runMany,
      );
    },

    sessionPools() {
      const state = tracker.state;
      if (closer.signal.aborted) throw clientClosed();
      if (state === undefined) return [];
      return state.pools
        .filter((pool) => pool.session === options.session)
        .map((pool) =>
          createPoolHandle(
            {
              id: pool.id,
              kind: pool.kind,
              pageSize: pool.pageSize,
              ...(pool.compression === undefined ? {} : { compression: pool.compression }),
              ...(state.clusterId === undefined ? {} : { clusterId: state.clusterId }),
              // The view holds the pool, so it was created at this version or before.
              createdVersion: state.version,
            },
            router.execute,
            runMany,
          ),
        );
    },

    stats: () => router.stats(),

    view: () => tracker.view(),

    on(event, listener) {
      tracker.on(event, listener);
      return this;
    },

    off(event, listener) {
      tracker.off(event, listener);
      return this;
    },

    close(closeOptions = {}) {
      closing ??= (async () => {
        const error = clientClosed();
        closer.abort(error);
        await Promise.all([sync.close(error), pool.close(error)]);
        if (closeOptions.keepPools !== true && sessionUsed) {
          await endSession({
            session: options.session,
            urls: [...tracker.view().members.map((m) => m.url), ...options.seeds],
            open: (url, connectTimeoutMs) =>
              dial(url, { connectTimeoutMs: Math.min(connectTimeoutMs, options.connectTimeoutMs) }),
            timeoutMs,
            logger: log,
          });
        }
        log.debug({ identity: options.identity }, 'client closed');
      })();
      return closing;
    },
  };
  return { client, ready: sync.start() };
}
