import { describe, expect, it } from 'vitest';
import { initialState, type ClusterState, type MemberInfo } from '../../src/cluster/cluster-state.ts';
import { createHandOffGates, type HandOffGates } from '../../src/cluster/hand-off-gates.ts';
import { partitionTableFor } from '../../src/cluster/partition-table.ts';
import { add, change, member, remove } from './state-chain.ts';

// The receiving rule of the ephemeral hand-over, on hand-made state chains: which partitions wait for whose
// pages, and that once a gate opened (done, timeout, loss, gap) no handed-over page is taken any more.

const PARTITIONS = 64;
const GATE_MS = 1000;

const leaving = (state: ClusterState, m: MemberInfo): ClusterState =>
  change(state, {
    type: 'setPhase',
    changeId: `leave:${m.id}`,
    id: m.id,
    incarnation: m.incarnation,
    phase: 'leaving',
  });
const pool = (state: ClusterState, kind: 'ephemeral' | 'persistent'): ClusterState =>
  change(state, {
    type: 'createPool',
    changeId: `pool:${state.version}`,
    kind,
    pageSize: 4096,
    owner: 'app',
    replication: 1,
  });

const a = member('a');
const b = member('b');
const c = member('c');

function primaries(state: ClusterState, id: string): number[] {
  const table = partitionTableFor(state, 1);
  return [...Array(PARTITIONS).keys()].filter((p) => table.primary(p)?.id === id);
}

/** Partitions the gates hold closed at `nowMs`. */
function gatedAt(gates: HandOffGates, nowMs: number): number[] {
  return [...Array(PARTITIONS).keys()].filter((p) => gates.gated(p, nowMs));
}

/** v1: a alone with an ephemeral pool; v2: b joined and took some of a's partitions. */
const v1 = pool(initialState(a, PARTITIONS), 'ephemeral');
const v2 = add(v1, b);
const movedToB = primaries(v2, 'b');

describe('hand-off gates: a join', () => {
  it('the joiner gates exactly the partitions it took, waiting for their old primary', () => {
    expect(movedToB.length).toBeGreaterThan(0);
    const gates = createHandOffGates({ selfId: 'b', incarnation: 1, gateMs: GATE_MS });
    const opened = gates.onState(v2, 0);
    expect(opened).toEqual([
      { transition: v2.version, from: { id: 'a', incarnation: 1 }, partitions: movedToB.length },
    ]);
    expect(gatedAt(gates, 0)).toEqual(movedToB);
    const p = movedToB[0]!;
    expect(gates.accepts(a, v2.version, p, 0)).toBe(true);
    // Only that sender, that incarnation, that transition.
    expect(gates.accepts(c, v2.version, p, 0)).toBe(false);
    expect(gates.accepts(member('a', 2), v2.version, p, 0)).toBe(false);
    expect(gates.accepts(a, v2.version + 1, p, 0)).toBe(false);
    expect(gates.accepts(a, v1.version, p, 0)).toBe(false);
    // A partition it does not own takes nothing.
    const notOwned = primaries(v2, 'a')[0]!;
    expect(gates.accepts(a, v2.version, notOwned, 0)).toBe(false);
    // The commit of the same state changes nothing.
    expect(gates.onState(v2, 10)).toEqual([]);
    expect(gatedAt(gates, 10)).toEqual(movedToB);
  });

  it('done opens every gate of that sender and transition, and no page is taken after it', () => {
    const gates = createHandOffGates({ selfId: 'b', incarnation: 1, gateMs: GATE_MS });
    gates.onState(v2, 0);
    expect(gates.done(c, v2.version)).toBe(0);
    expect(gates.done(a, v2.version + 1)).toBe(0);
    expect(gates.open(0)).toBe(movedToB.length);
    expect(gates.done(a, v2.version)).toBe(movedToB.length);
    expect(gatedAt(gates, 1)).toEqual([]);
    for (const p of movedToB) expect(gates.accepts(a, v2.version, p, 1)).toBe(false);
  });

  it('a gate opens by itself after gateMs, and from then on refuses late pages', () => {
    const gates = createHandOffGates({ selfId: 'b', incarnation: 1, gateMs: GATE_MS });
    gates.onState(v2, 100);
    const p = movedToB[0]!;
    expect(gates.gated(p, 100 + GATE_MS - 1)).toBe(true);
    expect(gates.accepts(a, v2.version, p, 100 + GATE_MS)).toBe(false);
    expect(gates.gated(p, 100 + GATE_MS)).toBe(false);
    // Expired for good: an earlier clock reading does not bring it back.
    expect(gates.accepts(a, v2.version, p, 0)).toBe(false);
    expect(gates.open(100 + GATE_MS)).toBe(0);
  });

  it('the old primary gates nothing: it loses partitions, gains none', () => {
    const gates = createHandOffGates({ selfId: 'a', incarnation: 1, gateMs: GATE_MS });
    gates.onState(v1, 0);
    expect(gates.onState(v2, 1)).toEqual([]);
    expect(gatedAt(gates, 1)).toEqual([]);
  });

  it('a joiner that first learns a later state takes no page named for the join (it cannot tell the chain)', () => {
    const v3 = pool(v2, 'ephemeral');
    const gates = createHandOffGates({ selfId: 'b', incarnation: 1, gateMs: GATE_MS });
    gates.onState(v3, 0);
    for (const p of movedToB) expect(gates.accepts(a, v2.version, p, 0)).toBe(false);
  });

  it('without ephemeral pools nothing is gated', () => {
    const bare = add(initialState(a, PARTITIONS), b);
    const gates = createHandOffGates({ selfId: 'b', incarnation: 1, gateMs: GATE_MS });
    expect(gates.onState(bare, 0)).toEqual([]);
    const persistentOnly = add(pool(initialState(a, PARTITIONS), 'persistent'), b);
    const other = createHandOffGates({ selfId: 'b', incarnation: 1, gateMs: GATE_MS });
    expect(other.onState(persistentOnly, 0)).toEqual([]);
  });

  it('gateMs 0 never holds a partition', () => {
    const gates = createHandOffGates({ selfId: 'b', incarnation: 1, gateMs: 0 });
    gates.onState(v2, 0);
    expect(gatedAt(gates, 0)).toEqual([]);
    expect(gates.accepts(a, v2.version, movedToB[0]!, 0)).toBe(false);
  });
});

describe('hand-off gates: a leave', () => {
  const v3 = add(v2, c);
  const cLeaving = leaving(v3, c);
  const cGone = remove(cLeaving, c);
  const ofC = primaries(v3, 'c');
  const toA = ofC.filter((p) => partitionTableFor(cGone, 1).primary(p)?.id === 'a');

  /** a's gates, fed the chain up to v3 as a would have seen it. */
  function gatesOfA(): HandOffGates {
    const gates = createHandOffGates({ selfId: 'a', incarnation: 1, gateMs: GATE_MS });
    for (const state of [v1, v2, v3]) gates.onState(state, 0);
    return gates;
  }

  it('a member removed after becoming leaving hands over: its partitions wait at their new primaries', () => {
    expect(toA.length).toBeGreaterThan(0);
    const gates = gatesOfA();
    // `leaving` itself moves no ephemeral partition.
    expect(gates.onState(cLeaving, 1)).toEqual([]);
    expect(gates.onState(cGone, 2)).toEqual([
      { transition: cGone.version, from: { id: 'c', incarnation: 1 }, partitions: toA.length },
    ]);
    expect(gatedAt(gates, 2)).toEqual(toA);
    expect(gates.accepts(c, cGone.version, toA[0]!, 2)).toBe(true);
  });

  it('a crashed member (removed without leaving) hands nothing over: its partitions are served at once', () => {
    const gates = gatesOfA();
    expect(gates.onState(remove(v3, c), 1)).toEqual([]);
    expect(gatedAt(gates, 1)).toEqual([]);
  });

  it('a state that went by unseen closes every gate and opens none', () => {
    const gates = gatesOfA();
    gates.onState(cLeaving, 0);
    gates.onState(cGone, 1);
    expect(gates.open(1)).toBe(toA.length);
    const skipped = pool(pool(cGone, 'ephemeral'), 'ephemeral');
    expect(gates.onState(skipped, 2)).toEqual([]);
    expect(gatedAt(gates, 2)).toEqual([]);
    expect(gates.accepts(c, cGone.version, toA[0]!, 2)).toBe(false);
  });

  it('a partition that moves away again loses its gate', () => {
    const gates = gatesOfA();
    gates.onState(cLeaving, 0);
    gates.onState(cGone, 1);
    const d = member('d');
    const withD = add(cGone, d);
    const toD = new Set(primaries(withD, 'd'));
    gates.onState(withD, 2);
    for (const p of toA) {
      expect(gates.gated(p, 2)).toBe(!toD.has(p));
      if (toD.has(p)) expect(gates.accepts(c, cGone.version, p, 2)).toBe(false);
    }
  });

  it('an older state learned late (a commit after a later accept) changes nothing', () => {
    const gates = gatesOfA();
    gates.onState(cLeaving, 0);
    gates.onState(cGone, 1);
    expect(gates.onState(cLeaving, 2)).toEqual([]);
    expect(gatedAt(gates, 2)).toEqual(toA);
  });

  it('closeAll (the store was wiped) opens every gate for ops and closes it for pages', () => {
    const gates = gatesOfA();
    gates.onState(cLeaving, 0);
    gates.onState(cGone, 1);
    gates.closeAll();
    expect(gatedAt(gates, 1)).toEqual([]);
    expect(gates.accepts(c, cGone.version, toA[0]!, 1)).toBe(false);
  });
});

describe('hand-off gates: flushObject and the sender ahead', () => {
  it('an object flushed while a gate waits is refused until no gate waits', () => {
    const gates = createHandOffGates({ selfId: 'b', incarnation: 1, gateMs: GATE_MS });
    const oid = new TextEncoder().encode('obj');
    gates.noteFlushObject(1, oid); // no gate yet: nothing to remember
    expect(gates.flushedObject(1, oid)).toBe(false);
    gates.onState(v2, 0);
    gates.noteFlushObject(1, oid);
    expect(gates.flushedObject(1, oid)).toBe(true);
    expect(gates.flushedObject(2, oid)).toBe(false);
    expect(gates.flushedObject(1, new TextEncoder().encode('other'))).toBe(false);
    gates.done(a, v2.version);
    expect(gates.flushedObject(1, oid)).toBe(false);
  });

  it('a transition later than every state seen is "behind": the sender sends again', () => {
    const gates = createHandOffGates({ selfId: 'b', incarnation: 1, gateMs: GATE_MS });
    expect(gates.behind(v2.version)).toBe(true);
    gates.onState(v2, 0);
    expect(gates.behind(v2.version)).toBe(false);
    expect(gates.behind(v2.version + 1)).toBe(true);
  });
});
