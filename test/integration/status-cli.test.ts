import { afterEach, describe, expect, it } from 'vitest';
import { deadUrl, killAllNodes, runCli, startNode, waitFor, type NodeProcess } from '../harness/index.ts';
import { connect, type TmemClient } from '@tmem/client';
import { fetchClusterStatus, type ClusterStatus } from '@tmem/memnode';

/** Clients still open, closed in afterEach. */
const clients = new Set<TmemClient>();

/**
 * Starts two nodes, the second joining the first, and waits until the state lists both, both answering.
 * `args` go to both nodes (timing flags).
 */
async function twoNodeCluster(args: string[] = []): Promise<[NodeProcess, NodeProcess]> {
  const first = await startNode({ args });
  const second = await startNode({ args: [...args, '--join', first.url] });
  await waitFor(
    async () => {
      const status = await fetchClusterStatus(first.url, { timeoutMs: 2000 });
      return status.members.length === 2 && status.members.every((m) => m.reachable);
    },
    { timeoutMs: 20_000, intervalMs: 200, what: 'both nodes in the cluster state' },
  );
  return [first, second];
}

afterEach(async () => {
  await Promise.all([...clients].map((client) => client.close()));
  clients.clear();
  await killAllNodes();
});

describe('tmem status', () => {
  it('--json lists every member as reachable, with primaries covering every partition', async () => {
    const [first, second] = await twoNodeCluster();
    const result = await runCli(['status', '--seed', second.url, '--json']);
    expect(result.code, result.stderr).toBe(0);
    const status = JSON.parse(result.stdout) as ClusterStatus;

    expect(status.members.map((m) => m.id).sort()).toEqual([first.nodeId, second.nodeId].sort());
    for (const member of status.members) {
      expect(member.reachable).toBe(true);
      expect(member.stats?.nodeId).toBe(member.id);
    }
    const primaries = status.members.map((m) => m.partitions);
    expect(primaries.reduce((sum, n) => sum + n, 0)).toBe(status.partitionCount);
    // Capacity-weighted ring with equal capacities: both members own a share.
    expect(Math.min(...primaries)).toBeGreaterThan(0);
    expect([first.nodeId, second.nodeId]).toContain(status.leaderId);
    expect(status.members.filter((m) => m.leader).map((m) => m.id)).toEqual([status.leaderId]);
  });

  it('prints a table naming both members', async () => {
    const [first, second] = await twoNodeCluster();
    const result = await runCli(['status', '--seed', first.url]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain(first.nodeId.slice(0, 8));
    expect(result.stdout).toContain(second.nodeId.slice(0, 8));
    expect(result.stdout).toContain(first.url);
    expect(result.stdout).toContain('leader');
    // Incarnations read as start times, not raw epoch milliseconds; a finished fill shows no "pages in".
    expect(result.stdout).toContain('started');
    expect(result.stdout).not.toMatch(/\b\d{13}\b/);
    expect(result.stdout).toMatch(/\b\d\d:\d\d:\d\d\b/);
    expect(result.stdout).not.toContain('pages in');
  });

  it('exits 1 with a one-line message on stderr when the seed is unreachable', async () => {
    const seed = await deadUrl();
    const result = await runCli(['status', '--seed', seed, '--timeout-ms', '2000']);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    const lines = result.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(seed);
  });

  it('reports a member that does not answer as unreachable instead of failing', async () => {
    // Slow failure detection and long leases: the paused member stays listed, and the leader, short of a
    // majority without it, does not step down, for the whole test.
    const [first, second] = await twoNodeCluster(['--failure-timeout-ms', '60000', '--lease-ms', '30000']);
    second.signal('SIGSTOP');
    const status = await fetchClusterStatus(first.url, { timeoutMs: 1000 });
    expect(status.members.map((m) => m.id).sort()).toEqual([first.nodeId, second.nodeId].sort());
    expect(status.members.find((m) => m.id === first.nodeId)?.reachable).toBe(true);
    const paused = status.members.find((m) => m.id === second.nodeId);
    expect(paused?.reachable).toBe(false);
    expect(paused?.stats).toBeUndefined();
    expect(paused?.role).toBeUndefined();
    expect(paused?.error).toBeTruthy();
    // The pool count comes from the members that answer.
    expect(status.pools).toBe(0);
  });

  it('--json shows the pages, memory, role, state version and lease of every member', async () => {
    const [first, second] = await twoNodeCluster();
    const client = await connect({ seeds: [first.url, second.url] });
    clients.add(client);
    // One copy per page, so the page count is the number of puts whatever the cluster's replication.
    const pool = await client.createPool({ kind: 'persistent', pageSize: 4096, replication: 1 });
    const puts = await Promise.all(
      Array.from({ length: 100 }, (_, i) => pool.put(`object-${i % 10}`, i, new Uint8Array(4096).fill(i))),
    );
    expect(puts.every((accepted) => accepted)).toBe(true);

    const result = await runCli(['status', '--seed', first.url, '--json']);
    expect(result.code, result.stderr).toBe(0);
    const status = JSON.parse(result.stdout) as ClusterStatus;
    expect(status.members).toHaveLength(2);
    expect(status.members.reduce((sum, m) => sum + (m.pages ?? 0), 0)).toBe(100);
    expect(status.members.reduce((sum, m) => sum + (m.stats?.usedBytes ?? 0), 0)).toBeGreaterThan(0);
    // The state a client sees lists only its own pools: the count comes from the members' statistics.
    expect(status.pools).toBe(1);
    for (const member of status.members) {
      expect(member.reachable).toBe(true);
      expect(member.pages).toBe((member.stats?.ephemeralPages ?? 0) + (member.stats?.persistentPages ?? 0));
      expect(['leader', 'follower']).toContain(member.role);
      expect(member.stateVersion).toBe(status.version);
      expect(member.behind).toBe(false);
      expect(member.leaseHeld).toBe(true);
      expect(member.servingPartitions).toBe(member.partitions);
    }
    expect(status.members.filter((m) => m.role === 'leader').map((m) => m.id)).toEqual([status.leaderId]);
  });
});
