import { describe, expect, it } from 'vitest';
import { MAX_SHARERS_PER_POOL, sharedPoolOwner } from '@tmem/protocol';
import {
  ClusterState,
  StateChange,
  applyChange,
  initialState,
  type MemberInfo,
} from '../../src/cluster/cluster-state.ts';

const KEY = '00112233445566778899aabbccddeeff';
const UUID = '0f8fad5b-d9cb-469f-a165-70867728950e';
const OTHER_UUID = '7c9e6679-7425-40de-944b-e07fc1f90ae7';

const member: MemberInfo = { id: 'm', url: 'ws://m', incarnation: 1, capacityBytes: 1 << 28 };

const join = (identity: string, extra: Partial<StateChange> = {}): StateChange =>
  ({
    type: 'joinSharedPool',
    changeId: `j-${identity}`,
    shared: UUID,
    identity,
    pageSize: 4096,
    ...extra,
  }) as StateChange;
const leave = (poolId: number, identity: string): StateChange => ({
  type: 'leaveSharedPool',
  changeId: `l-${identity}`,
  poolId,
  identity,
});

/** Applies `change` and expects it to succeed; the next state, parsed as the wire would. */
function applied(state: ClusterState, change: StateChange): { state: ClusterState; poolId: number } {
  const { state: next, result } = applyChange(state, StateChange.parse(change));
  expect(result.ok).toBe(true);
  if (!result.ok || result.poolId === undefined) throw new Error('no pool id');
  expect(result.version).toBe(next.version);
  return { state: ClusterState.parse(next), poolId: result.poolId };
}

describe('shared pools in the cluster state', () => {
  it('the first join creates the pool, later joins add sharers to the same pool', () => {
    const first = applied(initialState(member, 64, KEY), join('alice'));
    expect(first.state.pools).toEqual([
      {
        id: first.poolId,
        kind: 'ephemeral',
        pageSize: 4096,
        owner: sharedPoolOwner(UUID),
        replication: 1,
        shared: UUID,
        sharers: ['alice'],
      },
    ]);
    const second = applied(first.state, join('bob'));
    expect(second.poolId).toBe(first.poolId);
    expect(second.state.pools[0]?.sharers).toEqual(['alice', 'bob']);
    // A join of a sharer is a join: the same pool, no second entry.
    const again = applied(second.state, join('bob'));
    expect(again.poolId).toBe(first.poolId);
    expect(again.state.pools[0]?.sharers).toEqual(['alice', 'bob']);
    // Another UUID is another pool.
    const other = applied(again.state, join('alice', { shared: OTHER_UUID }));
    expect(other.poolId).not.toBe(first.poolId);
    expect(other.state.pools).toHaveLength(2);
  });

  it('a leave removes only that sharer; the last one removes the pool; ids are never reused', () => {
    const created = applied(initialState(member, 64, KEY), join('alice'));
    const poolId = created.poolId;
    let state = created.state;
    state = applied(state, join('bob')).state;
    state = applied(state, leave(poolId, 'alice')).state;
    expect(state.pools[0]?.sharers).toEqual(['bob']);
    // One who left, or never joined, cannot leave: the same refusal as for a pool that does not exist.
    for (const identity of ['alice', 'carol']) {
      const refused = applyChange(state, leave(poolId, identity));
      expect(refused.result).toEqual({ ok: false, error: 'unknown-pool' });
      expect(refused.state).toBe(state);
    }
    state = applied(state, leave(poolId, 'bob')).state;
    expect(state.pools).toEqual([]);
    // Joining the UUID again makes a new pool, with a new id.
    const rejoined = applied(state, join('alice'));
    expect(rejoined.poolId).not.toBe(poolId);
  });

  it('a leave of a private pool is refused as unknown: only sharers leave', () => {
    const created = applyChange(initialState(member, 64, KEY), {
      type: 'createPool',
      changeId: 'c',
      kind: 'ephemeral',
      pageSize: 4096,
      replication: 1,
      owner: 'alice',
    });
    const poolId = created.result.ok ? (created.result.poolId ?? 0) : 0;
    expect(applyChange(created.state, leave(poolId, 'alice')).result).toEqual({
      ok: false,
      error: 'unknown-pool',
    });
  });

  it('refuses a join with another page size or compression than the pool has, and bad specs for a new one', () => {
    const { state } = applied(initialState(member, 64, KEY), join('alice'));
    expect(applyChange(state, join('bob', { pageSize: 8192 })).result).toEqual({
      ok: false,
      error: 'shared-mismatch',
    });
    expect(applyChange(state, join('bob', { compression: 'lz4' })).result).toEqual({
      ok: false,
      error: 'shared-mismatch',
    });
    const empty = initialState(member, 64, KEY);
    expect(applyChange(empty, join('a', { pageSize: 1000 })).result).toEqual({
      ok: false,
      error: 'bad-page-size',
    });
    expect(applyChange(empty, join('a', { compression: 'zip' })).result).toEqual({
      ok: false,
      error: 'bad-compression',
    });
  });

  it('bounds the sharers of a pool, the pools of an identity and the entries of the cluster', () => {
    let state = initialState(member, 64, KEY);
    for (let i = 0; i < MAX_SHARERS_PER_POOL; i++) state = applied(state, join(`id${i}`)).state;
    const full = applyChange(state, join('one-more'));
    expect(full.result).toEqual({ ok: false, error: 'sharer-limit' });
    expect(full.state).toBe(state);

    // A shared pool counts against its sharers' pool limit, as their private pools do.
    let s = applied(initialState(member, 64, KEY), join('alice')).state;
    expect(applyChange(s, join('alice', { shared: OTHER_UUID, maxPoolsOfOwner: 1 })).result).toEqual({
      ok: false,
      error: 'pool-limit',
    });
    expect(
      applyChange(s, {
        type: 'createPool',
        changeId: 'p',
        kind: 'ephemeral',
        pageSize: 4096,
        replication: 1,
        owner: 'alice',
        maxPoolsOfOwner: 1,
      }).result,
    ).toEqual({ ok: false, error: 'pool-limit' });
    // The pool and its sharer are two entries of the cluster's bound: a third fits in 3, a fourth does not.
    expect(applyChange(s, join('bob', { maxPools: 2 })).result).toEqual({
      ok: false,
      error: 'cluster-pool-limit',
    });
    s = applied(s, join('bob', { maxPools: 3 })).state;
    expect(
      applyChange(s, {
        type: 'createPool',
        changeId: 'p',
        kind: 'ephemeral',
        pageSize: 4096,
        replication: 1,
        owner: 'carol',
        maxPools: 3,
      }).result,
    ).toEqual({ ok: false, error: 'cluster-pool-limit' });
    expect(applyChange(s, join('carol', { shared: OTHER_UUID, maxPools: 4 })).result).toEqual({
      ok: false,
      error: 'cluster-pool-limit',
    });
  });

  it('the state schema refuses sharers without a UUID, a UUID without sharers, and empty sharers', () => {
    const { state } = applied(initialState(member, 64, KEY), join('alice'));
    const pool = state.pools[0];
    if (pool === undefined) throw new Error('no pool');
    const { sharers, ...noSharers } = pool;
    expect(sharers).toEqual(['alice']);
    const { shared, ...noUuid } = pool;
    expect(shared).toBe(UUID);
    for (const bad of [noSharers, noUuid, { ...pool, sharers: [] }, { ...pool, shared: 'x' }]) {
      expect(ClusterState.safeParse({ ...state, pools: [bad] }).success).toBe(false);
    }
    expect(StateChange.safeParse({ ...join('a'), later: 1 }).success).toBe(false);
  });
});
