import { afterEach, describe, expect, it } from 'vitest';
import { ClusterChangedError, connect, type Pool, type TmemClient } from '@tmem/client';
import {
  TEST_TIMING_ARGS,
  killAllNodes,
  startCluster,
  startNode,
  stateOf,
  waitFor,
  waitForReadyMembers,
  type NodeProcess,
} from '../harness/index.ts';

// A whole-cluster restart under a running client: every node is killed and a new cluster is started at the
// same addresses (the client's seeds). The new cluster draws a new cluster id and numbers its pool ids afresh
// (an old id may name a new pool), so an old pool handle must never read the new cluster's pools: its ops
// fail with CLUSTER_CHANGED (never a silent miss of an accepted persistent page), and the client finds the
// new cluster for new pools.

const PAGE = 4096;
const PAGES = 50;
/** How soon after the new cluster is ready the client must create a pool in it. */
const RECOVERY_BUDGET_MS = 5000;
const clients: TmemClient[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await killAllNodes();
});

function pageOf(index: number): Uint8Array {
  return new Uint8Array(PAGE).fill((index % 250) + 1);
}

type Outcome = 'hit' | 'miss' | 'wrong data' | 'cluster changed' | 'transient';

/** Reads the old pool's accepted pages in a loop until `stop`, counting what each read answered. */
function readLoop(pool: Pool, stop: { done: boolean }): Promise<Map<Outcome, number>> {
  const counts = new Map<Outcome, number>();
  const count = (outcome: Outcome): void => void counts.set(outcome, (counts.get(outcome) ?? 0) + 1);
  return (async () => {
    for (let i = 0; !stop.done; i++) {
      const index = i % PAGES;
      try {
        const page = await pool.get('p', index);
        count(page === null ? 'miss' : Buffer.from(page).equals(pageOf(index)) ? 'hit' : 'wrong data');
      } catch (error) {
        // Lost connections, timeouts and NO_NODES while no node runs are honest answers; a miss is not.
        count(error instanceof ClusterChangedError ? 'cluster changed' : 'transient');
        // A CLUSTER_CHANGED answer comes without any I/O: pause, or this loop would starve the event loop.
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
    return counts;
  })();
}

/** Starts a cluster of three at exactly these ports: the first founds it, the others join it. */
async function restartAt(ports: readonly string[], idPrefix: string): Promise<NodeProcess[]> {
  const args = (i: number) => [...TEST_TIMING_ARGS, '--node-id', `${idPrefix}${i}`, '--port', ports[i]!];
  const founder = await startNode({ args: args(0) });
  const rest = await Promise.all([1, 2].map((i) => startNode({ args: [...args(i), '--join', founder.url] })));
  const nodes = [founder, ...rest];
  await waitForReadyMembers(nodes);
  return nodes;
}

describe.each([
  ['the same node ids', 'n'],
  ['new node ids', 'm'],
])('a whole-cluster restart at the same addresses, with %s', (_, idPrefix) => {
  it('old pools fail with CLUSTER_CHANGED, never a silent miss; new pools work within seconds', async () => {
    const old = await startCluster({ size: 3 });
    const oldClusterId = (await stateOf(old[0]!.url))!.clusterId;
    const client = await connect({ seeds: old.map((n) => n.url), identity: 'app' });
    clients.push(client);
    const persistent = await client.createPool({ kind: 'persistent' });
    const ephemeral = await client.createPool({ kind: 'ephemeral' });
    const accepted = await Promise.all(
      Array.from({ length: PAGES }, (_, i) => persistent.put('p', i, pageOf(i))),
    );
    expect(accepted.every(Boolean)).toBe(true);

    const stop = { done: false };
    const reads = readLoop(persistent, stop);
    const ports = old.map((n) => new URL(n.url).port);
    await Promise.all(old.map((n) => n.kill()));
    const fresh = await restartAt(ports, idPrefix);
    const ready = performance.now();
    const newClusterId = (await stateOf(fresh[0]!.url))!.clusterId;
    expect(newClusterId).not.toBe(oldClusterId);

    // The client finds the new cluster for new pools within a few seconds of it being ready.
    const pool = await client.createPool({ kind: 'persistent' });
    expect(performance.now() - ready).toBeLessThan(RECOVERY_BUDGET_MS);
    expect(client.view().clusterId).toBe(newClusterId);
    // The new cluster numbers its pools afresh, under a new pool-id key: nothing keeps an old handle's id from
    // naming a new pool, so the cluster id is what tells them apart.
    expect(pool.id).toBeGreaterThanOrEqual(1);
    expect(await pool.put('p', 0, pageOf(7))).toBe(true);
    expect(await pool.get('p', 0)).toEqual(pageOf(7));

    // Old handles: a typed error for every op, persistent or ephemeral, single or batched.
    await waitFor(
      async () => {
        const outcome = await persistent.get('p', 0).then(
          () => 'answered',
          (error: unknown) => (error instanceof ClusterChangedError ? 'changed' : 'other'),
        );
        return outcome === 'changed' ? true : undefined;
      },
      { what: 'old pool reads fail with CLUSTER_CHANGED', timeoutMs: RECOVERY_BUDGET_MS, intervalMs: 50 },
    );
    stop.done = true;
    const outcomes = await reads;
    expect(outcomes.get('miss') ?? 0).toBe(0);
    expect(outcomes.get('wrong data') ?? 0).toBe(0);
    expect(outcomes.get('cluster changed') ?? 0).toBeGreaterThan(0);
    await expect(persistent.put('p', 1, pageOf(1))).rejects.toBeInstanceOf(ClusterChangedError);
    await expect(persistent.getMany([{ oid: 'p', index: 2 }])).rejects.toBeInstanceOf(ClusterChangedError);
    await expect(ephemeral.get('e', 0)).rejects.toBeInstanceOf(ClusterChangedError);
    await expect(persistent.flushObject('p')).rejects.toBeInstanceOf(ClusterChangedError);
    // The new pool is untouched by all of it.
    expect(await pool.get('p', 0)).toEqual(pageOf(7));
  });
});
