import { describe, expect, it } from 'vitest';
import { applyChange, initialState, type ClusterState } from '../src/cluster/cluster-state.ts';
import { visibleState } from '../src/request-handler.ts';

function withPools(owners: string[]): ClusterState {
  let state = initialState({ id: 'a', url: 'ws://a', incarnation: 1, capacityBytes: 1 << 28 }, 64);
  for (const owner of owners) {
    state = applyChange(state, {
      type: 'createPool',
      changeId: owner,
      kind: 'ephemeral',
      pageSize: 4096,
      owner,
      replication: 1,
    }).state;
  }
  return state;
}

describe('visibleState', () => {
  it('shows a client its own pools and neither the pool-id key nor the pool counter', () => {
    const state = withPools(['alice', 'bob', 'alice']);
    const seen = visibleState(state, 'alice', false);
    expect(seen.pools.map((p) => p.owner)).toEqual(['alice', 'alice']);
    expect(seen).not.toHaveProperty('poolIdKey');
    expect(seen).not.toHaveProperty('nextPoolId');
    // Nothing else is taken away.
    expect({ ...seen, pools: state.pools, poolIdKey: state.poolIdKey, nextPoolId: state.nextPoolId }).toEqual(
      state,
    );
  });

  it('shows a peer the whole state', () => {
    const state = withPools(['alice', 'bob']);
    expect(visibleState(state, 'node-b', true)).toBe(state);
  });
});
