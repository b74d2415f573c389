import { afterEach, describe, expect, it } from 'vitest';
import { BadPageSizeError, ConnectionLostError, type PageReply } from '@tmem/protocol';
import { page, setup, setupCluster } from './helpers.ts';
import { closeAll, rejectionOf, waitFor } from './support.ts';

afterEach(closeAll);

const entries = Array.from({ length: 96 }, (_, i) => ({
  oid: `obj-${i % 7}`,
  index: i * 5,
  page: page(i % 200),
}));

describe('putMany / getMany', () => {
  it('stores and reads many pages, results in entry order, each on its primary, one frame per node', async () => {
    const { cluster, nodes, pool } = await setupCluster(3);
    // A first op opens every connection; the batch calls then go straight to them.
    await pool.putMany(entries);
    const before = nodes.map((n) => n.batches().length);
    expect(await pool.putMany(entries)).toEqual(entries.map(() => true));
    nodes.forEach((node, i) => {
      const batches = node.batches().slice(before[i]);
      expect(batches).toHaveLength(1);
      for (const op of batches[0]?.ops ?? []) {
        if (op.t === 'put') expect(cluster.primaryOf(op.pool, op.oid, op.index)).toBe(node.nodeId);
      }
    });
    const pages = await pool.getMany([
      ...entries.map((e) => ({ oid: e.oid, index: e.index })),
      { oid: 'x', index: 1 },
    ]);
    expect(pages).toEqual([...entries.map((e) => e.page), null]);
  });

  it('validates every entry before anything is sent', async () => {
    const { fake, pool } = await setup();
    const bad = [...entries.slice(0, 3), { oid: 'o', index: 0, page: new Uint8Array(3) }];
    expect(await rejectionOf(pool.putMany(bad))).toBeInstanceOf(BadPageSizeError);
    await expect(pool.getMany([{ oid: 'o', index: -1 }])).rejects.toMatchObject({ code: 'BAD_ARGUMENT' });
    await fake.barrier();
    expect(fake.batches()).toHaveLength(0);
  });

  it('resolves an empty call with an empty array', async () => {
    const { pool } = await setup();
    expect(await pool.putMany([])).toEqual([]);
    expect(await pool.getMany([])).toEqual([]);
  });

  it('retries the ops answered STALE_STATE, each after a refresh, and the others not', async () => {
    const { cluster, nodes, client, pool } = await setupCluster(3);
    await pool.putMany(entries);
    cluster.pushes = false;
    cluster.commit();
    expect(await pool.putMany(entries)).toEqual(entries.map(() => true));
    expect(client.view().version).toBe(cluster.state.version);
    expect(nodes.reduce((n, node) => n + node.refusals.stale, 0)).toBe(entries.length);
    expect(await pool.getMany(entries)).toEqual(entries.map((e) => e.page));
  });

  it('reads a corrupt ephemeral page as a miss', async () => {
    const { fake, pool } = await setup();
    await pool.putMany(entries.slice(0, 4));
    expect(fake.corrupt(pool.id, entries[1]?.oid ?? '', entries[1]?.index ?? 0)).toBe(true);
    const pages = await pool.getMany(entries.slice(0, 4));
    expect(pages).toEqual([entries[0]?.page, null, entries[2]?.page, entries[3]?.page]);
  });

  it('reads the other copy of a corrupt persistent page', async () => {
    const { cluster, nodes, client } = await setupCluster(3);
    const pool = await client.createPool({ kind: 'persistent', pageSize: 512, replication: 2 });
    await pool.putMany(entries);
    const e = entries[0] ?? { oid: '', index: 0, page: page(0) };
    const [primaryId] = cluster.ownersOf(pool.id, e.oid, e.index);
    expect(nodes.find((n) => n.nodeId === primaryId)?.corrupt(pool.id, e.oid, e.index)).toBe(true);
    expect(await pool.getMany(entries)).toEqual(entries.map((x) => x.page));
  });

  it('fails the call as in doubt when a put was sent and the connection is lost', async () => {
    const { fake, pool } = await setup({ retries: 2 });
    await pool.put('warm', 0, page(1));
    fake.hold = true;
    const call = rejectionOf(pool.putMany(entries.slice(0, 8)));
    await waitFor(() => fake.held === 1, 'the batch to reach the node');
    fake.dropConnections();
    expect(await call).toBeInstanceOf(ConnectionLostError);
  });

  it('takes a batch answered in parts', async () => {
    const parts = (replies: PageReply[]): PageReply[][] => [
      replies.filter((_, i) => i % 2 === 1),
      replies.filter((_, i) => i % 2 === 0),
    ];
    const { pool } = await setup({}, { replyParts: parts });
    await pool.put('warm', 0, page(1));
    expect(await pool.putMany(entries)).toEqual(entries.map(() => true));
    expect(await pool.getMany(entries)).toEqual(entries.map((e) => e.page));
  });
});
