import { afterEach, describe, expect, it } from 'vitest';
import { connect, type Pool, type TmemClient } from '@tmem/client';
import { ErrorCode, partitionOf, partitionTableFor, toOidBytes, type ClusterState } from '@tmem/protocol';
import {
  TEST_TIMING_ARGS,
  closeAllRawPeers,
  killAllNodes,
  openRawPeer,
  startCluster,
  startNode,
  stateOf,
  viewOf,
  waitFor,
  waitForMembers,
  type NodeProcess,
} from '../harness/index.ts';

// The ring with real processes: routing to owners, silent loss of ephemeral pages, and no stale read when
// ownership flaps or a node is paused beyond its lease.

const PAGE = 4096;
const clients: TmemClient[] = [];

afterEach(async () => {
  closeAllRawPeers();
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await killAllNodes();
});

async function client(nodes: readonly NodeProcess[], identity = 'app'): Promise<TmemClient> {
  const c = await connect({ seeds: nodes.map((n) => n.url), identity, timeoutMs: 15_000 });
  clients.push(c);
  return c;
}

/** A page that tells which handle and which version wrote it. */
function pageOf(index: number, version: number): Uint8Array {
  const page = new Uint8Array(PAGE);
  const view = new DataView(page.buffer);
  view.setUint32(0, index);
  view.setUint32(4, version);
  for (let i = 8; i < PAGE; i++) page[i] = (index + version + i) & 0xff;
  return page;
}

function versionIn(page: Uint8Array): number {
  return new DataView(page.buffer, page.byteOffset).getUint32(4);
}

/** Member id owning each index of object `oid` in `pool` under `state`. */
function ownersOf(state: ClusterState, pool: number, oid: string, count: number): string[] {
  const table = partitionTableFor(state, 1);
  const bytes = toOidBytes(oid);
  return Array.from(
    { length: count },
    (_, i) => table.primary(partitionOf(pool, bytes, i, state.partitionCount))!.id,
  );
}

async function waitForView(c: TmemClient, memberIds: string[]): Promise<ClusterState> {
  const want = [...memberIds].sort().join(',');
  await waitFor(
    () =>
      c
        .view()
        .members.map((m) => m.id)
        .sort()
        .join(',') === want,
    {
      what: `client view with ${want}`,
      timeoutMs: 20_000,
    },
  );
  const state = await stateOf(c.view().members[0]!.url);
  if (state === undefined) throw new Error('no state from a member of the view');
  return state;
}

async function putAll(pool: Pool, oid: string, count: number, version: number): Promise<void> {
  const results = await Promise.all(
    Array.from({ length: count }, (_, i) => pool.put(oid, i, pageOf(i, version))),
  );
  expect(results.every((accepted) => accepted)).toBe(true);
}

describe('routing', () => {
  it('1000 pages across 3 nodes are each stored on their owner', async () => {
    const nodes = await startCluster({ size: 3 });
    const c = await client(nodes);
    // One copy per page, so each page is on exactly its primary (replication has its own tests).
    const pool = await c.createPool({ kind: 'persistent', replication: 1 });
    const state = await waitForMembers(nodes);
    await putAll(pool, 'spread', 1000, 1);

    const owners = ownersOf(state, pool.id, 'spread', 1000);
    const expected = new Map<string, number>();
    for (const owner of owners) expected.set(owner, (expected.get(owner) ?? 0) + 1);
    const stats = await c.stats();
    for (const node of nodes) {
      const nodeStats = stats.find((s) => s.nodeId === node.nodeId)!;
      expect(nodeStats.persistentPages).toBe(expected.get(node.nodeId) ?? 0);
      expect(nodeStats.persistentPages).toBeGreaterThan(100); // all three really take a share
    }
    const pages = await Promise.all(Array.from({ length: 1000 }, (_, i) => pool.get('spread', i)));
    pages.forEach((page, i) => expect(page).toEqual(pageOf(i, 1)));
  });

  it('createPool on any node creates the pool cluster-wide and flushObject reaches every node', async () => {
    const nodes = await startCluster({ size: 3 });
    const c = await client([nodes[2]!]);
    const pool = await c.createPool({ kind: 'persistent' });
    await putAll(pool, 'obj', 200, 1);
    await pool.flushObject('obj');
    const stats = await c.stats();
    expect(stats.map((s) => s.persistentPages)).toEqual([0, 0, 0]);
    await pool.destroy();
    expect((await c.stats()).map((s) => s.pools)).toEqual([0, 0, 0]);
  });
});

describe('ephemeral pages across failures', () => {
  it('SIGKILL of a node: its pages miss without error, every other page is intact', async () => {
    const nodes = await startCluster({ size: 3 });
    const c = await client(nodes);
    const pool = await c.createPool({ kind: 'ephemeral' });
    const state = await waitForMembers(nodes);
    await putAll(pool, 'cache', 600, 1);
    const owners = ownersOf(state, pool.id, 'cache', 600);

    const victim = nodes[1]!;
    await victim.kill();
    // Right away, before the cluster has even noticed: gets of the victim's pages wait for the ring to move
    // on and then miss; no error reaches the application.
    const victimPage = owners.indexOf(victim.nodeId);
    expect(await pool.get('cache', victimPage)).toBeNull();
    await waitForView(c, ['n0', 'n2']);
    const pages = await Promise.all(Array.from({ length: 600 }, (_, i) => pool.get('cache', i)));
    let lost = 0;
    pages.forEach((page, i) => {
      if (owners[i] === victim.nodeId) {
        expect(page).toBeNull();
        lost++;
      } else {
        expect(page).toEqual(pageOf(i, 1));
      }
    });
    expect(lost).toBeGreaterThan(50);
  });

  it('a coordinator crash loses only the coordinator pages: the survivors keep their caches', async () => {
    const nodes = await startCluster({ size: 3 });
    const c = await client(nodes);
    const pool = await c.createPool({ kind: 'ephemeral' });
    const state = await waitForMembers(nodes);
    await putAll(pool, 'warm', 600, 1);
    const owners = ownersOf(state, pool.id, 'warm', 600);
    const leaderId = c.view().leaderId ?? (await viewOf(nodes[0]!.url))?.leaderId;
    const leader = nodes.find((n) => n.nodeId === leaderId)!;
    await leader.kill();
    await waitForView(
      c,
      nodes.filter((n) => n !== leader).map((n) => n.nodeId),
    );
    const pages = await Promise.all(Array.from({ length: 600 }, (_, i) => pool.get('warm', i)));
    pages.forEach((page, i) => {
      // Followers' leases lapse during the failover; their pages stay, since no partition moved behind them.
      if (owners[i] === leader.nodeId) expect(page).toBeNull();
      else expect(page).toEqual(pageOf(i, 1));
    });
  });

  it('flapping ownership never brings back an old page (A owns, B joins and takes, B dies)', async () => {
    const [a] = await startCluster({ size: 1 });
    const c = await client([a!]);
    const pool = await c.createPool({ kind: 'ephemeral' });
    await putAll(pool, 'flap', 400, 1); // v1 lands on A

    const b = await startNode({ args: [...TEST_TIMING_ARGS, '--node-id', 'b', '--join', a!.url] });
    const withB = await waitForView(c, ['n0', 'b']);
    const movedToB = ownersOf(withB, pool.id, 'flap', 400).map((owner) => owner === 'b');
    expect(movedToB.filter(Boolean).length).toBeGreaterThan(50);
    await putAll(pool, 'flap', 400, 2); // v2 lands on the current owners, B among them

    await b.kill();
    await waitForView(c, ['n0']);
    const pages = await Promise.all(Array.from({ length: 400 }, (_, i) => pool.get('flap', i)));
    pages.forEach((page, i) => {
      // Moved to B and back: B's v2 died with B, and A's v1 must never come back.
      if (movedToB[i]) expect(page).toBeNull();
      // Stayed on A all along: A's lease lapsed while it was alone, but no committed state went by unseen,
      // so its pages are current and kept.
      else expect(page === null ? 'miss' : versionIn(page)).toBe(2);
    });
  });

  it('a node paused beyond its lease never serves its old pages when it wakes', async () => {
    const nodes = await startCluster({ size: 3 });
    const c = await client(nodes);
    const pool = await c.createPool({ kind: 'ephemeral' });
    const state = await waitForMembers(nodes);
    const paused = nodes[2]!;
    const owners = ownersOf(state, pool.id, 'sleepy', 300);
    const onPaused = owners.flatMap((owner, i) => (owner === paused.nodeId ? [i] : []));
    expect(onPaused.length).toBeGreaterThan(20);
    await putAll(pool, 'sleepy', 300, 1);

    // A raw connection opened before the pause, as a stale client would hold, routed by the old version.
    const stale = await openRawPeer(paused.url, 'app');
    paused.signal('SIGSTOP');
    await waitForView(c, ['n0', 'n1']);
    const rewritten = await Promise.all(onPaused.map((i) => pool.put('sleepy', i, pageOf(i, 2))));
    expect(rewritten.every((accepted) => accepted)).toBe(true);
    paused.signal('SIGCONT');

    const oid = toOidBytes('sleepy');
    const replies = await Promise.all(
      onPaused.map((index, k) =>
        stale.request({
          t: 'batch',
          id: 1000 + k,
          sv: state.version,
          ops: [{ t: 'get', id: 5000 + k, pool: pool.id, oid, index }],
        }),
      ),
    );
    for (const reply of replies) {
      expect(reply.t).toBe('batch');
      const [op] = reply.t === 'batch' ? reply.replies : [];
      // Never the old page: the woken node has no lease and an old version.
      expect(op).toMatchObject({ t: 'error' });
      expect([ErrorCode.StaleState, ErrorCode.NotServing]).toContain(op?.t === 'error' ? op.code : op?.t);
    }
    // Through the client, every page is the new version or a miss, never v1.
    const pages = await Promise.all(onPaused.map((i) => pool.get('sleepy', i)));
    // Through the client, never v1. A miss is allowed: the woken node rejoins as a new incarnation, which takes
    // partitions over, and ephemeral pages of moved partitions are dropped, not handed over.
    for (const page of pages) if (page !== null) expect(versionIn(page)).toBe(2);
  });
});

describe('client failover', () => {
  it('keeps working when the node it first connected to dies', async () => {
    const nodes = await startCluster({ size: 3 });
    const c = await client([nodes[0]!]); // its only seed
    const pool = await c.createPool({ kind: 'persistent' });
    await putAll(pool, 'before', 50, 1);
    await nodes[0]!.kill();
    await waitForView(c, ['n1', 'n2']);
    await putAll(pool, 'after', 200, 1);
    const pages = await Promise.all(Array.from({ length: 200 }, (_, i) => pool.get('after', i)));
    pages.forEach((page, i) => expect(page).toEqual(pageOf(i, 1)));
    const views: number[] = [];
    c.on('view', (view) => views.push(view.version));
    const joiner = await startNode({
      args: [...TEST_TIMING_ARGS, '--node-id', 'n3', '--join', nodes[1]!.url],
    });
    await waitForView(c, ['n1', 'n2', 'n3']);
    expect(views.length).toBeGreaterThan(0);
    expect(joiner.nodeId).toBe('n3');
  });
});
