// The versioned view of the persistent pages of one node: every copy, whether written by this node as primary,
// forwarded by a primary or copied during a fill, goes through `apply`, which keeps the newest version of each
// handle and never lets an older page come back over a flush (tombstones). A flushed object travels as the
// tombstones of its pages: versions are stamped per partition, so one version could not order the writes of
// an object spread over partitions with different primaries.
import { checksumMatches, partitionHash, type ReplicaEntry, type ReplicaResult } from '@tmem/protocol';
import type { PageStore } from '../page-store.ts';
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

/** Versioned persistent pages over a page store. */
export interface ReplicaStore {
  /** Applies one copy, newest version wins. Pages are checked against their sum first. */
  apply(entry: ReplicaEntry): ReplicaResult;
  /** The newest entry for a handle, as a ReplicaEntry (page or tombstone), or undefined. */
  newest(pool: number, oid: Uint8Array, index: number): ReplicaEntry | undefined;
  /** Tombstones of `pool` in `partitions` (a copy that is being made must not miss a flush). */
  tombstonesIn(pool: number, partitions: ReadonlySet<number>): ReplicaEntry[];
  /** Forgets every tombstone of a destroyed pool. */
  dropPool(pool: number): void;
  /** Forgets expired tombstones. */
  sweep(): void;
  /** Tombstones held. */
  readonly tombstoneCount: number;
}

/** Creates the replica store over `options.store`. */
export function createReplicaStore(options: ReplicaStoreOptions): ReplicaStore {
  const { store } = options;
  const now = options.now ?? (() => performance.now());
  const tombstones: Tombstones = createTombstones({ ttlMs: options.tombstoneTtlMs, now });

  /** The newest flush of a handle, 0 if none is remembered. */
  function coveringFlush(pool: number, oid: Uint8Array, index: number): number {
    return tombstones.covering(pool, oid, index);
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
    },
    sweep() {
      tombstones.sweep();
    },
    get tombstoneCount() {
      return tombstones.size;
    },
  };
}
