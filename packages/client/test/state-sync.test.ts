import { afterEach, describe, expect, it } from 'vitest';
import type { ClusterView } from '../src/index.ts';
import { startFakeNode, type FakeNode } from './fake-node.ts';
import { setupCluster } from './helpers.ts';
import { closeAll, track, waitFor } from './support.ts';

afterEach(closeAll);

describe('cluster view', () => {
  it('learns every member from the one seed it was given', async () => {
    const { cluster, nodes, client } = await setupCluster(3);
    const view = client.view();
    expect(view.version).toBe(cluster.state.version);
    expect(view.leaderId).toBe('n1');
    expect(view.members).toEqual(
      nodes.map((n) => ({ id: n.nodeId, url: n.url, incarnation: 1, capacityBytes: n.member.capacityBytes })),
    );
    // The same object until something changes.
    expect(client.view()).toBe(view);
  });

  it('follows pushed states, emitting view once per new version', async () => {
    const { cluster, nodes, client } = await setupCluster(3);
    const seen: ClusterView[] = [];
    const listener = (view: ClusterView): void => {
      seen.push(view);
    };
    client.on('view', listener);
    const start = client.view().version;
    cluster.commit();
    const joiner = track(await startFakeNode({ nodeId: 'n4', cluster }));
    await waitFor(() => client.view().version === start + 2, 'both pushes');
    expect(client.view().members.map((m) => m.id)).toEqual(['n1', 'n2', 'n3', 'n4']);
    expect(client.view().members[3]?.url).toBe(joiner.url);
    // A repeated push of the current state and an older one change nothing.
    const seed = nodes[0] as FakeNode;
    seed.send({ t: 'state', id: 0, state: cluster.state, leaderId: cluster.leaderId });
    seed.send({ t: 'state', id: 0, state: { ...cluster.state, version: start }, leaderId: 'n1' });
    cluster.commit();
    await waitFor(() => client.view().version === start + 3, 'the third push');
    expect(seen.map((v) => v.version)).toEqual([start + 1, start + 2, start + 3]);
    expect(seen[2]).toBe(client.view());
    client.off('view', listener);
    cluster.commit();
    await waitFor(() => client.view().version === start + 4, 'the fourth push');
    expect(seen).toHaveLength(3);
  });

  it('keeps working when a view listener throws', async () => {
    const { cluster, client, pool } = await setupCluster(2);
    client.on('view', () => {
      throw new Error('listener bug');
    });
    cluster.commit();
    await waitFor(() => client.view().version === cluster.state.version, 'the push');
    expect(await pool.put('o', 0, new Uint8Array(pool.pageSize))).toBe(true);
  });

  it('picks up a change by the periodic refresh when pushes are lost', async () => {
    const { cluster, nodes, client } = await setupCluster(3, { stateRefreshMs: 50 });
    cluster.pushes = false;
    cluster.removeMember('n3');
    await waitFor(() => client.view().version === cluster.state.version, 'the periodic refresh');
    expect(client.view().members.map((m) => m.id)).toEqual(['n1', 'n2']);
    // Learnt without a single op being refused.
    for (const node of nodes) expect(node.refusals).toEqual({ stale: 0, notServing: 0 });
  });

  it('subscribes again through another member when the control connection dies', async () => {
    const { cluster, nodes, client } = await setupCluster(3);
    const [seed, ...others] = nodes as [FakeNode, FakeNode, FakeNode];
    expect(seed.subscribers).toBe(1);
    await seed.close();
    await waitFor(() => others.some((n) => n.subscribers === 1), 'a subscription on another member');
    cluster.commit();
    await waitFor(() => client.view().version === cluster.state.version, 'the pushed state');
  });
});
