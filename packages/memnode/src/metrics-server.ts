import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Registry, type Metric } from 'prom-client';
import type { ClusterMember } from './cluster/cluster-member.ts';
import { LATENCY_BUCKETS, OP_KINDS, OP_RESULTS, latencyBucketBound, type OpMetrics } from './op-metrics.ts';
import type { PageStore } from './page-store.ts';

/**
 * The node's Prometheus endpoint: `GET /metrics` on a port of its own, in the text format, through prom-client.
 * Every metric is read at scrape time from what the node already keeps (op-metrics.ts, the store's stats,
 * the member's describe()); nothing here runs per op.
 */

export interface MetricsSources {
  nodeId: string;
  ops: OpMetrics;
  store: PageStore;
  cluster: ClusterMember;
}

export interface MetricsServer {
  /** http://host:port/metrics */
  readonly url: string;
  readonly registry: Registry;
  close(): Promise<void>;
}

const ROLES = ['leader', 'follower', 'candidate', 'joining', 'leaving'] as const;

/** A registry holding the node's metrics, each filled by a collect() callback at scrape time. */
export function createMetricsRegistry(sources: MetricsSources): Registry {
  const { ops, store, cluster } = sources;
  const registry = new Registry();
  registry.setDefaultLabels({ node: sources.nodeId });
  const registers = [registry];

  new Counter({
    name: 'tmem_ops_total',
    help: 'Page ops answered, by kind and result (ok, hit, miss, refused, error).',
    labelNames: ['kind', 'result'],
    registers,
    collect() {
      this.reset();
      for (const kind of OP_KINDS) {
        for (const result of OP_RESULTS) this.labels(kind, result).inc(ops.count(kind, result));
      }
    },
  });
  new Counter({
    name: 'tmem_refusals_total',
    help: 'Puts refused, by reason (full, frozen, capped, replicas).',
    labelNames: ['reason'],
    registers,
    collect() {
      this.reset();
      for (const [reason, n] of ops.refusals()) this.labels(reason).inc(n);
    },
  });
  new Counter({
    name: 'tmem_op_errors_total',
    help: 'Page ops answered with an error, by error code.',
    labelNames: ['code'],
    registers,
    collect() {
      this.reset();
      for (const [code, n] of ops.errors()) this.labels(code).inc(n);
    },
  });
  const storeCounter = (name: string, help: string, read: () => number) =>
    new Counter({
      name,
      help,
      registers,
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  storeCounter('tmem_store_hits_total', 'Gets the page store found a page for.', () => store.stats().hits);
  storeCounter(
    'tmem_store_misses_total',
    'Gets the page store found nothing for.',
    () => store.stats().misses,
  );
  storeCounter(
    'tmem_store_evictions_total',
    'Ephemeral pages evicted to make room for puts.',
    () => store.stats().evictions,
  );
  const gauge = (name: string, help: string, read: () => number) =>
    new Gauge({
      name,
      help,
      registers,
      collect() {
        this.set(read());
      },
    });
  new Gauge({
    name: 'tmem_pages',
    help: 'Pages held, by pool kind.',
    labelNames: ['kind'],
    registers,
    collect() {
      const stats = store.stats();
      this.labels('ephemeral').set(stats.ephemeralPages);
      this.labels('persistent').set(stats.persistentPages);
    },
  });
  gauge(
    'tmem_used_bytes',
    'Bytes charged for the pages held (all pool kinds).',
    () => store.stats().usedBytes,
  );
  gauge(
    'tmem_record_bytes',
    'Bytes charged for page and object records beside the pages (used + record bytes fit the capacity).',
    () => store.stats().recordBytes,
  );
  gauge('tmem_capacity_bytes', 'Configured capacity in bytes.', () => store.stats().capacityBytes);
  // Compression: page bytes / slot bytes is the memory saved, page bytes / compressed bytes the codec's ratio.
  gauge('tmem_compressed_pages', 'Pages held compressed.', () => store.stats().compressedPages);
  gauge(
    'tmem_compressed_page_bytes',
    'Bytes the compressed pages hold as written (page size each).',
    () => store.stats().compressedPageBytes,
  );
  gauge(
    'tmem_compressed_bytes',
    'Compressed length of the pages held compressed.',
    () => store.stats().compressedBytes,
  );
  gauge(
    'tmem_compressed_slot_bytes',
    'Slot bytes the compressed pages occupy and are charged (size classes of eighths of a page).',
    () => store.stats().compressedSlotBytes,
  );
  storeCounter(
    'tmem_store_incompressible_puts_total',
    'Puts to compressed pools stored raw: compression would not save a size class.',
    () => store.stats().incompressiblePuts,
  );
  storeCounter(
    'tmem_store_corrupt_compressed_reads_total',
    'Reads of compressed copies that could not be decompressed (treated as corrupt copies).',
    () => store.stats().corruptCompressedReads,
  );
  // Dedup (a node started with --dedup): the slots shared pages take, and the capacity they save.
  gauge(
    'tmem_dedup_slots',
    'Shared slots of deduplicated ephemeral pages (distinct contents, per identity).',
    () => store.stats().dedupSlots,
  );
  gauge(
    'tmem_dedup_pages',
    "Ephemeral pages held that share another page's slot.",
    () => store.stats().dedupedPages,
  );
  gauge(
    'tmem_dedup_saved_bytes',
    'Capacity saved by shared slots: slot bytes not stored, less the metadata charged per sharing page.',
    () => store.stats().dedupSavedBytes,
  );
  storeCounter(
    'tmem_store_dedup_hits_total',
    'Puts that found their contents stored and shared that slot.',
    () => store.stats().dedupHits,
  );
  storeCounter(
    'tmem_store_dedup_collisions_total',
    'Puts whose content hash found a slot of other contents (stored unshared after the byte compare).',
    () => store.stats().dedupCollisions,
  );
  gauge('tmem_pools', 'Pools that exist on this node.', () => store.stats().pools);
  gauge(
    'tmem_state_version',
    'Version of the committed cluster state.',
    () => cluster.describe().stateVersion,
  );
  gauge('tmem_lease_held', '1 while the node holds a lease (may serve ops).', () =>
    cluster.describe().leaseHeld ? 1 : 0,
  );
  new Gauge({
    name: 'tmem_role',
    help: 'The node role: 1 for the current one, 0 for the others.',
    labelNames: ['role'],
    registers,
    collect() {
      const role = cluster.describe().role;
      for (const r of ROLES) this.labels(r).set(r === role ? 1 : 0);
    },
  });
  gauge(
    'tmem_replication_backlog',
    'Pages waiting to be copied to other replicas.',
    () => cluster.describe().replicationBacklog,
  );
  gauge(
    'tmem_copied_pages',
    'Pages copied in while filling partitions.',
    () => cluster.describe().copiedPages,
  );
  gauge(
    'tmem_filling_partitions',
    'Partitions this node is still copying in.',
    () => cluster.describe().fillingPartitions,
  );
  gauge(
    'tmem_serving_partitions',
    'Partitions this node serves.',
    () => cluster.describe().servingPartitions,
  );
  gauge(
    'tmem_under_replicated_pools',
    'Persistent pools asking for more copies than ready members.',
    () => cluster.describe().underReplicated,
  );
  registry.registerMetric(latencyHistogram(ops));
  return registry;
}

/**
 * The page op latency histogram. prom-client's Histogram observes one value at a time, which would be a call
 * per op; this one hands prom-client the buckets op-metrics.ts already counted, in the shape its registry
 * formats (cumulative `le` buckets, `_sum`, `_count`).
 */
function latencyHistogram(ops: OpMetrics): Metric {
  const name = 'tmem_op_duration_seconds';
  const help = 'Time from a page op arriving to its reply, in seconds (log2 buckets).';
  const histogram = {
    name,
    help,
    type: 'histogram',
    aggregator: 'sum',
    get() {
      const { buckets, sumSeconds, count } = ops.latency();
      const values: { metricName: string; labels: Record<string, string | number>; value: number }[] = [];
      let cumulative = 0;
      for (let i = 0; i < LATENCY_BUCKETS; i++) {
        cumulative += buckets[i] ?? 0;
        const bound = latencyBucketBound(i);
        values.push({
          metricName: `${name}_bucket`,
          labels: { le: bound === Infinity ? '+Inf' : bound },
          value: cumulative,
        });
      }
      values.push({ metricName: `${name}_sum`, labels: {}, value: sumSeconds });
      values.push({ metricName: `${name}_count`, labels: {}, value: count });
      return { name, help, type: 'histogram', aggregator: 'sum', values };
    },
    reset() {},
  };
  return histogram as unknown as Metric;
}

/**
 * A listening error in one line that names --metrics-port, not --port: the WebSocket port is already open by
 * then, and describeStartupError would send the operator to the wrong flag. No errno `code`, so the launcher
 * prints this message as it is.
 */
function metricsListenError(error: NodeJS.ErrnoException, target: { host: string; port: number }): Error {
  const where = `${target.host}:${target.port}`;
  switch (error.code) {
    case 'EADDRINUSE':
      return new Error(`cannot serve metrics on ${where}: the port is in use; pick another --metrics-port`);
    case 'EACCES':
      return new Error(`cannot serve metrics on ${where}: permission denied; pick another --metrics-port`);
    default:
      return new Error(`cannot serve metrics on ${where}: ${error.message}`);
  }
}

/** Serves the registry on `GET /metrics`; resolves once listening (port 0 picks a free port). */
export async function startMetricsServer(
  registry: Registry,
  options: { host: string; port: number },
): Promise<MetricsServer> {
  const http: Server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('tmem node: metrics are at /metrics\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (error: unknown) =>
        res
          .writeHead(500, { 'content-type': 'text/plain' })
          .end(`metrics failed: ${(error as Error).message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    http.once('error', (error) => reject(metricsListenError(error, options)));
    http.listen(options.port, options.host, () => {
      http.removeAllListeners('error');
      resolve();
    });
  });
  const address = http.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${host}:${address.port}/metrics`,
    registry,
    close: () =>
      new Promise<void>((resolve) => {
        http.closeAllConnections();
        http.close(() => resolve());
      }),
  };
}
