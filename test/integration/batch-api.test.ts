// The batch API (pool.putMany / pool.getMany) against real nodes: one node with both pool kinds, and a
// replicated persistent pool on three nodes that keeps serving through getMany after its primary is killed.
import { afterEach, describe, expect, it } from 'vitest';
import { BadPageSizeError, connect, type Pool, type TmemClient } from '@tmem/client';
import { killAllNodes, startCluster, startNode, waitFor, type NodeProcess } from '../harness/index.ts';

const PAGE = 4096;

/** A page that is never same-filled. */
function pageOf(seed: number): Uint8Array {
  const page = new Uint8Array(PAGE);
  for (let i = 0; i < PAGE; i++) page[i] = (seed * 31 + i) & 0xff;
  return page;
}

function entriesOf(count: number, seed: number): Array<{ oid: string; index: number; page: Uint8Array }> {
  return Array.from({ length: count }, (_, i) => ({ oid: `obj-${i % 5}`, index: i, page: pageOf(seed + i) }));
}

let client: TmemClient | undefined;

afterEach(async () => {
  await client?.close();
  client = undefined;
  await killAllNodes();
});

describe.each(['ephemeral', 'persistent'] as const)('putMany / getMany on one node, %s pool', (kind) => {
  it('stores and reads 8 calls of 32 pages at once, results in entry order', async () => {
    const node = await startNode({ capacity: '64MiB', args: ['--replication', '1'] });
    client = await connect({ seeds: [node.url] });
    const pool = await client.createPool({ kind });
    const calls = Array.from({ length: 8 }, (_, c) =>
      entriesOf(32, c * 100).map((e) => ({ ...e, oid: `${e.oid}-${c}` })),
    );
    const accepted = await Promise.all(calls.map((entries) => pool.putMany(entries)));
    expect(accepted.flat()).toEqual(Array.from({ length: 256 }, () => true));
    const pages = await Promise.all(calls.map((entries) => pool.getMany(entries)));
    expect(pages.flat()).toEqual(calls.flat().map((e) => e.page));
    const missing = await pool.getMany([{ oid: 'never', index: 0 }]);
    expect(missing).toEqual([null]);
    if (kind === 'ephemeral') {
      // Exclusive gets: an ephemeral page is taken by the read.
      expect(await pool.getMany(calls[0] ?? [])).toEqual((calls[0] ?? []).map(() => null));
    }
  });

  it('rejects a bad entry before anything is stored', async () => {
    const node = await startNode({ capacity: '64MiB', args: ['--replication', '1'] });
    client = await connect({ seeds: [node.url] });
    const pool = await client.createPool({ kind });
    const entries = [...entriesOf(4, 1), { oid: 'bad', index: 0, page: new Uint8Array(10) }];
    await expect(pool.putMany(entries)).rejects.toBeInstanceOf(BadPageSizeError);
    expect(await pool.getMany(entries.slice(0, 4))).toEqual([null, null, null, null]);
  });
});

describe('putMany / getMany on a replicated persistent pool', () => {
  it('reads every accepted page through getMany after SIGKILL of a primary', async () => {
    const nodes = await startCluster({ size: 3 });
    client = await connect({ seeds: nodes.map((n) => n.url) });
    const pool: Pool = await client.createPool({ kind: 'persistent', replication: 2 });
    const entries = entriesOf(200, 7);
    // Right after the pool is created its owners may not all be ready: refused puts are answers, so retry.
    await waitFor(async () => (await pool.putMany(entries)).every(Boolean), {
      what: 'every put to be accepted',
    });
    expect(await pool.getMany(entries)).toEqual(entries.map((e) => e.page));
    const victim = nodes[1] as NodeProcess;
    await victim.kill();
    // Before the cluster noticed: the reads of the victim's pages go to the other copies.
    expect(await pool.getMany(entries)).toEqual(entries.map((e) => e.page));
  });
});
