// The versioned view of the persistent pages of one node: every copy, whether written by this node as primary,
// forwarded by a primary or copied during a fill, goes through `apply`, which keeps the newest version of each
// handle and never lets an older page come back over a flush (tombstones). Flushed objects leave a tombstone
// per (pool, object, partition): versions are stamped per partition, so one version cannot order the writes
// of an object spread over partitions with different primaries.
import {
  checksumMatches,
  oidKey,
  partitionHash,
  type ReplicaEntry,
  type ReplicaResult,
} from '@tmem/protocol';
import type { PageStore, StoredPage } from '../page-store.ts';
import { createTombstones, type Tombstones } from '../tombstones.ts';

/** Options of the replica store. */
export interface ReplicaStoreOptions {
  store: PageStore;
  /** How long a tombstone is kept after its flush: longer than any copy of an older version can be in flight. */
  tombstoneTtlMs: number;
  /** Partition count of the cluster. */
  partitionCount: () => number;
  now?: () => number;
}

/** The newest entry a node holds for one handle: a page, a tombstone, or nothing. */
export type NewestEntry = { page: StoredPage } | { flushedAt: number } | null;

/** Versioned persistent pages over a page store. */
export interface ReplicaStore {
  /** Applies one copy, newest version wins. Pages are checked against their sum first. */
  apply(entry: ReplicaEntry): ReplicaResult;
  /** The newest entry for a handle, as a ReplicaEntry (page or tombstone), or undefined. */
  newest(pool: number, oid: Uint8Array, index: number): ReplicaEntry | undefined;
  /**
   * Records that every page of (pool, oid) in `partition` older than `version` is flushed, so a copy of one
   * arriving later is not applied (the caller removes the pages it holds with page tombstones).
   */
  flushObjectPartition(pool: number, oid: Uint8Array, partition: number, version: number): void;
  /** Tombstones of `pool` in `partitions` (a copy that is being made must not miss a flush). */
  tombstonesIn(pool: number, partitions: ReadonlySet<number>): ReplicaEntry[];
  /** Forgets every tombstone of a destroyed pool. */
  dropPool(pool: number): void;
  /** Forgets expired tombstones. */
  sweep(): void;
  /** Tombstones held (page and object ones). */
  readonly tombstoneCount: number;
}

interface ObjectTombstone {
  pool: number;
  oid: Uint8Array;
  partition: number;
  version: number;
  at: number;
}

/** Creates the replica store over `options.store`. */
export function createReplicaStore(options: ReplicaStoreOptions): ReplicaStore {
  const { store } = options;
  const now = options.now ?? (() => performance.now());
  const tombstones: Tombstones = createTombstones({ ttlMs: options.tombstoneTtlMs, now });
  const objectTombstones = new Map<string, ObjectTombstone>();

  const objectKey = (pool: number, oid: Uint8Array, partition: number): string =>
    `${pool}:${partition}:${oidKey(oid)}`;

  function partitionOfHandle(pool: number, oid: Uint8Array, index: number): number {
    return partitionHash(pool, oid, index) % options.partitionCount();
  }

  /** The newest flush covering a handle: of the page itself or of its object in its partition. */
  function coveringFlush(pool: number, oid: Uint8Array, index: number): number {
    const object = objectTombstones.get(objectKey(pool, oid, partitionOfHandle(pool, oid, index)));
    return Math.max(tombstones.covering(pool, oid, index), object?.version ?? 0);
  }

  function apply(entry: ReplicaEntry): ReplicaResult {
    const pool = store.getPool(entry.pool);
    if (pool === undefined || pool.kind !== 'persistent') return 'unknown-pool';
    if (entry.index === undefined) {
      // A flushed object travels as page tombstones; a whole-object entry is not produced by this version.
      return 'ok';
    }
    const { oid, index, version } = entry;
    if (version <= coveringFlush(entry.pool, oid, index)) return 'ok';
    if (store.versionOf(entry.pool, oid, index) >= version) return 'ok';
    if (entry.page === undefined) {
      store.discard(entry.pool, oid, index);
      tombstones.flushedPage(entry.pool, oid, index, version, partitionHash(entry.pool, oid, index));
      return 'ok';
    }
    if (entry.page.length !== pool.pageSize) return 'corrupt';
    if (!checksumMatches(entry.page, entry.sum)) return 'corrupt';
    const meta = entry.sum === undefined ? { version } : { version, sum: entry.sum };
    const result = store.put(entry.pool, oid, index, entry.page, meta);
    return result.status === 'accepted' ? 'ok' : 'full';
  }

  return {
    apply,
    newest(pool, oid, index) {
      const stored = store.peek(pool, oid, index);
      const flushed = coveringFlush(pool, oid, index);
      if (stored !== null && stored.version > flushed) {
        return {
          pool,
          oid,
          index,
          version: stored.version,
          page: stored.page,
          ...(stored.sum === undefined ? {} : { sum: stored.sum }),
        };
      }
      return flushed > 0 ? { pool, oid, index, version: flushed } : undefined;
    },
    flushObjectPartition(pool, oid, partition, version) {
      const key = objectKey(pool, oid, partition);
      const previous = objectTombstones.get(key);
      if (previous === undefined || previous.version < version) {
        objectTombstones.set(key, { pool, oid, partition, version, at: now() });
      }
    },
    tombstonesIn(pool, partitions) {
      const count = options.partitionCount();
      const entries: ReplicaEntry[] = tombstones
        .list((p, hash) => p === pool && hash >= 0 && partitions.has(hash % count))
        .filter((t) => t.index !== undefined)
        .map((t) => ({ pool, oid: t.oid, index: t.index as number, version: t.version }));
      return entries;
    },
    dropPool(pool) {
      tombstones.dropPool(pool);
      for (const [key, t] of objectTombstones) if (t.pool === pool) objectTombstones.delete(key);
    },
    sweep() {
      tombstones.sweep();
      const cutoff = now() - options.tombstoneTtlMs;
      for (const [key, t] of objectTombstones) if (t.at < cutoff) objectTombstones.delete(key);
    },
    get tombstoneCount() {
      return tombstones.size + objectTombstones.size;
    },
  };
}
