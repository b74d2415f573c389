import { describe, expect, it } from 'vitest';
import {
  fillingTableFor,
  hasAllReplicas,
  partitionTableFor,
  persistentTableFor,
  replicaTargets,
  tableForPool,
  underReplicatedPools,
  type ClusterState,
  type MemberInfo,
} from '../src/index.ts';

const MIB = 1024 * 1024;
const member = (id: string, phase?: MemberInfo['phase']): MemberInfo => ({
  id,
  url: `ws://127.0.0.1/${id}`,
  incarnation: 1,
  capacityBytes: 256 * MIB,
  ...(phase === undefined ? {} : { phase }),
});
const stateOf = (members: MemberInfo[]): ClusterState => ({
  version: 3,
  term: 1,
  members,
  pools: [],
  nextPoolId: 1,
  partitionCount: 128,
});

describe('persistent placement', () => {
  const ready = stateOf([member('a'), member('b'), member('c', 'ready')]);
  const joining = stateOf([member('a'), member('b'), member('c', 'ready'), member('d', 'filling')]);
  const leaving = stateOf([member('a'), member('b', 'leaving'), member('c')]);

  it('places persistent partitions on ready members only', () => {
    const table = persistentTableFor(joining, 2);
    const before = persistentTableFor(ready, 2);
    for (let p = 0; p < 128; p++) {
      expect(table.owners(p)).toEqual(before.owners(p));
      expect(table.owners(p).map((o) => o.id)).not.toContain('d');
    }
    for (let p = 0; p < 128; p++) {
      expect(
        persistentTableFor(leaving, 2)
          .owners(p)
          .map((o) => o.id),
      ).not.toContain('b');
    }
  });

  it('sends writes to the owners of both tables, so a filling member gets every new write', () => {
    const future = fillingTableFor(joining, 2);
    let toFilling = 0;
    for (let p = 0; p < 128; p++) {
      const targets = replicaTargets(joining, 2, p).map((t) => t.id);
      expect(targets.slice(0, 2)).toEqual(
        persistentTableFor(joining, 2)
          .owners(p)
          .map((o) => o.id),
      );
      for (const owner of future.owners(p)) expect(targets).toContain(owner.id);
      if (targets.includes('d')) toFilling++;
      expect(new Set(targets).size).toBe(targets.length);
    }
    expect(toFilling).toBeGreaterThan(0);
  });

  it('leaves ephemeral placement on every member', () => {
    const eph = tableForPool(joining, { kind: 'ephemeral', replication: 1 });
    expect(eph).toBe(partitionTableFor(joining, 1));
    const per = tableForPool(joining, { kind: 'persistent', replication: 3 });
    expect(per).toBe(persistentTableFor(joining, 3));
    expect(per.replicas).toBe(3);
  });
});

describe('R copies or refused', () => {
  const pool = (id: number, replication: number, kind: 'ephemeral' | 'persistent' = 'persistent') => ({
    id,
    kind,
    pageSize: 4096,
    owner: 'app',
    replication,
  });

  it('counts only ready members: filling and leaving ones do not hold copies yet, or any more', () => {
    const state = stateOf([
      member('a'),
      member('b', 'filling'),
      member('c', 'leaving'),
      member('d', 'ready'),
    ]);
    expect(hasAllReplicas(state, 2)).toBe(true);
    expect(hasAllReplicas(state, 3)).toBe(false);
    // The table still takes min(R, members) owners: the refusal is the writer's check, not the table's.
    expect(persistentTableFor(state, 3).replicas).toBe(2);
  });

  it('names the persistent pools asking for more copies than there are ready members', () => {
    const state = {
      ...stateOf([member('a'), member('b')]),
      pools: [pool(1, 2), pool(2, 3), pool(3, 1, 'ephemeral'), pool(4, 5)],
      nextPoolId: 5,
    };
    expect(underReplicatedPools(state).map((p) => p.id)).toEqual([2, 4]);
  });
});
