// The serving rule of page ops, for both pool kinds, in one place (docs/architecture.md, "The serving rule").
// An op on partition p is served iff the request's state version equals the committed one, this node is a
// member of the committed state holding a lease and not leaving, and it is p's primary (or, for a replica read
// of a persistent pool, an owner) in both its committed and accepted states, with the accepted state at most
// one version ahead (a state between them, committed elsewhere and unknown here, might have moved p away).
//
// Everything that depends only on the two states is computed once per (committed, accepted) pair: the
// ServingView. What changes in between (the lease, leaving) is read live. A page op then costs one view
// identity check, three comparisons and one mask lookup, and an error object only when it is refused.
import {
  ErrorCode,
  TmemError,
  partitionTableFor,
  persistentTableFor,
  sameMember,
  type ClusterState,
  type MemberRef,
  type PartitionTable,
  type PoolInfo,
} from '@tmem/protocol';

/** What this node serves a partition as: its primary (writes, reads) or any owner (replica reads). */
export type ServingRole = 'primary' | 'owner';

/** The facts of one (committed, accepted) pair that the serving rule needs, computed once per pair. */
export interface ServingView {
  /** The states this view was computed from (identity is what tells a view is current). */
  readonly committed: ClusterState | null;
  readonly accepted: ClusterState | null;
  /** The incarnation of this node the view was computed for. */
  readonly self: MemberRef;
  /** The committed version; 0 before the first committed state. */
  readonly version: number;
  /** Partitions of the committed state; 1 before the first (so a hash modulo it is defined). */
  readonly partitionCount: number;
  /** True when this incarnation is a member of the committed state (joined, not removed). */
  readonly member: boolean;
  /** The committed state's pools by id. */
  readonly pools: ReadonlyMap<number, PoolInfo>;
  /**
   * 1 at partition p when this node is p's primary in the one-copy table (ephemeral pools) of both the
   * committed and the accepted state: the partitions it may serve ephemeral ops of.
   */
  readonly ephemeralPrimary: Uint8Array;
  /**
   * The same for persistent pools with `replicas` copies, over ready members (`persistentTableFor`): primary
   * in both states, or (role owner) one of the owners in both. Computed on first use per (replicas, role).
   */
  persistentMask(replicas: number, role: ServingRole): Uint8Array;
}

const NO_PARTITIONS: Uint8Array = new Uint8Array(0);

/** True when `self` is this incarnation of a member of `state`; a scan, done once per view. */
function memberOf(state: ClusterState | null, self: MemberRef): boolean {
  if (state === null) return false;
  for (const member of state.members) if (sameMember(member, self)) return true;
  return false;
}

/**
 * Marks the partitions for which `holds(table, p)` is true in both states' tables. Empty (all 0) unless the
 * accepted state is the committed one or its direct successor.
 */
function bothStatesMask(
  committed: ClusterState,
  accepted: ClusterState,
  tableOf: (state: ClusterState) => PartitionTable,
  holds: (table: PartitionTable, partition: number) => boolean,
): Uint8Array {
  const mask = new Uint8Array(committed.partitionCount);
  if (accepted.version - committed.version > 1) return mask;
  const a = tableOf(committed);
  const b = tableOf(accepted);
  for (let p = 0; p < mask.length; p++) mask[p] = holds(a, p) && holds(b, p) ? 1 : 0;
  return mask;
}

/** Computes the serving view of one (committed, accepted) pair for this incarnation. */
export function createServingView(
  committed: ClusterState | null,
  accepted: ClusterState | null,
  self: MemberRef,
): ServingView {
  const member = memberOf(committed, self);
  const pools = new Map<number, PoolInfo>();
  for (const pool of committed?.pools ?? []) pools.set(pool.id, pool);
  const isPrimary = (table: PartitionTable, p: number): boolean => sameMember(table.primary(p), self);
  const isOwner = (table: PartitionTable, p: number): boolean => {
    for (const owner of table.owners(p)) if (sameMember(owner, self)) return true;
    return false;
  };

  let ephemeralPrimary: Uint8Array = NO_PARTITIONS;
  // The ephemeral rule also asks for membership in both states and one partition count: a node that accepted
  // its own removal, or a state with another partition count, serves nothing until the next commit.
  if (
    committed !== null &&
    accepted !== null &&
    member &&
    memberOf(accepted, self) &&
    committed.partitionCount === accepted.partitionCount
  ) {
    ephemeralPrimary = bothStatesMask(committed, accepted, (s) => partitionTableFor(s, 1), isPrimary);
  } else if (committed !== null) {
    ephemeralPrimary = new Uint8Array(committed.partitionCount);
  }

  /** Indexed by replicas * 2 + (owner ? 1 : 0); replicas are at most MAX_REPLICATION, so it stays small. */
  const persistent: (Uint8Array | undefined)[] = [];
  return {
    committed,
    accepted,
    self,
    version: committed?.version ?? 0,
    partitionCount: committed?.partitionCount ?? 1,
    member,
    pools,
    ephemeralPrimary,
    persistentMask(replicas, role) {
      const slot = replicas * 2 + (role === 'owner' ? 1 : 0);
      let mask = persistent[slot];
      if (mask !== undefined) return mask;
      if (committed === null) mask = NO_PARTITIONS;
      else if (accepted === null) mask = new Uint8Array(committed.partitionCount);
      else {
        mask = bothStatesMask(
          committed,
          accepted,
          (s) => persistentTableFor(s, replicas),
          role === 'primary' ? isPrimary : isOwner,
        );
      }
      persistent[slot] = mask;
      return mask;
    },
  };
}

/** Why an op is not served: the outcome of the serving rule, a small integer so a check allocates nothing. */
export const Verdict = {
  Serve: 0,
  /** No committed state names this incarnation yet (or any more): NOT_SERVING. */
  Joining: 1,
  /** The request's state version is not the committed one: STALE_STATE with the node's version. */
  Stale: 2,
  /** The node is handing its partitions over and leaving: NOT_SERVING. */
  Leaving: 3,
  /** No lease, or not the primary/owner of the partition in both states: NOT_SERVING. */
  NotServing: 4,
} as const;
export type Verdict = (typeof Verdict)[keyof typeof Verdict];

/** What the rule reads live, between state changes. */
export interface ServingRuleOptions {
  /** This node's id. */
  nodeId: string;
  /** This node's current incarnation (a new one after it was removed and rejoined). */
  incarnation(): number;
  committed(): ClusterState | null;
  accepted(): ClusterState | null;
  /** True while this node holds a lease at time `now` (ms, the clock the lease counts on). */
  hasLease(now: number): boolean;
  /** True once a graceful leave stopped this node from serving. */
  leaving(): boolean;
  /** The lease clock, in ms. */
  now(): number;
}

/** The serving rule of this node: the current view and the one check every page op gets. */
export interface ServingRule {
  /** The view of the current (committed, accepted) pair; recomputed only when one of them changed. */
  view(): ServingView;
  /**
   * The serving check of one op: version, membership, leaving and lease; and with `mask` and `partition` >= 0,
   * that `mask[partition]` is set (the node is primary/owner of it in both states). -1 checks no partition
   * (flushObject reaches every member).
   */
  verdict(view: ServingView, stateVersion: number | undefined, mask: Uint8Array, partition: number): Verdict;
  /** Throws the error of a verdict other than Serve (see verdictError). */
  check(view: ServingView, stateVersion: number | undefined, mask: Uint8Array, partition: number): void;
  /** The check without a partition: throws STALE_STATE / NOT_SERVING unless a member holding a lease. */
  checkLease(stateVersion: number | undefined): void;
}

/** Creates the serving rule over a node's live cluster facts. */
export function createServingRule(options: ServingRuleOptions): ServingRule {
  let current: ServingView | null = null;

  function view(): ServingView {
    const committed = options.committed();
    const accepted = options.accepted();
    const incarnation = options.incarnation();
    if (
      current === null ||
      current.committed !== committed ||
      current.accepted !== accepted ||
      current.self.incarnation !== incarnation
    ) {
      current = createServingView(committed, accepted, { id: options.nodeId, incarnation });
    }
    return current;
  }

  function verdict(
    v: ServingView,
    stateVersion: number | undefined,
    mask: Uint8Array,
    partition: number,
  ): Verdict {
    // The order decides which error a client sees first; a node behind the client must say STALE_STATE, not
    // UNKNOWN_POOL, so callers run this before they look the pool up.
    if (!v.member) return Verdict.Joining;
    if (stateVersion !== undefined && stateVersion !== v.version) return Verdict.Stale;
    if (options.leaving()) return Verdict.Leaving;
    if (!options.hasLease(options.now())) return Verdict.NotServing;
    if (partition >= 0 && mask[partition] !== 1) return Verdict.NotServing;
    return Verdict.Serve;
  }

  function check(
    v: ServingView,
    stateVersion: number | undefined,
    mask: Uint8Array,
    partition: number,
  ): void {
    const outcome = verdict(v, stateVersion, mask, partition);
    if (outcome !== Verdict.Serve) throw verdictError(outcome, v.version);
  }

  return {
    view,
    verdict,
    check,
    checkLease: (stateVersion) => check(view(), stateVersion, NO_PARTITIONS, -1),
  };
}

/** A refusal as it travels: the code, message and details of an error reply (see errorToWire). */
export interface VerdictWire {
  code: ErrorCode;
  message: string;
  details: { version: number } | undefined;
}

/**
 * The wire form of a verdict other than Serve, built without an Error (no stack trace): a batch routed by an
 * old state version gets one of these per op. `version` is the node's committed version.
 */
export function verdictWire(verdict: Verdict, version: number): VerdictWire {
  switch (verdict) {
    case Verdict.Joining:
      return { code: ErrorCode.NotServing, message: 'node is joining the cluster', details: undefined };
    case Verdict.Stale:
      return {
        code: ErrorCode.StaleState,
        message: `node is at state version ${version}`,
        details: { version },
      };
    case Verdict.Leaving:
      return { code: ErrorCode.NotServing, message: 'node is leaving the cluster', details: undefined };
    default:
      return {
        code: ErrorCode.NotServing,
        message: 'node does not serve this partition now',
        details: { version },
      };
  }
}

/** The error of a verdict other than Serve, for callers that throw (replication's checkLease). */
export function verdictError(verdict: Verdict, version: number): TmemError {
  const wire = verdictWire(verdict, version);
  return new TmemError(wire.code, wire.message, wire.details === undefined ? {} : { details: wire.details });
}
