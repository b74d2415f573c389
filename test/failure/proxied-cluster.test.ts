import { afterEach, describe, expect, it } from 'vitest';
import { connect, type TmemClient } from '@tmem/client';
import { closeAllFaultProxies, killAllNodes, startProxiedCluster, stateOf } from '../harness/index.ts';

// The premise of every per-pair fault: each process reaches each node only through that node's proxy, and from
// its own source address. If a node advertised its real URL or a link left from the default address, partitions
// would silently cut nothing.

const clients: TmemClient[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await killAllNodes();
  await closeAllFaultProxies();
});

describe('proxied cluster', () => {
  it('every link goes through the proxy of the node it reaches, from the source address of its process', async () => {
    const cluster = await startProxiedCluster({ size: 3 });
    const state = await stateOf(cluster.nodes[0]!.directUrl);
    expect(state?.members.map((m) => m.url).sort()).toEqual(cluster.nodes.map((n) => n.url).sort());

    const client = await connect({ seeds: cluster.seeds(), localAddress: cluster.clientAddress(0) });
    clients.push(client);
    // Stats come from every member, so the client opens a connection to each one.
    expect(await client.stats()).toHaveLength(3);

    // Followers only talk to the coordinator, so not every pair keeps a link open: every connection must come
    // from a known address (never 127.0.0.1, the default), the client reaches every node, and every node's
    // address shows up at some proxy.
    const everySource = new Set<string>();
    for (const node of cluster.nodes) {
      const peers = cluster.nodes.filter((n) => n !== node).map((n) => n.sourceAddress);
      const seen = Object.keys(node.proxy.stats().sources);
      for (const source of seen) expect([...peers, cluster.clientAddress(0)]).toContain(source);
      expect(seen).toContain(cluster.clientAddress(0));
      for (const source of seen) everySource.add(source);
    }
    for (const node of cluster.nodes) expect(everySource).toContain(node.sourceAddress);
  });

  it('a restarted node keeps its advertised URL behind the same proxy', async () => {
    const cluster = await startProxiedCluster({ size: 3 });
    const before = cluster.nodes[1]!.directUrl;
    const node = await cluster.restart('n1');
    expect(node.directUrl).not.toBe(before);
    expect(node.proxy.target?.port).toBe(Number(new URL(node.directUrl).port));
    const state = await cluster.waitForMembers();
    expect(state.members.find((m) => m.id === 'n1')?.url).toBe(node.url);
  });
});
