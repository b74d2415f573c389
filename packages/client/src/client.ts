import {
  BadPageSizeError,
  ConnectionLostError,
  DEFAULT_PAGE_SIZE,
  ErrorCode,
  MAX_PAGE_SIZE,
  MIN_PAGE_SIZE,
  TmemError,
  createCodec,
  isValidPageSize,
  type NodeStats,
  type PoolKind,
} from '@tmem/protocol';
import { beforeDeadline, now } from './deadline.ts';
import { openNodeConnection, type NodeConnection } from './node-connection.ts';
import { resolveOptions, type ConnectOptions, type ResolvedOptions } from './options.ts';
import { createPoolHandle, type Execute, type Pool } from './pool.ts';
import { isRetryable, withRetries } from './retry.ts';
import { connectFirst } from './seeds.ts';

/** Options of `createPool`. */
export interface CreatePoolOptions {
  /** Ephemeral (a cache: pages may vanish) or persistent (puts may be refused, accepted pages stay). */
  kind: PoolKind;
  /**
   * Bytes per page: a power of two from MIN_PAGE_SIZE (512) to MAX_PAGE_SIZE (65536).
   * @default DEFAULT_PAGE_SIZE (4096)
   */
  pageSize?: number;
}

/** A connection to a tmem cluster, made by `connect`. */
export interface TmemClient {
  /** The identity that owns this client's private pools. */
  readonly identity: string;
  /**
   * Creates a private pool. Rejects with BadPageSizeError, before anything is sent, when pageSize is not
   * allowed. Not retried after a lost connection, because the node may have created the pool already.
   */
  createPool(options: CreatePoolOptions): Promise<Pool>;
  /** Statistics of every node the client is connected to, one entry per node. */
  stats(): Promise<NodeStats[]>;
  /**
   * Closes every connection. Ops still waiting reject with TmemError CLIENT_CLOSED, and so does every later
   * call. Resolves once the sockets are closed; calling it again returns the same promise.
   */
  close(): Promise<void>;
}

function clientClosed(): TmemError {
  return new TmemError(ErrorCode.ClientClosed, 'the client is closed; call connect() again to continue');
}

/**
 * Connects to a tmem cluster through the first seed that completes the handshake. Rejects with NO_NODES,
 * whose `details.failures` lists each seed's error, when none does; with BAD_ARGUMENT for a bad option.
 */
export async function connect(options: ConnectOptions): Promise<TmemClient> {
  const { client, ready } = createClient(resolveOptions(options));
  await ready;
  return client;
}

function createClient(options: ResolvedOptions): { client: TmemClient; ready: Promise<unknown> } {
  const { logger: log, timeoutMs } = options;
  const codec = createCodec();
  // Aborted by close(): stops connecting, backoff pauses and retries, with CLIENT_CLOSED as the reason.
  const closer = new AbortController();
  // The one node connection ops use for now. Routing by partition will keep one per node instead; `execute`
  // is the only place that picks a connection.
  let current: NodeConnection | undefined;
  let connecting: Promise<NodeConnection> | undefined;
  let closing: Promise<void> | undefined;

  function open(url: string): Promise<NodeConnection> {
    return openNodeConnection({
      url,
      identity: options.identity,
      codec,
      logger: log,
      connectTimeoutMs: options.connectTimeoutMs,
      timeoutMs,
      maxBatchOps: options.maxBatchOps,
      maxBatchBytes: options.maxBatchBytes,
      maxFramesInFlight: options.maxFramesInFlight,
      signal: closer.signal,
      onClose: (connection) => {
        // Dropped here and reopened lazily by the next op that needs it.
        if (current === connection) current = undefined;
      },
    });
  }

  /** The open connection, or a shared attempt to open one through the seeds, in order. */
  function connection(): Promise<NodeConnection> {
    if (current?.isOpen) return Promise.resolve(current);
    connecting ??= connectFirst(options.seeds, open, closer.signal).then(
      async (connection) => {
        connecting = undefined;
        // close() may have run between the welcome and this callback.
        if (closer.signal.aborted) {
          await connection.close(clientClosed());
          throw clientClosed();
        }
        current = connection;
        return connection;
      },
      (error: unknown) => {
        connecting = undefined;
        throw error;
      },
    );
    return connecting;
  }

  const execute: Execute = (request, how) => {
    if (closer.signal.aborted) return Promise.reject(clientClosed());
    const deadline = now() + timeoutMs;
    let lostConnection = false;
    return withRetries(
      async (attempt) => {
        if (closer.signal.aborted) throw clientClosed();
        if (attempt > 0) log.debug({ t: request.t, attempt }, 'retrying after a lost connection');
        let target: NodeConnection;
        try {
          target = current?.isOpen ? current : await beforeDeadline(connection(), deadline, timeoutMs);
        } catch (error) {
          // Finding no node after losing one is still a lost connection: retried while retries and time last.
          if (lostConnection && error instanceof TmemError && error.code === ErrorCode.NoNodes) {
            throw new ConnectionLostError('connection lost and no seed could be reached again', {
              cause: error,
              details: error.details,
            });
          }
          throw error;
        }
        try {
          return await target.request(request, { deadline, pageSize: how.pageSize });
        } catch (error) {
          if (isRetryable(error)) lostConnection = true;
          throw error;
        }
      },
      { retries: how.retry ? options.retries : 0, deadline, signal: closer.signal },
    );
  };

  const client: TmemClient = {
    identity: options.identity,

    async createPool(poolOptions) {
      const { kind, pageSize = DEFAULT_PAGE_SIZE } = poolOptions;
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
      const reply = await execute({ t: 'newPool', kind, pageSize }, { retry: false });
      return createPoolHandle({ id: reply.pool, kind: reply.kind, pageSize: reply.pageSize }, execute);
    },

    async stats() {
      const reply = await execute({ t: 'stats' }, { retry: true });
      return [reply.stats];
    },

    close() {
      closing ??= (async () => {
        const error = clientClosed();
        closer.abort(error);
        await connecting?.catch(() => undefined);
        await current?.close(error);
        current = undefined;
        log.debug({ identity: options.identity }, 'client closed');
      })();
      return closing;
    },
  };
  return { client, ready: connection() };
}
