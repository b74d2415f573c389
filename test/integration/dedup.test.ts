import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { connect, type Pool, type TmemClient } from '@tmem/client';
import { fetchClusterStatus, formatClusterStatus, PAGE_META_BYTES } from '@tmem/memnode';
import { killAllNodes, startNode, type NodeProcess } from '../harness/index.ts';

// Dedup through the client on a real node started with --dedup: a duplicate-heavy workload (many files made of
// the same blocks) is stored once per distinct block, the node reports the memory saved in its stats, /metrics
// and `tmem status`, every page reads back byte-exact, and another identity's equal pages are not shared.

const PAGE = 4096;
const FILES = 40;
const PAGES_PER_FILE = 16;
const clients: TmemClient[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await killAllNodes();
});

async function client(node: NodeProcess, identity = 'app'): Promise<TmemClient> {
  const c = await connect({ seeds: [node.url], identity, timeoutMs: 15_000 });
  clients.push(c);
  return c;
}

/** Eight blocks that many files share (a template, a licence header, a library copied around). */
const BLOCKS = Array.from({ length: 8 }, () => new Uint8Array(randomBytes(PAGE)));
/** One page of each file is its own. */
const OWN = Array.from({ length: FILES }, () => new Uint8Array(randomBytes(PAGE)));

/** Page `index` of file `file`: its own page first, then shared blocks. */
function pageOf(file: number, index: number): Uint8Array {
  return index === 0 ? OWN[file]! : BLOCKS[(file + index) % BLOCKS.length]!;
}

async function putFiles(pool: Pool): Promise<void> {
  const ops: { oid: string; index: number; page: Uint8Array }[] = [];
  for (let file = 0; file < FILES; file++) {
    for (let index = 0; index < PAGES_PER_FILE; index++) {
      ops.push({ oid: `file-${file}`, index, page: pageOf(file, index) });
    }
  }
  const results = await pool.putMany(ops);
  expect(results.filter((accepted) => !accepted)).toEqual([]);
}

async function expectFiles(pool: Pool): Promise<void> {
  const keys: { oid: string; index: number }[] = [];
  for (let file = 0; file < FILES; file++) {
    for (let index = 0; index < PAGES_PER_FILE; index++) keys.push({ oid: `file-${file}`, index });
  }
  const pages = await pool.getMany(keys);
  const wrong = pages.flatMap((page, i) => {
    const { oid, index } = keys[i]!;
    const file = Number(oid.slice('file-'.length));
    return page !== null && Buffer.from(page).equals(pageOf(file, index)) ? [] : [{ oid, index }];
  });
  expect(wrong).toEqual([]);
}

describe('dedup on a node', () => {
  it('stores a duplicate-heavy workload once per distinct block, and reports what it saved', async () => {
    const node = await startNode({ capacity: '64MiB', args: ['--dedup', '--metrics-port', '0'] });
    const c = await client(node);
    const pool = await c.createPool({ kind: 'ephemeral' });
    await putFiles(pool);
    const pages = FILES * PAGES_PER_FILE;
    const slots = FILES + BLOCKS.length;
    const [stats] = await c.stats();
    expect(stats).toMatchObject({
      ephemeralPages: pages,
      dedupSlots: slots,
      dedupedPages: pages - slots,
      dedupSavedBytes: (pages - slots) * (PAGE - PAGE_META_BYTES),
      usedBytes: slots * PAGE + (pages - slots) * PAGE_META_BYTES,
      dedupCollisions: 0,
    });
    // 640 pages of 4 KiB (2.5 MiB) in 48 slots plus 128 B per sharing page: 9.6x less memory.
    expect((pages * PAGE) / stats!.usedBytes).toBeGreaterThan(9.5);

    // Another identity's equal pages are its own: nothing of it is shared with `app`'s.
    const other = await client(node, 'other');
    const otherPool = await other.createPool({ kind: 'ephemeral' });
    expect(await otherPool.put('file-0', 1, pageOf(0, 1))).toBe(true);
    expect((await c.stats())[0]).toMatchObject({ dedupSlots: slots + 1, dedupedPages: pages - slots });

    const scrape = await (await fetch(node.metricsUrl!)).text();
    expect(scrape).toMatch(new RegExp(`^tmem_dedup_pages\\{[^}]*\\} ${pages - slots}$`, 'm'));
    expect(scrape).toMatch(new RegExp(`^tmem_dedup_slots\\{[^}]*\\} ${slots + 1}$`, 'm'));
    expect(scrape).toMatch(/^tmem_store_dedup_hits_total\{[^}]*\} 592$/m);
    expect(formatClusterStatus(await fetchClusterStatus(node.url))).toMatch(
      new RegExp(`^dedup: ${pages - slots} pages share ${slots + 1} slots \\(saved \\d+\\.\\d+ MiB\\)$`, 'm'),
    );

    // Exclusive gets take every copy; each one read is byte-exact, and the last of each slot frees it.
    await expectFiles(pool);
    expect(await otherPool.get('file-0', 1)).toEqual(pageOf(0, 1));
    expect((await c.stats())[0]).toMatchObject({ usedBytes: 0, dedupSlots: 0, dedupedPages: 0 });
  });

  it('holds in 1 MiB a workload that needs 2.5 MiB without dedup', async () => {
    const plain = await startNode({ capacity: '1MiB' });
    const dedup = await startNode({ capacity: '1MiB', args: ['--dedup'] });
    const statsOf = async (node: NodeProcess) => {
      const c = await client(node);
      await putFiles(await c.createPool({ kind: 'ephemeral' }));
      return (await c.stats())[0]!;
    };
    const [without, withDedup] = await Promise.all([statsOf(plain), statsOf(dedup)]);
    expect(withDedup.evictions).toBe(0);
    expect(withDedup.ephemeralPages).toBe(FILES * PAGES_PER_FILE);
    expect(without.evictions).toBeGreaterThan((FILES * PAGES_PER_FILE) / 2);
  });
});
