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
import { openNodeConnection, type NodeConnection } from './node-connection.ts';
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
   * Creates a private pool, or with `shared` joins a shared one. Rejects with BadPageSizeError, before anything is sent, when pageSize is not
   * allowed. Retried while no coordinator can commit it (NO_COORDINATOR) within the timeout, but not after a
   * lost connection, because the cluster may have created the pool already.
   */
  createPool(options: CreatePoolOptions): Promise<Pool>;
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
   * Closes every connection; with `destroyPools: true` it first destroys the pools this client created and did
   * not destroy. Without it they stay in the cluster (and count against the identity's pool limit) until
   * destroyed: nothing in this version can reach them after the close, since a pool is used through the
   * handle `createPool` returned, so an application that is done with its pools should pass it. (A session
   * grace period for reattaching comes with the tenancy issue.) Ops still waiting reject with TmemError
   * CLIENT_CLOSED, and so does every later call. Resolves once the sockets are closed; calling it again
   * returns the same promise. A pool that cannot be destroyed within the op timeout is left behind, and the
   * close goes on.
   */
  close(options?: CloseOptions): Promise<void>;
}

/** How a client closes. */
export interface CloseOptions {
  /** Destroy the pools this client created (and did not destroy) before closing. @default false */
  destroyPools?: boolean;
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
  const { client, ready } = createClient(resolveOptions(options));
  try {
    await ready;
  } catch (error) {
    await client.close();
    throw error;
  }
  return client;
}

function createClient(options: ResolvedOptions): { client: TmemClient; ready: Promise<void> } {
  const { logger: log, timeoutMs } = options;
  const codec = createCodec();
  // Aborted by close(): stops connecting, backoff pauses and retries, with CLIENT_CLOSED as the reason.
  const closer = new AbortController();
  // Every op pausing before a retry and every connection being opened listens to it, and stops when done:
  // thousands at once is normal under load, not a leak.
  setMaxListeners(0, closer.signal);
  let closing: Promise<void> | undefined;
  /** Pools created through this client and not destroyed, for close({ destroyPools: true }). */
  const openPools = new Set<Pool>();

  const tracker = createViewTracker((error) =>
    log.error({ error: error instanceof Error ? error.message : String(error) }, 'a view listener threw'),
  );
  // Connections report closes and pushed states to the pool and the sync, made below: none opens before.
  function open(url: string): Promise<NodeConnection> {
    return openNodeConnection({
      url,
      identity: options.identity,
      token: options.token,
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
      const reply = await router.execute(request, { retry: false });
      // The handle knows the pool's kind; its replication the router reads from the cluster state, which holds
      // the pool from the version that created it on.
      // The pool belongs to the cluster that created it: after a whole-cluster restart its id means nothing.
      const clusterId = reply.clusterId ?? tracker.state?.clusterId;
      const handle: Pool = createPoolHandle(
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
        () => openPools.delete(handle),
      );
      openPools.add(handle);
      return handle;
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
        if (closeOptions.destroyPools === true) {
          // Each destroy is bounded by the op timeout; one that fails leaves its pool, and the close goes on.
          const results = await Promise.allSettled([...openPools].map((pool) => pool.destroy()));
          const left = results.filter((r) => r.status === 'rejected').length;
          if (left > 0) log.warn({ pools: left }, 'pools left behind: they could not be destroyed');
        }
        const error = clientClosed();
        closer.abort(error);
        await Promise.all([sync.close(error), pool.close(error)]);
        log.debug({ identity: options.identity }, 'client closed');
      })();
      return closing;
    },
  };
  return { client, ready: sync.start() };
}
