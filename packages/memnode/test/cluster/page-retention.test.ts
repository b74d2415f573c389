import { describe, expect, it } from 'vitest';
import { initialState, type ClusterState } from '../../src/cluster/cluster-state.ts';
import {
  createPageRetention,
  dropsPartition,
  leaseLossFirst,
  ownedPartitions,
  type PageDrop,
} from '../../src/cluster/page-retention.ts';
import { partitionTableFor } from '../../src/cluster/partition-table.ts';
import { add, change, member, remove } from './state-chain.ts';

const PARTITIONS = 64;

/** A change that moves no partition (a pool). */
const createPool = (state: ClusterState): ClusterState =>
  change(state, {
    type: 'createPool',
    changeId: `pool:${state.version}`,
    kind: 'ephemeral',
    pageSize: 4096,
    owner: 'app',
    replication: 1,
  });

const a = member('a');
const b = member('b');
const c = member('c');
/** v1: a alone (owns every partition). */
const v1 = initialState(a, PARTITIONS);
/** v2: b joined and took some of a's partitions. */
const v2 = add(v1, b);
/** Partitions of a in v1 that b owns in v2. */
const movedToB = [...Array(PARTITIONS).keys()].filter((p) => partitionTableFor(v2, 1).primary(p)?.id === 'b');

/** The partitions a drop removes. */
function dropped(drop: PageDrop | null): number[] {
  if (drop === null) return [];
  return [...Array(PARTITIONS).keys()].filter((p) => dropsPartition(drop, p));
}

describe('ownedPartitions', () => {
  it('marks exactly the partitions whose primary is this (id, incarnation)', () => {
    expect([...ownedPartitions(v1, 'a', 1)].every((x) => x === 1)).toBe(true);
    const ownedByA = ownedPartitions(v2, 'a', 1);
    const ownedByB = ownedPartitions(v2, 'b', 1);
    for (let p = 0; p < PARTITIONS; p++) expect((ownedByA[p] ?? 0) + (ownedByB[p] ?? 0)).toBe(1);
    expect(movedToB.length).toBeGreaterThan(0);
    expect(movedToB.length).toBeLessThan(PARTITIONS);
  });

  it('gives another incarnation of the same id nothing', () => {
    expect([...ownedPartitions(v1, 'a', 2)].every((x) => x === 0)).toBe(true);
  });
});

describe('dropsPartition', () => {
  it("drops every partition for 'all' and the unowned ones (modulo the count) for 'unowned'", () => {
    expect(dropped({ type: 'all', reason: 'x' })).toHaveLength(PARTITIONS);
    const owned = new Uint8Array(4).fill(1);
    owned[2] = 0;
    const drop: PageDrop = { type: 'unowned', version: 3, owned };
    expect([0, 1, 2, 3, 6, 10].map((p) => dropsPartition(drop, p))).toEqual([
      false,
      false,
      true,
      false,
      true,
      true,
    ]);
  });
});

describe('page retention', () => {
  it('drops the partitions that move away as soon as it accepts the state (before the ack)', () => {
    const r = createPageRetention({ selfId: 'a', incarnation: 1, committedVersion: 1 });
    expect(dropped(r.onAccepted(v2))).toEqual(movedToB);
  });

  it('asks for no scan when the owned set is the one already applied', () => {
    const r = createPageRetention({ selfId: 'a', incarnation: 1, committedVersion: 1 });
    expect(r.onAccepted(v2)).not.toBeNull();
    // The commit of the state it accepted, and a later state that moves nothing.
    expect(r.onCommitted(v2)).toBeNull();
    const v3 = createPool(v2);
    expect(r.onAccepted(v3)).toBeNull();
    expect(r.onCommitted(v3)).toBeNull();
  });

  it('drops unowned partitions for a commit learned without its proposal', () => {
    const r = createPageRetention({ selfId: 'a', incarnation: 1, committedVersion: 1 });
    expect(dropped(r.onCommitted(v2))).toEqual(movedToB);
    expect(r.lastCommittedVersion).toBe(2);
  });

  it('keeps the pages through a lapsed lease when the next committed state is exactly one version on', () => {
    const r = createPageRetention({ selfId: 'a', incarnation: 1, committedVersion: 1 });
    r.onLeaseLost();
    expect(r.leaseLapsed).toBe(true);
    // v2 moves partitions to b: those go (as for any commit), the others stay.
    expect(dropped(r.onCommitted(v2))).toEqual(movedToB);
    expect(r.leaseLapsed).toBe(false);
    r.onLeaseLost();
    expect(r.onCommitted(createPool(v2))).toBeNull();
  });

  it('drops everything when a committed state went by unseen while the lease had lapsed', () => {
    // a owns p in v2; v3 gives p to c and v4 gives it back (c left): a, cut off, saw neither.
    const v3 = add(v2, c);
    const v4 = remove(v3, c);
    const r = createPageRetention({ selfId: 'a', incarnation: 1, committedVersion: 1 });
    r.onAccepted(v2);
    r.onCommitted(v2);
    r.onLeaseLost();
    // Ownership in v4 equals v2's, so without the gap rule nothing would go: c's writes would be shadowed.
    expect(ownedPartitions(v4, 'a', 1)).toEqual(ownedPartitions(v2, 'a', 1));
    expect(r.onCommitted(v4)?.type).toBe('all');
    expect(r.leaseLapsed).toBe(false);
    expect(r.lastCommittedVersion).toBe(4);
    // The store is empty now, so the same owned set needs no scan; the next lapse is judged from v4.
    expect(r.onAccepted(createPool(v4))).toBeNull();
  });

  it('judges only the first committed state after a lapse, and ignores gaps while the lease held', () => {
    const v3 = createPool(v2);
    const v4 = createPool(v3);
    const v5 = createPool(v4);
    const held = createPageRetention({ selfId: 'a', incarnation: 1, committedVersion: 1 });
    held.onAccepted(v2);
    // With the lease held every state was accepted here (a commit waits for the ack): a skipped commit
    // notice is no reason to drop.
    expect(held.onCommitted(v3)).toBeNull();
    const lapsed = createPageRetention({ selfId: 'a', incarnation: 1, committedVersion: 1 });
    lapsed.onAccepted(v2);
    lapsed.onLeaseLost();
    expect(lapsed.onCommitted(v2)).toBeNull();
    // The lapse was settled by v2; v5 after v2 is a gap with the lease held since (re-granted).
    expect(lapsed.onCommitted(v5)).toBeNull();
  });

  it('a joiner starts from version 0 and keeps nothing it does not own', () => {
    const r = createPageRetention({ selfId: 'b', incarnation: 1 });
    expect(r.lastCommittedVersion).toBe(0);
    expect(dropped(r.onAccepted(v2)).length).toBe(PARTITIONS - movedToB.length);
  });

  it('drops everything when removed, and the next state is applied in full', () => {
    const r = createPageRetention({ selfId: 'a', incarnation: 1, committedVersion: 1 });
    expect(r.onAccepted(v2)).not.toBeNull();
    expect(r.onRemoved().type).toBe('all');
    expect(r.onAccepted(v2)).not.toBeNull();
  });

  it('decides for its own incarnation only: a state with a newer incarnation of the id owns nothing here', () => {
    const r = createPageRetention({ selfId: 'a', incarnation: 1, committedVersion: 1 });
    const replaced = add(remove(add(v1, b), a), member('a', 2));
    expect(dropped(r.onAccepted(replaced))).toHaveLength(PARTITIONS);
  });
});

describe('leaseLossFirst', () => {
  it('moves lease losses before everything else and keeps the rest in order', () => {
    const outputs = [
      { type: 'committed', n: 1 },
      { type: 'send', n: 2 },
      { type: 'leaseLost', n: 3 },
      { type: 'accepted', n: 4 },
    ];
    expect(leaseLossFirst(outputs).map((o) => o.n)).toEqual([3, 1, 2, 4]);
    expect(leaseLossFirst(outputs.filter((o) => o.type !== 'leaseLost')).map((o) => o.n)).toEqual([1, 2, 4]);
  });

  it('lets a commit that skipped a version after a lapse reported in the same call drop every page', () => {
    const state = (version: number) => ({
      version,
      term: 1,
      members: [{ id: 'a', url: 'ws://a', incarnation: 1, capacityBytes: 64 * 1024 * 1024 }],
      pools: [],
      nextPoolId: 1,
      partitionCount: 8,
    });
    const retention = createPageRetention({ selfId: 'a', incarnation: 1, committedVersion: 6 });
    let drop = null;
    for (const output of leaseLossFirst([
      { type: 'committed' as const, state: state(8) },
      { type: 'leaseLost' as const },
    ])) {
      if (output.type === 'leaseLost') retention.onLeaseLost();
      else drop = retention.onCommitted(output.state);
    }
    expect(drop).toMatchObject({ type: 'all' });
  });
});
