// A file reader with precache: reads a large file twice through createPrecache and prints where the pages
// came from (the local LRU, tmem, the disk) and the time against plain reads with no cache.
//
//   npm run cluster                     (in another terminal)
//   npm run example:file-reader -- [--file <path>] [--mib 64] [--local-pages 1024] [--seeds ws://...]
//                                       [--drop-caches]
//
// Without --file it writes a file of --mib MiB into the temp directory and deletes it at the end. The local
// LRU holds --local-pages pages, far fewer than the file, so the first pass evicts almost every page to tmem
// and the second pass finds them there. "Disk" here is whatever the kernel serves: with its page cache warm,
// plain reads come from RAM; --drop-caches (root only) empties that cache before each cold pass.
// The last line is a JSON summary, for scripts.
import { createHash } from 'node:crypto';
import { open, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { connect, createPrecache, type Precache, type PrecacheStats } from '@tmem/client';
import { msSince, positiveInteger, seedsFrom } from './example-options.ts';

const CHUNK = 64 * 1024;
/** The precache's default: files changed more recently are read from disk and not cached. */
const RACY_WINDOW_MS = 1000;

const { values } = parseArgs({
  options: {
    file: { type: 'string' },
    mib: { type: 'string' },
    'local-pages': { type: 'string' },
    seeds: { type: 'string' },
    'drop-caches': { type: 'boolean', default: false },
  },
});
const mib = positiveInteger('mib', values.mib, 64);
const localPages = positiveInteger('local-pages', values['local-pages'], 1024);

/** A file of text-like bytes (no page is same-filled), written once. */
async function writeSampleFile(path: string): Promise<void> {
  const line = Buffer.from('tmem precache example: the quick brown fox jumps over the lazy dog 0123456789\n');
  const data = Buffer.alloc(mib * 1024 * 1024);
  for (let at = 0, n = 0; at < data.length; at += line.length, n++) {
    line.copy(data, at);
    data.writeUInt32LE(n, Math.min(at, data.length - 4)); // every line differs
  }
  await writeFile(path, data);
}

/** Waits out the precache's racy window, so that the file's pages are cached (see precache.ts). */
async function waitUntilCacheable(path: string): Promise<void> {
  const { ctimeMs } = await stat(path);
  const left = ctimeMs + RACY_WINDOW_MS + 50 - Date.now();
  if (left > 0) await sleep(left);
}

/** With --drop-caches, empties the kernel's page cache, so the pass after it reads from the device. */
async function dropKernelCaches(): Promise<void> {
  if (values['drop-caches']) await writeFile('/proc/sys/vm/drop_caches', '1\n');
}

/** One pass with plain reads: the time and a hash of the contents. */
async function plainPass(path: string): Promise<{ ms: number; sha256: string }> {
  await dropKernelCaches();
  const start = performance.now();
  const hash = createHash('sha256');
  const handle = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(CHUNK);
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, CHUNK, null);
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
    }
  } finally {
    await handle.close();
  }
  return { ms: msSince(start), sha256: hash.digest('hex') };
}

interface CachedPass {
  ms: number;
  sha256: string;
  /** What the cache did during this pass alone. */
  counts: Pick<PrecacheStats, 'localHits' | 'tmemHits' | 'diskReads'>;
}

async function cachedPass(cache: Precache, path: string, size: number): Promise<CachedPass> {
  await dropKernelCaches();
  const before = cache.stats();
  const start = performance.now();
  const hash = createHash('sha256');
  for (let position = 0; position < size; position += CHUNK) {
    hash.update(await cache.read(path, position, CHUNK));
  }
  const ms = msSince(start);
  const after = cache.stats();
  return {
    ms,
    sha256: hash.digest('hex'),
    counts: {
      localHits: after.localHits - before.localHits,
      tmemHits: after.tmemHits - before.tmemHits,
      diskReads: after.diskReads - before.diskReads,
    },
  };
}

function row(name: string, ms: number, size: number, counts?: CachedPass['counts']): string {
  const mibPerSecond = ms === 0 ? '-' : ((size / 1024 / 1024) * (1000 / ms)).toFixed(0);
  const cells =
    counts === undefined ? ['-', '-', '-'] : [counts.localHits, counts.tmemHits, counts.diskReads];
  return [
    name.padEnd(12),
    String(ms).padStart(8),
    ...cells.map((c) => String(c).padStart(11)),
    mibPerSecond.padStart(7),
  ].join(' ');
}

const ownDir = values.file === undefined ? await mkdtemp(join(tmpdir(), 'tmem-file-reader-')) : undefined;
const path = values.file ?? join(ownDir ?? '', 'sample.bin');
const client = await connect({ seeds: seedsFrom(values.seeds) });
try {
  if (ownDir !== undefined) {
    await writeSampleFile(path);
    await waitUntilCacheable(path);
  }
  const { size } = await stat(path);
  const cache = await createPrecache(client, { localPages, readAhead: 32 });
  const plain = await plainPass(path);
  const first = await cachedPass(cache, path, size);
  const second = await cachedPass(cache, path, size);
  const stats = cache.stats();
  await cache.close();
  const identical = first.sha256 === plain.sha256 && second.sha256 === plain.sha256;

  console.log(`file ${path}: ${(size / 1024 / 1024).toFixed(1)} MiB, local LRU ${localPages} pages of 4 KiB`);
  console.log(
    ['pass'.padEnd(12), 'ms'.padStart(8), 'local hits', ' tmem hits', 'disk reads', '  MiB/s'].join(' '),
  );
  console.log(row('plain fs', plain.ms, size));
  console.log(row('precache 1', first.ms, size, first.counts));
  console.log(row('precache 2', second.ms, size, second.counts));
  console.log(
    `second pass against plain reads: ${plain.ms - second.ms} ms saved (negative: slower); ` +
      `${(stats.bytesSaved / 1024 / 1024).toFixed(1)} MiB not read from disk; contents identical: ${identical ? 'yes' : 'NO'}`,
  );
  console.log(JSON.stringify({ example: 'file-reader', size, plain, first, second, stats, identical }));
  if (!identical) process.exitCode = 1;
} finally {
  await client.close();
  if (ownDir !== undefined) await rm(ownDir, { recursive: true, force: true });
}
