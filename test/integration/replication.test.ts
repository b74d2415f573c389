import { afterEach, describe, expect, it } from 'vitest';
import { DataLostError, connect, type Pool, type TmemClient } from '@tmem/client';
import {
  partitionOf,
  persistentTableFor,
  toOidBytes,
  type ClusterState,
  type NodeStats,
} from '@tmem/protocol';
import { fetchClusterStatus, formatClusterStatus } from '@tmem/memnode';
import {
  TEST_TIMING_ARGS,
  killAllNodes,
  openRawPeer,
  startCluster,
  startNode,
  stateOf,
  waitFor,
  waitForMembers,
  waitForReadyMembers,
  type NodeProcess,
} from '../harness/index.ts';

// Persistent pools across real processes: every accepted page is held by R owners, survives the crash of
// R-1 of them, is copied to new owners on crashes, joins and leaves without a read ever missing it, and is
// reported lost (DATA_LOST), never missed, when all its owners are gone.

const PAGE = 4096;
const clients: TmemClient[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await killAllNodes();
});

async function client(nodes: readonly NodeProcess[]): Promise<TmemClient> {
  const c = await connect({ seeds: nodes.map((n) => n.url), identity: 'app', timeoutMs: 15_000 });
  clients.push(c);
  return c;
}

/** A page that tells which index and which write produced it. */
function pageOf(index: number, write: number): Uint8Array {
  const page = new Uint8Array(PAGE);
  const view = new DataView(page.buffer);
  view.setUint32(0, index);
  view.setUint32(4, write);
  for (let i = 8; i < PAGE; i++) page[i] = (index * 7 + write + i) & 0xff;
  return page;
}

async function putAll(pool: Pool, oid: string, count: number, write: number): Promise<void> {
  const results = await Promise.all(
    Array.from({ length: count }, (_, i) => pool.put(oid, i, pageOf(i, write))),
  );
  expect(results.filter((accepted) => !accepted)).toEqual([]);
}

/** Reads pages 0..count-1 and expects each to be what write `write` put (compared as bytes: toEqual on
 * hundreds of 4 KiB arrays would take seconds and starve the polling the tests do meanwhile). */
async function expectAll(pool: Pool, oid: string, count: number, write: number): Promise<void> {
  const pages = await Promise.all(Array.from({ length: count }, (_, i) => pool.get(oid, i)));
  const wrong = pages.flatMap((page, i) =>
    page !== null && Buffer.from(page).equals(pageOf(i, write))
      ? []
      : [{ index: i, got: page === null ? 'miss' : 'other data' }],
  );
  expect(wrong).toEqual([]);
}

/** Waits until every node of `nodes` reports a state whose members are exactly them, all ready. */
async function waitForReady(nodes: readonly NodeProcess[]): Promise<ClusterState> {
  const want = nodes
    .map((n) => n.nodeId)
    .sort()
    .join(',');
  return waitFor(
    async () => {
      const states = await Promise.all(nodes.map((n) => stateOf(n.url)));
      const first = states[0];
      const agreed = states.every(
        (s) =>
          s !== undefined &&
          s.version === first?.version &&
          s.members
            .map((m) => m.id)
            .sort()
            .join(',') === want &&
          s.members.every((m) => m.phase === undefined || m.phase === 'ready'),
      );
      return agreed ? first : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 100, what: `members ${want} all ready` },
  );
}

/** Statistics of every live node, by id. */
async function statsById(c: TmemClient): Promise<Map<string, NodeStats>> {
  return new Map((await c.stats()).map((s) => [s.nodeId, s]));
}

/** Waits until the live nodes hold `copies` persistent pages in all and none is still copying. */
async function waitForCopies(c: TmemClient, copies: number): Promise<void> {
  await waitFor(
    async () => {
      const stats = [...(await statsById(c)).values()];
      const held = stats.reduce((sum, s) => sum + s.persistentPages, 0);
      return held === copies && stats.every((s) => (s.fillingPartitions ?? 0) === 0) ? true : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 200, what: `${copies} persistent copies in the cluster` },
  );
}

/** The owners (primary first) of index `index` of `oid` in `pool`. */
function ownersOf(state: ClusterState, pool: Pool, oid: string, index: number): string[] {
  const partition = partitionOf(pool.id, toOidBytes(oid), index, state.partitionCount);
  return persistentTableFor(state, 2)
    .owners(partition)
    .map((o) => o.id);
}

describe('replicated persistent pools', () => {
  it('keeps every accepted page on R = 2 owners', async () => {
    const nodes = await startCluster({ size: 3 });
    const c = await client(nodes);
    const pool = await c.createPool({ kind: 'persistent', replication: 2 });
    const state = await waitForReady(nodes);
    await putAll(pool, 'obj', 300, 1);
    const stats = await statsById(c);
    for (const node of nodes) {
      const expected = Array.from({ length: 300 }, (_, i) => ownersOf(state, pool, 'obj', i)).filter((o) =>
        o.includes(node.nodeId),
      ).length;
      expect(stats.get(node.nodeId)?.persistentPages, node.nodeId).toBe(expected);
    }
    await expectAll(pool, 'obj', 300, 1);
  });

  it('serves every accepted page after SIGKILL of a primary, and restores two copies', async () => {
    const nodes = await startCluster({ size: 3 });
    const c = await client(nodes);
    const pool = await c.createPool({ kind: 'persistent', replication: 2 });
    const state = await waitForReady(nodes);
    await putAll(pool, 'obj', 300, 1);
    const victim = nodes.find((n) => n.nodeId === ownersOf(state, pool, 'obj', 0)[0]) as NodeProcess;
    await victim.kill();
    // Right after the kill, before the cluster noticed: reads fail over to the other owner, no error, no miss.
    await expectAll(pool, 'obj', 300, 1);
    const survivors = nodes.filter((n) => n !== victim);
    await waitForMembers(survivors);
    await waitForCopies(c, 600);
    await expectAll(pool, 'obj', 300, 1);
    // And the survivors accept new writes with two copies again.
    await putAll(pool, 'obj', 300, 2);
    await expectAll(pool, 'obj', 300, 2);
  });

  it('flushes reach every copy, and a copy made later does not bring a flushed page back', async () => {
    const nodes = await startCluster({ size: 3 });
    const c = await client(nodes);
    const pool = await c.createPool({ kind: 'persistent', replication: 2 });
    await waitForReady(nodes);
    await putAll(pool, 'obj', 200, 1);
    await putAll(pool, 'other', 50, 1);
    for (let i = 0; i < 100; i++) await pool.flushPage('obj', i);
    await pool.flushObject('other');
    await waitForCopies(c, 200);
    await nodes[2]!.kill();
    await waitForMembers(nodes.slice(0, 2));
    await waitForCopies(c, 200);
    for (let i = 0; i < 100; i++) expect(await pool.get('obj', i)).toBeNull();
    for (let i = 100; i < 200; i++) expect(await pool.get('obj', i)).toEqual(pageOf(i, 1));
    for (let i = 0; i < 50; i++) expect(await pool.get('other', i)).toBeNull();
  });

  it('a joiner copies its partitions before it owns them: no read misses during the move', async () => {
    const nodes = await startCluster({ size: 2 });
    const c = await client(nodes);
    const pool = await c.createPool({ kind: 'persistent', replication: 2 });
    await waitForReady(nodes);
    await putAll(pool, 'obj', 400, 1);
    const joiner = await startNode({
      args: [...TEST_TIMING_ARGS, '--node-id', 'n9', '--join', nodes[0]!.url],
    });
    const all = [...nodes, joiner];
    let reads = 0;
    let ready = false;
    const readiness = waitForReady(all).then((state) => {
      ready = true;
      return state;
    });
    while (!ready) {
      await expectAll(pool, 'obj', 400, 1);
      reads++;
    }
    const state = await readiness;
    expect(reads).toBeGreaterThan(0);
    await waitForCopies(c, 800);
    const stats = await statsById(c);
    const expected = Array.from({ length: 400 }, (_, i) => ownersOf(state, pool, 'obj', i)).filter((o) =>
      o.includes('n9'),
    ).length;
    expect(expected).toBeGreaterThan(0);
    expect(stats.get('n9')?.persistentPages).toBe(expected);
    await expectAll(pool, 'obj', 400, 1);
  });

  it('a graceful leave hands every partition over before the process exits', async () => {
    const nodes = await startCluster({ size: 3 });
    const c = await client(nodes);
    const pool = await c.createPool({ kind: 'persistent', replication: 2 });
    await waitForReady(nodes);
    await putAll(pool, 'obj', 300, 1);
    const leaver = nodes[1]!;
    const exit = leaver.stop();
    let reads = 0;
    let gone = false;
    void exit.then(() => (gone = true));
    while (!gone) {
      await expectAll(pool, 'obj', 300, 1);
      reads++;
    }
    expect((await exit).code).toBe(0);
    expect(reads).toBeGreaterThan(0);
    const survivors = nodes.filter((n) => n !== leaver);
    await waitForMembers(survivors);
    // Both survivors hold every page: the hand-over finished before the leaver exited.
    const stats = await statsById(c);
    expect(survivors.map((n) => stats.get(n.nodeId)?.persistentPages)).toEqual([300, 300]);
    await expectAll(pool, 'obj', 300, 1);
  });

  it('never serves a corrupt copy: it is dropped and repaired from another copy', async () => {
    const healthy = await startCluster({ size: 2 });
    // n2 spoils every copy of a 'bad' page it stores (keeping the checksum), as failing memory would.
    const faulty = await startNode({
      args: [...TEST_TIMING_ARGS, '--node-id', 'n2', '--join', healthy[0]!.url],
      env: { TMEM_TEST_CORRUPT_OID_PREFIX: 'bad' },
    });
    const nodes = [...healthy, faulty];
    const c = await client(nodes);
    const pool = await c.createPool({ kind: 'persistent', replication: 2 });
    const state = await waitForReady(nodes);
    // 100 stripes of 16 pages: a stripe has owners (n0, n2) with odds of about 1 in 6, so some surely do
    // (19 stripes missed them 3% of the time).
    const count = 1600;
    await putAll(pool, 'bad', count, 1);
    const onFaulty = Array.from({ length: count }, (_, i) => i).filter((i) =>
      ownersOf(state, pool, 'bad', i).includes('n2'),
    );
    expect(onFaulty.length).toBeGreaterThan(0);
    // Reads see only good data: the primary checks every copy it serves, and the client checks again.
    await expectAll(pool, 'bad', count, 1);
    // The reads repaired the faulty node's copies of the pages it is primary of. Kill n0: of the pages n0
    // shared with n2, those n2 was primary of read good (repaired); those n2 held as a replica have only a
    // corrupt copy left, so they are lost: DATA_LOST, never bad data and never a miss.
    const classify = (i: number): string => {
      const owners = ownersOf(state, pool, 'bad', i);
      if (owners[0] === 'n0' && owners[1] === 'n2') return 'lost';
      return 'good';
    };
    await nodes[0]!.kill();
    await waitForMembers(nodes.slice(1));
    const outcomes = await Promise.all(
      Array.from({ length: count }, (_, i) =>
        pool.get('bad', i).then(
          (page) => (page === null ? 'miss' : Buffer.from(page).equals(pageOf(i, 1)) ? 'good' : 'bad data'),
          (error: unknown) => (error instanceof DataLostError ? 'lost' : `error ${String(error)}`),
        ),
      ),
    );
    const unexpected = outcomes.flatMap((outcome, i) =>
      outcome === classify(i) ? [] : [{ index: i, outcome, expected: classify(i) }],
    );
    expect(unexpected).toEqual([]);
    expect(outcomes.filter((o) => o === 'lost').length).toBeGreaterThan(0);
  });

  it('reports DATA_LOST, never a miss, when every owner of a page crashed', async () => {
    const nodes = await startCluster({ size: 3 });
    const c = await client(nodes);
    const pool = await c.createPool({ kind: 'persistent', replication: 1 });
    const state = await waitForReady(nodes);
    // 50 stripes: the victim owns some of them (13 stripes missed it 0.5% of the time).
    const count = 800;
    await putAll(pool, 'obj', count, 1);
    const victim = nodes[2]!;
    const owner = (i: number): string =>
      persistentTableFor(state, 1).primary(partitionOf(pool.id, toOidBytes('obj'), i, state.partitionCount))!
        .id;
    const lostIndexes = Array.from({ length: count }, (_, i) => i).filter((i) => owner(i) === victim.nodeId);
    expect(lostIndexes.length).toBeGreaterThan(0);
    await victim.kill();
    await waitForMembers(nodes.slice(0, 2));
    for (let i = 0; i < count; i++) {
      if (lostIndexes.includes(i)) {
        await expect(pool.get('obj', i)).rejects.toBeInstanceOf(DataLostError);
      } else {
        expect(Buffer.from((await pool.get('obj', i)) ?? []).equals(pageOf(i, 1))).toBe(true);
      }
    }
    // A page written again after the loss is readable; the rest of the lost partitions stay lost.
    const again = lostIndexes[0]!;
    expect(await pool.put('obj', again, pageOf(again, 2))).toBe(true);
    expect(await pool.get('obj', again)).toEqual(pageOf(again, 2));
  });
});

describe('R copies or refused', () => {
  /** Sends one raw put of `pool` to the primary of its partition and returns the node's answer. */
  async function rawPut(nodes: readonly NodeProcess[], poolId: number, replication: number, index: number) {
    const state = (await stateOf(nodes[0]!.url))!;
    const partition = partitionOf(poolId, toOidBytes('raw'), index, state.partitionCount);
    const primary = persistentTableFor(state, replication).primary(partition)!;
    const node = nodes.find((n) => n.nodeId === primary.id)!;
    const raw = await openRawPeer(node.url, 'app');
    try {
      return await raw.request({
        t: 'put',
        id: 2,
        pool: poolId,
        oid: toOidBytes('raw'),
        index,
        page: pageOf(index, 1),
      });
    } finally {
      raw.close();
    }
  }

  it('accepts a pool of R = 3 on two nodes but refuses its puts (replicas) until a third node is ready', async () => {
    const nodes = await startCluster({ size: 2 });
    const c = await client(nodes);
    const three = await c.createPool({ kind: 'persistent', replication: 3 });
    const two = await c.createPool({ kind: 'persistent', replication: 2 });
    expect(await three.put('obj', 0, pageOf(0, 1))).toBe(false);
    expect(await two.put('obj', 0, pageOf(0, 1))).toBe(true);
    expect(await rawPut(nodes, three.id, 3, 1)).toEqual({ t: 'refused', id: 2, reason: 'replicas' });
    expect(await three.get('obj', 0)).toBeNull();
    for (const stats of (await statsById(c)).values()) {
      expect(stats.underReplicated).toBe(1);
      expect(stats.underReplicatedPools).toEqual([{ pool: three.id, replication: 3, readyMembers: 2 }]);
    }
    const status = await fetchClusterStatus(nodes[0]!.url);
    expect(status.underReplicatedPools).toEqual([{ pool: three.id, replication: 3, readyMembers: 2 }]);
    expect(formatClusterStatus(status)).toMatch(/^UNDER-REPLICATED: 1 persistent pool .*pool \d+ wants 3/m);

    const third = await startNode({
      args: [...TEST_TIMING_ARGS, '--node-id', 'n2', '--join', nodes[0]!.url],
    });
    const all = [...nodes, third];
    await waitForReadyMembers(all);
    await putAll(three, 'obj', 100, 2);
    await expectAll(three, 'obj', 100, 2);
    expect(await rawPut(all, three.id, 3, 1)).toEqual({ t: 'accepted', id: 2 });
    for (const stats of (await statsById(c)).values()) expect(stats.underReplicated).toBe(0);
  });

  it('a put refused for want of replicas leaves no older page readable', async () => {
    const nodes = await startCluster({ size: 3 });
    const c = await client(nodes);
    const pool = await c.createPool({ kind: 'persistent', replication: 3 });
    await putAll(pool, 'obj', 50, 1);
    await nodes[2]!.kill();
    await waitForReadyMembers(nodes.slice(0, 2));
    // Accepted pages survive the crash of R-1 owners ...
    await expectAll(pool, 'obj', 50, 1);
    // ... but a new write to them is refused, and the refusal takes the older page with it, on every copy.
    const refused = await Promise.all(Array.from({ length: 25 }, (_, i) => pool.put('obj', i, pageOf(i, 2))));
    expect(refused.filter(Boolean)).toEqual([]);
    const pages = await Promise.all(Array.from({ length: 50 }, (_, i) => pool.get('obj', i)));
    pages.forEach((page, i) => {
      if (i < 25) expect(page).toBeNull();
      else expect(page === null ? 'miss' : Buffer.from(page).equals(pageOf(i, 1))).toBe(true);
    });
  });

  it('refuses persistent puts on one node with the default R = 2, and keeps serving ephemeral ones', async () => {
    const node = await startNode({ args: TEST_TIMING_ARGS });
    const c = await client([node]);
    const persistent = await c.createPool({ kind: 'persistent' });
    const ephemeral = await c.createPool({ kind: 'ephemeral' });
    expect(await persistent.put('obj', 0, pageOf(0, 1))).toBe(false);
    expect(await persistent.get('obj', 0)).toBeNull();
    expect(await ephemeral.put('obj', 0, pageOf(0, 1))).toBe(true);
    expect(await rawPut([node], persistent.id, 2, 3)).toEqual({ t: 'refused', id: 2, reason: 'replicas' });
    const [stats] = await c.stats();
    expect(stats?.underReplicatedPools).toEqual([{ pool: persistent.id, replication: 2, readyMembers: 1 }]);
  });
});
