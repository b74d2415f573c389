import { randomBytes } from 'node:crypto';
import { encode } from 'msgpackr';
import { afterEach, describe, expect, it } from 'vitest';
import { connect, ErrorCode, TmemError, type NodeStats, type Pool, type TmemClient } from '@tmem/client';
import { fetchClusterStatus, formatClusterStatus } from '@tmem/memnode';
import { PROTOCOL_VERSION } from '@tmem/protocol';
import {
  TEST_TIMING_ARGS,
  closeAllRawPeers,
  killAllNodes,
  openRawPeer,
  startCluster,
  startNode,
  waitForReadyMembers,
  type NodeProcess,
} from '../harness/index.ts';

// Compressed pools through the client on real nodes: pages come back byte-exact whatever they hold, the
// nodes report what compression saved, a compressed pool holds more text in the same capacity, replicas
// compress what they receive, corrupt copies are still never served, and an unknown compression is refused.

const PAGE = 4096;
const clients: TmemClient[] = [];

afterEach(async () => {
  closeAllRawPeers();
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await killAllNodes();
});

async function client(nodes: readonly NodeProcess[]): Promise<TmemClient> {
  const c = await connect({ seeds: nodes.map((n) => n.url), identity: 'app', timeoutMs: 15_000 });
  clients.push(c);
  return c;
}

const WORDS = 'the page pool of memory node copies a replica to its owners and every lease'.split(' ');

/** English-like text that tells its index apart: lz4 makes it about half its size. */
function textPage(index: number): Uint8Array {
  let s = `page ${index}: `;
  for (let i = 0; s.length < PAGE; i++)
    s += WORDS[(i * 7 + index * 13 + ((i * i) >> 3)) % WORDS.length] + ' ';
  return new TextEncoder().encode(s.slice(0, PAGE));
}

const randomPages = Array.from({ length: 16 }, () => new Uint8Array(randomBytes(PAGE)));

/** Index i holds: text for i % 3 == 0, random for 1, zeros for 2. */
function pageOf(index: number): Uint8Array {
  if (index % 3 === 0) return textPage(index);
  if (index % 3 === 1) return randomPages[index % randomPages.length]!;
  return new Uint8Array(PAGE);
}

async function putAll(pool: Pool, count: number): Promise<void> {
  const results = await pool.putMany(
    Array.from({ length: count }, (_, i) => ({ oid: 'o', index: i, page: pageOf(i) })),
  );
  expect(results.filter((accepted) => !accepted)).toEqual([]);
}

async function expectAll(pool: Pool, count: number): Promise<void> {
  const pages = await pool.getMany(Array.from({ length: count }, (_, i) => ({ oid: 'o', index: i })));
  const wrong = pages.flatMap((page, i) =>
    page !== null && Buffer.from(page).equals(pageOf(i))
      ? []
      : [{ index: i, got: page === null ? 'miss' : 'other data' }],
  );
  expect(wrong).toEqual([]);
}

function sum(stats: readonly NodeStats[], field: keyof NodeStats): number {
  return stats.reduce((total, s) => total + (s[field] as number), 0);
}

describe('compressed pools', () => {
  it('round-trip text, random and zero pages byte-exact in an ephemeral pool, and report what they saved', async () => {
    const node = await startNode({ capacity: '64MiB', args: ['--replication', '1', '--metrics-port', '0'] });
    const c = await client([node]);
    const pool = await c.createPool({ kind: 'ephemeral', compression: 'lz4' });
    expect(pool.compression).toBe('lz4');
    const count = 300;
    await putAll(pool, count);
    const [stats] = await c.stats();
    const text = count / 3;
    // Text pages are compressed, random ones stored raw, zero pages kept as metadata only.
    expect(stats).toMatchObject({
      compressedPages: text,
      incompressiblePuts: count / 3,
      ephemeralPages: count,
    });
    expect(stats!.compressedPageBytes).toBe(text * PAGE);
    expect(stats!.compressedBytes).toBeLessThan(stats!.compressedSlotBytes);
    expect(stats!.compressedSlotBytes).toBeLessThan(0.75 * text * PAGE);
    expect(stats!.usedBytes).toBe(stats!.compressedSlotBytes + (count / 3) * PAGE + (count / 3) * 128);
    // The same numbers in /metrics and in `tmem status`.
    const scrape = await (await fetch(node.metricsUrl!)).text();
    expect(scrape).toMatch(new RegExp(`^tmem_compressed_pages\\{[^}]*\\} ${text}$`, 'm'));
    expect(scrape).toMatch(
      new RegExp(`^tmem_compressed_slot_bytes\\{[^}]*\\} ${stats!.compressedSlotBytes}$`, 'm'),
    );
    expect(formatClusterStatus(await fetchClusterStatus(node.url))).toMatch(
      new RegExp(`^compressed: ${text} pages, .* \\(saved \\d+\\.\\d+x; lz4 ratio \\d+\\.\\d+x\\)$`, 'm'),
    );
    await expectAll(pool, count);
    // Exclusive gets: everything was taken, and the charges went with it.
    expect((await c.stats())[0]).toMatchObject({ usedBytes: 0, compressedPages: 0, compressedBytes: 0 });
  });

  it('round-trip byte-exact in a persistent pool of two copies, every owner storing its copy compressed', async () => {
    const nodes = await startCluster({ size: 2 });
    const c = await client(nodes);
    const pool = await c.createPool({ kind: 'persistent', replication: 2, compression: 'lz4' });
    const count = 600;
    await putAll(pool, count);
    await expectAll(pool, count);
    const stats = await c.stats();
    // Both nodes own every partition (R = 2 of 2) and each compressed its own copy of every text page.
    expect(stats.map((s) => s.compressedPages)).toEqual([count / 3, count / 3]);
    expect(stats.map((s) => s.persistentPages)).toEqual([count, count]);
    // Reads again (persistent gets keep the page), also after a node joins and copies the partitions it owns.
    const joiner = await startNode({
      args: [...TEST_TIMING_ARGS, '--node-id', 'n2', '--join', nodes[0]!.url],
    });
    await waitForReadyMembers([...nodes, joiner]);
    await expectAll(pool, count);
    const after = await c.stats();
    expect(sum(after, 'persistentPages')).toBe(2 * count);
    expect(sum(after, 'compressedPages')).toBe((2 * count) / 3);
  });

  it('never serves a corrupt compressed copy: it is dropped and repaired from the other copy', async () => {
    const [healthy] = await startCluster({ size: 1 });
    // n1 spoils every copy of a page it stores (keeping the checksum): the spoiled page is what it compresses.
    const faulty = await startNode({
      args: [...TEST_TIMING_ARGS, '--node-id', 'n1', '--join', healthy!.url],
      env: { TMEM_TEST_CORRUPT_OID_PREFIX: 'o' },
    });
    await waitForReadyMembers([healthy!, faulty]);
    const c = await client([healthy!, faulty]);
    const pool = await c.createPool({ kind: 'persistent', replication: 2, compression: 'lz4' });
    const count = 300;
    await putAll(pool, count);
    await expectAll(pool, count);
  });

  it('hold more text pages than an uncompressed pool in the same capacity', async () => {
    const node = await startNode({ capacity: '1MiB', args: ['--replication', '1'] });
    const c = await client([node]);
    const fill = async (pool: Pool): Promise<number> => {
      let accepted = 0;
      for (let from = 0; ; from += 64) {
        const results = await pool.putMany(
          Array.from({ length: 64 }, (_, i) => ({ oid: 'f', index: from + i, page: textPage(from + i) })),
        );
        accepted += results.filter(Boolean).length;
        if (results.some((ok) => !ok)) break;
      }
      await pool.destroy();
      return accepted;
    };
    const raw = await fill(await c.createPool({ kind: 'persistent' }));
    const compressed = await fill(await c.createPool({ kind: 'persistent', compression: 'lz4' }));
    // Each page is charged its bytes and a 64-byte record, the object ('f') 96 bytes and its oid.
    expect(raw).toBe(Math.floor((1024 * 1024 - 97) / (PAGE + 64)));
    expect(compressed).toBeGreaterThan(1.5 * raw);
  });

  it('refuses an unknown compression with a typed error, in the client and on the wire', async () => {
    const node = await startNode({ args: ['--replication', '1'] });
    const c = await client([node]);
    const refused = await c.createPool({ kind: 'ephemeral', compression: 'zstd' as 'lz4' }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(refused).toBeInstanceOf(TmemError);
    expect((refused as TmemError).code).toBe(ErrorCode.BadArgument);
    // A client that skips the check: the node's schema refuses the frame, and the connection stays usable.
    const raw = await openRawPeer(node.url);
    raw.sendBytes(encode({ t: 'hello', id: 1, protocol: PROTOCOL_VERSION, identity: 'raw' }));
    expect(await raw.next()).toMatchObject({ t: 'welcome' });
    raw.sendBytes(encode({ t: 'newPool', id: 2, kind: 'ephemeral', pageSize: PAGE, compression: 'zstd' }));
    expect(await raw.next()).toMatchObject({ t: 'error', id: 2, code: ErrorCode.InvalidFrame });
    raw.sendBytes(encode({ t: 'newPool', id: 3, kind: 'ephemeral', pageSize: PAGE, compression: 'lz4' }));
    expect(await raw.next()).toMatchObject({ t: 'pool', id: 3, compression: 'lz4' });
    // Nothing was created for the refused ones.
    expect((await c.stats())[0]!.pools).toBe(1);
  });
});
