import { describe, expect, it } from 'vitest';
import {
  ClusterState,
  partitionOf,
  partitionTableFor,
  persistentTableFor,
  type MemberInfo,
  type PoolInfo,
  type ClusterState as State,
} from '@tmem/protocol';
import { createViewTracker } from '../src/cluster-view.ts';
import type { ClusterView } from '../src/index.ts';

const member = (id: string, incarnation = 1): MemberInfo => ({
  id,
  url: `ws://${id}.invalid:1`,
  incarnation,
  capacityBytes: 64 << 20,
});

/** A state as a node shows it to a client: without the pool counter and the pool-id key. */
function state(version: number, members: MemberInfo[], term = 1, pools: PoolInfo[] = []): State {
  return ClusterState.parse({ version, term, members, pools, partitionCount: 256 });
}

const pool = (id: number, kind: PoolInfo['kind'], replication: number): PoolInfo => ({
  id,
  kind,
  pageSize: 4096,
  owner: 'me',
  replication,
});

const ids = (members: readonly MemberInfo[] | undefined) => members?.map((m) => m.id);

function tracked() {
  const errors: unknown[] = [];
  const tracker = createViewTracker((error) => errors.push(error));
  const views: ClusterView[] = [];
  tracker.on('view', (view) => views.push(view));
  return { tracker, views, errors };
}

describe('view tracker', () => {
  it('starts empty', () => {
    const { tracker } = tracked();
    expect(tracker.view()).toEqual({ version: 0, members: [], leaderId: null });
    expect(tracker.ownersFor(1, 'ephemeral', Uint8Array.of(1), 0)).toBeUndefined();
  });

  it('adopts only newer versions and emits once per adopted version', () => {
    const { tracker, views } = tracked();
    const abc = [member('a'), member('b'), member('c')];
    expect(tracker.offer(state(3, abc), 'a')).toBe(true);
    expect(tracker.offer(state(3, abc), 'a')).toBe(false);
    expect(tracker.offer(state(2, abc.slice(0, 1)), 'a')).toBe(false);
    expect(tracker.offer(state(5, abc.slice(0, 2)), 'b')).toBe(true);
    expect(views.map((v) => [v.version, v.members.length, v.leaderId])).toEqual([
      [3, 3, 'a'],
      [5, 2, 'b'],
    ]);
    expect(tracker.view()).toBe(views[1]);
    expect(Object.isFrozen(tracker.view().members)).toBe(true);
  });

  it('updates the leader of the current version without an event', () => {
    const { tracker, views } = tracked();
    tracker.offer(state(3, [member('a'), member('b')]), null);
    expect(tracker.leader()).toBeUndefined();
    expect(tracker.offer(state(3, [member('a'), member('b')]), 'b')).toBe(false);
    expect(tracker.view().leaderId).toBe('b');
    expect(tracker.leader()?.id).toBe('b');
    expect(views).toHaveLength(1);
  });

  it('with reset, adopts another state even at a lower version, but not the same state again', () => {
    const { tracker, views } = tracked();
    tracker.offer(state(9, [member('a')]), 'a');
    expect(tracker.offer(state(2, [member('z')]), 'z', { reset: true })).toBe(true);
    expect(tracker.offer(state(2, [member('z')]), 'z', { reset: true })).toBe(false);
    expect(views.map((v) => v.version)).toEqual([9, 2]);
  });

  it('answers the ephemeral owner from the partition table of the current version', () => {
    const { tracker } = tracked();
    const members = [member('a'), member('b', 7), member('c')];
    const current = state(4, members);
    tracker.offer(current, 'a');
    const table = partitionTableFor(current, 1);
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const oid = Uint8Array.of(i, i >> 3);
      const owners = tracker.ownersFor(3, 'ephemeral', oid, i * 5);
      expect(owners).toHaveLength(1);
      const primary = owners?.[0];
      const expected = table.primary(partitionOf(3, oid, i * 5, current.partitionCount));
      expect(primary).toBeDefined();
      expect({ id: primary?.id, incarnation: primary?.incarnation }).toEqual(expected);
      seen.add(primary?.id ?? '');
    }
    expect(seen).toEqual(new Set(['a', 'b', 'c']));
    expect(tracker.isMember({ id: 'b', incarnation: 7 })).toBe(true);
    expect(tracker.isMember({ id: 'b', incarnation: 6 })).toBe(false);
    expect(tracker.memberById('c')?.url).toBe('ws://c.invalid:1');
  });

  it('places a persistent pool on its replication ready owners, and an ephemeral one on every member', () => {
    const { tracker } = tracked();
    const members = [member('a'), { ...member('b'), phase: 'filling' as const }, member('c'), member('d')];
    const current = state(4, members, 1, [pool(1, 'ephemeral', 1), pool(2, 'persistent', 2)]);
    tracker.offer(current, 'a');
    const ready = persistentTableFor(current, 2);
    const everyone = partitionTableFor(current, 1);
    const ephemeralOwners = new Set<string>();
    for (let i = 0; i < 300; i++) {
      const oid = Uint8Array.of(i, i >> 4);
      const persistent = tracker.ownersFor(2, 'persistent', oid, i * 16);
      expect(ids(persistent)).toEqual(ready.owners(partitionOf(2, oid, i * 16, 256)).map((m) => m.id));
      expect(persistent).toHaveLength(2);
      expect(ids(persistent)).not.toContain('b');
      const ephemeral = tracker.ownersFor(1, 'ephemeral', oid, i * 16);
      expect(ids(ephemeral)).toEqual([everyone.primary(partitionOf(1, oid, i * 16, 256))?.id]);
      ephemeralOwners.add(ephemeral?.[0]?.id ?? '');
    }
    // The filling member keeps its share of ephemeral partitions.
    expect(ephemeralOwners).toEqual(new Set(['a', 'b', 'c', 'd']));
  });

  it('has no owners for a persistent pool newer than its state; a destroyed one goes anywhere', () => {
    const { tracker } = tracked();
    // A client's view has neither the pool counter nor the id key: only creation versions order pools.
    const view = state(4, [member('a'), member('b')], 1, [
      pool(0x9e3779b9, 'ephemeral', 1),
      pool(0x1234567, 'persistent', 2),
    ]);
    tracker.offer(view, 'a');
    const oid = Uint8Array.of(9);
    // Created by version 5, after this view: its replication is not known yet, so the client refreshes. Its id
    // is below every id in the view, which says nothing either way.
    expect(tracker.ownersFor(7, 'persistent', oid, 0, 5)).toBeUndefined();
    // Created by version 3 and missing from version 4: gone. Any member answers UNKNOWN_POOL, so one owner is as
    // good as another; the same for a pool whose creation version is unknown (a node that predates it).
    expect(tracker.ownersFor(0xffffff00, 'persistent', oid, 0, 3)).toHaveLength(1);
    expect(tracker.ownersFor(0xffffff00, 'persistent', oid, 0, 4)).toHaveLength(1);
    expect(tracker.ownersFor(0xffffff00, 'persistent', oid, 0)).toHaveLength(1);
    // Once the view reaches the creating version, the pool is placed by its own table.
    tracker.offer(
      state(5, [member('a'), member('b')], 1, [pool(0x1234567, 'persistent', 2), pool(7, 'persistent', 2)]),
      'a',
    );
    expect(tracker.ownersFor(7, 'persistent', oid, 0, 5)).toHaveLength(2);
    // An ephemeral pool needs nothing from the state.
    expect(tracker.ownersFor(4, 'ephemeral', oid, 0, 9)).toHaveLength(1);
  });

  it('reports a throwing listener and still calls the others', () => {
    const { tracker, views, errors } = tracked();
    const bug = new Error('listener bug');
    tracker.on('view', () => {
      throw bug;
    });
    const late: number[] = [];
    tracker.on('view', (view) => late.push(view.version));
    tracker.offer(state(1, [member('a')]), 'a');
    expect(errors).toEqual([bug]);
    expect(views).toHaveLength(1);
    expect(late).toEqual([1]);
  });
});
