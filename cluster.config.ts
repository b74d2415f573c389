/**
 * The local cluster that `npm run cluster` starts. Edit freely: ports, capacities and how many nodes.
 */
export interface ClusterConfig {
  /** Address every node listens on. */
  host: string;
  nodes: NodeConfig[];
}

/** One memory node of the local cluster. */
export interface NodeConfig {
  /** Port to listen on; 0 picks a free one (printed at start). */
  port: number;
  /** Bytes of page data the node may hold, e.g. '256MiB'. */
  capacity: string;
}

const config: ClusterConfig = {
  host: '127.0.0.1',
  nodes: [
    { port: 7401, capacity: '256MiB' },
    { port: 7402, capacity: '256MiB' },
    { port: 7403, capacity: '256MiB' },
  ],
};

export default config;
