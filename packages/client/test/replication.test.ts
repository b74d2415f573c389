import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, pageChecksum, type Get, type PageOp } from '@tmem/protocol';
import {
  ChecksumError,
  ConnectionLostError,
  DataLostError,
  connect,
  type Pool,
  type TmemClient,
} from '../src/index.ts';
import type { FakeCluster, FakeNode } from './fake-node.ts';
import { PAGE_SIZE, nodeById, page, setup, setupCluster } from './helpers.ts';
import { closeAll, recordingLogger, rejectionOf, track, waitFor } from './support.ts';

afterEach(closeAll);

/** 300 distinct handles over a few objects and many stripes, so they spread over every member. */
const handles = Array.from({ length: 300 }, (_, i) => ({ oid: `obj-${i % 37}`, index: i * 7 }));

function persistentPool(client: TmemClient, replication: number): Promise<Pool> {
  return client.createPool({ kind: 'persistent', pageSize: PAGE_SIZE, replication });
}

/** The page ops a node received, over every batch. */
function opsAt(node: FakeNode): PageOp[] {
  return node.batches().flatMap((b) => b.ops);
}

/** The gets a node received for one handle. */
function getsAt(node: FakeNode, pool: number, index: number): Get[] {
  return opsAt(node).filter((op): op is Get => op.t === 'get' && op.pool === pool && op.index === index);
}

/** The fake nodes of `ids`, in order; at least two. */
function ownerNodes(nodes: readonly FakeNode[], ids: readonly string[]): [FakeNode, FakeNode, ...FakeNode[]] {
  expect(ids.length).toBeGreaterThanOrEqual(2);
  return ids.map((id) => nodeById(nodes, id)) as [FakeNode, FakeNode, ...FakeNode[]];
}

/** A handle of `pool` whose primary is not the seed n1: the seed carries the state subscription. */
function handleOffSeed(cluster: FakeCluster, pool: Pool): { oid: string; index: number; owners: string[] } {
  for (const h of handles) {
    const owners = cluster.ownersOf(pool.id, h.oid, h.index);
    if (owners[0] !== 'n1') return { ...h, owners };
  }
  throw new Error('every handle is on the seed');
}

describe('checksums', () => {
  it('sends the checksum of every put, for both pool kinds, and the node returns it with the hit', async () => {
    const { fake, client, pool } = await setup();
    const persistent = await persistentPool(client, 1);
    for (const [i, p] of [pool, persistent].entries()) {
      expect(await p.put('o', i, page(i + 1))).toBe(true);
      expect(fake.sum(p.id, 'o', i)).toBe(pageChecksum(page(i + 1)));
      expect(await p.get('o', i)).toEqual(page(i + 1));
    }
    const puts = opsAt(fake).filter((op) => op.t === 'put');
    expect(puts).toHaveLength(2);
    for (const put of puts) if (put.t === 'put') expect(put.sum).toBe(pageChecksum(put.page));
  });

  it('takes a hit that carries no checksum as it is', async () => {
    const { pool } = await setup(
      {},
      { onPageOp: (op) => (op.t === 'get' ? { t: 'hit', id: op.id, page: page(9) } : undefined) },
    );
    expect(await pool.get('o', 0)).toEqual(page(9));
  });

  it('reads a corrupt ephemeral page as a miss, and logs a warning', async () => {
    const { logger, lines } = recordingLogger();
    const { fake, pool } = await setup({ logger });
    await pool.put('o', 0, page(5));
    expect(fake.corrupt(pool.id, 'o', 0)).toBe(true);
    expect(await pool.get('o', 0)).toBeNull();
    const warnings = lines.filter((l) => l.level === 'warn');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.fields).toMatchObject({ pool: pool.id, index: 0, code: ErrorCode.ChecksumMismatch });
    // Only the one copy was asked: an ephemeral page has no other.
    expect(getsAt(fake, pool.id, 0)).toHaveLength(1);
  });

  it('reads a corrupt persistent copy from the next owner, as a replica read', async () => {
    const { logger, lines } = recordingLogger();
    const { cluster, nodes, client } = await setupCluster(3, { logger });
    const pool = await persistentPool(client, 3);
    expect(await pool.put('o', 0, page(7))).toBe(true);
    const owners = ownerNodes(nodes, cluster.ownersOf(pool.id, 'o', 0));
    expect(owners).toHaveLength(3);
    const [primary, second, third] = owners as [FakeNode, FakeNode, FakeNode];
    // The fake primary copied the page to the other owners.
    for (const node of owners) expect(node.page(pool.id, 'o', 0)).toEqual(page(7));
    primary.corrupt(pool.id, 'o', 0);
    expect(await pool.get('o', 0)).toEqual(page(7));
    expect(getsAt(primary, pool.id, 0).map((g) => g.replica)).toEqual([undefined]);
    expect(getsAt(second, pool.id, 0).map((g) => g.replica)).toEqual([true]);
    expect(getsAt(third, pool.id, 0)).toEqual([]);
    expect(lines.filter((l) => l.level === 'warn').map((l) => l.fields)).toMatchObject([
      { node: primary.nodeId, code: ErrorCode.ChecksumMismatch },
    ]);
  });

  it('rejects with ChecksumError when every copy of a persistent page is corrupt', async () => {
    const { cluster, nodes, client } = await setupCluster(3);
    const pool = await persistentPool(client, 3);
    await pool.put('o', 0, page(7));
    const owners = cluster.ownersOf(pool.id, 'o', 0);
    for (const id of owners) nodeById(nodes, id).corrupt(pool.id, 'o', 0);
    const error = await rejectionOf(pool.get('o', 0));
    expect(error).toBeInstanceOf(ChecksumError);
    expect(error).toMatchObject({ code: ErrorCode.ChecksumMismatch, details: { corrupt: owners } });
    // Each owner was asked once: a corrupt copy is an answer, not a reason to retry.
    for (const id of owners) expect(getsAt(nodeById(nodes, id), pool.id, 0)).toHaveLength(1);
  });
});

describe('persistent routing', () => {
  it('routes persistent ops by the ready table: a filling member gets none, its ephemeral share is kept', async () => {
    const { cluster, nodes, client, pool: ephemeral } = await setupCluster(4);
    const persistent = await persistentPool(client, 2);
    cluster.commit((draft) => {
      const n2 = draft.members.find((m) => m.id === 'n2');
      if (n2 !== undefined) n2.phase = 'filling';
    });
    await waitFor(() => client.view().version === cluster.state.version, 'the filling state');
    await Promise.all(
      handles.flatMap((h, i) => [
        ephemeral.put(h.oid, h.index, page(i % 251)),
        persistent.put(h.oid, h.index, page((i + 1) % 251)),
      ]),
    );
    const filling = nodeById(nodes, 'n2');
    expect(opsAt(filling).filter((op) => op.pool === persistent.id)).toEqual([]);
    expect(opsAt(filling).filter((op) => op.pool === ephemeral.id).length).toBeGreaterThan(0);
    for (const node of nodes) expect(node.refusals).toEqual({ stale: 0, notServing: 0 });
    handles.forEach((h, i) => {
      // Ephemeral pages sit on their primary among every member, as before.
      const ephemeralPrimary = nodeById(nodes, cluster.primaryOf(ephemeral.id, h.oid, h.index));
      expect(ephemeralPrimary.page(ephemeral.id, h.oid, h.index)).toEqual(page(i % 251));
      const owners = cluster.ownersOf(persistent.id, h.oid, h.index);
      expect(owners).toHaveLength(2);
      expect(owners).not.toContain('n2');
      for (const id of owners) {
        expect(nodeById(nodes, id).page(persistent.id, h.oid, h.index)).toEqual(page((i + 1) % 251));
      }
    });
    const got = await Promise.all(handles.map((h) => persistent.get(h.oid, h.index)));
    got.forEach((p, i) => expect(p).toEqual(page((i + 1) % 251)));
    expect(opsAt(filling).filter((op) => op.pool === persistent.id)).toEqual([]);
  });

  it('refreshes its view for a persistent pool newer than it, then routes by the pool', async () => {
    const { cluster, nodes, client } = await setupCluster(3);
    cluster.pushes = false;
    const known = client.view().version;
    const pool = await persistentPool(client, 2);
    expect(client.view().version).toBe(known);
    expect(await pool.put('o', 0, page(3))).toBe(true);
    expect(client.view().version).toBe(cluster.state.version);
    for (const id of cluster.ownersOf(pool.id, 'o', 0)) {
      expect(nodeById(nodes, id).page(pool.id, 'o', 0)).toEqual(page(3));
    }
    for (const node of nodes) expect(node.refusals).toEqual({ stale: 0, notServing: 0 });
  });
});

describe('replica reads', () => {
  it('reads from the next owner, with replica: true, when the primary is down', async () => {
    const { cluster, nodes, client } = await setupCluster(3, { retries: 0, timeoutMs: 500 });
    const pool = await persistentPool(client, 2);
    const h = handleOffSeed(cluster, pool);
    await pool.put(h.oid, h.index, page(4));
    const [primary, second] = ownerNodes(nodes, h.owners);
    // Dead, but never removed from the cluster state: its partitions do not move.
    await primary.close();
    expect(await pool.get(h.oid, h.index)).toEqual(page(4));
    expect(getsAt(second, pool.id, h.index).map((g) => g.replica)).toEqual([true]);
    // A put is not sent elsewhere: it still needs the primary.
    const put = await rejectionOf(pool.put(h.oid, h.index, page(5)));
    expect(put).toBeInstanceOf(ConnectionLostError);
    expect(opsAt(second).filter((op) => op.t === 'put')).toEqual([]);
  });

  it('reads from the next owner when the connection to the primary is lost under the get', async () => {
    const { cluster, nodes, client } = await setupCluster(3, { retries: 0 });
    const pool = await persistentPool(client, 3);
    const h = handleOffSeed(cluster, pool);
    await pool.put(h.oid, h.index, page(6));
    const [primary, second] = ownerNodes(nodes, h.owners);
    primary.hold = true;
    const get = pool.get(h.oid, h.index);
    await waitFor(() => primary.held > 0, 'the get to reach the primary');
    primary.dropConnections();
    expect(await get).toEqual(page(6));
    expect(getsAt(second, pool.id, h.index).map((g) => g.replica)).toEqual([true]);
  });

  it('does not read an ephemeral page from anywhere but its one owner', async () => {
    const { cluster, nodes, pool } = await setupCluster(3, { retries: 0, timeoutMs: 300 });
    const h = handles.find((x) => cluster.primaryOf(pool.id, x.oid, x.index) === 'n2');
    expect(h).toBeDefined();
    const { oid, index } = h as { oid: string; index: number };
    await pool.put(oid, index, page(1));
    await nodeById(nodes, 'n2').close();
    expect(await rejectionOf(pool.get(oid, index))).toBeInstanceOf(ConnectionLostError);
    for (const node of nodes) expect(opsAt(node).filter((op) => op.t === 'get')).toEqual([]);
  });
});

describe('refusals and lost data', () => {
  it('rejects a get answered DATA_LOST with DataLostError, without a retry', async () => {
    const { fake, client } = await setup(
      {},
      {
        onPageOp: (op) =>
          op.t === 'get'
            ? { t: 'error', id: op.id, code: ErrorCode.DataLost, message: 'every copy was lost' }
            : undefined,
      },
    );
    const pool = await persistentPool(client, 1);
    const error = await rejectionOf(pool.get('o', 0));
    expect(error).toBeInstanceOf(DataLostError);
    expect(error).toMatchObject({ code: ErrorCode.DataLost });
    expect(getsAt(fake, pool.id, 0)).toHaveLength(1);
  });

  it('resolves false for a put refused because not enough owners could store it', async () => {
    const { client } = await setup(
      {},
      { onPageOp: (op) => (op.t === 'put' ? { t: 'refused', id: op.id, reason: 'replicas' } : undefined) },
    );
    const pool = await persistentPool(client, 2);
    expect(await pool.put('o', 0, page(1))).toBe(false);
  });
});

describe('localAddress', () => {
  it('makes every connection from the given local address', async () => {
    const { nodes } = await setupCluster(2);
    const client = track(await connect({ seeds: [(nodes[0] as FakeNode).url], localAddress: '127.0.0.2' }));
    // stats reaches every member: each sees a handshake from the chosen address, and only this client's.
    await client.stats();
    for (const node of nodes) {
      const hellos = node.received.filter((r) => r.frame.t === 'hello' && r.remoteAddress === '127.0.0.2');
      expect(hellos.map((r) => r.frame)).toMatchObject([{ identity: client.identity }]);
    }
  });
});
