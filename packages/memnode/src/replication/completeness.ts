// Which persistent partitions this node holds a COMPLETE copy of. A copy is complete when it holds every
// accepted write of the partition: an owner that has been an owner since the pool was created, or that
// copied the partition from a complete owner while receiving every new write. Only a complete copy may answer
// a miss with authority; an incomplete one asks the others (see replication.ts), and a partition with no
// complete copy left anywhere is LOST: its gets answer DATA_LOST, never a miss.
import { replicaTargets, sameMember, type ClusterState, type MemberRef } from '@tmem/protocol';

/** Not an owner: holds nothing of the partition. */
export const NOT_OWNER = 0;
/** An owner still copying the partition. */
export const FILLING = 1;
/** An owner with every accepted write. */
export const COMPLETE = 2;
/** Every complete copy was lost (R owners failed before a new copy was made). */
export const LOST = 3;
export type PartitionCopy = typeof NOT_OWNER | typeof FILLING | typeof COMPLETE | typeof LOST;

/** What a new committed state changed for this node. */
export interface CopyTransition {
  /** Partitions per pool this node owns now and must copy. */
  filling: Map<number, number[]>;
  /** Partitions per pool this node no longer owns: their pages go. */
  dropped: Map<number, number[]>;
}

/** The copy state of every persistent partition of this node. */
export interface Completeness {
  /** The copy state of (pool, partition); NOT_OWNER for unknown pools. */
  of(pool: number, partition: number): PartitionCopy;
  set(pool: number, partition: number, copy: PartitionCopy): void;
  /**
   * Applies a newly committed state: partitions gained become FILLING (COMPLETE when their pool is new, as an
   * empty pool is complete everywhere), partitions lost become NOT_OWNER and are reported for dropping, pools
   * gone are forgotten. `previous` null means nothing is known of the states before (a joiner, or a node whose
   * store was wiped): every pool counts as existing. A `next` that is not exactly one version after `previous`
   * means a committed state went by unseen, in which this node may not have been an owner and so missed writes
   * and flushes: every copy it holds is reported for dropping and every partition it owns is copied again (a
   * stale page kept, or a write missed, would be served with a complete copy's authority). A `leaving` node
   * keeps what it has (it is the source its successors copy from) and gains nothing.
   */
  applyState(previous: ClusterState | null, next: ClusterState): CopyTransition;
  /** Every owned partition becomes FILLING (the store was emptied); LOST ones stay LOST. */
  wipe(): void;
  /** Partitions per pool in `copy` state. */
  partitionsIn(copy: PartitionCopy): Map<number, number[]>;
  /** Counts over every pool. */
  counts(): { filling: number; lost: number; complete: number };
}

/** Creates the completeness of one incarnation `self`, knowing nothing yet. */
export function createCompleteness(self: MemberRef): Completeness {
  const pools = new Map<number, Uint8Array>();

  function partitionsIn(copy: PartitionCopy): Map<number, number[]> {
    const found = new Map<number, number[]>();
    for (const [pool, copies] of pools) {
      const list: number[] = [];
      copies.forEach((c, p) => {
        if (c === copy) list.push(p);
      });
      if (list.length > 0) found.set(pool, list);
    }
    return found;
  }

  return {
    of(pool, partition) {
      return (pools.get(pool)?.[partition] ?? NOT_OWNER) as PartitionCopy;
    },
    set(pool, partition, copy) {
      const copies = pools.get(pool);
      if (copies !== undefined && partition < copies.length) copies[partition] = copy;
    },
    applyState(previous, next) {
      const transition: CopyTransition = { filling: new Map(), dropped: new Map() };
      const me = next.members.find((m) => sameMember(m, self));
      const leaving = me?.phase === 'leaving';
      const unseen = previous !== null && next.version !== previous.version + 1;
      // Pools created in an unseen state may have had writes there.
      const existed = new Set(
        previous === null || unseen ? next.pools.map((p) => p.id) : previous.pools.map((p) => p.id),
      );
      const live = new Set<number>();
      for (const pool of next.pools) {
        if (pool.kind !== 'persistent') continue;
        live.add(pool.id);
        let copies = pools.get(pool.id);
        if (copies === undefined || copies.length !== next.partitionCount) {
          copies = new Uint8Array(next.partitionCount);
          pools.set(pool.id, copies);
        }
        if (leaving) continue;
        const gained: number[] = [];
        const dropped: number[] = [];
        for (let p = 0; p < next.partitionCount; p++) {
          const owner =
            me !== undefined && replicaTargets(next, pool.replication, p).some((t) => sameMember(t, self));
          const held = copies[p] !== NOT_OWNER;
          if (held && (unseen || !owner)) dropped.push(p);
          // After an unseen state the copy starts again; a lost partition stays lost (no complete copy came
          // back while this node was not looking).
          if (unseen && held && copies[p] !== LOST) copies[p] = NOT_OWNER;
          const copy = copies[p] as PartitionCopy;
          if (owner && copy === NOT_OWNER) {
            if (existed.has(pool.id)) {
              copies[p] = FILLING;
              gained.push(p);
            } else {
              copies[p] = COMPLETE;
            }
          } else if (!owner && copy !== NOT_OWNER) {
            copies[p] = NOT_OWNER;
          }
        }
        if (gained.length > 0) transition.filling.set(pool.id, gained);
        if (dropped.length > 0) transition.dropped.set(pool.id, dropped);
      }
      for (const id of [...pools.keys()]) if (!live.has(id)) pools.delete(id);
      return transition;
    },
    wipe() {
      for (const copies of pools.values()) {
        copies.forEach((c, p) => {
          if (c === COMPLETE) copies[p] = FILLING;
        });
      }
    },
    partitionsIn,
    counts() {
      let filling = 0;
      let lost = 0;
      let complete = 0;
      for (const copies of pools.values()) {
        for (const c of copies) {
          if (c === FILLING) filling++;
          else if (c === LOST) lost++;
          else if (c === COMPLETE) complete++;
        }
      }
      return { filling, lost, complete };
    },
  };
}
