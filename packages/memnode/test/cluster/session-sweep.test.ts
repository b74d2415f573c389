import { describe, expect, it } from 'vitest';
import { MAX_ENDS_PER_SWEEP, sessionCandidates, sessionsToEnd } from '../../src/cluster/session-sweep.ts';
import { initialState, type ClusterState, type PoolInfo } from '../../src/cluster/cluster-state.ts';

const sid = (n: number) => n.toString(16).padStart(32, '0');

function stateWith(pools: Omit<PoolInfo, 'kind' | 'pageSize' | 'replication'>[]): ClusterState {
  const base = initialState({ id: 'm', url: 'ws://m', incarnation: 1, capacityBytes: 1 }, 64, 'f'.repeat(32));
  return {
    ...base,
    pools: pools.map((p) => ({ kind: 'ephemeral', pageSize: 4096, replication: 1, ...p })),
  };
}

describe('session sweep decisions', () => {
  it('lists each (owner, session) holding pools once, with its pools, and never a sessionless pool', () => {
    const state = stateWith([
      { id: 10, owner: 'b', session: sid(1) },
      { id: 11, owner: 'a', session: sid(1) },
      { id: 12, owner: 'b', session: sid(1) },
      { id: 13, owner: 'a' },
      { id: 14, owner: 'a', session: sid(0) },
    ]);
    expect(sessionCandidates(state)).toEqual([
      { owner: 'a', session: sid(0), pools: [14] },
      { owner: 'a', session: sid(1), pools: [11] },
      { owner: 'b', session: sid(1), pools: [10, 12] },
    ]);
  });

  it('covers more sessions than one query carries over sweeps, starting where the last one stopped', () => {
    const state = stateWith([0, 1, 2, 3, 4].map((i) => ({ id: i + 1, owner: 'a', session: sid(i) })));
    const sessions = (cursor: number) => sessionCandidates(state, cursor, 2).map((c) => c.session);
    expect(sessions(0)).toEqual([sid(0), sid(1)]);
    expect(sessions(2)).toEqual([sid(2), sid(3)]);
    expect(sessions(4)).toEqual([sid(4), sid(0)]);
  });

  it('ends only sessions every member answered not live, and nothing when any member did not answer', () => {
    const candidates = [0, 1, 2].map((i) => ({ owner: 'a', session: sid(i), pools: [i + 1] }));
    const ends = (answers: (boolean[] | undefined)[]) =>
      sessionsToEnd(candidates, answers).map((c) => c.session);
    expect(
      ends([
        [false, true, false],
        [false, false, true],
      ]),
    ).toEqual([sid(0)]);
    // A member that did not answer may be the one the client is connected to.
    expect(ends([[false, false, false], undefined])).toEqual([]);
    // An answer of the wrong length answers nothing.
    expect(ends([[false, false, false], [false]])).toEqual([]);
    expect(ends([])).toEqual([]);
    expect(sessionsToEnd(candidates, [[false, false, false]])[0]).toEqual(candidates[0]);
  });

  it(`ends at most ${MAX_ENDS_PER_SWEEP} sessions per sweep`, () => {
    const candidates = Array.from({ length: 100 }, (_, i) => ({
      owner: 'a',
      session: sid(i),
      pools: [i + 1],
    }));
    const ended = sessionsToEnd(candidates, [candidates.map(() => false)]);
    expect(ended).toHaveLength(MAX_ENDS_PER_SWEEP);
    expect(ended[0]).toBe(candidates[0]);
  });
});
