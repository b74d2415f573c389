// Versions of persistent pages and tombstones, stamped by a partition's primary. Newer versions win on every
// copy, so two facts must hold: a primary's stamps grow, and a primary of a later cluster state stamps above
// everything an earlier primary stamped. The second comes from the state version: a primary serving state
// `sv` stamps at least sv * VERSION_EPOCH, and states only grow. (An earlier primary that wrote more than
// VERSION_EPOCH pages into one partition under one state would cross into the next epoch; the new primary then
// still stamps above every write it has seen, which includes every ACCEPTED write of the partition.)
import { VERSION_EPOCH } from '@tmem/protocol';

/** Per-partition version stamps of one node. */
export interface VersionClock {
  /** A new version for a write to `partition` by the primary of state `stateVersion`. */
  stamp(partition: number, stateVersion: number): number;
  /** Notes a version seen on a copy, so this node stamps above it should it become primary. */
  observe(partition: number, version: number): void;
}

/** Creates a clock for `partitionCount` partitions, all at 0. */
export function createVersionClock(partitionCount: number): VersionClock {
  const last = new Float64Array(partitionCount);
  return {
    stamp(partition, stateVersion) {
      const next = Math.max((last[partition] ?? 0) + 1, stateVersion * VERSION_EPOCH);
      last[partition] = next;
      return next;
    },
    observe(partition, version) {
      if (version > (last[partition] ?? 0)) last[partition] = version;
    },
  };
}
