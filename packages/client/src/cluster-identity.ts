// Pools belong to one cluster. A whole-cluster restart makes a new cluster (a new random id) whose pool ids are
// numbered afresh and whose state versions begin again at 1, so an old pool id could name another pool there,
// and a persistent page accepted by the old cluster would read as a silent miss. Every op of a pool therefore
// checks that the cluster the client routes by, and the node it talks to, is still the pool's.
import { ClusterChangedError } from '@tmem/protocol';

/**
 * The error an op of a pool created in cluster `poolCluster` fails with when the client now routes by (or
 * talks to a node of) cluster `current`; undefined when they agree or either is unknown (a node too old to
 * say).
 */
export function clusterChangedFor(
  pool: number,
  poolCluster: string | undefined,
  current: string | undefined,
): ClusterChangedError | undefined {
  if (poolCluster === undefined || current === undefined || poolCluster === current) return undefined;
  return new ClusterChangedError(
    `pool ${pool} belongs to cluster ${poolCluster}, which is gone: the nodes now serve cluster ${current} ` +
      '(restarted); its pages are lost, create a new pool',
    { details: { pool, expected: poolCluster, actual: current } },
  );
}
