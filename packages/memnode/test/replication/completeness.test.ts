import { describe, expect, it } from 'vitest';
import { replicaTargets, sameMember, type ClusterState, type MemberInfo } from '@tmem/protocol';
import {
  COMPLETE,
  FILLING,
  LOST,
  NOT_OWNER,
  createCompleteness,
} from '../../src/replication/completeness.ts';

const member = (id: string, phase?: MemberInfo['phase']): MemberInfo => ({
  id,
  url: `ws://x/${id}`,
  incarnation: 1,
  capacityBytes: 256 * 1024 * 1024,
  ...(phase === undefined ? {} : { phase }),
});
const pool = { id: 1, kind: 'persistent' as const, pageSize: 4096, owner: 'app', replication: 2 };
const state = (version: number, members: MemberInfo[], pools = [pool]): ClusterState => ({
  version,
  term: 1,
  members,
  pools,
  nextPoolId: 2,
  partitionCount: 64,
});
const self = { id: 'a', incarnation: 1 };
const owns = (s: ClusterState, p: number): boolean =>
  replicaTargets(s, 2, p).some((t) => sameMember(t, self));

describe('completeness', () => {
  it('owners of a new pool are complete at once; others hold nothing', () => {
    const c = createCompleteness(self);
    const before = state(1, [member('a'), member('b'), member('c')], []);
    const after = state(2, before.members);
    const t = c.applyState(before, after);
    expect(t.filling.size).toBe(0);
    for (let p = 0; p < 64; p++) expect(c.of(1, p)).toBe(owns(after, p) ? COMPLETE : NOT_OWNER);
  });

  it('partitions gained in an existing pool are filling; partitions lost are dropped', () => {
    const c = createCompleteness(self);
    const s1 = state(1, [member('a'), member('b'), member('c')], []);
    const s2 = state(2, s1.members);
    c.applyState(s1, s2);
    // c leaves (crash): a gains the partitions where c was an owner and a was not.
    const s3 = state(3, [member('a'), member('b')]);
    const t = c.applyState(s2, s3);
    const gained = [...Array(64).keys()].filter((p) => !owns(s2, p) && owns(s3, p));
    expect(gained.length).toBeGreaterThan(0);
    expect(t.filling.get(1)).toEqual(gained);
    for (const p of gained) expect(c.of(1, p)).toBe(FILLING);
    expect(c.counts().filling).toBe(gained.length);
    // A joiner that becomes ready may take partitions away: those are reported for dropping.
    c.set(1, gained[0] as number, COMPLETE);
    const s4 = state(4, [member('a'), member('b'), member('d', 'ready'), member('e', 'ready')]);
    const t4 = c.applyState(s3, s4);
    const lost = [...Array(64).keys()].filter((p) => owns(s3, p) && !owns(s4, p));
    expect(t4.dropped.get(1) ?? []).toEqual(lost);
    for (const p of lost) expect(c.of(1, p)).toBe(NOT_OWNER);
  });

  it('a joiner (no previous state) fills every partition it will own, including as a filling member', () => {
    const c = createCompleteness({ id: 'd', incarnation: 1 });
    const s = state(5, [member('a'), member('b'), member('d', 'filling')]);
    const t = c.applyState(null, s);
    const future = [...Array(64).keys()].filter((p) => replicaTargets(s, 2, p).some((o) => o.id === 'd'));
    expect(future.length).toBeGreaterThan(0);
    expect(t.filling.get(1)).toEqual(future);
  });

  it('a leaving node keeps its copies and gains nothing; a wipe makes complete copies filling, lost stays lost', () => {
    const c = createCompleteness(self);
    const s1 = state(1, [member('a'), member('b'), member('c')], []);
    const s2 = state(2, s1.members);
    c.applyState(s1, s2);
    const before = [...Array(64).keys()].map((p) => c.of(1, p));
    const s3 = state(3, [member('a', 'leaving'), member('b'), member('c')]);
    const t = c.applyState(s2, s3);
    expect(t.dropped.size).toBe(0);
    expect([...Array(64).keys()].map((p) => c.of(1, p))).toEqual(before);
    const owned = before.flatMap((copy, p) => (copy === COMPLETE ? [p] : []));
    c.set(1, owned[0] as number, LOST);
    c.wipe();
    expect(c.of(1, owned[0] as number)).toBe(LOST);
    for (const p of owned.slice(1)) expect(c.of(1, p)).toBe(FILLING);
  });

  it('forgets destroyed pools', () => {
    const c = createCompleteness(self);
    const s1 = state(1, [member('a'), member('b')], []);
    const s2 = state(2, s1.members);
    c.applyState(s1, s2);
    expect(c.counts().complete).toBeGreaterThan(0);
    c.applyState(s2, state(3, s1.members, []));
    expect(c.counts()).toEqual({ filling: 0, lost: 0, complete: 0 });
  });

  it('after a committed state went by unseen, every copy is dropped and copied again, and lost stays lost', () => {
    // A member that missed the state taking a partition away (and the flushes and writes made there) must not
    // keep its copy when the partition comes back: it would serve a flushed page, or miss a write, as complete.
    const c = createCompleteness(self);
    const members = [member('a'), member('b'), member('c')];
    const s1 = state(1, members, []);
    const s2 = state(2, members);
    c.applyState(s1, s2);
    const owned = [...Array(64).keys()].filter((p) => owns(s2, p));
    c.set(1, owned[0] as number, LOST);
    // Version 3 (say, without a) was never seen; version 4 has the same owners as version 2.
    const s4 = state(4, members);
    const t = c.applyState(s2, s4);
    expect(t.dropped.get(1)).toEqual(owned);
    expect(t.filling.get(1)).toEqual(owned.slice(1));
    expect(c.of(1, owned[0] as number)).toBe(LOST);
    for (const p of owned.slice(1)) expect(c.of(1, p)).toBe(FILLING);
    // The next state in sequence changes nothing.
    const t5 = c.applyState(s4, state(5, members));
    expect(t5.dropped.size + t5.filling.size).toBe(0);
  });

  it('a pool created in a state that went by unseen is copied, not assumed empty', () => {
    const c = createCompleteness(self);
    const members = [member('a'), member('b'), member('c')];
    const s1 = state(1, members, []);
    const t = c.applyState(s1, state(3, members));
    const owned = [...Array(64).keys()].filter((p) => owns(state(3, members), p));
    expect(t.filling.get(1)).toEqual(owned);
  });
});
