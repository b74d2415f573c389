import { isReadyMember, type ClusterState } from '@tmem/protocol';
import { startNode, type NodeProcess, type StartNodeOptions } from './node-process.ts';
import { openRawPeer } from './raw-peer.ts';
import { waitFor } from './wait-for.ts';

/**
 * Coordination timing for tests: fast enough that failover takes about a second, slow enough that a loaded
 * two-core machine does not see spurious failures (heartbeats every 50 ms, suspected after 500 ms of silence).
 */
export const TEST_TIMING_ARGS = [
  '--heartbeat-ms',
  '50',
  '--lease-ms',
  '600',
  '--election-timeout-ms',
  '400',
  '--failure-timeout-ms',
  '500',
];

let stateRequestId = 1;

/** The committed state a node reports and its coordinator, or undefined if it does not answer. */
export async function viewOf(
  url: string,
): Promise<{ state: ClusterState; leaderId: string | null } | undefined> {
  try {
    const peer = await openRawPeer(url, 'test-observer');
    try {
      const reply = await Promise.race([
        peer.request({ t: 'getState', id: ++stateRequestId, subscribe: false }),
        new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 1000)),
      ]);
      return reply?.t === 'state' ? { state: reply.state, leaderId: reply.leaderId } : undefined;
    } finally {
      peer.close();
    }
  } catch {
    return undefined;
  }
}

/** The committed state a node reports, or undefined if it does not answer (down, paused, still joining). */
export async function stateOf(url: string): Promise<ClusterState | undefined> {
  return (await viewOf(url))?.state;
}

/** Member ids of the state `url` reports, sorted. */
export async function memberIdsAt(url: string): Promise<string[] | undefined> {
  return (await stateOf(url))?.members.map((m) => m.id).sort();
}

/** Waits until every node in `nodes` reports the same state, whose members are exactly `nodes`. */
export async function waitForMembers(
  nodes: readonly NodeProcess[],
  timeoutMs = 20_000,
): Promise<ClusterState> {
  return waitForAgreedMembers(nodes, timeoutMs, false);
}

/**
 * Waits until every node in `nodes` reports the same state, whose members are exactly `nodes`, all ready
 * (done copying). Persistent puts are refused while fewer than R members are ready, so a test that writes
 * to a replicated pool right after a join waits for this, not just for the member list.
 */
export async function waitForReadyMembers(
  nodes: readonly NodeProcess[],
  timeoutMs = 30_000,
): Promise<ClusterState> {
  return waitForAgreedMembers(nodes, timeoutMs, true);
}

async function waitForAgreedMembers(
  nodes: readonly NodeProcess[],
  timeoutMs: number,
  ready: boolean,
): Promise<ClusterState> {
  const want = nodes.map((n) => n.nodeId).sort();
  return waitFor(
    async () => {
      const states = await Promise.all(nodes.map((n) => stateOf(n.url)));
      const agreed = states.every(
        (s) =>
          s !== undefined &&
          s.version === states[0]?.version &&
          JSON.stringify(s.members.map((m) => m.id).sort()) === JSON.stringify(want) &&
          (!ready || s.members.every(isReadyMember)),
      );
      return agreed ? states[0] : undefined;
    },
    {
      timeoutMs,
      intervalMs: 100,
      what: `members ${want.join(', ')} agreed${ready ? ' and ready' : ''} by all`,
    },
  );
}

/** Options of startCluster. */
export interface StartClusterOptions extends StartNodeOptions {
  /** @default 3 */
  size?: number;
}

/**
 * Starts `size` real node processes as one cluster: the first founds it, the others join through it, and
 * resolves once all of them agree on the full member list, every member ready (so a persistent pool of up to
 * `size` copies accepts puts at once). Nodes get ids n0, n1, ... so tests can name them.
 */
export async function startCluster(options: StartClusterOptions = {}): Promise<NodeProcess[]> {
  const size = options.size ?? 3;
  const args = [...TEST_TIMING_ARGS, ...(options.args ?? [])];
  // Each node serving (its `ready` line), then all agreeing on the full member list.
  const first = await startNode({ until: 'ready', ...options, args: [...args, '--node-id', 'n0'] });
  const rest = await Promise.all(
    Array.from({ length: size - 1 }, (_, i) =>
      startNode({
        until: 'ready',
        ...options,
        args: [...args, '--node-id', `n${i + 1}`, '--join', first.url],
      }),
    ),
  );
  const nodes = [first, ...rest];
  await waitForReadyMembers(nodes);
  return nodes;
}
