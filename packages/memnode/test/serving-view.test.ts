import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ErrorCode,
  TmemError,
  partitionTableFor,
  persistentTableFor,
  sameMember,
  type ClusterState,
  type MemberInfo,
  type MemberRef,
} from '@tmem/protocol';
import {
  Verdict,
  createServingRule,
  createServingView,
  verdictError,
  verdictWire,
  type ServingRuleOptions,
} from '../src/serving-view.ts';

const MIB = 1024 * 1024;
const PARTITIONS = 64;

function member(id: string, incarnation = 1, phase?: MemberInfo['phase']): MemberInfo {
  return { id, url: `ws://${id}`, incarnation, capacityBytes: 256 * MIB, ...(phase ? { phase } : {}) };
}

function state(version: number, members: MemberInfo[], partitionCount = PARTITIONS): ClusterState {
  return {
    version,
    term: 1,
    members,
    pools: [
      { id: 1, kind: 'ephemeral', pageSize: 4096, owner: 'a', replication: 1 },
      { id: 2, kind: 'persistent', pageSize: 4096, owner: 'a', replication: 2 },
    ],
    nextPoolId: 3,
    partitionCount,
  };
}

// The rules as they stood before the view, written out plainly: consensus.ts primaryPartitions (ephemeral)
// and replication.ts servedMask (persistent). The view must agree with them on every state pair.
function ephemeralReference(c: ClusterState, a: ClusterState, self: MemberRef, p: number): boolean {
  const isMember = (s: ClusterState) => s.members.some((m) => sameMember(m, self));
  return (
    a.version - c.version <= 1 &&
    isMember(c) &&
    isMember(a) &&
    c.partitionCount === a.partitionCount &&
    sameMember(partitionTableFor(c, 1).primary(p), self) &&
    sameMember(partitionTableFor(a, 1).primary(p), self)
  );
}

function persistentReference(
  c: ClusterState,
  a: ClusterState,
  self: MemberRef,
  replicas: number,
  role: 'primary' | 'owner',
  p: number,
): boolean {
  if (a.version - c.version > 1) return false;
  const holds = (owners: readonly MemberRef[]) =>
    role === 'primary' ? sameMember(owners[0], self) : owners.some((o) => sameMember(o, self));
  return holds(persistentTableFor(c, replicas).owners(p)) && holds(persistentTableFor(a, replicas).owners(p));
}

const phase = fc.constantFrom<MemberInfo['phase']>(undefined, 'filling', 'leaving');
const members = fc
  .array(fc.record({ incarnation: fc.integer({ min: 1, max: 2 }), phase }), { minLength: 1, maxLength: 5 })
  .map((list) => list.map((m, i) => member(`n${i}`, m.incarnation, m.phase)));

describe('serving view', () => {
  it('marks exactly the partitions the rule of both pool kinds serves, for any pair of states', () => {
    fc.assert(
      fc.property(
        members,
        members,
        fc.integer({ min: 0, max: 2 }),
        fc.integer({ min: 1, max: 2 }),
        fc.constantFrom(PARTITIONS, PARTITIONS * 2),
        (committedMembers, acceptedMembers, ahead, incarnation, acceptedPartitions) => {
          const committed = state(5, committedMembers);
          const accepted = ahead === 0 ? committed : state(5 + ahead, acceptedMembers, acceptedPartitions);
          const self = { id: 'n0', incarnation };
          const view = createServingView(committed, accepted, self);
          expect(view.member).toBe(committedMembers.some((m) => sameMember(m, self)));
          expect(view.version).toBe(5);
          expect(view.ephemeralPrimary.length).toBe(PARTITIONS);
          for (let p = 0; p < PARTITIONS; p++) {
            expect(view.ephemeralPrimary[p] === 1).toBe(ephemeralReference(committed, accepted, self, p));
            for (const replicas of [1, 2, 3]) {
              for (const role of ['primary', 'owner'] as const) {
                expect(view.persistentMask(replicas, role)[p] === 1).toBe(
                  persistentReference(committed, accepted, self, replicas, role, p),
                );
              }
            }
          }
        },
      ),
      { numRuns: 40 },
    );
  });

  it('holds the committed pools by id and computes each persistent mask once', () => {
    const committed = state(3, [member('n0'), member('n1')]);
    const view = createServingView(committed, committed, { id: 'n0', incarnation: 1 });
    expect(view.pools.get(2)?.kind).toBe('persistent');
    expect(view.pools.get(9)).toBeUndefined();
    expect(view.persistentMask(2, 'owner')).toBe(view.persistentMask(2, 'owner'));
    expect(view.persistentMask(2, 'owner')).not.toBe(view.persistentMask(2, 'primary'));
  });

  it('serves nothing before the first committed state', () => {
    const view = createServingView(null, null, { id: 'n0', incarnation: 1 });
    expect(view.member).toBe(false);
    expect(view.version).toBe(0);
    expect(view.partitionCount).toBe(1);
    expect(view.persistentMask(2, 'primary').some((bit) => bit === 1)).toBe(false);
  });
});

describe('serving rule', () => {
  function setup(overrides: Partial<ServingRuleOptions> = {}) {
    let committed: ClusterState | null = state(7, [member('n0')]);
    let accepted: ClusterState | null = committed;
    let incarnation = 1;
    let lease = true;
    let leaving = false;
    const rule = createServingRule({
      nodeId: 'n0',
      incarnation: () => incarnation,
      committed: () => committed,
      accepted: () => accepted,
      hasLease: () => lease,
      leaving: () => leaving,
      now: () => 0,
      ...overrides,
    });
    return {
      rule,
      set(next: { committed?: ClusterState | null; accepted?: ClusterState | null; incarnation?: number }) {
        if (next.committed !== undefined) committed = next.committed;
        if (next.accepted !== undefined) accepted = next.accepted;
        if (next.incarnation !== undefined) incarnation = next.incarnation;
      },
      setLease: (held: boolean) => (lease = held),
      setLeaving: (value: boolean) => (leaving = value),
    };
  }

  it('keeps one view per (committed, accepted, incarnation) and recomputes when one changes', () => {
    const s = setup();
    const first = s.rule.view();
    expect(s.rule.view()).toBe(first);
    const next = state(8, [member('n0')]);
    s.set({ accepted: next });
    const second = s.rule.view();
    expect(second).not.toBe(first);
    expect(second.accepted).toBe(next);
    s.set({ committed: next });
    expect(s.rule.view()).not.toBe(second);
    const third = s.rule.view();
    s.set({ incarnation: 2 });
    expect(s.rule.view()).not.toBe(third);
    expect(s.rule.view().member).toBe(false);
  });

  it('checks membership, then the version, then leaving, then the lease, then the partition', () => {
    const s = setup();
    const view = s.rule.view();
    const all = view.ephemeralPrimary; // one member: primary of every partition
    expect(s.rule.verdict(view, 7, all, 3)).toBe(Verdict.Serve);
    expect(s.rule.verdict(view, undefined, all, 3)).toBe(Verdict.Serve);
    expect(s.rule.verdict(view, 6, all, 3)).toBe(Verdict.Stale);
    expect(s.rule.verdict(view, 7, new Uint8Array(PARTITIONS), 3)).toBe(Verdict.NotServing);
    expect(s.rule.verdict(view, 7, new Uint8Array(PARTITIONS), -1)).toBe(Verdict.Serve);
    s.setLease(false);
    expect(s.rule.verdict(view, 7, all, 3)).toBe(Verdict.NotServing);
    expect(s.rule.verdict(view, 6, all, 3)).toBe(Verdict.Stale);
    s.setLeaving(true);
    expect(s.rule.verdict(view, 7, all, 3)).toBe(Verdict.Leaving);
    s.set({ incarnation: 2 });
    expect(s.rule.verdict(s.rule.view(), 6, all, 3)).toBe(Verdict.Joining);
  });

  it('checkLease throws the codes replication relies on', () => {
    const s = setup();
    expect(() => s.rule.checkLease(7)).not.toThrow();
    const codeOf = (fn: () => void): string => {
      try {
        fn();
      } catch (error) {
        return (error as TmemError).code;
      }
      return 'none';
    };
    expect(codeOf(() => s.rule.checkLease(8))).toBe(ErrorCode.StaleState);
    s.setLease(false);
    expect(codeOf(() => s.rule.checkLease(7))).toBe(ErrorCode.NotServing);
    s.set({ committed: null, accepted: null });
    expect(codeOf(() => s.rule.checkLease(undefined))).toBe(ErrorCode.NotServing);
  });

  it('turns verdicts into wire errors and errors with the node version where the client needs it', () => {
    expect(verdictWire(Verdict.Stale, 9)).toMatchObject({
      code: ErrorCode.StaleState,
      details: { version: 9 },
    });
    expect(verdictWire(Verdict.NotServing, 9)).toMatchObject({
      code: ErrorCode.NotServing,
      details: { version: 9 },
    });
    expect(verdictWire(Verdict.Joining, 9).code).toBe(ErrorCode.NotServing);
    expect(verdictWire(Verdict.Leaving, 9).code).toBe(ErrorCode.NotServing);
    const error = verdictError(Verdict.Stale, 4);
    expect(error).toBeInstanceOf(TmemError);
    expect(error.code).toBe(ErrorCode.StaleState);
    expect(error.details).toEqual({ version: 4 });
  });
});
