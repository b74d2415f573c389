import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, PROTOCOL_VERSION, newPeerNonce } from '@tmem/protocol';
import {
  TEST_TIMING_ARGS,
  closeAllRawPeers,
  openRawPeer,
  killAllNodes,
  startCluster,
  startNode,
  stateOf,
  viewOf,
  waitFor,
  waitForMembers,
  waitForReadyMembers,
  type NodeProcess,
} from '../harness/index.ts';

// Membership with real processes: every node here is a separate OS process on loopback.

afterEach(async () => {
  closeAllRawPeers();
  await killAllNodes();
});

function joinArgs(id: string, ...seeds: string[]): string[] {
  return [...TEST_TIMING_ARGS, '--node-id', id, ...seeds.flatMap((url) => ['--join', url])];
}

async function leaderOf(nodes: readonly NodeProcess[]): Promise<NodeProcess> {
  return waitFor(
    async () => {
      const views = await Promise.all(nodes.map((n) => viewOf(n.url)));
      const leaderId = views[0]?.leaderId;
      const agreed = leaderId && views.every((v) => v?.leaderId === leaderId);
      return agreed ? nodes.find((n) => n.nodeId === leaderId) : undefined;
    },
    { what: 'one coordinator agreed by all', intervalMs: 100 },
  );
}

describe('membership', () => {
  it('nodes join through a seed and agree on one state and one coordinator', async () => {
    const nodes = await startCluster({ size: 3 });
    const state = await waitForMembers(nodes);
    expect(state.members.map((m) => m.id)).toEqual(['n0', 'n1', 'n2']);
    expect(state.partitionCount).toBe(1024);
    await leaderOf(nodes);
  });

  it('concurrent joins all land', async () => {
    const [founder] = await startCluster({ size: 1 });
    const joiners = await Promise.all(
      ['j1', 'j2', 'j3', 'j4'].map((id) => startNode({ args: joinArgs(id, founder!.url) })),
    );
    const state = await waitForMembers([founder!, ...joiners], 30_000);
    expect(state.members).toHaveLength(5);
  });

  it('a joiner whose first seed is down joins through the next one', async () => {
    const [founder] = await startCluster({ size: 1 });
    const dead = await startNode({ args: TEST_TIMING_ARGS });
    const deadUrl = dead.url;
    await dead.kill();
    const joiner = await startNode({ args: joinArgs('late', deadUrl, founder!.url) });
    await waitForMembers([founder!, joiner]);
  });

  it('a graceful leave on SIGTERM removes the node before it exits', async () => {
    const nodes = await startCluster({ size: 3 });
    const leaver = nodes[2]!;
    const exit = await leaver.stop();
    expect(exit).toEqual({ code: 0, signal: null });
    // Removed by its own request, not by failure detection: the survivors already agree.
    const state = await stateOf(nodes[0]!.url);
    expect(state?.members.map((m) => m.id)).toEqual(['n0', 'n1']);
    await waitForMembers(nodes.slice(0, 2));
  });

  it('a crashed node (SIGKILL) is removed by the others', async () => {
    const nodes = await startCluster({ size: 3 });
    await nodes[1]!.kill();
    await waitForMembers([nodes[0]!, nodes[2]!]);
  });

  it('a restarted node rejoins as a new incarnation', async () => {
    const nodes = await startCluster({ size: 3 });
    const before = (await stateOf(nodes[0]!.url))!.members.find((m) => m.id === 'n1')!.incarnation;
    await nodes[1]!.kill();
    const restarted = await startNode({ args: joinArgs('n1', nodes[0]!.url) });
    const state = await waitFor(
      async () => {
        const s = await stateOf(nodes[0]!.url);
        const n1 = s?.members.find((m) => m.id === 'n1');
        return n1 && n1.incarnation > before && s!.members.length === 3 ? s : undefined;
      },
      { what: 'n1 back with a newer incarnation', timeoutMs: 20_000, intervalMs: 100 },
    );
    expect(state.members.find((m) => m.id === 'n1')!.url).toBe(restarted.url);
    await waitForMembers([nodes[0]!, restarted, nodes[2]!]);
  });

  it('when the coordinator crashes another takes over and the cluster keeps changing', async () => {
    const nodes = await startCluster({ size: 3 });
    const leader = await leaderOf(nodes);
    await leader.kill();
    const survivors = nodes.filter((n) => n !== leader);
    await waitForMembers(survivors);
    const newLeader = await leaderOf(survivors);
    expect(newLeader).not.toBe(leader);
    // The new coordinator commits changes: a node joins through it.
    const joiner = await startNode({ args: joinArgs('n9', survivors[0]!.url) });
    await waitForMembers([...survivors, joiner]);
  });

  it('a node paused (SIGSTOP) beyond its lease is removed, then rejoins as a new incarnation', async () => {
    const nodes = await startCluster({ size: 3 });
    const paused = nodes[2]!;
    const before = (await stateOf(nodes[0]!.url))!.members.find((m) => m.id === paused.nodeId)!.incarnation;
    paused.signal('SIGSTOP');
    await waitForMembers(nodes.slice(0, 2));
    paused.signal('SIGCONT');
    await waitFor(
      async () => {
        const s = await stateOf(nodes[0]!.url);
        const back = s?.members.find((m) => m.id === paused.nodeId);
        return back !== undefined && back.incarnation > before;
      },
      { what: 'the paused node back as a new incarnation', timeoutMs: 20_000, intervalMs: 100 },
    );
    await waitForMembers(nodes);
  });
});

describe('cluster identity', () => {
  /** The welcome a node answers a hello with. */
  async function welcomeOf(url: string, hello: { role?: 'peer'; clusterId?: string } = {}) {
    const raw = await openRawPeer(url);
    return raw.request({
      t: 'hello',
      id: 1,
      protocol: PROTOCOL_VERSION,
      identity: hello.role === 'peer' ? 'intruder' : 'app',
      ...(hello.role === 'peer' ? { role: 'peer', nonce: newPeerNonce(), url: 'ws://127.0.0.1:1' } : {}),
      ...(hello.clusterId === undefined ? {} : { clusterId: hello.clusterId }),
    });
  }

  it('the founder draws a cluster id; every member keeps it and announces it in welcome', async () => {
    const nodes = await startCluster({ size: 2 });
    const states = await Promise.all(nodes.map((n) => stateOf(n.url)));
    const clusterId = states[0]?.clusterId;
    expect(clusterId).toMatch(/^[0-9a-f-]{36}$/);
    expect(states[1]?.clusterId).toBe(clusterId);
    for (const node of nodes) expect(await welcomeOf(node.url)).toMatchObject({ t: 'welcome', clusterId });
    // Another founder draws another id.
    const other = await startNode({ args: TEST_TIMING_ARGS });
    expect((await stateOf(other.url))?.clusterId).not.toBe(clusterId);
  });

  it('refuses a peer of another cluster with CLUSTER_CHANGED, and admits one of its own', async () => {
    const [node] = await startCluster({ size: 1 });
    const clusterId = (await stateOf(node!.url))!.clusterId!;
    expect(await welcomeOf(node!.url, { role: 'peer', clusterId: 'another-cluster' })).toMatchObject({
      t: 'error',
      code: ErrorCode.ClusterChanged,
    });
    expect(await welcomeOf(node!.url, { role: 'peer', clusterId })).toMatchObject({
      t: 'welcome',
      clusterId,
    });
  });

  it('a node that served one cluster never joins a new cluster at the same address; restarted empty it does', async () => {
    const [a, b] = await startCluster({ size: 2 });
    const oldId = (await stateOf(a!.url))!.clusterId;
    // b sleeps through the end of its cluster: a crashes and a new cluster is founded at a's address.
    b!.signal('SIGSTOP');
    await waitForMembers([a!]);
    const port = new URL(a!.url).port;
    await a!.kill();
    const founder = await startNode({ args: [...TEST_TIMING_ARGS, '--node-id', 'n0', '--port', port] });
    const newId = (await stateOf(founder.url))!.clusterId;
    expect(newId).not.toBe(oldId);
    b!.signal('SIGCONT');
    // b finds its peer's address taken by another cluster: the handshake is refused both ways, never merged.
    await waitFor(() => (b!.stderr().includes('serves another cluster') ? true : undefined), {
      what: 'b refused by the new cluster',
      timeoutMs: 15_000,
      intervalMs: 100,
    });
    const state = await stateOf(founder.url);
    expect(state?.members.map((m) => m.id)).toEqual(['n0']);
    expect(state?.clusterId).toBe(newId);
    // The same id, restarted with empty memory, may join the new cluster.
    await b!.kill();
    const fresh = await startNode({ args: joinArgs('n1', founder.url) });
    const joined = await waitForReadyMembers([founder, fresh]);
    expect(joined.clusterId).toBe(newId);
  });
});
