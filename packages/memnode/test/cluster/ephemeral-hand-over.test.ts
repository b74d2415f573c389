import { describe, expect, it } from 'vitest';
import { pageChecksum, partitionHash, type HandOff, type HandedOff } from '@tmem/protocol';
import {
  applyChange,
  initialState,
  type ClusterState,
  type MemberInfo,
} from '../../src/cluster/cluster-state.ts';
import { createEphemeralHandOver, handOverBudget } from '../../src/cluster/ephemeral-hand-over.ts';
import { partitionTableFor } from '../../src/cluster/partition-table.ts';
import { silentLogger } from '../../src/logger.ts';
import { createPageStore, type PageStore } from '../../src/page-store.ts';

// Both ends of the ephemeral hand-over with real page stores and the network mocked by a direct call: the
// old primary copies at the accept and pushes after the commit; the new primary stores only what its gates
// wait for, and never over a page it holds or for an object flushed meanwhile.

const PARTITIONS = 64;
const PAGE = 4096;
const POOL = 1;
/** onAccepted's third argument: the caller vouches that the store's pages are current. */
const COPIES_CURRENT = true;

const member = (id: string): MemberInfo => ({
  id,
  url: `ws://${id}`,
  incarnation: 1,
  capacityBytes: 1 << 28,
});
const a = member('a');
const b = member('b');

function withPool(state: ClusterState): ClusterState {
  return applyChange(state, {
    type: 'createPool',
    changeId: 'pool',
    kind: 'ephemeral',
    pageSize: PAGE,
    owner: 'app',
    replication: 1,
  }).state;
}
const v2 = withPool(initialState(a, PARTITIONS));
const v3 = applyChange(v2, { type: 'addMember', changeId: 'add-b', member: b }).state;

const oidOf = (k: number) => new TextEncoder().encode(`obj-${k}`);
const pageOf = (k: number, v: number) => new Uint8Array(PAGE).fill((k * 7 + v) & 0xff);
const primaryIn = (state: ClusterState, k: number) =>
  partitionTableFor(state, 1).primary(partitionHash(POOL, oidOf(k), 0) % PARTITIONS)!.id;
/** Objects whose page 0 moves from a to b when b joins. */
const moving = Array.from({ length: 200 }, (_, k) => k).filter((k) => primaryIn(v3, k) === 'b');

function store(): PageStore {
  const s = createPageStore({ capacityBytes: 64 * 1024 * 1024 });
  s.createPool({ id: POOL, kind: 'ephemeral', pageSize: PAGE, owner: 'app' });
  return s;
}

/** a (old primary) and b (joiner) wired to each other through `deliver`, which a test may intercept. */
function pair(deliver: (frame: HandOff, send: (f: HandOff) => HandedOff) => HandedOff | Promise<HandedOff>) {
  const storeA = store();
  const storeB = store();
  const receiver = createEphemeralHandOver({
    selfId: 'b',
    incarnation: 1,
    store: storeB,
    logger: silentLogger(),
    call: () => Promise.reject(new Error('b sends nothing here')),
  });
  const sender = createEphemeralHandOver({
    selfId: 'a',
    incarnation: 1,
    store: storeA,
    logger: silentLogger(),
    call: async (memberId, build) => {
      expect(memberId).toBe('b');
      return deliver(build(1), (f) => receiver.receive(f, 'a'));
    },
  });
  sender.onCommitted(v2);
  return { storeA, storeB, sender, receiver };
}

describe('ephemeral hand-over', () => {
  it('moves the pages of partitions a joiner takes, and the joiner serves them once done arrives', async () => {
    expect(moving.length).toBeGreaterThan(20);
    const { storeA, storeB, sender, receiver } = pair((frame, send) => send(frame));
    for (const k of moving) storeA.put(POOL, oidOf(k), 0, pageOf(k, 1), { sum: pageChecksum(pageOf(k, 1)) });
    // The joiner learns the state first (its gates close), then the old primary accepts it and copies.
    receiver.onAccepted(null, v3, COPIES_CURRENT);
    const p = partitionHash(POOL, oidOf(moving[0]!), 0) % PARTITIONS;
    expect(receiver.gated(p)).toBe(true);
    sender.onAccepted(v2, v3, COPIES_CURRENT);
    // Page retention drops them right after, as the member wiring does.
    storeA.removePages(() => true);
    receiver.onCommitted(v3);
    sender.onCommitted(v3);
    await sender.drained(performance.now() + 5000);
    expect(receiver.gated(p)).toBe(false);
    for (const k of moving) expect(storeB.get(POOL, oidOf(k), 0)).toEqual(pageOf(k, 1));
    expect(sender.counters().handOffSent).toBe(moving.length);
    expect(receiver.counters().handOffStored).toBe(moving.length);
  });

  it('never stores over a page the receiver holds, a corrupt page, or one of an object flushed meanwhile', async () => {
    const [held, corrupt, flushed, ...rest] = moving;
    const { storeA, storeB, sender, receiver } = pair((frame, send) => {
      // In flight: the receiver got a newer put of `held` (not possible while gated, but the store decides
      // too), a bit flipped in `corrupt`, and the client flushed object `flushed` at the receiver.
      storeB.put(POOL, oidOf(held!), 0, pageOf(held!, 2));
      receiver.onFlushObject(POOL, oidOf(flushed!));
      for (const e of frame.entries) {
        if (e.oid.toString() === oidOf(corrupt!).toString()) e.page[0] = (e.page[0] ?? 0) ^ 1;
      }
      return send(frame);
    });
    for (const k of moving) storeA.put(POOL, oidOf(k), 0, pageOf(k, 1), { sum: pageChecksum(pageOf(k, 1)) });
    receiver.onAccepted(null, v3, COPIES_CURRENT);
    sender.onAccepted(v2, v3, COPIES_CURRENT);
    storeA.removePages(() => true);
    receiver.onCommitted(v3);
    sender.onCommitted(v3);
    await sender.drained(performance.now() + 5000);
    expect(storeB.get(POOL, oidOf(held!), 0)).toEqual(pageOf(held!, 2));
    expect(storeB.get(POOL, oidOf(corrupt!), 0)).toBeNull();
    expect(storeB.get(POOL, oidOf(flushed!), 0)).toBeNull();
    for (const k of rest) expect(storeB.get(POOL, oidOf(k), 0)).toEqual(pageOf(k, 1));
    expect(receiver.counters().handOffSkipped).toBe(3);
  });

  it('a flushObject at the old primary after the copy removes the copy: it is never sent', async () => {
    const sent: string[] = [];
    const { storeA, sender, receiver } = pair((frame, send) => {
      for (const e of frame.entries) sent.push(new TextDecoder().decode(e.oid));
      return send(frame);
    });
    for (const k of moving) storeA.put(POOL, oidOf(k), 0, pageOf(k, 1));
    receiver.onAccepted(null, v3, COPIES_CURRENT);
    sender.onAccepted(v2, v3, COPIES_CURRENT);
    sender.onFlushObject(POOL, oidOf(moving[0]!));
    receiver.onCommitted(v3);
    sender.onCommitted(v3);
    await sender.drained(performance.now() + 5000);
    expect(sent).not.toContain(`obj-${moving[0]!}`);
    expect(sent).toHaveLength(moving.length - 1);
  });

  it('when the store cannot be vouched for nothing is copied, but done still opens the gates at once', async () => {
    const { storeA, sender, receiver } = pair((frame, send) => {
      expect(frame.entries).toEqual([]);
      return send(frame);
    });
    for (const k of moving) storeA.put(POOL, oidOf(k), 0, pageOf(k, 1));
    receiver.onAccepted(null, v3, COPIES_CURRENT);
    sender.onAccepted(v2, v3, !COPIES_CURRENT);
    receiver.onCommitted(v3);
    sender.onCommitted(v3);
    await sender.drained(performance.now() + 5000);
    const p = partitionHash(POOL, oidOf(moving[0]!), 0) % PARTITIONS;
    expect(receiver.gated(p)).toBe(false);
  });

  it('a wipe before the commit discards the copies taken at the accept; done still opens the gates', async () => {
    const { storeA, storeB, sender, receiver } = pair((frame, send) => {
      expect(frame.entries).toEqual([]);
      return send(frame);
    });
    for (const k of moving) storeA.put(POOL, oidOf(k), 0, pageOf(k, 1));
    receiver.onAccepted(null, v3, COPIES_CURRENT);
    sender.onAccepted(v2, v3, COPIES_CURRENT);
    receiver.onCommitted(v3);
    // The gap rule at the commit wiped the sender's store (a committed state went by during a lapse).
    sender.wiped();
    sender.onCommitted(v3);
    await sender.drained(performance.now() + 5000);
    const p = partitionHash(POOL, oidOf(moving[0]!), 0) % PARTITIONS;
    expect(receiver.gated(p)).toBe(false);
    expect(storeB.stats().ephemeralPages).toBe(0);
  });

  it('a budget out of range is refused with a RangeError naming the field', () => {
    expect(handOverBudget({}).timeoutMs).toBe(2000);
    expect(() => handOverBudget({ frameBytes: 0 })).toThrow(/frameBytes/);
    expect(() => handOverBudget({ framesInFlight: 1.5 })).toThrow(/framesInFlight/);
    expect(() => handOverBudget({ timeoutMs: -1 })).toThrow(/timeoutMs/);
  });
});
