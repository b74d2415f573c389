// When a node must drop ephemeral pages so that it never serves a page that a newer owner may have overwritten
// (docs/architecture.md, "Leases" and "The serving rule and ephemeral pages"). Pure: the wiring feeds it the
// consensus core's outputs in output order and drops what it answers before it handles the next output; the
// deterministic simulation feeds the same module the same outputs and checks that no read is ever stale.
//
// The invariant it keeps, for every page P of partition p the store still holds after a drop was applied:
// P was written while this incarnation served p, and no committed state since then made another member p's
// primary. Three facts carry it:
//   1. A node drops the pages of every partition it does not own in a state as soon as it accepts that state,
//      before the ack goes out; a commit waits for the ack of every member of the previous committed state,
//      or for its lease to have surely expired. So while the lease holds, no state that moves p away commits
//      before this node dropped p.
//   2. Once the lease has lapsed, states may commit without this node. Committed states form one chain
//      (one state per version), so if the next committed state it learns is exactly one version after the
//      last one it knew, it saw every state in between (there is none); a gap means p may have moved away
//      and back unseen, and every page goes.
//   3. A removed incarnation is finished: its store goes, and the next incarnation starts empty.
import type { ClusterState } from './cluster-state.ts';
import { partitionTableFor } from './partition-table.ts';

/** Options of one incarnation's page retention. */
export interface PageRetentionOptions {
  /** This node's id. */
  selfId: string;
  /** The incarnation it decides for. A new incarnation needs a new instance (its store starts empty). */
  incarnation: number;
  /**
   * Version of the committed state this incarnation starts with: the founder's initial state, else none.
   * @default 0
   */
  committedVersion?: number;
}

/** Pages the caller must drop now, before it handles the next output (in particular before a later 'send'). */
export type PageDrop =
  /** Every page of the store. */
  | { type: 'all'; reason: string }
  /**
   * The pages of every partition this incarnation is not primary for in state `version`: a page of
   * partition p (= hash % owned.length) goes iff owned[p] === 0. `owned.length` is the partition count.
   */
  | { type: 'unowned'; version: number; owned: Uint8Array };

/** One incarnation's page-retention decisions; create with createPageRetention(). */
export interface PageRetention {
  /** The incarnation whose ownership it computes. */
  readonly incarnation: number;
  /** True from a 'leaseLost' output until the next committed state was judged. */
  readonly leaseLapsed: boolean;
  /** Version of the latest committed state fed in (or the one it started with). */
  readonly lastCommittedVersion: number;
  /**
   * For an 'accepted' output: the pages of partitions this incarnation does not own in `state` (null when the
   * owned set is the one already applied, so the store holds nothing else). Must be applied before the ack.
   */
  onAccepted(state: ClusterState): PageDrop | null;
  /**
   * For a 'committed' output: everything when the lease lapsed and `state` is not exactly one version after
   * the last committed state (a state may have gone by unseen), else as onAccepted (a commit can be learned
   * without its proposal).
   */
  onCommitted(state: ClusterState): PageDrop | null;
  /**
   * For a 'leaseLost' output: the next committed state decides whether the pages are still current. The core
   * reports a lapse at the end of the call that notices it, so a 'committed' output of that same call comes
   * first and is judged as if the lease had held.
   */
  onLeaseLost(): void;
  /** For a 'removed' output: everything (this incarnation is finished; its successor starts empty). */
  onRemoved(): PageDrop;
}

/** Partitions of `state` whose primary is (selfId, incarnation): owned[p] is 1 for those, 0 for the others. */
export function ownedPartitions(state: ClusterState, selfId: string, incarnation: number): Uint8Array {
  const table = partitionTableFor(state, 1);
  const owned = new Uint8Array(state.partitionCount);
  for (let p = 0; p < state.partitionCount; p++) {
    const primary = table.primary(p);
    owned[p] = primary?.id === selfId && primary.incarnation === incarnation ? 1 : 0;
  }
  return owned;
}

/** True when applying `drop` removes the pages of `partition` (taken modulo the drop's partition count). */
export function dropsPartition(drop: PageDrop, partition: number): boolean {
  return drop.type === 'all' || drop.owned[partition % drop.owned.length] === 0;
}

function sameOwned(a: Uint8Array | null, b: Uint8Array): boolean {
  if (a === null || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Starts the page-retention decisions of one incarnation. */
export function createPageRetention(options: PageRetentionOptions): PageRetention {
  const { selfId, incarnation } = options;
  let leaseLapsed = false;
  let lastCommittedVersion = options.committedVersion ?? 0;
  /**
   * The owned set of the last drop applied (or implied by dropping everything): the store holds pages of
   * these partitions only, so the same set again needs no scan. Null: nothing applied yet.
   */
  let applied: Uint8Array | null = null;

  function dropUnowned(state: ClusterState): PageDrop | null {
    const owned = ownedPartitions(state, selfId, incarnation);
    if (sameOwned(applied, owned)) return null;
    applied = owned;
    return { type: 'unowned', version: state.version, owned };
  }

  return {
    incarnation,
    get leaseLapsed() {
      return leaseLapsed;
    },
    get lastCommittedVersion() {
      return lastCommittedVersion;
    },
    onAccepted(state) {
      return dropUnowned(state);
    },
    onCommitted(state) {
      const gap = leaseLapsed && state.version !== lastCommittedVersion + 1;
      leaseLapsed = false;
      lastCommittedVersion = state.version;
      if (gap) {
        // An empty store holds only owned pages: the next state with the same owned set needs no scan.
        applied = ownedPartitions(state, selfId, incarnation);
        return { type: 'all', reason: 'a committed state went by while the lease had lapsed' };
      }
      return dropUnowned(state);
    },
    onLeaseLost() {
      // Not dropping here: a lapse happens to most followers at every leader failover, and wiping then would
      // empty most caches each time. The node stops serving (the serving rule checks the lease) and the next
      // committed state shows whether anything went by unseen.
      leaseLapsed = true;
    },
    onRemoved() {
      applied = null;
      return { type: 'all', reason: 'removed from the cluster' };
    },
  };
}

/**
 * Puts `leaseLost` outputs first. The core reports a lapsed lease at the end of the call that notices it, so a
 * paused node that resumes and receives a commit skipping a version would otherwise apply that commit before
 * the lapse and skip the gap rule (seen in simulation seeds 674 and 5471). Handling the lapse first only adds
 * drops, never removes one; it does not reorder anything else.
 */
export function leaseLossFirst<T extends { type: string }>(outputs: readonly T[]): T[] {
  const lost = outputs.filter((output) => output.type === 'leaseLost');
  if (lost.length === 0) return [...outputs];
  return [...lost, ...outputs.filter((output) => output.type !== 'leaseLost')];
}
