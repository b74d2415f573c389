import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { killAllNodes, startNode, waitFor, type NodeProcess } from '../harness/index.ts';
// A deep import until @tmem/memnode's index exports the status functions.
import { fetchClusterStatus, type ClusterStatus } from '@tmem/memnode';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLI = 'packages/memnode/src/cli.ts';

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** CLI processes still running, killed in afterEach like the nodes. */
const cliProcesses = new Set<ChildProcess>();

/** Runs the real `tmem` CLI from source, as a user would, and collects its output. */
function runCli(args: string[]): Promise<CliResult> {
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    // A hung CLI fails the test with its output instead of hanging the run.
    timeout: 20_000,
  });
  cliProcesses.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  return new Promise((resolve) => {
    child.once('close', (code) => {
      cliProcesses.delete(child);
      resolve({ code, stdout, stderr });
    });
  });
}

/** A ws:// URL where nothing listens: a port the OS just handed out and took back. */
async function deadUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `ws://127.0.0.1:${port}`;
}

/** Starts two nodes, the second joining the first, and waits until the state lists both, both answering. */
async function twoNodeCluster(): Promise<[NodeProcess, NodeProcess]> {
  const first = await startNode();
  const second = await startNode({ args: ['--join', first.url] });
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
  for (const child of cliProcesses) child.kill('SIGKILL');
  cliProcesses.clear();
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
    const [first, second] = await twoNodeCluster();
    await second.kill();
    const status = await fetchClusterStatus(first.url, { timeoutMs: 2000 });
    expect(status.members.find((m) => m.id === first.nodeId)?.reachable).toBe(true);
    // Failure detection may already have removed it; while it is listed, it must show as unreachable.
    const dead = status.members.find((m) => m.id === second.nodeId);
    if (dead !== undefined) {
      expect(dead.reachable).toBe(false);
      expect(dead.stats).toBeUndefined();
      expect(dead.error).toBeTruthy();
    }
  });
});
