// The replicated cluster state and the pure function that applies one change to it.
//
// Invariants every ClusterState keeps (checked by the schema on the wire, kept by applyChange):
// - `members` is sorted by id and ids are unique (one incarnation per id at a time);
// - `version` grows by exactly 1 per applied change, `term` is the coordinator term that proposed it;
// - pool ids are unique and never reused (so a stale request for a destroyed pool can never hit a newer pool
//   with the same id): the pool created when `nextPoolId` is n gets poolIdFor(poolIdKey, n) (pool-ids.ts), a
//   keyed permutation, and `nextPoolId` only grows. Ids are unordered: nothing may compare them;
// - at most `maxPools` pools, as the proposing node's change says (state-bound.ts), so the state fits a frame.
import { z } from 'zod';
import {
  ClusterState,
  MAX_REPLICATION,
  MemberInfo,
  PoolIdKey,
  PoolInfo,
  SessionId,
  U32_MAX,
  isCompression,
  isValidPageSize,
  poolHeldBy,
} from '@tmem/protocol';
import { newPoolIdKey, poolIdFor } from './pool-ids.ts';
import {
  JoinSharedPool,
  LeaveSharedPool,
  applyJoin,
  applyLeave,
  type SharedPoolOutcome,
} from './shared-pool-changes.ts';
import { stateEntries } from './state-bound.ts';

// The state schemas live in @tmem/protocol (clients validate and route by the same state); re-exported here
// so the cluster modules have one import for the state and the changes to it.
export { ClusterState, MemberInfo, PoolInfo };

const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

const changeId = z.string().min(1).max(256);

/**
 * One change to the state, as proposed to the coordinator. `changeId` is chosen by the proposer and comes
 * back in `changeDone` / `changeFailed`; proposing the same id twice while it is pending is a no-op.
 */
export const StateChange = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('addMember'), changeId, member: MemberInfo }),
  z.strictObject({
    type: z.literal('removeMember'),
    changeId,
    id: z.string().min(1).max(128),
    incarnation: count,
  }),
  z.strictObject({
    type: z.literal('createPool'),
    changeId,
    kind: PoolInfo.shape.kind,
    pageSize: count,
    owner: z.string().min(1).max(256),
    replication: z.number().int(),
    /** How the pool's pages are stored; an unknown value is refused ('bad-compression'). */
    compression: z.string().optional(),
    /**
     * Most pools the owner may have, as configured on the proposing node. It travels in the change so that
     * every member applies the same rule, in log order: concurrent creates through different nodes cannot
     * exceed it together.
     */
    maxPoolsOfOwner: count.optional(),
    /**
     * Most pools the cluster may hold, as configured on the proposing node (state-bound.ts): it travels in the
     * change for the same reason, so that no number of identities can grow the state past a frame.
     */
    maxPools: count.optional(),
    /**
     * A key the proposing node drew, taken only by a state that has none: one founded before pool ids were
     * keyed, so that a cluster upgraded in place keys its ids at its first create (see applyChange).
     */
    poolIdKey: PoolIdKey.optional(),
    /** The client session creating the pool (PoolInfo.session): the pool goes when the session ends. */
    session: SessionId.optional(),
  }),
  z.strictObject({ type: z.literal('destroyPool'), changeId, poolId: count }),
  /**
   * Ends a client session: destroys every pool of `owner` created in `session`. Proposed by the node of a client
   * that closes, and by the coordinator's sweep for a session no member saw live within the grace period.
   */
  z.strictObject({
    type: z.literal('endSession'),
    changeId,
    owner: PoolInfo.shape.owner,
    session: SessionId,
    /**
     * The session's pools as the sweep saw them. With it the change applies only if the session has no other
     * pool: one created since means its client is back, and the sweep decides again (session-sweep.ts).
     */
    pools: z
      .array(count)
      .max(1 << 16)
      .optional(),
  }),
  /** A member moves through its persistent-placement phases: filling -> ready, or ready -> leaving. */
  z.strictObject({
    type: z.literal('setPhase'),
    changeId,
    id: z.string().min(1).max(128),
    incarnation: count,
    phase: z.enum(['ready', 'leaving']),
    /**
     * Apply only to this state version: a member that became ready having copied what it owns at version v
     * must not become an owner of partitions a later state gave it and it has not copied yet.
     */
    ifVersion: count.optional(),
  }),
  z.strictObject({ type: z.literal('noop'), changeId }),
  // Shared pools (shared-pool-changes.ts).
  JoinSharedPool,
  LeaveSharedPool,
]);
/** One change to the state. */
export type StateChange = z.infer<typeof StateChange>;

/** Why applyChange refused a change. Stable strings: callers branch on them. */
export type ChangeError =
  /** addMember: that exact (id, incarnation) is already a member (a retried join: treat as joined). */
  | 'member-exists'
  /**
   * addMember: the id is a member with an OLDER incarnation. Remove it first, then add: a swap would change
   * two voters at once, and single-voter changes are what keeps consecutive majorities overlapping.
   */
  | 'replace-first'
  /** addMember: the id is a member with a NEWER incarnation; the request comes from a dead process. */
  | 'stale-incarnation'
  /** removeMember: no member with that (id, incarnation). */
  | 'unknown-member'
  /** removeMember: it is the only member; a cluster never becomes empty. */
  | 'last-member'
  /** createPool: page size is not a power of two from 512 to 65536. */
  | 'bad-page-size'
  /** createPool: replication is not an integer from 1 to 16 (1 for ephemeral pools). */
  | 'bad-replication'
  /** createPool: compression is not one of COMPRESSIONS. */
  | 'bad-compression'
  /** createPool, joinSharedPool: the identity already holds maxPoolsOfOwner pools (its own and those it shares). */
  | 'pool-limit'
  /** createPool, joinSharedPool: the cluster already holds maxPools entries (pools and sharers, state-bound.ts). */
  | 'cluster-pool-limit'
  /** createPool: every u32 pool id was used, or the state has no pool-id key (a client's view, a test's). */
  | 'no-pool-ids'
  /** destroyPool, leaveSharedPool: no such pool (or, for a leave, the identity is no sharer of it). */
  | 'unknown-pool'
  /** endSession: the owner has no pool in that session (it ended already, or never created one). */
  | 'unknown-session'
  /** endSession with `pools`: the session has a pool the sweep did not see, so its client is back. */
  | 'session-changed'
  /** joinSharedPool: the pool of that UUID exists with another page size or compression. */
  | 'shared-mismatch'
  /** joinSharedPool: the pool already has MAX_SHARERS_PER_POOL sharers. */
  | 'sharer-limit'
  /** setPhase: the state moved on since the version the change was made for; decide again. */
  | 'stale-version';

/**
 * Outcome of one change: success (for createPool with the new pool id and the version of the state that
 * created it) or a refusal that changed nothing.
 */
export type ChangeResult =
  { ok: true; poolId?: number; version?: number } | { ok: false; error: ChangeError };

/**
 * The state of a brand-new cluster: version 1, term 0, `self` its only member, no pools, and the key of its
 * pool ids (random unless given, e.g. by a test that wants the same ids every run).
 */
export function initialState(
  self: MemberInfo,
  partitionCount: number,
  poolIdKey: string = newPoolIdKey(),
): ClusterState {
  return {
    version: 1,
    term: 0,
    members: [{ ...self }],
    pools: [],
    nextPoolId: 1,
    poolIdKey,
    partitionCount,
  };
}

/** True when the change adds or removes a voter (a member); at most one such change per proposal. */
export function isVoterChange(change: StateChange): boolean {
  return change.type === 'addMember' || change.type === 'removeMember';
}

function bump(state: ClusterState, patch: Partial<ClusterState>): ClusterState {
  return { ...state, ...patch, version: state.version + 1 };
}

function refuse(state: ClusterState, error: ChangeError): { state: ClusterState; result: ChangeResult } {
  return { state, result: { ok: false, error } };
}

/**
 * The id the next pool gets, or null when there is none: every u32 used, or no key. A state founded before
 * pool ids were keyed takes the proposer's key; its sequential ids stay, so the counter walks past any permuted
 * id they already hold (at most one step per existing pool).
 */
function allocatePoolId(
  state: ClusterState,
  proposedKey: string | undefined,
): { id: number; nextPoolId: number; poolIdKey: string } | null {
  const key = state.poolIdKey ?? proposedKey;
  let counter = state.nextPoolId;
  if (key === undefined || counter === undefined) return null;
  const taken = new Set(state.pools.map((p) => p.id));
  while (counter <= U32_MAX && taken.has(poolIdFor(key, counter))) counter++;
  if (counter > U32_MAX) return null;
  return { id: poolIdFor(key, counter), nextPoolId: counter + 1, poolIdKey: key };
}

function sharedPoolResult(
  state: ClusterState,
  outcome: SharedPoolOutcome,
): { state: ClusterState; result: ChangeResult } {
  if (!outcome.ok) return refuse(state, outcome.error);
  const next = bump(state, {
    pools: outcome.pools,
    ...(outcome.nextPoolId === undefined ? {} : { nextPoolId: outcome.nextPoolId }),
    ...(outcome.poolIdKey === undefined ? {} : { poolIdKey: outcome.poolIdKey }),
  });
  return { state: next, result: { ok: true, poolId: outcome.poolId, version: next.version } };
}

/**
 * Applies one change. Pure: returns a new state with `version + 1` (same `term`; the coordinator stamps its
 * own) and the result, or on refusal the SAME state object and `{ ok: false, error }`.
 */
export function applyChange(
  state: ClusterState,
  change: StateChange,
): { state: ClusterState; result: ChangeResult } {
  switch (change.type) {
    case 'noop':
      return { state: bump(state, {}), result: { ok: true } };
    case 'addMember': {
      const existing = state.members.find((m) => m.id === change.member.id);
      if (existing) {
        if (existing.incarnation === change.member.incarnation) return refuse(state, 'member-exists');
        return refuse(
          state,
          existing.incarnation < change.member.incarnation ? 'replace-first' : 'stale-incarnation',
        );
      }
      const members = [...state.members, { ...change.member }].sort((a, b) =>
        a.id < b.id ? -1 : a.id > b.id ? 1 : 0,
      );
      return { state: bump(state, { members }), result: { ok: true } };
    }
    case 'removeMember': {
      const members = state.members.filter(
        (m) => !(m.id === change.id && m.incarnation === change.incarnation),
      );
      if (members.length === state.members.length) return refuse(state, 'unknown-member');
      if (members.length === 0) return refuse(state, 'last-member');
      return { state: bump(state, { members }), result: { ok: true } };
    }
    case 'createPool': {
      if (!isValidPageSize(change.pageSize)) return refuse(state, 'bad-page-size');
      const maxReplication = change.kind === 'ephemeral' ? 1 : MAX_REPLICATION;
      if (
        !Number.isInteger(change.replication) ||
        change.replication < 1 ||
        change.replication > maxReplication
      ) {
        return refuse(state, 'bad-replication');
      }
      if (change.compression !== undefined && !isCompression(change.compression)) {
        return refuse(state, 'bad-compression');
      }
      if (
        change.maxPoolsOfOwner !== undefined &&
        state.pools.filter((p) => poolHeldBy(p, change.owner)).length >= change.maxPoolsOfOwner
      ) {
        return refuse(state, 'pool-limit');
      }
      if (change.maxPools !== undefined && stateEntries(state) >= change.maxPools) {
        return refuse(state, 'cluster-pool-limit');
      }
      const id = allocatePoolId(state, change.poolIdKey);
      if (id === null) return refuse(state, 'no-pool-ids');
      const pool: PoolInfo = {
        id: id.id,
        kind: change.kind,
        pageSize: change.pageSize,
        owner: change.owner,
        replication: change.replication,
        ...(change.compression === undefined ? {} : { compression: change.compression }),
        ...(change.session === undefined ? {} : { session: change.session }),
      };
      const next = bump(state, {
        pools: [...state.pools, pool],
        nextPoolId: id.nextPoolId,
        poolIdKey: id.poolIdKey,
      });
      return { state: next, result: { ok: true, poolId: pool.id, version: next.version } };
    }
    case 'destroyPool': {
      const pools = state.pools.filter((p) => p.id !== change.poolId);
      if (pools.length === state.pools.length) return refuse(state, 'unknown-pool');
      return { state: bump(state, { pools }), result: { ok: true } };
    }
    case 'endSession': {
      const ended = (p: PoolInfo) => p.owner === change.owner && p.session === change.session;
      const pools = state.pools.filter((p) => !ended(p));
      if (pools.length === state.pools.length) return refuse(state, 'unknown-session');
      if (change.pools !== undefined) {
        const seen = new Set(change.pools);
        if (state.pools.some((p) => ended(p) && !seen.has(p.id))) return refuse(state, 'session-changed');
      }
      return { state: bump(state, { pools }), result: { ok: true } };
    }
    case 'joinSharedPool':
      return sharedPoolResult(state, applyJoin(state, change, allocatePoolId));
    case 'leaveSharedPool':
      return sharedPoolResult(state, applyLeave(state, change));
    case 'setPhase': {
      const index = state.members.findIndex(
        (m) => m.id === change.id && m.incarnation === change.incarnation,
      );
      if (index < 0) return refuse(state, 'unknown-member');
      if (change.ifVersion !== undefined && change.ifVersion !== state.version) {
        return refuse(state, 'stale-version');
      }
      const member = state.members[index] as MemberInfo;
      if ((member.phase ?? 'ready') === change.phase) return { state: bump(state, {}), result: { ok: true } };
      const members = state.members.map((m, i) => (i === index ? { ...m, phase: change.phase } : m));
      return { state: bump(state, { members }), result: { ok: true } };
    }
  }
}

/** True when (id, incarnation) is a member of `state`. */
export function isMember(state: ClusterState | null, id: string, incarnation: number): boolean {
  return state !== null && state.members.some((m) => m.id === id && m.incarnation === incarnation);
}
