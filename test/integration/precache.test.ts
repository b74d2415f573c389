import { mkdtemp, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { connect, createPrecache, type TmemClient } from '@tmem/client';
import { killAllNodes, startNode, waitFor } from '../harness/index.ts';

// The precache against a real node: pages evicted from its local LRU go to tmem and come back, and a read
// never returns stale file contents after a write, a truncate or a delete, through the cache or beside it.

const PAGE = 4096;
let dir: string;
const clients: TmemClient[] = [];

async function client(url: string): Promise<TmemClient> {
  const c = await connect({ seeds: [url] });
  clients.push(c);
  return c;
}

/** Bytes that differ from page to page and from file to file. */
function contents(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * 13 + seed * 101 + (i >> 12)) & 0xff;
  return bytes;
}

/** Waits until `path`'s ctime is older than `ms`, so the cache will keep its pages. */
async function ageOf(path: string, ms: number): Promise<void> {
  await waitFor(async () => (Date.now() - (await stat(path)).ctimeMs > ms ? true : undefined), {
    timeoutMs: 5_000,
    intervalMs: 10,
    what: `${path} older than ${ms} ms`,
  });
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tmem-precache-'));
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await killAllNodes();
  await rm(dir, { recursive: true, force: true });
});

describe('precache', () => {
  it('serves a file read twice from its LRU and from tmem, not from the disk', async () => {
    const node = await startNode();
    const c = await client(node.url);
    const pool = await c.createPool({ kind: 'ephemeral' });
    const cache = await createPrecache(c, { pool, localPages: 8, readAhead: 16, racyWindowMs: 20 });
    const path = join(dir, 'big');
    const data = contents(64 * PAGE + 123, 1);
    await writeFile(path, data);
    await ageOf(path, 20);

    expect(Buffer.from(await cache.readFile(path)).equals(data)).toBe(true);
    const first = cache.stats();
    expect(first.diskReads).toBe(65);
    expect(first.tmemHits + first.localHits).toBe(0);
    await cache.close(); // waits for the evicted pages to reach tmem; the pool was given, so it stays
    const again = await createPrecache(c, { pool, localPages: 8, racyWindowMs: 20 });
    expect(Buffer.from(await again.readFile(path)).equals(data)).toBe(true);
    const second = again.stats();
    // The first cache's LRU was lost with it: the 8 pages it held come from disk, the 57 it evicted from tmem.
    expect(second.tmemHits).toBe(57);
    expect(second.diskReads).toBe(8);
    expect(second.bytesSaved).toBe(57 * PAGE);
  });

  it('reads one page and its read-ahead window in one getMany', async () => {
    const node = await startNode();
    const c = await client(node.url);
    const cache = await createPrecache(c, { localPages: 64, readAhead: 8, racyWindowMs: 20 });
    const path = join(dir, 'f');
    await writeFile(path, contents(32 * PAGE, 2));
    await ageOf(path, 20);
    await cache.read(path, 0, 1);
    // The whole window came from disk in one run and stays local: the next 7 pages are local hits.
    expect(cache.stats().diskReads).toBe(8);
    await cache.read(path, PAGE, 7 * PAGE);
    expect(cache.stats()).toMatchObject({ localHits: 7, diskReads: 8 });
  });

  it('never returns stale contents after a write, a truncate or a delete through the cache', async () => {
    const node = await startNode();
    const cache = await createPrecache(await client(node.url), {
      localPages: 3,
      readAhead: 4,
      racyWindowMs: 0,
    });
    const path = join(dir, 'model');
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            // Mostly reads, so pages live long enough between changes to be evicted to tmem and read back.
            {
              weight: 6,
              arbitrary: fc.record({
                t: fc.constant('read' as const),
                pos: fc.nat(9 * PAGE),
                len: fc.nat(3 * PAGE),
              }),
            },
            fc.record({
              t: fc.constant('write' as const),
              pos: fc.nat(8 * PAGE),
              len: fc.integer({ min: 1, max: 2 * PAGE }),
              seed: fc.nat(255),
            }),
            fc.record({ t: fc.constant('truncate' as const), len: fc.nat(9 * PAGE) }),
            fc.record({ t: fc.constant('recreate' as const), len: fc.nat(9 * PAGE), seed: fc.nat(255) }),
          ),
          { minLength: 1, maxLength: 40 },
        ),
        async (commands) => {
          await writeFile(path, contents(6 * PAGE, 0));
          for (const command of commands) {
            if (command.t === 'read') {
              const got = await cache.read(path, command.pos, command.len);
              const want = (await readFile(path)).subarray(command.pos, command.pos + command.len);
              expect(Buffer.from(got).equals(want), JSON.stringify(command)).toBe(true);
            } else if (command.t === 'write') {
              await cache.write(path, command.pos, contents(command.len, command.seed));
            } else if (command.t === 'truncate') {
              await cache.truncate(path, command.len);
            } else {
              await cache.unlink(path);
              await writeFile(path, contents(command.len, command.seed));
            }
          }
        },
      ),
      { numRuns: 40 },
    );
    const stats = cache.stats();
    // The model did exercise both caches, not only the disk.
    expect(stats.localHits).toBeGreaterThan(0);
    expect(stats.tmemHits).toBeGreaterThan(0);
  });

  it('a second process that changes the file is seen by the next read, without telling the cache', async () => {
    const node = await startNode();
    const reader = await createPrecache(await client(node.url), { localPages: 4, racyWindowMs: 50 });
    const writer = await createPrecache(await client(node.url), { racyWindowMs: 50 });
    const path = join(dir, 'shared');
    await writeFile(path, contents(16 * PAGE, 3));
    await ageOf(path, 50);
    await reader.readFile(path);
    await reader.readFile(path);
    expect(reader.stats().tmemHits + reader.stats().localHits).toBeGreaterThan(0);

    const update = contents(2 * PAGE, 4);
    await writer.write(path, 5 * PAGE, update); // its own cache; the reader is not told
    const after = await reader.read(path, 5 * PAGE, 2 * PAGE);
    expect(Buffer.from(after).equals(update)).toBe(true);

    await truncate(path, 3 * PAGE); // plain fs, beside any cache
    expect((await reader.readFile(path)).length).toBe(3 * PAGE);
    // Once the change is older than the racy window the new generation is cached again.
    await ageOf(path, 50);
    const before = reader.stats().uncachedReads;
    expect(Buffer.from(await reader.readFile(path)).equals(await readFile(path))).toBe(true);
    expect(reader.stats().uncachedReads).toBe(before);
  });

  it('falls back to the disk when tmem cannot be reached', async () => {
    const node = await startNode();
    const cache = await createPrecache(await client(node.url), { localPages: 2, racyWindowMs: 0 });
    const path = join(dir, 'offline');
    const data = contents(10 * PAGE, 5);
    await writeFile(path, data);
    await cache.readFile(path);
    await node.kill();
    expect(Buffer.from(await cache.readFile(path)).equals(data)).toBe(true);
    expect(cache.stats().tmemErrors).toBeGreaterThan(0);
  });
});
