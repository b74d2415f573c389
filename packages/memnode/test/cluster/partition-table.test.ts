import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { MemberInfo } from '../../src/cluster/cluster-state.ts';
import {
  MAX_VNODES,
  MIB_PER_VNODE,
  MIN_VNODES,
  computePartitionTable,
  partitionTableFor,
  sameMember,
  vnodesForCapacity,
  type MemberRef,
  type PartitionTable,
} from '../../src/cluster/partition-table.ts';

const MIB = 1024 * 1024;

/** Members with distinct ids n0..n(k-1), random incarnations and capacities from 64 MiB to 1 GiB. */
const members = (min: number, max: number) =>
  fc
    .array(fc.record({ incarnation: fc.nat(1000), mib: fc.integer({ min: 64, max: 1024 }) }), {
      minLength: min,
      maxLength: max,
    })
    .map((list) =>
      list.map((m, i): MemberInfo => ({
        id: `n${i}`,
        url: '',
        incarnation: m.incarnation,
        capacityBytes: m.mib * MIB,
      })),
    );

function primaries(table: PartitionTable): (MemberRef | undefined)[] {
  return Array.from({ length: table.partitionCount }, (_, p) => table.primary(p));
}

describe('partition table', () => {
  it('is deterministic and gives every partition min(R, n) distinct owners, primary first', () => {
    fc.assert(
      fc.property(members(0, 7), fc.integer({ min: 1, max: 5 }), (ms, replicas) => {
        const a = computePartitionTable(ms, 64, replicas);
        const b = computePartitionTable([...ms].reverse(), 64, replicas);
        for (let p = 0; p < 64; p++) {
          const owners = a.owners(p);
          expect(owners.length).toBe(Math.min(replicas, ms.length));
          expect(new Set(owners.map((o) => `${o.id}:${o.incarnation}`)).size).toBe(owners.length);
          expect(owners).toEqual(b.owners(p));
          expect(a.primary(p)).toEqual(owners[0]);
        }
      }),
      { numRuns: 60 },
    );
  });

  it('gives each member a share of partitions roughly proportional to its capacity', () => {
    fc.assert(
      fc.property(members(2, 6), (ms) => {
        const table = computePartitionTable(ms, 1024, 1);
        const total = ms.reduce((sum, m) => sum + vnodesForCapacity(m.capacityBytes), 0);
        for (const m of ms) {
          const share = primaries(table).filter((o) => sameMember(o, m)).length / 1024;
          const expected = vnodesForCapacity(m.capacityBytes) / total;
          // Generous: a ketama ring with a few hundred points per member is within tens of percent.
          expect(share).toBeGreaterThan(expected * 0.4);
          expect(share).toBeLessThan(expected * 1.9 + 0.02);
        }
      }),
      { numRuns: 40 },
    );
  });

  it('adding a member moves partitions only to it; removing one moves only its partitions', () => {
    fc.assert(
      fc.property(members(1, 6), fc.integer({ min: 64, max: 1024 }), (ms, mib) => {
        const newcomer: MemberInfo = { id: 'new', url: '', incarnation: 1, capacityBytes: mib * MIB };
        const before = computePartitionTable(ms, 256, 3);
        const after = computePartitionTable([...ms, newcomer], 256, 3);
        for (let p = 0; p < 256; p++) {
          const was = before.primary(p);
          const now = after.primary(p);
          expect(sameMember(now, was) || sameMember(now, newcomer)).toBe(true);
          // The replica lists agree once the newcomer is taken out (survivors keep their order).
          const kept = after.owners(p).filter((o) => !sameMember(o, newcomer));
          expect(kept).toEqual(before.owners(p).slice(0, kept.length));
          // Removal is the same move backwards.
          if (!sameMember(was, now)) expect(sameMember(now, newcomer)).toBe(true);
        }
      }),
      { numRuns: 60 },
    );
  });

  it('a new incarnation of a member is a different owner identity', () => {
    const ms: MemberInfo[] = ['a', 'b', 'c'].map((id) => ({
      id,
      url: '',
      incarnation: 1,
      capacityBytes: 256 * MIB,
    }));
    const restarted = ms.map((m) => (m.id === 'b' ? { ...m, incarnation: 2 } : m));
    const before = computePartitionTable(ms, 256, 1);
    const after = computePartitionTable(restarted, 256, 1);
    let moved = 0;
    for (let p = 0; p < 256; p++) {
      const was = before.primary(p);
      const now = after.primary(p);
      if (sameMember(was, now)) continue;
      moved++;
      // Only the old incarnation's points left and only the new one's came: nothing moves between a and c.
      expect(was?.id === 'b' || now?.id === 'b').toBe(true);
      expect(now?.id === 'b' ? now.incarnation : 2).toBe(2);
    }
    expect(moved).toBeGreaterThan(0);
    // No partition keeps the old incarnation as its owner.
    expect(primaries(after).some((o) => o?.id === 'b' && o.incarnation === 1)).toBe(false);
  });

  it('vnode counts depend only on the member own capacity', () => {
    expect(vnodesForCapacity(0)).toBe(MIN_VNODES);
    expect(vnodesForCapacity(256 * MIB)).toBe(256 / MIB_PER_VNODE);
    expect(vnodesForCapacity(1024 * 1024 * MIB)).toBe(MAX_VNODES);
  });

  it('partitionTableFor caches per state and stamps the version', () => {
    const state = {
      version: 7,
      term: 2,
      members: [{ id: 'a', url: '', incarnation: 1, capacityBytes: 256 * MIB }],
      pools: [],
      nextPoolId: 1,
      partitionCount: 32,
    };
    const t1 = partitionTableFor(state, 2);
    expect(partitionTableFor(state, 2)).toBe(t1);
    expect(t1.version).toBe(7);
    expect(t1.owners(5).map((o) => o.id)).toEqual(['a']);
    expect(partitionTableFor({ ...state, version: 8 }, 2).version).toBe(8);
  });
});
