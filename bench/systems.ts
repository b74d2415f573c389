// The systems under test behind one small driver interface, so the closed loop in drive.ts treats them alike:
// tmem (one node with an ephemeral pool, also compressed with lz4 and with its /metrics scraped every second; three nodes with a
// persistent pool of two copies), Redis through ioredis and memcached through memjs. Keys are integers; each driver maps them to its own key space.
import { Redis } from 'ioredis';
import memjs from 'memjs';
import { connect, type Pool, type TmemClient } from '@tmem/client';
import { startCluster, startNode, type NodeProcess } from '../test/harness/index.ts';
import type { Anchor } from './anchors.ts';

/** Bytes per page in every case. */
export const PAGE_SIZE = 4096;

/** Ops per batch in the "8 × 32" cases. */
export const BATCH_OPS = 32;

/** One system the bench measures. Every op resolves to the number of ops that failed (misses, refusals). */
export interface System {
  /** Short id used in flags and file names (`tmem-1`, `tmem-1-metrics`, `tmem-3`, `ioredis`, `memcached`). */
  readonly id: SystemId;
  /** What the tables call it. */
  readonly label: string;
  /** The server processes whose CPU time is charged to this system. */
  readonly pids: readonly number[];
  /** The tmem nodes, for profiling; empty for the anchors. */
  readonly nodes: readonly NodeProcess[];
  put(key: number, page: Uint8Array): Promise<number>;
  get(key: number): Promise<number>;
  /** One batch through the system's batch API (tmem putMany, a Redis pipeline); absent if it has none. */
  putBatch?: (keys: readonly number[], pages: readonly Uint8Array[]) => Promise<number>;
  getBatch?: (keys: readonly number[]) => Promise<number>;
  /** What "8 × 32 batched" means for this system, for the notes under the table. */
  readonly batchNote: string;
  /** tmem only: what the nodes hold now, summed over them (for the compression table). */
  storeStats?: () => Promise<StoreSnapshot>;
  close(): Promise<void>;
}

/** What tmem nodes hold, summed over a system's nodes. */
export interface StoreSnapshot {
  pages: number;
  usedBytes: number;
  compressedPages: number;
  compressedBytes: number;
  compressedSlotBytes: number;
}

/** Ids of the systems, in table order. */
export const SYSTEM_IDS = [
  'tmem-1',
  'tmem-1-lz4',
  'tmem-1-dedup',
  'tmem-1-metrics',
  'tmem-3',
  'ioredis',
  'memcached',
] as const;
/** One of SYSTEM_IDS. */
export type SystemId = (typeof SYSTEM_IDS)[number];

/** Options of the tmem systems. */
export interface TmemSystemOptions {
  /** Extra node runtime arguments (profiling). @default [] */
  nodeArgs?: string[];
}

/**
 * How often the bench scrapes a node's /metrics in the `tmem-1-metrics` system: far more often than Prometheus
 * does (15 s by default), so that what scraping costs shows beside `tmem-1`.
 */
export const SCRAPE_INTERVAL_MS = 1000;

const OID = 'bench';

/** tsx start-up on a saturated two-core machine can pass the harness's 20 s; the bench waits longer. */
export const NODE_READY_TIMEOUT_MS = 90_000;

async function tmemSystem(
  id: SystemId,
  label: string,
  nodes: NodeProcess[],
  pool: (client: TmemClient) => Promise<Pool>,
  onClose: () => void = () => {},
): Promise<System> {
  // A generous timeout: a loaded machine must not turn a slow round into errors.
  const client = await connect({ seeds: nodes.map((n) => n.url), timeoutMs: 60_000 });
  const p = await pool(client);
  return {
    id,
    label,
    pids: nodes.map((n) => n.pid),
    nodes,
    batchNote: 'pool.putMany / pool.getMany, 32 pages per call',
    async storeStats() {
      const all = await client.stats();
      const total = (read: (s: (typeof all)[number]) => number): number =>
        all.reduce((sum, s) => sum + read(s), 0);
      return {
        pages: total((s) => s.ephemeralPages + s.persistentPages),
        usedBytes: total((s) => s.usedBytes),
        compressedPages: total((s) => s.compressedPages),
        compressedBytes: total((s) => s.compressedBytes),
        compressedSlotBytes: total((s) => s.compressedSlotBytes),
      };
    },
    async put(key, page) {
      return (await p.put(OID, key, page)) ? 0 : 1;
    },
    async get(key) {
      return (await p.get(OID, key)) === null ? 1 : 0;
    },
    async putBatch(keys, pages) {
      const results = await p.putMany(keys.map((index, i) => ({ oid: OID, index, page: pages[i]! })));
      return results.filter((accepted) => !accepted).length;
    },
    async getBatch(keys) {
      const results = await p.getMany(keys.map((index) => ({ oid: OID, index })));
      return results.filter((page) => page === null).length;
    },
    async close() {
      onClose();
      await client.close();
      // SIGTERM, not SIGKILL: a node exits cleanly, so a profile it writes on exit is complete.
      await Promise.all(nodes.map((n) => n.stop()));
    },
  };
}

/** tmem on one node with an ephemeral pool (gets are exclusive there: each get removes the page it reads). */
export function startTmemOneNode(options: TmemSystemOptions = {}): Promise<System> {
  return oneNode('tmem-1', 'tmem, 1 node, ephemeral', [], options);
}

/** The same with `compression: 'lz4'`: beside `tmem-1`, what compression costs in throughput and saves. */
export function startTmemOneNodeLz4(options: TmemSystemOptions = {}): Promise<System> {
  return oneNode('tmem-1-lz4', 'tmem, 1 node, ephemeral, lz4', [], options, undefined, 'lz4');
}

/**
 * The same node started with `--dedup`: beside `tmem-1`, what sharing slots of identical pages costs in
 * throughput and saves (the `dup` cases; the bench's pages repeat every 1024 keys, so on this node every case
 * is duplicate-heavy past its first 1024 keys).
 */
export function startTmemOneNodeDedup(options: TmemSystemOptions = {}): Promise<System> {
  return oneNode('tmem-1-dedup', 'tmem, 1 node, ephemeral, dedup', ['--dedup'], options);
}

/**
 * The same node serving Prometheus metrics, scraped every SCRAPE_INTERVAL_MS while the bench runs: its rows
 * beside `tmem-1`'s show what the metrics cost the data path (issue 8: they must not slow it).
 */
export async function startTmemOneNodeScraped(options: TmemSystemOptions = {}): Promise<System> {
  const label = `tmem, 1 node, ephemeral, /metrics scraped every ${SCRAPE_INTERVAL_MS / 1000} s`;
  return oneNode('tmem-1-metrics', label, ['--metrics-port', '0'], options, (node) => {
    const url = node.metricsUrl;
    if (url === undefined)
      throw new Error('the node printed no metricsUrl although --metrics-port was given');
    const scraper = setInterval(() => {
      fetch(url)
        .then((response) => response.text())
        .catch(() => undefined);
    }, SCRAPE_INTERVAL_MS);
    return () => clearInterval(scraper);
  });
}

async function oneNode(
  id: SystemId,
  label: string,
  args: string[],
  options: TmemSystemOptions,
  attach: (node: NodeProcess) => () => void = () => () => {},
  compression?: 'lz4',
): Promise<System> {
  // Room for every page a round can leave behind, so no get misses for lack of capacity.
  const node = await startNode({
    capacity: '4GiB',
    args,
    nodeArgs: options.nodeArgs,
    env: { TMEM_LOG_LEVEL: 'warn' },
    readyTimeoutMs: NODE_READY_TIMEOUT_MS,
  });
  const detach = attach(node);
  return tmemSystem(
    id,
    label,
    [node],
    (client) =>
      client.createPool({ kind: 'ephemeral', pageSize: PAGE_SIZE, ...(compression ? { compression } : {}) }),
    detach,
  );
}

/** tmem on a 3-node cluster with a persistent pool that keeps two copies of every page. */
export async function startTmemCluster(options: TmemSystemOptions = {}): Promise<System> {
  const nodes = await startCluster({
    size: 3,
    capacity: '4GiB',
    // The harness's test timing suspects a member after 500 ms of silence; a bench saturates the machine, so
    // slower timing (the later flags win) keeps a busy node from being voted out mid-round.
    args: [
      '--heartbeat-ms',
      '200',
      '--lease-ms',
      '4000',
      '--election-timeout-ms',
      '2000',
      '--failure-timeout-ms',
      '6000',
    ],
    nodeArgs: options.nodeArgs,
    env: { TMEM_LOG_LEVEL: 'warn' },
    readyTimeoutMs: NODE_READY_TIMEOUT_MS,
  });
  return tmemSystem('tmem-3', 'tmem, 3 nodes, persistent R=2', nodes, (client) =>
    client.createPool({ kind: 'persistent', pageSize: PAGE_SIZE, replication: 2 }),
  );
}

function redisKey(key: number): string {
  return `p:${key}`;
}

/**
 * Redis through ioredis, pipelined the way tmem's client batches: concurrent single calls leave together
 * (auto-pipelining, one write per tick, as tmem cuts its queue per setImmediate), a batch is one pipeline.
 */
export async function startIoredis(redis: Anchor): Promise<System> {
  const client = new Redis({
    host: '127.0.0.1',
    port: redis.port,
    enableAutoPipelining: true,
    lazyConnect: true,
  });
  await client.connect();
  return {
    id: 'ioredis',
    label: 'Redis via ioredis',
    pids: [redis.pid],
    nodes: [],
    batchNote: 'one ioredis pipeline of 32 SET / GET',
    async put(key, page) {
      return (await client.set(redisKey(key), page as Buffer)) === 'OK' ? 0 : 1;
    },
    async get(key) {
      return (await client.getBuffer(redisKey(key))) === null ? 1 : 0;
    },
    async putBatch(keys, pages) {
      const pipeline = client.pipeline();
      keys.forEach((key, i) => pipeline.set(redisKey(key), pages[i]! as Buffer));
      const results = (await pipeline.exec()) ?? [];
      return results.filter(([error, value]) => error !== null || value !== 'OK').length;
    },
    async getBatch(keys) {
      const pipeline = client.pipeline();
      for (const key of keys) pipeline.getBuffer(redisKey(key));
      const results = (await pipeline.exec()) ?? [];
      return results.filter(([error, value]) => error !== null || value === null).length;
    },
    async close() {
      await client.quit();
    },
  };
}

/**
 * memcached through memjs, one connection. memjs has no multi-get or pipeline object, but it writes every
 * request at once and matches replies by sequence number, so concurrent calls are pipelined on the socket.
 */
export async function startMemjs(memcached: Anchor): Promise<System> {
  const client = memjs.Client.create(`127.0.0.1:${memcached.port}`, { retries: 0, timeout: 60 });
  await client.set('bench:ready', Buffer.from('1'), {});
  return {
    id: 'memcached',
    label: 'memcached via memjs',
    pids: [memcached.pid],
    nodes: [],
    batchNote: 'no batch API in memjs: the 256 concurrent single calls row is its batched case',
    async put(key, page) {
      return (await client.set(redisKey(key), page as Buffer, {})) ? 0 : 1;
    },
    async get(key) {
      return (await client.get(redisKey(key))).value === null ? 1 : 0;
    },
    close() {
      client.close();
      return Promise.resolve();
    },
  };
}
