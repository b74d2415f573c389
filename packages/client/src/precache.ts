// Precache: a read-through cache of file pages with tmem as its victim cache (Linux's cleancache).
//
// A file's pages live in a bounded local LRU. A page the LRU evicts is put to an ephemeral pool; a read tries
// the LRU, then the pool (one getMany for the page and its read-ahead window), then the disk. Gets from a
// private ephemeral pool are exclusive, so a page is in the LRU or in tmem, rarely both.
//
// Coherency rests on the object id: a file's pages are stored under (device, inode, ctime in ns). Every write,
// truncate, chmod or rename changes the ctime and a replaced file has another inode, so a read — which stats
// the file first — never finds pages of older contents, whoever changed the file. (Linux's inode generation
// number, which would tell a reused inode apart, is not visible through stat; the ctime does that job.) Two
// rules close the gaps:
// - a file whose ctime is younger than `racyWindowMs` is read from disk and not cached, since a second write
//   within one tick of the kernel's coarse clock would leave the ctime unchanged (git's "racily clean" rule);
// - pages read from disk are cached only when the ctime after the read equals the one before it.
// Writes, truncates and deletes made through the cache also drop the old generation's pages here and flush
// them from tmem (flushObject), which frees the memory at once instead of waiting for eviction.
import {
  open,
  stat,
  truncate as truncateFile,
  unlink as unlinkFile,
  type FileHandle,
} from 'node:fs/promises';
import type { TmemClient } from './client.ts';
import type { PageHandle, Pool } from './pool.ts';

/** Options of `createPrecache`. */
export interface PrecacheOptions {
  /** An ephemeral pool to use; when absent one is created (and destroyed by `close`). */
  pool?: Pool;
  /** Page size of the pool created when `pool` is absent. @default 4096 */
  pageSize?: number;
  /** Pages the local LRU holds before it evicts to tmem. @default 256 (1 MiB of 4 KiB pages) */
  localPages?: number;
  /** Pages fetched from tmem in one round trip on a local miss, the missed page included. @default 16 */
  readAhead?: number;
  /** Files changed more recently than this are read from disk and not cached (see above). @default 1000 */
  racyWindowMs?: number;
  /** Evicted pages sent to tmem in one putMany. @default 32 */
  putBatch?: number;
}

/**
 * What the cache did, counted in pages unless named bytes. A page read ahead counts where it came from (tmem
 * or the disk) when it is fetched, and as a local hit when a later read asks for it.
 */
export interface PrecacheStats {
  /** Pages a read asked for that were in the local LRU. */
  localHits: number;
  /** Pages tmem returned, asked for or read ahead. */
  tmemHits: number;
  /** Pages read from the file, asked for or read ahead. */
  diskReads: number;
  /** Bytes tmem returned: the disk reads it saved (local hits a plain in-process cache would have had too). */
  bytesSaved: number;
  /** Evicted pages put to tmem, and how many of those it refused. */
  tmemPuts: number;
  tmemRefused: number;
  /** tmem ops that failed (a lost connection, a timeout): the read went to the disk instead. */
  tmemErrors: number;
  /** Reads of files inside the racy window: from disk, not cached. */
  uncachedReads: number;
}

/** A read-through page cache for files, backed by an ephemeral tmem pool. */
export interface Precache {
  readonly pool: Pool;
  /** Up to `length` bytes of `path` from `position`; fewer at the end of the file. */
  read(path: string, position: number, length: number): Promise<Uint8Array>;
  /** The whole file. */
  readFile(path: string): Promise<Uint8Array>;
  /** Writes `data` at `position` of `path` (which must exist) and drops the pages of the old contents. */
  write(path: string, position: number, data: Uint8Array): Promise<void>;
  /** Truncates `path` to `length` bytes and drops the pages of the old contents. */
  truncate(path: string, length: number): Promise<void>;
  /** Deletes `path` and drops its pages. */
  unlink(path: string): Promise<void>;
  stats(): PrecacheStats;
  /** Waits for evicted pages in flight; destroys the pool if the cache created it. */
  close(): Promise<void>;
}

/** A page in the local LRU, with the handle it goes to tmem under when evicted. */
interface CachedPage {
  readonly oid: string;
  readonly index: number;
  readonly page: Uint8Array;
}

interface Generation {
  readonly oid: string;
  readonly size: number;
  /** Inside the racy window: not cached. */
  readonly racy: boolean;
}

/** The generation of a file: its object id is device, inode and ctime in nanoseconds. */
async function generationOf(path: string, racyWindowMs: number): Promise<Generation> {
  const s = await stat(path, { bigint: true });
  const ageMs = Date.now() - Number(s.ctimeNs / 1_000_000n);
  return { oid: `f:${s.dev}:${s.ino}:${s.ctimeNs}`, size: Number(s.size), racy: ageMs < racyWindowMs };
}

/** Creates a precache over `options.pool`, or over a new ephemeral pool of `client`. */
export async function createPrecache(client: TmemClient, options: PrecacheOptions = {}): Promise<Precache> {
  const ownPool = options.pool === undefined;
  const pool =
    options.pool ?? (await client.createPool({ kind: 'ephemeral', pageSize: options.pageSize ?? 4096 }));
  if (pool.kind !== 'ephemeral') throw new TypeError('a precache needs an ephemeral pool');
  const pageSize = pool.pageSize;
  const localPages = positive(options.localPages ?? 256, 'localPages');
  const readAhead = positive(options.readAhead ?? 16, 'readAhead');
  const racyWindowMs = options.racyWindowMs ?? 1000;
  const putBatch = positive(options.putBatch ?? 32, 'putBatch');

  const stats: PrecacheStats = {
    localHits: 0,
    tmemHits: 0,
    diskReads: 0,
    bytesSaved: 0,
    tmemPuts: 0,
    tmemRefused: 0,
    tmemErrors: 0,
    uncachedReads: 0,
  };
  /** The local LRU: Map order is recency order, oldest first. Keys are `${oid}#${index}`. */
  const local = new Map<string, CachedPage>();
  /** The generation each path was last read at, so a newer one drops the older pages. */
  const seen = new Map<string, string>();
  let evicted: CachedPage[] = [];
  const inFlight = new Set<Promise<void>>();

  function track(work: Promise<void>): void {
    inFlight.add(work);
    void work.finally(() => inFlight.delete(work));
  }

  function sendEvicted(): void {
    if (evicted.length === 0) return;
    const batch = evicted;
    evicted = [];
    stats.tmemPuts += batch.length;
    track(
      pool.putMany(batch).then(
        (accepted) => {
          stats.tmemRefused += accepted.filter((a) => !a).length;
        },
        () => {
          stats.tmemErrors += batch.length;
        },
      ),
    );
  }

  function remember(oid: string, index: number, page: Uint8Array): void {
    const key = `${oid}#${index}`;
    local.delete(key);
    local.set(key, { oid, index, page });
    while (local.size > localPages) {
      const [oldestKey, oldest] = local.entries().next().value as [string, CachedPage];
      local.delete(oldestKey);
      evicted.push(oldest);
      if (evicted.length >= putBatch) sendEvicted();
      else if (evicted.length === 1) queueMicrotask(sendEvicted);
    }
  }

  /**
   * Drops every page of the generation of `path` seen before (unless it is `current`), here and in tmem. The
   * flush waits for evicted pages already on their way, so none of them lands after it.
   */
  async function retire(path: string, current: string | undefined): Promise<void> {
    const previous = seen.get(path);
    if (current === undefined) seen.delete(path);
    else seen.set(path, current);
    if (previous === undefined || previous === current) return;
    const prefix = `${previous}#`;
    for (const key of local.keys()) if (key.startsWith(prefix)) local.delete(key);
    evicted = evicted.filter((e) => e.oid !== previous);
    await Promise.all(inFlight);
    await pool.flushObject(previous).catch(() => void stats.tmemErrors++);
  }

  /** Pages `first..last` of one generation, each exactly pageSize bytes (the last one zero-padded). */
  async function pagesOf(path: string, file: FileHandle, gen: Generation, first: number, last: number) {
    const pages = new Map<number, Uint8Array>();
    const wanted: number[] = [];
    for (let i = first; i <= last; i++) {
      const page = local.get(`${gen.oid}#${i}`)?.page;
      if (page === undefined) {
        wanted.push(i);
      } else {
        remember(gen.oid, i, page);
        pages.set(i, page);
        stats.localHits++;
      }
    }
    if (wanted.length === 0) return pages;
    // One round trip for the missing pages and the read-ahead window behind the first of them.
    const lastPage = Math.max(0, Math.ceil(gen.size / pageSize) - 1);
    const windowEnd = Math.min(lastPage, Math.max(last, (wanted[0] as number) + readAhead - 1));
    const handles: PageHandle[] = wanted.map((index) => ({ oid: gen.oid, index }));
    for (let i = last + 1; i <= windowEnd; i++) {
      if (!local.has(`${gen.oid}#${i}`)) handles.push({ oid: gen.oid, index: i });
    }
    const fromTmem = await pool.getMany(handles).catch(() => {
      stats.tmemErrors++;
      return handles.map(() => null);
    });
    const missed: number[] = [];
    handles.forEach((handle, k) => {
      const page = fromTmem[k];
      if (page === null || page === undefined) {
        missed.push(handle.index);
        return;
      }
      if (handle.index <= last) pages.set(handle.index, page);
      stats.tmemHits++;
      stats.bytesSaved += pageSize;
      remember(gen.oid, handle.index, page);
    });
    const fromDisk = await readRuns(file, missed, pageSize);
    stats.diskReads += fromDisk.size;
    const after = await file.stat({ bigint: true });
    const unchanged = `f:${after.dev}:${after.ino}:${after.ctimeNs}` === gen.oid;
    for (const [index, page] of fromDisk) {
      if (index <= last) pages.set(index, page);
      if (unchanged) remember(gen.oid, index, page);
    }
    if (!unchanged) track(retire(path, undefined));
    return pages;
  }

  async function read(path: string, position: number, length: number): Promise<Uint8Array> {
    const gen = await generationOf(path, racyWindowMs);
    const end = Math.min(gen.size, position + length);
    if (end <= position) return new Uint8Array(0);
    const file = await open(path, 'r');
    try {
      if (gen.racy) {
        track(retire(path, undefined));
        stats.uncachedReads++;
        const out = new Uint8Array(end - position);
        const { bytesRead } = await file.read(out, 0, out.length, position);
        stats.diskReads += Math.ceil(bytesRead / pageSize);
        return out.subarray(0, bytesRead);
      }
      track(retire(path, gen.oid));
      const first = Math.floor(position / pageSize);
      const last = Math.floor((end - 1) / pageSize);
      const pages = await pagesOf(path, file, gen, first, last);
      const out = new Uint8Array(end - position);
      for (let i = first; i <= last; i++) {
        const page = pages.get(i) as Uint8Array;
        const from = Math.max(position, i * pageSize);
        const to = Math.min(end, (i + 1) * pageSize);
        out.set(page.subarray(from - i * pageSize, to - i * pageSize), from - position);
      }
      return out;
    } finally {
      await file.close();
    }
  }

  /** Runs a change to `path`, then drops the generation it replaced. */
  async function changing(path: string, change: () => Promise<void>): Promise<void> {
    await change();
    await retire(path, undefined);
  }

  return {
    pool,
    read,
    // read() stats the file anyway and stops at its end.
    readFile: (path) => read(path, 0, Number.MAX_SAFE_INTEGER),
    write: (path, position, data) =>
      changing(path, async () => {
        const file = await open(path, 'r+');
        try {
          await file.write(data, 0, data.length, position);
        } finally {
          await file.close();
        }
      }),
    truncate: (path, length) => changing(path, () => truncateFile(path, length)),
    unlink: (path) => changing(path, () => unlinkFile(path)),
    stats: () => ({ ...stats }),
    async close() {
      sendEvicted();
      await Promise.all(inFlight);
      if (ownPool) await pool.destroy();
    },
  };
}

/** Reads pages `indexes` (ascending) from disk, one read per contiguous run; each page zero-padded. */
async function readRuns(file: FileHandle, indexes: readonly number[], pageSize: number) {
  const pages = new Map<number, Uint8Array>();
  for (let start = 0; start < indexes.length;) {
    let end = start;
    while (end + 1 < indexes.length && indexes[end + 1] === (indexes[end] as number) + 1) end++;
    const first = indexes[start] as number;
    const run = new Uint8Array((end - start + 1) * pageSize);
    await file.read(run, 0, run.length, first * pageSize);
    for (let k = 0; k <= end - start; k++) {
      pages.set(first + k, run.slice(k * pageSize, (k + 1) * pageSize));
    }
    start = end + 1;
  }
  return pages;
}

function positive(value: number, name: string): number {
  if (!Number.isInteger(value) || value < 1)
    throw new RangeError(`${name} must be a positive integer, got ${value}`);
  return value;
}
