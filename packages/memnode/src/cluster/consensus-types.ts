// Public types of the consensus core: its outputs, the result of propose() and the Consensus interface.
// Kept apart from the state machine (consensus.ts) so the wiring can depend on the shapes alone.
import type { ChangeResult, ClusterState, StateChange } from './cluster-state.ts';
import type { ConsensusMessage } from './consensus-messages.ts';
import type { MemberRef } from './partition-table.ts';

/** Role of a member in the current term. */
export type Role = 'follower' | 'candidate' | 'leader';

/**
 * Why a proposed change did not complete here. 'leadership-lost': it was never proposed, retrying (at the new
 * leader) is safe. 'outcome-unknown': it was in flight; a later leader may still commit it, so retry only
 * changes that are idempotent (a join answered 'member-exists' is a success). 'no-quorum': a voter change
 * refused because a majority of the resulting configuration is not responsive right now; retry later.
 * 'unreachable': the joiner did not answer the leader's probes within failureTimeoutMs.
 */
export type ChangeFailure = 'leadership-lost' | 'outcome-unknown' | 'no-quorum' | 'unreachable';

/**
 * What a call asks the caller to do, in order. In particular an 'accepted' output comes BEFORE the 'send'
 * of the ack that tells the leader so: the caller must finish dropping the ephemeral pages of every partition
 * it does not own in that state before it delivers the ack (commit relies on that ack).
 */
export type ConsensusOutput =
  /** Send `message` to member `to` (by id; the message names the incarnation it is for). */
  | { type: 'send'; to: string; message: ConsensusMessage }
  /** This member accepted `state`: drop pages of partitions it does not own there, BEFORE later sends. */
  | { type: 'accepted'; state: ClusterState }
  /** `state` is committed (versions only grow). Answer requests of other versions with this version. */
  | { type: 'committed'; state: ClusterState }
  /** The change committed (result.ok) or was refused by applyChange (result.error); only on the leader. */
  | { type: 'changeDone'; changeId: string; result: ChangeResult }
  /** The change did not complete here (leadership lost); see ChangeFailure. */
  | { type: 'changeFailed'; changeId: string; reason: ChangeFailure }
  /**
   * The lease this member held has lapsed: stop serving and drop the ephemeral store (while it could not
   * hear the leader its partitions may have moved away and back). Deviation: the member does NOT need a new
   * incarnation for this (its consensus memory is intact, so it stays a voter); see 'removed'.
   */
  | { type: 'leaseLost' }
  /**
   * This member (id, incarnation) is no longer in the committed state. This instance is finished: drop all
   * pages, start a new instance with a NEW incarnation (joiner mode) and join again.
   */
  | { type: 'removed' }
  /** Role, term or known leader changed. */
  | { type: 'roleChanged'; role: Role; term: number; leaderId: string | null };

/** Result of propose(): queued at the leader, or not the leader (forward to `leaderId` when known). */
export type ProposeResult = { ok: true; outputs: ConsensusOutput[] } | { ok: false; leaderId: string | null };

/** One member's consensus core. Create with createConsensus(). */
export interface Consensus {
  /** This member's identity. */
  readonly self: MemberRef;
  /** Current role. */
  readonly role: Role;
  /** Current term (grows; a member never votes twice in one term). */
  readonly term: number;
  /** The leader of the current term if known (self when leader). */
  readonly leaderId: string | null;
  /** Latest state this member accepted (null for a joiner not yet added). */
  readonly accepted: ClusterState | null;
  /** Latest state this member knows committed (null for a joiner not yet added). */
  readonly committed: ClusterState | null;
  /** End of the lease this member holds, on its own clock (-Infinity when none). */
  readonly leaseUntil: number;
  /** True once this incarnation was removed from the cluster; the instance then ignores all input. */
  readonly removed: boolean;
  /** True when this member holds a lease at `now`. */
  hasLease(now: number): boolean;
  /**
   * True iff this member may serve partition `partition` at `now`: it holds a lease and is the partition's
   * primary in both its committed and its accepted state. The caller must also check that the request's
   * state version equals `committed.version`.
   */
  isServingPrimary(now: number, partition: number): boolean;
  /** Every partition for which isServingPrimary(now, p) holds, ascending. */
  servingPartitions(now: number): readonly number[];
  /** Earliest time at which tick() has something to do; calling it more often is harmless. */
  nextTickAt(): number;
  /** Advances timers: elections, heartbeats, lease expiry, failure detection, time-gated commits. */
  tick(now: number): ConsensusOutput[];
  /** Handles one (already schema-validated) message from member `from`. */
  receive(from: string, message: ConsensusMessage, now: number): ConsensusOutput[];
  /** Queues a change at the leader (FIFO, one proposal at a time); elsewhere returns { ok: false, leaderId }. */
  propose(change: StateChange, now: number): ProposeResult;
}
