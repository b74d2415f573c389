/**
 * The local cluster that `npm run cluster` starts. Edit freely: ports, capacities, how many nodes, timing.
 * The first node founds the cluster; the others join it. `npm run cluster -- --config <path>` starts another
 * file instead: a module default-exporting an object of this shape (it need not import anything).
 */
export interface ClusterConfig {
  /** Address every node listens on. */
  host: string;
  /**
   * Partitions of the cluster, fixed when the first node founds it.
   * @default 1024
   */
  partitions?: number;
  /**
   * Copies a persistent pool keeps of each page unless the client asks otherwise.
   * @default 2
   */
  replication?: number;
  /**
   * Shared secret of the nodes (passed as TMEM_CLUSTER_SECRET): only connections that know it may act as
   * peers. Nodes you add by hand need the same value in their environment.
   */
  clusterSecret: string;
  /** Coordination timing, for watching failover at human speed; node defaults when absent. */
  timing?: ClusterTimingConfig;
  nodes: NodeConfig[];
}

/** Coordination timing of every node, in milliseconds; each absent field keeps the node's default. */
export interface ClusterTimingConfig {
  /** Interval of the coordinator's heartbeats. */
  heartbeatMs?: number;
  /** How long a partition lease lasts without renewal. */
  leaseMs?: number;
  /** Shortest wait before a follower that hears no coordinator starts an election (the longest is twice it). */
  electionTimeoutMs?: number;
  /** Silence after which a member is declared failed and removed. */
  failureTimeoutMs?: number;
}

/** One memory node of the local cluster. */
export interface NodeConfig {
  /** Port to listen on; 0 picks a free one (printed at start). */
  port: number;
  /** Bytes of page data the node may hold, e.g. '256MiB'. */
  capacity: string;
  /** Port of its Prometheus endpoint (`/metrics`); 0 picks a free one. @default none (no endpoint) */
  metricsPort?: number;
}

const config: ClusterConfig = {
  host: '127.0.0.1',
  partitions: 1024,
  replication: 2,
  // A fixed value keeps `TMEM_CLUSTER_SECRET=... npx tmem node --join` easy on a developer's loopback; set
  // the environment variable to use your own.
  clusterSecret: process.env['TMEM_CLUSTER_SECRET'] ?? 'tmem-local-cluster',
  nodes: [
    { port: 7401, capacity: '256MiB', metricsPort: 7501 },
    { port: 7402, capacity: '256MiB', metricsPort: 7502 },
    { port: 7403, capacity: '256MiB', metricsPort: 7503 },
  ],
};

export default config;
