// Joining and leaving shared pools: the state changes and the pure functions that apply them (applyChange in
// cluster-state.ts dispatches here). Through consensus, like every pool change, so all members agree in log
// order on who shares a pool, and a join through one node and a leave through another cannot cross.
//
// Invariants kept (beside cluster-state.ts's):
// - at most one pool per UUID (`shared`), always ephemeral with replication 1, owned by sharedPoolOwner(uuid);
// - its `sharers` are distinct, at least one, at most MAX_SHARERS_PER_POOL: the pool goes with its last sharer;
// - joins count against the same bounds as creates: the joiner's pools (maxPoolsOfOwner: private pools it owns
//   and shared pools it shares) and the cluster's entries (state-bound.ts: each sharer is an entry).
import { z } from 'zod';
import {
  MAX_SHARERS_PER_POOL,
  PoolIdKey,
  SharedPoolUuid,
  SharerIdentity,
  isCompression,
  isValidPageSize,
  poolHeldBy,
  sharedPoolOwner,
  type ClusterState,
  type PoolInfo,
} from '@tmem/protocol';
import { stateEntries } from './state-bound.ts';

const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const changeId = z.string().min(1).max(256);

/**
 * `identity` joins the shared pool named `shared`, which is created (ephemeral, `pageSize`, `compression`) if no
 * pool has that UUID. Authorisation is the proposing node's, before it proposes (shared-pool-access.ts); the
 * limits travel in the change as createPool's do, so every member applies the same rule.
 */
export const JoinSharedPool = z.strictObject({
  type: z.literal('joinSharedPool'),
  changeId,
  shared: SharedPoolUuid,
  identity: SharerIdentity,
  pageSize: count,
  compression: z.string().optional(),
  maxPoolsOfOwner: count.optional(),
  maxPools: count.optional(),
  poolIdKey: PoolIdKey.optional(),
});
/** A join of a shared pool. */
export type JoinSharedPool = z.infer<typeof JoinSharedPool>;

/**
 * `identity` leaves the shared pool `poolId`: it is no sharer from this state on, every member flushes the
 * objects it put last (cluster-member.ts), and the pool is destroyed with its last sharer.
 */
export const LeaveSharedPool = z.strictObject({
  type: z.literal('leaveSharedPool'),
  changeId,
  poolId: count,
  identity: SharerIdentity,
});
/** A departure from a shared pool. */
export type LeaveSharedPool = z.infer<typeof LeaveSharedPool>;

/** Why a join or leave was refused (a subset of cluster-state.ts's ChangeError). */
export type SharedPoolChangeError =
  | 'bad-page-size'
  | 'bad-compression'
  | 'shared-mismatch'
  | 'sharer-limit'
  | 'pool-limit'
  | 'cluster-pool-limit'
  | 'no-pool-ids'
  | 'unknown-pool';

/** What applying a join or leave gives: the next pools (and id counter), or a refusal. */
export type SharedPoolOutcome =
  | { ok: true; pools: PoolInfo[]; poolId: number; nextPoolId?: number; poolIdKey?: string }
  | { ok: false; error: SharedPoolChangeError };

/** A fresh pool id for the state, as createPool takes it (cluster-state.ts). */
export type AllocatePoolId = (
  state: ClusterState,
  proposedKey: string | undefined,
) => { id: number; nextPoolId: number; poolIdKey: string } | null;

function joinLimits(
  state: ClusterState,
  change: JoinSharedPool,
  added: number,
): SharedPoolChangeError | null {
  if (
    change.maxPoolsOfOwner !== undefined &&
    state.pools.filter((p) => poolHeldBy(p, change.identity)).length >= change.maxPoolsOfOwner
  ) {
    return 'pool-limit';
  }
  if (change.maxPools !== undefined && stateEntries(state) + added > change.maxPools)
    return 'cluster-pool-limit';
  return null;
}

/** Applies a join: adds the identity to the pool of that UUID, or creates the pool with it as first sharer. */
export function applyJoin(
  state: ClusterState,
  change: JoinSharedPool,
  allocate: AllocatePoolId,
): SharedPoolOutcome {
  const existing = state.pools.find((p) => p.shared === change.shared);
  if (existing !== undefined) {
    const sharers = existing.sharers ?? [];
    // Joining twice is joining: the same pool, nothing added (a retried join after a lost reply).
    if (sharers.includes(change.identity)) return { ok: true, pools: state.pools, poolId: existing.id };
    if (existing.pageSize !== change.pageSize || existing.compression !== change.compression) {
      return { ok: false, error: 'shared-mismatch' };
    }
    if (sharers.length >= MAX_SHARERS_PER_POOL) return { ok: false, error: 'sharer-limit' };
    const refused = joinLimits(state, change, 1);
    if (refused !== null) return { ok: false, error: refused };
    const joined: PoolInfo = { ...existing, sharers: [...sharers, change.identity] };
    return { ok: true, pools: state.pools.map((p) => (p === existing ? joined : p)), poolId: existing.id };
  }
  if (!isValidPageSize(change.pageSize)) return { ok: false, error: 'bad-page-size' };
  if (change.compression !== undefined && !isCompression(change.compression)) {
    return { ok: false, error: 'bad-compression' };
  }
  // A new shared pool is two entries: the pool and its first sharer.
  const refused = joinLimits(state, change, 2);
  if (refused !== null) return { ok: false, error: refused };
  const id = allocate(state, change.poolIdKey);
  if (id === null) return { ok: false, error: 'no-pool-ids' };
  const pool: PoolInfo = {
    id: id.id,
    kind: 'ephemeral',
    pageSize: change.pageSize,
    owner: sharedPoolOwner(change.shared),
    replication: 1,
    ...(change.compression === undefined ? {} : { compression: change.compression }),
    shared: change.shared,
    sharers: [change.identity],
  };
  return {
    ok: true,
    pools: [...state.pools, pool],
    poolId: pool.id,
    nextPoolId: id.nextPoolId,
    poolIdKey: id.poolIdKey,
  };
}

/** Applies a leave: the identity is no sharer any more; the last sharer's leave removes the pool. */
export function applyLeave(state: ClusterState, change: LeaveSharedPool): SharedPoolOutcome {
  const pool = state.pools.find((p) => p.id === change.poolId);
  // Not a sharer is not a pool: a non-sharer learns nothing of the pool by leaving it.
  if (pool?.sharers === undefined || !pool.sharers.includes(change.identity)) {
    return { ok: false, error: 'unknown-pool' };
  }
  const sharers = pool.sharers.filter((s) => s !== change.identity);
  const pools =
    sharers.length === 0
      ? state.pools.filter((p) => p !== pool)
      : state.pools.map((p) => (p === pool ? { ...pool, sharers } : p));
  return { ok: true, pools, poolId: pool.id };
}
