/**
 * Tombstones: what a node remembers about flushes of persistent pages, so that an older copy arriving later
 * (from a re-replication stream that started before the flush) is not resurrected.
 *
 * A tombstone says "every copy of this handle (or of every page of this object) with a version at or below V
 * was flushed". Only the highest V per handle (per object) matters, so a later flush of the same handle raises
 * V instead of adding a tombstone. Tombstones are few compared with pages (one per flush inside the
 * re-replication window), so plain Maps keyed by strings are fine here, unlike in the page store.
 *
 * Lifetime: a tombstone is needed only while an older copy may still be in flight, so each one lives ttlMs
 * after its last update and goes at the first sweep() after that (until then covering still sees it). Entries are kept in update order, so a sweep touches
 * only what it removes (plus one). The clock should be monotonic; if it steps back, tombstones live longer,
 * which is the safe direction.
 *
 * Not thread-safe: the node calls it from its event loop, like the page store.
 */
import { ErrorCode, TmemError, checkIndex, isU32, oidFromKey, oidKey, toOidBytes } from '@tmem/protocol';

/**
 * The hash `list` passes to its predicate for object tombstones. An object's pages spread over many partitions
 * (see partitionHash), so an object tombstone belongs to no single partition: a predicate that wants them must
 * return true for `(pool, OBJECT_HASH)`, e.g. `(pool, hash) => hash === OBJECT_HASH || owns(pool, hash)`.
 */
export const OBJECT_HASH = -1;

/** Options of a tombstone set. */
export interface TombstonesOptions {
  /** How long a tombstone lives after its last update, in the clock's milliseconds: a number >= 0. */
  ttlMs: number;
  /**
   * The clock, in milliseconds; injectable for tests.
   * @default () => performance.now()
   */
  now?: () => number;
}

/** One tombstone as `list` returns it. */
export interface Tombstone {
  /** Pool id. */
  pool: number;
  /** The object id (a fresh copy). */
  oid: Uint8Array;
  /** The page index for a page tombstone; absent for an object tombstone (it covers every index). */
  index?: number;
  /** Copies at or below this version were flushed. */
  version: number;
}

/** Flushes of persistent pages, remembered for ttlMs. Every op is O(1) except list, dropPool and sweep. */
export interface Tombstones {
  /**
   * Records that (pool, oid, index) was flushed at `version`, keeping the highest version per handle and
   * restarting its ttl. `hash` is partitionHash(pool, oid, index) (from @tmem/protocol), kept so `list` can
   * select by partition. Throws BAD_ARGUMENT for a pool, index or hash that is not a u32, a bad oid, or a
   * version that is not a safe integer >= 0.
   */
  flushedPage(pool: number, oid: Uint8Array, index: number, version: number, hash: number): void;
  /**
   * Records that every page of (pool, oid) was flushed at `version`, keeping the highest version per object and
   * restarting its ttl. Throws BAD_ARGUMENT like flushedPage.
   */
  flushedObject(pool: number, oid: Uint8Array, version: number): void;
  /**
   * The largest version of a tombstone covering (pool, oid, index): its page tombstone or its object's; 0 if
   * none. Throws BAD_ARGUMENT for a bad oid.
   */
  covering(pool: number, oid: Uint8Array, index: number): number;
  /**
   * The tombstones selected by `predicate` (used to send them with the pages of moving partitions): a page
   * tombstone when `predicate(pool, hash)` is true, and every object tombstone of a pool when
   * `predicate(pool, OBJECT_HASH)` is true (asked once per pool that has any; see OBJECT_HASH). The predicate
   * must not change the tombstones.
   */
  list(predicate: (pool: number, hash: number) => boolean): Tombstone[];
  /** Forgets every tombstone of `pool` (the pool was destroyed); returns how many. */
  dropPool(pool: number): number;
  /** Removes the tombstones last updated more than ttlMs ago; returns how many. */
  sweep(): number;
  /** How many tombstones there are (page and object). */
  readonly size: number;
}

/** A tombstone as stored: `index` is -1 for an object tombstone. */
interface Entry {
  readonly pool: number;
  /** Its key in the pool's pages or objects Map. */
  readonly key: string;
  readonly oidKey: string;
  readonly index: number;
  version: number;
  hash: number;
  /** Clock time of the last update. */
  at: number;
}

interface PoolTombstones {
  /** pageKey -> page tombstone. */
  readonly pages: Map<string, Entry>;
  /** oid key -> object tombstone. */
  readonly objects: Map<string, Entry>;
}

/**
 * The key of a page tombstone: oid keys hold only chars 0..0xff, so U+0100 cannot occur in one and ends the oid
 * unambiguously.
 */
function pageKey(key: string, index: number): string {
  return `${key}\u0100${index}`;
}

/** Throws BAD_ARGUMENT unless `version` is a safe integer >= 0 (versions are, in the page store too). */
function checkVersion(version: number): void {
  if (!Number.isSafeInteger(version) || version < 0) {
    throw new TmemError(ErrorCode.BadArgument, 'version must be a safe integer >= 0', {
      details: { version },
    });
  }
}

/** Throws BAD_ARGUMENT unless `pool` is a u32. */
function checkPool(pool: number): void {
  if (!isU32(pool)) throw new TmemError(ErrorCode.BadArgument, 'pool must be a u32', { details: { pool } });
}

/** Creates an empty tombstone set. Throws BAD_ARGUMENT for a ttlMs that is not a finite number >= 0. */
export function createTombstones(options: TombstonesOptions): Tombstones {
  const { ttlMs, now = () => performance.now() } = options;
  if (typeof ttlMs !== 'number' || !Number.isFinite(ttlMs) || ttlMs < 0) {
    throw new TmemError(ErrorCode.BadArgument, 'ttlMs must be a finite number >= 0', { details: { ttlMs } });
  }
  const byPool = new Map<number, PoolTombstones>();
  /** Every entry, least recently updated first (a Set keeps insertion order; an update re-inserts). */
  const order = new Set<Entry>();

  function poolTombstones(pool: number): PoolTombstones {
    let tombs = byPool.get(pool);
    if (tombs === undefined) {
      tombs = { pages: new Map(), objects: new Map() };
      byPool.set(pool, tombs);
    }
    return tombs;
  }

  /** Raises (or creates) the tombstone under `key` in `map` and restarts its ttl. */
  function record(
    map: Map<string, Entry>,
    fields: Omit<Entry, 'version' | 'hash' | 'at'>,
    version: number,
    hash: number,
  ): void {
    const at = now();
    const entry = map.get(fields.key);
    if (entry === undefined) {
      const created: Entry = { ...fields, version, hash, at };
      map.set(fields.key, created);
      order.add(created);
      return;
    }
    entry.version = Math.max(entry.version, version);
    entry.hash = hash;
    entry.at = at;
    order.delete(entry); // move to the end: most recently updated
    order.add(entry);
  }

  function remove(entry: Entry): void {
    order.delete(entry);
    const tombs = byPool.get(entry.pool);
    if (tombs === undefined) return;
    (entry.index < 0 ? tombs.objects : tombs.pages).delete(entry.key);
    if (tombs.pages.size === 0 && tombs.objects.size === 0) byPool.delete(entry.pool);
  }

  function toTombstone(entry: Entry): Tombstone {
    const oid = oidFromKey(entry.oidKey);
    return entry.index < 0
      ? { pool: entry.pool, oid, version: entry.version }
      : { pool: entry.pool, oid, index: entry.index, version: entry.version };
  }

  return {
    flushedPage(pool, oid, index, version, hash) {
      checkPool(pool);
      const key = oidKey(toOidBytes(oid));
      checkIndex(index);
      checkVersion(version);
      if (!isU32(hash))
        throw new TmemError(ErrorCode.BadArgument, 'hash must be a u32', { details: { hash } });
      const fields = { pool, key: pageKey(key, index), oidKey: key, index };
      record(poolTombstones(pool).pages, fields, version, hash);
    },

    flushedObject(pool, oid, version) {
      checkPool(pool);
      const key = oidKey(toOidBytes(oid));
      checkVersion(version);
      record(poolTombstones(pool).objects, { pool, key, oidKey: key, index: -1 }, version, OBJECT_HASH);
    },

    covering(pool, oid, index) {
      const key = oidKey(toOidBytes(oid));
      const tombs = byPool.get(pool);
      if (tombs === undefined) return 0;
      const page = tombs.pages.get(pageKey(key, index))?.version ?? 0;
      const object = tombs.objects.get(key)?.version ?? 0;
      return Math.max(page, object);
    },

    list(predicate) {
      const out: Tombstone[] = [];
      for (const [pool, tombs] of byPool) {
        for (const entry of tombs.pages.values()) {
          if (predicate(pool, entry.hash)) out.push(toTombstone(entry));
        }
        if (tombs.objects.size > 0 && predicate(pool, OBJECT_HASH)) {
          for (const entry of tombs.objects.values()) out.push(toTombstone(entry));
        }
      }
      return out;
    },

    dropPool(pool) {
      const tombs = byPool.get(pool);
      if (tombs === undefined) return 0;
      for (const entry of tombs.pages.values()) order.delete(entry);
      for (const entry of tombs.objects.values()) order.delete(entry);
      byPool.delete(pool);
      return tombs.pages.size + tombs.objects.size;
    },

    sweep() {
      const cutoff = now() - ttlMs;
      let removed = 0;
      // Oldest first: stop at the first one still alive. (Deleting the current entry of a Set is safe.)
      for (const entry of order) {
        if (entry.at >= cutoff) break;
        remove(entry);
        removed++;
      }
      return removed;
    },

    get size() {
      return order.size;
    },
  };
}
