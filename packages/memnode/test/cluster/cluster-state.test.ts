import { describe, expect, it } from 'vitest';
import {
  ClusterState,
  StateChange,
  applyChange,
  initialState,
  isMember,
  isVoterChange,
  type MemberInfo,
} from '../../src/cluster/cluster-state.ts';
import { poolIdFor } from '../../src/cluster/pool-ids.ts';

/** A fixed pool-id key, so the ids these tests expect are the same every run. */
const KEY = '00112233445566778899aabbccddeeff';

const member = (id: string, incarnation = 1): MemberInfo => ({
  id,
  url: `ws://${id}`,
  incarnation,
  capacityBytes: 1 << 28,
});

/** A createPool change of an ephemeral 4 KiB pool, less its owner. */
const EPHEMERAL_POOL = {
  type: 'createPool',
  changeId: 'c',
  kind: 'ephemeral',
  pageSize: 4096,
  replication: 1,
} as const;

describe('cluster state', () => {
  it('starts at version 1, term 0, with only the founder', () => {
    const s = initialState(member('m'), 1024, KEY);
    expect(s).toEqual({
      version: 1,
      term: 0,
      members: [member('m')],
      pools: [],
      nextPoolId: 1,
      poolIdKey: KEY,
      partitionCount: 1024,
    });
    expect(ClusterState.parse(s)).toEqual(s);
    // Every new cluster draws its own key.
    expect(initialState(member('m'), 1024).poolIdKey).not.toBe(initialState(member('m'), 1024).poolIdKey);
  });

  it('adds members sorted by id, one version per change, and refuses duplicates and swaps', () => {
    let s = initialState(member('m'), 64);
    s = applyChange(s, { type: 'addMember', changeId: '1', member: member('z') }).state;
    s = applyChange(s, { type: 'addMember', changeId: '2', member: member('a') }).state;
    expect(s.members.map((m) => m.id)).toEqual(['a', 'm', 'z']);
    expect(s.version).toBe(3);
    const same = applyChange(s, { type: 'addMember', changeId: '3', member: member('a') });
    expect(same.result).toEqual({ ok: false, error: 'member-exists' });
    expect(same.state).toBe(s);
    expect(applyChange(s, { type: 'addMember', changeId: '4', member: member('a', 2) }).result).toEqual({
      ok: false,
      error: 'replace-first',
    });
    const newer = applyChange(s, { type: 'removeMember', changeId: '5', id: 'a', incarnation: 1 }).state;
    const back = applyChange(newer, { type: 'addMember', changeId: '6', member: member('a', 2) }).state;
    expect(applyChange(back, { type: 'addMember', changeId: '7', member: member('a', 1) }).result).toEqual({
      ok: false,
      error: 'stale-incarnation',
    });
  });

  it('moves a member through its phases; a conditional change applies only to its state version', () => {
    let s = initialState(member('m'), 64);
    s = applyChange(s, {
      type: 'addMember',
      changeId: '1',
      member: { ...member('j'), phase: 'filling' },
    }).state;
    const at = s.version;
    const stale = applyChange(
      { ...s, version: at + 1 },
      { type: 'setPhase', changeId: '2', id: 'j', incarnation: 1, phase: 'ready', ifVersion: at },
    );
    expect(stale.result).toEqual({ ok: false, error: 'stale-version' });
    const ready = applyChange(s, {
      type: 'setPhase',
      changeId: '3',
      id: 'j',
      incarnation: 1,
      phase: 'ready',
      ifVersion: at,
    });
    expect(ready.result).toEqual({ ok: true });
    expect(ready.state.members.find((m) => m.id === 'j')?.phase).toBe('ready');
    const leaving = applyChange(ready.state, {
      type: 'setPhase',
      changeId: '4',
      id: 'm',
      incarnation: 1,
      phase: 'leaving',
    });
    expect(leaving.state.members.find((m) => m.id === 'm')?.phase).toBe('leaving');
    expect(
      applyChange(s, { type: 'setPhase', changeId: '5', id: 'x', incarnation: 1, phase: 'ready' }).result,
    ).toEqual({ ok: false, error: 'unknown-member' });
  });

  it('removes by exact incarnation and never empties the cluster', () => {
    const s = applyChange(initialState(member('m'), 64), {
      type: 'addMember',
      changeId: 'a',
      member: member('n'),
    }).state;
    expect(applyChange(s, { type: 'removeMember', changeId: 'x', id: 'n', incarnation: 9 }).result).toEqual({
      ok: false,
      error: 'unknown-member',
    });
    const one = applyChange(s, { type: 'removeMember', changeId: 'y', id: 'n', incarnation: 1 }).state;
    expect(isMember(one, 'n', 1)).toBe(false);
    expect(applyChange(one, { type: 'removeMember', changeId: 'z', id: 'm', incarnation: 1 }).result).toEqual(
      {
        ok: false,
        error: 'last-member',
      },
    );
  });

  it('creates pools with fresh ids (never reused, unordered) and validates them', () => {
    let s = initialState(member('m'), 64, KEY);
    const create = (replication: number, pageSize = 4096, kind: 'ephemeral' | 'persistent' = 'persistent') =>
      applyChange(s, { type: 'createPool', changeId: 'c', kind, pageSize, owner: 'app', replication });
    const first = create(2);
    expect(first.result).toEqual({ ok: true, poolId: poolIdFor(KEY, 1), version: 2 });
    s = first.state;
    s = applyChange(s, { type: 'destroyPool', changeId: 'd', poolId: poolIdFor(KEY, 1) }).state;
    const second = create(1);
    expect(second.result).toEqual({ ok: true, poolId: poolIdFor(KEY, 2), version: 4 });
    expect(second.state.nextPoolId).toBe(3);
    // Consecutive pools do not get consecutive, or even ordered, ids: they tell nothing of the pool count.
    expect(Math.abs(poolIdFor(KEY, 2) - poolIdFor(KEY, 1))).toBeGreaterThan(1);
    expect(create(1, 1000).result).toEqual({ ok: false, error: 'bad-page-size' });
    expect(create(2, 4096, 'ephemeral').result).toEqual({ ok: false, error: 'bad-replication' });
    expect(create(0).result).toEqual({ ok: false, error: 'bad-replication' });
    expect(applyChange(s, { type: 'destroyPool', changeId: 'e', poolId: poolIdFor(KEY, 1) }).result).toEqual({
      ok: false,
      error: 'unknown-pool',
    });
    expect(ClusterState.parse(JSON.parse(JSON.stringify(s)))).toEqual(s);
  });

  it('numbers pools only in a state with a pool-id key, and only while u32 ids are left', () => {
    const base = { ...EPHEMERAL_POOL, owner: 'app' };
    // A client's view of the state: without the key and the counter.
    const view = initialState(member('m'), 64, KEY);
    delete view.poolIdKey;
    delete view.nextPoolId;
    const keyless = applyChange(view, { ...base, replication: 1 });
    expect(keyless).toEqual({ state: view, result: { ok: false, error: 'no-pool-ids' } });
    const spent = { ...initialState(member('m'), 64, KEY), nextPoolId: 2 ** 32 };
    expect(applyChange(spent, { ...base, replication: 1 }).result).toEqual({
      ok: false,
      error: 'no-pool-ids',
    });
    const last = applyChange({ ...spent, nextPoolId: 2 ** 32 - 1 }, { ...base, replication: 1 });
    expect(last.result).toMatchObject({ ok: true, poolId: poolIdFor(KEY, 2 ** 32 - 1) });
  });

  it("keys a state founded before pool ids were keyed with the proposer's key, past its sequential ids", () => {
    const base = { ...EPHEMERAL_POOL, owner: 'app' };
    // An old state: sequential ids 1..n, no key. Pick the ids so that the key's first id is one of them.
    const old = initialState(member('m'), 64, KEY);
    delete old.poolIdKey;
    const firstId = poolIdFor(KEY, 3);
    const pools = [1, 2, firstId].map(
      (id) => ({ id, kind: 'ephemeral', pageSize: 4096, owner: 'old', replication: 1 }) as const,
    );
    const before = { ...old, pools, nextPoolId: 3 };
    const created = applyChange(before, { ...base, replication: 1, poolIdKey: KEY });
    // The counter walks past the id already held; the state keeps the key from now on.
    expect(created.result).toMatchObject({ ok: true, poolId: poolIdFor(KEY, 4) });
    expect(created.state).toMatchObject({ poolIdKey: KEY, nextPoolId: 5 });
    expect(ClusterState.parse(JSON.parse(JSON.stringify(created.state)))).toEqual(created.state);
    // A later change's key is ignored: the state's stays.
    const other = 'f'.repeat(32);
    const again = applyChange(created.state, { ...base, replication: 1, poolIdKey: other });
    expect(again.result).toMatchObject({ ok: true, poolId: poolIdFor(KEY, 5) });
    expect(again.state.poolIdKey).toBe(KEY);
  });

  it('refuses a pool past the cluster-wide maxPools, whoever asks, and leaves the state unchanged', () => {
    let s = initialState(member('m'), 64, KEY);
    const create = (owner: string) =>
      applyChange(s, { ...EPHEMERAL_POOL, owner, maxPoolsOfOwner: 10, maxPools: 3 });
    for (const owner of ['a', 'b', 'c']) {
      const made = create(owner);
      expect(made.result.ok).toBe(true);
      s = made.state;
    }
    const refused = create('d');
    expect(refused).toEqual({ state: s, result: { ok: false, error: 'cluster-pool-limit' } });
    expect(refused.state).toBe(s);
    // A destroyed pool makes room again; its id is not given out a second time.
    const gone = s.pools[0]?.id as number;
    s = applyChange(s, { type: 'destroyPool', changeId: 'd', poolId: gone }).state;
    const again = create('d');
    expect(again.result).toMatchObject({ ok: true, poolId: poolIdFor(KEY, 4) });
    expect(again.state.pools.map((p) => p.id)).not.toContain(gone);
  });

  it("keeps a pool's compression in the state and refuses an unknown one", () => {
    const s = initialState(member('m'), 64, KEY);
    const base = {
      type: 'createPool',
      changeId: 'c',
      kind: 'persistent',
      pageSize: 4096,
      owner: 'app',
    } as const;
    const made = applyChange(s, { ...base, replication: 2, compression: 'lz4' });
    expect(made.result).toEqual({ ok: true, poolId: poolIdFor(KEY, 1), version: 2 });
    expect(made.state.pools[0]).toMatchObject({ id: poolIdFor(KEY, 1), compression: 'lz4' });
    expect(ClusterState.parse(JSON.parse(JSON.stringify(made.state)))).toEqual(made.state);
    // Without one the pool has no compression field at all (states stay as they were).
    expect(applyChange(s, { ...base, replication: 2 }).state.pools[0]).not.toHaveProperty('compression');
    const refused = applyChange(s, { ...base, replication: 2, compression: 'zstd' });
    expect(refused.result).toEqual({ ok: false, error: 'bad-compression' });
    expect(refused.state).toBe(s);
  });

  it("refuses a pool over its owner's limit, counting only that owner's pools", () => {
    let s = initialState(member('m'), 64, KEY);
    const create = (owner: string) => applyChange(s, { ...EPHEMERAL_POOL, owner, maxPoolsOfOwner: 2 });
    for (let i = 0; i < 2; i++) {
      const made = create('greedy');
      expect(made.result.ok).toBe(true);
      s = made.state;
    }
    expect(create('greedy')).toEqual({ state: s, result: { ok: false, error: 'pool-limit' } });
    expect(create('other').result.ok).toBe(true);
    s = applyChange(s, { type: 'destroyPool', changeId: 'd', poolId: poolIdFor(KEY, 1) }).state;
    expect(create('greedy').result.ok).toBe(true);
  });

  it('ends a session: destroys exactly the pools of that owner and session, or refuses and changes nothing', () => {
    const S1 = 'a'.repeat(32);
    const S2 = 'b'.repeat(32);
    let s = initialState(member('m'), 64, KEY);
    const create = (owner: string, session?: string) => {
      const made = applyChange(s, {
        ...EPHEMERAL_POOL,
        owner,
        ...(session === undefined ? {} : { session }),
      });
      s = made.state;
      if (!made.result.ok) throw new Error(made.result.error);
      return made.result.poolId as number;
    };
    const [a1, a2, a3, b1, bare] = [
      create('app', S1),
      create('app', S1),
      create('app', S2),
      create('other', S1),
      create('app'),
    ];
    expect(s.pools.find((p) => p.id === a1)?.session).toBe(S1);
    // A pool created without a session has no session field (it never expires).
    expect(s.pools.find((p) => p.id === bare)).not.toHaveProperty('session');
    expect(ClusterState.parse(JSON.parse(JSON.stringify(s)))).toEqual(s);

    const end = { type: 'endSession', changeId: 'e', owner: 'app', session: S1 } as const;
    // The sweep's form: a session with a pool it did not see (created since) is left alone.
    const changed = applyChange(s, { ...end, pools: [a1] });
    expect(changed).toEqual({ state: s, result: { ok: false, error: 'session-changed' } });
    const ended = applyChange(s, { ...end, pools: [a1, a2] });
    expect(ended.result).toEqual({ ok: true });
    expect(ended.state.version).toBe(s.version + 1);
    // Another session of the owner, the same session id of another owner, and sessionless pools stay.
    expect(ended.state.pools.map((p) => p.id)).toEqual([a3, b1, bare]);
    // Once ended, there is nothing left to end.
    expect(applyChange(ended.state, end)).toEqual({
      state: ended.state,
      result: { ok: false, error: 'unknown-session' },
    });
    // The close's form (no pools) ends whatever the session holds.
    expect(applyChange(s, end).state.pools.map((p) => p.id)).toEqual([a3, b1, bare]);
    // Session ids are 32 lowercase hex digits, on the wire.
    expect(() => StateChange.parse({ ...end, session: 'A'.repeat(32) })).toThrow();
    expect(() => StateChange.parse({ ...EPHEMERAL_POOL, owner: 'x', session: 'short' })).toThrow();
  });

  it('tells voter changes apart and validates changes and states from the wire', () => {
    expect(isVoterChange({ type: 'addMember', changeId: 'a', member: member('x') })).toBe(true);
    expect(isVoterChange({ type: 'removeMember', changeId: 'a', id: 'x', incarnation: 1 })).toBe(true);
    expect(isVoterChange({ type: 'noop', changeId: 'a' })).toBe(false);
    expect(() => StateChange.parse({ type: 'noop' })).toThrow();
    expect(() =>
      ClusterState.parse({ ...initialState(member('m'), 64), members: [member('b'), member('a')] }),
    ).toThrow();
    expect(applyChange(initialState(member('m'), 64), { type: 'noop', changeId: 'n' }).state.version).toBe(2);
  });
});
