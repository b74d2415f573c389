// Hand-made chains of cluster states for the unit tests of rules that read them (page retention, hand-off
// gates): members, and the membership changes that move partitions, each asserted to apply.
import { expect } from 'vitest';
import {
  applyChange,
  type ClusterState,
  type MemberInfo,
  type StateChange,
} from '../../src/cluster/cluster-state.ts';

export const member = (id: string, incarnation = 1): MemberInfo => ({
  id,
  url: `ws://${id}`,
  incarnation,
  capacityBytes: 1 << 28,
});

/** `state` after `c`, which must apply. */
export function change(state: ClusterState, c: StateChange): ClusterState {
  const applied = applyChange(state, c);
  expect(applied.result.ok).toBe(true);
  return applied.state;
}

export const add = (state: ClusterState, m: MemberInfo): ClusterState =>
  change(state, { type: 'addMember', changeId: `add:${m.id}:${m.incarnation}`, member: m });

export const remove = (state: ClusterState, m: MemberInfo): ClusterState =>
  change(state, { type: 'removeMember', changeId: `rm:${m.id}`, id: m.id, incarnation: m.incarnation });
