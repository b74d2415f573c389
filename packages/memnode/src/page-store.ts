/**
 * The page store of one memory node: pools, pages, capacity accounting and ephemeral eviction.
 *
 * Layout (why it looks like this): a node holds millions of pages, so nothing here is one JS object per page.
 * - Page bytes live in slab slots (slab-allocator.ts), one slab class per slot size: the page size, or for a
 *   compressed page the size class of its compressed length (size-classes.ts, eighths of the page).
 * - Page metadata is a struct of typed arrays indexed by a record number: object, index, partition hash, slot
 *   (or fill byte), LRU links, object-list links, flags, version, checksum and compressed length: 47 bytes per
 *   page, plus 5 to 11 bytes in the handle table (handle-table.ts) that finds a record from (object, index).
 * - An "object" is one (pool, oid): a record in a second struct of arrays holding the list of its pages, so
 *   flush object touches only that object's pages. Each pool maps oid -> object number in a Map.
 * - Ephemeral pages are on an intrusive doubly-linked LRU list per owner identity (least recent at the head):
 *   eviction takes from the owner charged most, a quota from the owner itself (see evictOne, evictFor).
 * - Capacity counts records too: usedBytes (page bytes) + recordBytes (RECORD_BYTES per page, objectCharge per
 *   object) never exceeds it.
 *
 * - With `dedup`, identical slotted pages of one identity's ephemeral pools share one slot (page-dedup.ts): such
 *   a record holds the number of its shared-slot entry in rSlot, and the slab's owner of that slot is the
 *   entry (DEDUP_OWNER_BASE + entry), not a record.
 *
 * Memory bound: slab memory <= bytes of slotted pages + fewer than 2 slabs per slot size in use (see
 * slab-allocator.ts; slabs are 32 MiB + 64 KiB, and only their written slots are resident). Nothing is sized
 * from the capacity: the record arrays start at minRecords (1024) and double when full, halve when at most a
 * quarter is live (see shrinkRecords); the handle table does the same at 3/4 and 1/8. The object arrays keep
 * their high-water size (12 bytes per object).
 *
 * Not thread-safe and not re-entrant: the node calls it from its event loop, one op at a time.
 */
import {
  BadPageSizeError,
  ErrorCode,
  TmemError,
  UnknownPoolError,
  checkIndex,
  isU32,
  isValidPageSize,
  oidFromKey,
  oidKey,
  pageChecksum,
  partitionHash,
  toOidBytes,
  isCompression,
  zeroStoreCounters,
} from '@tmem/protocol';
import type { Compression, PageHandle, PoolKind } from '@tmem/protocol';
import { createHandleTable, NO_RECORD } from './handle-table.ts';
import { looksIncompressible, PAGE_CODECS, type PageCodec } from './page-compression.ts';
import { createOwnerCounterTable, type OwnerCounters } from './owner-counters.ts';
import { grown } from './typed-arrays.ts';
import { COLLIDED, createPageDedup, MAX_DEDUP_ENTRIES, NO_ENTRY } from './page-dedup.ts';
import { maxCompressedBytes, slotSizeFor } from './size-classes.ts';
import { createSlabAllocator, DEFAULT_SLAB_BYTES } from './slab-allocator.ts';
import type { SlabAllocator } from './slab-allocator.ts';
import type { PageArena } from './page-arena.ts';
import { createSpareSlabs, DEFAULT_SPARE_SLAB_IDLE_MS, DEFAULT_SPARE_SLAB_MAX_BYTES } from './spare-slabs.ts';

/**
 * What a same-filled page (every byte equal) costs against capacity: it is kept as metadata only (the fill
 * byte), with no slab slot. Measured metadata was about 43 bytes per page in many-page objects and up to about
 * 130 in one-page objects; version and checksum since add 12 bytes to each (about 55 and 142, not re-measured).
 * 128 keeps a store full of zero pages close to its capacity in real memory.
 */
export const PAGE_META_BYTES = 128;

/**
 * What every page is charged beside its bytes, in recordBytes: its record (47 bytes of typed arrays) and its
 * handle-table entry (5 to 11 bytes), rounded up. Charged so that capacity bounds real memory with small pages
 * too (issue 9, finding 8): a 512-byte page really costs about 570 bytes.
 */
export const RECORD_BYTES = 64;

/**
 * What every object (one pool, oid) is charged beside the oid's own length, in recordBytes: its 12 bytes of
 * object arrays, its oid string's header and its entry in the pool's Map, rounded up. Before this, 64 MiB of
 * capacity held one-page objects with 256-byte oids in 232 MB of RSS.
 */
export const OBJECT_BYTES = 96;

/** recordBytes charged for one object with an oid of `oidLength` bytes. */
export function objectCharge(oidLength: number): number {
  return OBJECT_BYTES + oidLength;
}

/**
 * Largest capacity a store accepts: 128 GiB. Record numbers are int32 and a store holds at most one page per
 * PAGE_META_BYTES of capacity, so this keeps every record number in range. Run more nodes for more memory.
 */
export const MAX_CAPACITY_BYTES = 2 ** 31 * PAGE_META_BYTES;

/**
 * Largest capacity of a store with `dedup`: half of MAX_CAPACITY_BYTES, so its record numbers stay below
 * MAX_DEDUP_ENTRIES and a slab owner tells a record (below) from a shared-slot entry (DEDUP_OWNER_BASE + entry).
 */
export const MAX_DEDUP_CAPACITY_BYTES = MAX_DEDUP_ENTRIES * PAGE_META_BYTES;

/** Slab owners from here on are shared-slot entries (owner - DEDUP_OWNER_BASE), below it page records. */
const DEDUP_OWNER_BASE = MAX_DEDUP_ENTRIES;

/** Options of a page store. */
export interface PageStoreOptions {
  /** Bytes this node may hold, pages and records (usedBytes + recordBytes never exceed it). At most MAX_CAPACITY_BYTES. */
  capacityBytes: number;
  /**
   * Bytes per slab: pages are stored in slots cut from slabs of this size (or one page, if larger).
   * Smaller slabs return memory in finer steps; larger ones allocate less often.
   * @default 33619968 (DEFAULT_SLAB_BYTES, 32 MiB + 64 KiB)
   */
  slabBytes?: number;
  /**
   * Most bytes of emptied slabs kept mapped for reuse (spare-slabs.ts): writing into memory already touched
   * costs no page faults. 0 releases every emptied slab at once.
   * @default min(capacityBytes / 4, 1 GiB)
   */
  spareSlabMaxBytes?: number;
  /**
   * Milliseconds an emptied slab is kept for reuse before it is released.
   * @default 10000 (DEFAULT_SPARE_SLAB_IDLE_MS, as jemalloc's dirty decay)
   */
  spareSlabIdleMs?: number;
  /**
   * Page records the metadata arrays start with and never shrink below. They double when full and halve when
   * at most a quarter is in use, so metadata tracks the pages held, not the capacity. Small values make tests
   * exercise growth and shrinking.
   * @default 1024
   */
  minRecords?: number;
  /**
   * The codec of each compression (tests give codecs that fail on purpose).
   * @default PAGE_CODECS
   */
  codecs?: Readonly<Record<Compression, PageCodec>>;
  /**
   * Deduplicate ephemeral pages: identical pages of pools with the same owner, page size and compression share
   * one slot, found by content hash (the page's CRC-32C: `meta.sum` when given, else computed) and always
   * confirmed by a byte compare. A shared slot is charged once (its slot size) plus PAGE_META_BYTES per further
   * page. Persistent and same-filled pages are never shared. Capacity at most MAX_DEDUP_CAPACITY_BYTES.
   * @default false
   */
  dedup?: boolean;
  /**
   * What one owner identity may hold in this store, pages and charged bytes (usedBytes + recordBytes) alike;
   * absent fields are unlimited. An owner at its quota makes room by evicting its own ephemeral pages, least
   * recently used first; a put that would not fit even then is refused with reason 'capped'.
   * @default {} (no quota)
   */
  ownerQuota?: OwnerQuota;
}

/** A per-owner limit of a page store (PageStoreOptions.ownerQuota). */
export interface OwnerQuota {
  /** Most bytes charged to one owner (usedBytes + recordBytes). */
  maxBytes?: number;
  /** Most pages one owner holds, ephemeral and persistent together. */
  maxPages?: number;
}

/** A pool as the store knows it. */
export interface PoolSpec {
  /** Pool id (u32), unique within the store. */
  id: number;
  /** Ephemeral pages may be evicted and are removed by a get; persistent pages stay until flushed. */
  kind: PoolKind;
  /** Bytes per page: a power of two from MIN_PAGE_SIZE to MAX_PAGE_SIZE. */
  pageSize: number;
  /** The client identity that created the pool. */
  owner: string;
  /**
   * Pages are stored compressed when that saves at least one size class (else raw); absent: always raw. The
   * page a get returns, and its checksum, are always the page as it was put.
   */
  compression?: Compression;
  /**
   * A shared pool (ephemeral only): a get leaves the page and makes it the most recently used, and each object
   * remembers the identity that put to it last (PageMeta.putter), so that a sharer's departure can flush the
   * objects it touched last (flushObjectsPutBy).
   * @default false
   */
  shared?: boolean;
}

/** Replication metadata stored with a page (see PageStore.put). */
export interface PageMeta {
  /**
   * The page's version: a safe integer >= 0, set by whoever orders writes to the handle. The store does not
   * compare versions on put (a put always replaces); it keeps them so replicas can tell older copies apart.
   * @default 0
   */
  version?: number;
  /**
   * CRC-32C of the page as a u32 (pageChecksum in @tmem/protocol), carried end to end; none if absent. A store
   * with dedup uses it as the page's content hash (a wrong one only stops that page from being shared: sharing
   * always compares the bytes).
   */
  sum?: number;
  /** The identity putting the page: in a shared pool it becomes the object's last putter. Ignored elsewhere. */
  putter?: string;
}

/** A copy of a stored page with its metadata. */
export interface StoredPage {
  /** The page bytes; the copy owns its whole ArrayBuffer. */
  page: Uint8Array<ArrayBuffer>;
  /** The version it was put with (0 if none was given). */
  version: number;
  /** The checksum it was put with, or undefined if it was put without one. */
  sum: number | undefined;
}

/** Outcome of a put. Refused is an answer, not an error: the caller keeps the page elsewhere. */
export type PutResult = { status: 'accepted' } | { status: 'refused'; reason: 'full' | 'capped' };

/** Counters and gauges of a store; reading them is O(1). */
export interface StoreStats {
  /** Configured capacity, in bytes. */
  capacityBytes: number;
  /**
   * Bytes charged for the pages held: pageSize per raw page, its slot size per compressed page,
   * PAGE_META_BYTES per same-filled page; a shared (dedup) slot once, and PAGE_META_BYTES per further page on it.
   */
  usedBytes: number;
  /**
   * Bytes charged for records beside the pages: RECORD_BYTES per page and objectCharge(oid length) per object.
   * usedBytes + recordBytes never exceeds capacityBytes (nor, for one owner, its quota's maxBytes).
   */
  recordBytes: number;
  /** Pools that exist. */
  pools: number;
  /** Pages held in ephemeral pools. */
  ephemeralPages: number;
  /** Pages held in persistent pools. */
  persistentPages: number;
  /** Valid puts (accepted + refused). */
  puts: number;
  /** Puts that stored their page. */
  acceptedPuts: number;
  /** Puts refused for lack of room. */
  refusedPuts: number;
  /** Puts to a handle that already held a page (the old page is removed first, accepted or not). */
  duplicatePuts: number;
  /** Valid gets (hits + misses). */
  gets: number;
  /** Gets that returned a page. */
  hits: number;
  /** Gets that found nothing. */
  misses: number;
  /** Flush page, flush object and destroy pool calls (one each, whatever they removed). */
  flushes: number;
  /** Ephemeral pages evicted to make room for puts. */
  evictions: number;
  /** Pages held compressed. */
  compressedPages: number;
  /** pageSize per compressed page: what they hold as written. */
  compressedPageBytes: number;
  /** The compressed lengths of those pages. */
  compressedBytes: number;
  /** The slot sizes of those pages: what they are charged and occupy. */
  compressedSlotBytes: number;
  /** Accepted puts to compressed pools stored raw, compression not saving a size class. */
  incompressiblePuts: number;
  /**
   * Compressed copies that could not be decompressed, each time one was read (get, read or peek): such a copy
   * is returned as a page whose checksum cannot match, so every reader drops it as corrupt.
   */
  corruptCompressedReads: number;
  /** Shared slots (dedup entries) held, whatever their reference counts; 0 without dedup. */
  dedupSlots: number;
  /** Pages held that share another page's slot: the references of every shared slot beyond its first. */
  dedupedPages: number;
  /** Capacity those pages save: per page, its slot size less the PAGE_META_BYTES it is charged instead. */
  dedupSavedBytes: number;
  /** Accepted puts that shared an existing slot. */
  dedupHits: number;
  /** Puts whose content hash found a slot of other contents (bytes differ): stored in a slot of their own. */
  dedupCollisions: number;
}

/** The pages of one memory node. Every method is synchronous and applies completely or not at all. */
export interface PageStore {
  /**
   * Creates a pool. Throws BAD_PAGE_SIZE for a page size that is not a power of two in range, BAD_ARGUMENT for an
   * id that is not a u32 or already exists, a kind that is not ephemeral/persistent, or an owner that is not a
   * string.
   */
  createPool(spec: PoolSpec): void;
  /** The pool's spec (frozen), or undefined if it does not exist. */
  getPool(id: number): PoolSpec | undefined;
  /** Removes a pool and all its pages; false if there was no such pool. */
  destroyPool(id: number): boolean;
  /**
   * Stores a copy of `page` under (pool, oid, index). A page already there is removed first, even if this put
   * is then refused: a refused put never leaves older data readable. Makes room by evicting ephemeral pages, only
   * as many as needed: the owner's own while it is over its quota, then the least recently used page of the
   * owner charged most; persistent pages are never evicted. Refused 'capped' past the owner's quota, 'full' past
   * the capacity, evicting nothing. `meta` is stored with
   * the page (version 0 and no checksum when absent) and replaces the old page's. Throws UNKNOWN_POOL,
   * BAD_PAGE_SIZE (length differs from the pool's page size) or BAD_ARGUMENT (including a version that is not a
   * safe integer >= 0 or a sum that is not a u32), changing nothing.
   */
  put(pool: number, oid: Uint8Array, index: number, page: Uint8Array, meta?: PageMeta): PutResult;
  /**
   * A fresh copy of the page, or null on a miss. A get from a private ephemeral pool removes the page
   * (exclusive get: the caller now holds the only copy); a persistent page stays, and so does a shared pool's,
   * which becomes the most recently used. The copy owns its whole ArrayBuffer, so it can
   * be sent or transferred as is. Throws UNKNOWN_POOL or BAD_ARGUMENT.
   */
  get(pool: number, oid: Uint8Array, index: number): Uint8Array<ArrayBuffer> | null;
  /**
   * Removes every object of the shared pool `pool` whose last put came from `identity` (the departure of a
   * sharer) and returns how many pages went. Counts no flush: no client asked for it. Throws UNKNOWN_POOL;
   * BAD_ARGUMENT for a pool that is not shared.
   */
  flushObjectsPutBy(pool: number, identity: string): number;
  /**
   * Exactly get (same counters, same exclusive-get removal), returning the page's version and checksum too.
   * With `arena`, the copy is taken from it (page-arena.ts: valid until the arena's next reset, not a whole
   * ArrayBuffer of its own) rather than freshly allocated.
   */
  read(pool: number, oid: Uint8Array, index: number, arena?: PageArena): StoredPage | null;
  /**
   * A copy of the page with its metadata, or null, changing nothing: no counters, no LRU move, and an ephemeral
   * page stays (this is the node copying a page to a peer, not a client taking it). Throws UNKNOWN_POOL or
   * BAD_ARGUMENT.
   */
  peek(pool: number, oid: Uint8Array, index: number): StoredPage | null;
  /** The version of the page held, or -1 if there is none; counts nothing. Throws UNKNOWN_POOL or BAD_ARGUMENT. */
  versionOf(pool: number, oid: Uint8Array, index: number): number;
  /** Removes one page; true if there was one. Throws UNKNOWN_POOL or BAD_ARGUMENT. */
  flushPage(pool: number, oid: Uint8Array, index: number): boolean;
  /**
   * Removes one page like flushPage but without counting a flush: the node dropping a corrupt copy or one it no
   * longer owns is not a client's flush. True if there was one. Throws UNKNOWN_POOL or BAD_ARGUMENT.
   */
  discard(pool: number, oid: Uint8Array, index: number): boolean;
  /**
   * Removes every page of (pool, oid), or with `olderThan` only those whose version is below it, in time
   * proportional to the object's pages; returns how many. Counts one flush either way. Throws UNKNOWN_POOL, or
   * BAD_ARGUMENT for a bad oid or an `olderThan` that is not a safe integer >= 0.
   */
  flushObject(pool: number, oid: Uint8Array, olderThan?: number): number;
  /**
   * Removes every page for which `predicate(pool, partitionHash)` is true (used when partitions move away) and
   * returns how many. The hash is `partitionHash(pool, oid, index)`, computed at put time. Scans every page.
   * The predicate must not call back into the store (that throws INTERNAL); if it throws, the pages matched
   * before stay removed.
   */
  removePages(predicate: (pool: PoolSpec, hash: number) => boolean): number;
  /**
   * The handles of every page for which `predicate(pool, partitionHash)` is true (used to copy partitions to
   * other nodes), as a snapshot: later changes to the store do not change the list. Scans every page, counts
   * nothing, and has the same predicate rules as removePages. Handles of one object share one oid array, so
   * treat the oids as read-only.
   */
  handlesWhere(predicate: (pool: PoolSpec, hash: number) => boolean): PageHandle[];
  /**
   * The indexes of the pages (pool, oid) holds, in time proportional to their number (flush object on a
   * replicated pool flushes each page with its own version). Throws UNKNOWN_POOL or BAD_ARGUMENT.
   */
  objectIndexes(pool: number, oid: Uint8Array): number[];
  /** A snapshot of the counters. */
  stats(): StoreStats;
  /**
   * A snapshot of the counters of one owner identity's pools (owner-counters.ts): the same counters as stats()
   * but capacityBytes, counting only its pools, pages and ops; evictions are counted against the owner of the
   * evicted page. All zero for an owner without pools (its counters are dropped with its last pool). O(1).
   */
  ownerStats(owner: string): OwnerCounters;
  /** The owners that have pools on this store. */
  owners(): string[];
  /** Bytes the store holds in memory, by kind (for the node's memory report); O(number of page sizes). */
  memory(): StoreMemory;
  /** Releases the spare slabs that stayed unused for `spareSlabIdleMs`; returns the bytes released. */
  releaseIdleSlabs(): number;
}

/** What a store holds in memory. */
export interface StoreMemory {
  /** Slab memory: page slots, used or free, of every page size. */
  slabBytes: number;
  /** Free slots within those slabs, in bytes (slab memory held for pages not stored). */
  freeSlotBytes: number;
  /** Emptied slabs kept mapped for reuse (spare-slabs.ts), not counted in slabBytes. */
  spareSlabBytes: number;
  /** Page and object records and the handle table: the typed arrays, at their allocated sizes. */
  metadataBytes: number;
}

/** "No record", in links and lookups alike: the handle table's miss value, so its answers need no mapping. */
const NIL = NO_RECORD;
/** Record flags. */
const LIVE = 1;
const PERSISTENT = 2;
const SAME_FILLED = 4;
/** rSum holds a checksum (a sum of 0 is a valid CRC, so presence needs its own bit). */
const HAS_SUM = 8;
/** The slot holds rPacked bytes of compressed page, in the slab class of slotSizeFor(pageSize, rPacked). */
const COMPRESSED = 16;
/** rSlot is a shared-slot entry of the dedup index, which holds the slot ref and the reference count. */
const DEDUP = 32;

const INITIAL_RECORDS = 1024;
const REFUSED_FULL: PutResult = Object.freeze({ status: 'refused', reason: 'full' });
const REFUSED_CAPPED: PutResult = Object.freeze({ status: 'refused', reason: 'capped' });
const ACCEPTED: PutResult = Object.freeze({ status: 'accepted' });
const POOL_KINDS: ReadonlySet<string> = new Set<PoolKind>(['ephemeral', 'persistent']);

interface PoolState {
  readonly spec: PoolSpec;
  readonly persistent: boolean;
  /** A shared pool (PoolSpec.shared): gets leave the page, and each object remembers its last putter. */
  readonly shared: boolean;
  /** oid key (latin1 string of the oid bytes) -> object number. */
  readonly objects: Map<string, number>;
  /** The slab class of raw pages. */
  readonly slab: SlabAllocator;
  /** The pool's codec, if its pages are compressed. */
  readonly codec: PageCodec | undefined;
  /** Longest compressed length kept compressed (maxCompressedBytes of the page size). */
  readonly maxPacked: number;
  /** The owner's counters, shared by all its pools: incremented beside the global ones, with no lookup. */
  readonly owned: OwnerCounters;
  /** The owner's eviction state, shared by all its pools like `owned`. */
  readonly account: OwnerAccount;
  /**
   * Pools that may share slots have the same scope: one per (owner, page size, compression), so a page is only
   * ever shared within one identity and one stored form. -1: this pool's pages are never shared.
   */
  readonly dedupScope: number;
}

/**
 * One owner's ephemeral pages, for eviction: each owner has its own LRU list, so a quota evicts only the
 * owner's pages, and capacity eviction takes from the owner charged most (see evictOne).
 */
interface OwnerAccount {
  /** Least and most recently used of the owner's ephemeral pages (NIL when it has none). */
  lruHead: number;
  lruTail: number;
  /** Bytes charged for the owner's ephemeral pages and objects: what evicting all of them frees. */
  ephemeralCharge: number;
}

/** The byte every position of `page` holds, or -1 if they differ. */
function fillByteOf(page: Uint8Array): number {
  const first = page[0] as number;
  const n = page.length;
  // Most pages differ early; only pages that look same-filled pay for a full scan.
  if (page[1] !== first || page[n - 1] !== first || page[n >>> 1] !== first) return -1;
  let i = 0;
  if ((page.byteOffset & 3) === 0) {
    // Four bytes at a time; endianness does not matter since all four bytes of the pattern are equal.
    const words = new Int32Array(page.buffer, page.byteOffset, n >>> 2);
    const pattern = Math.imul(first, 0x01010101);
    for (let w = 0; w < words.length; w++) if (words[w] !== pattern) return -1;
    i = words.length * 4;
  }
  for (; i < n; i++) if (page[i] !== first) return -1;
  return first;
}

/** Throws BAD_ARGUMENT unless `value` can be a version: a safe integer >= 0 (`name` says which argument). */
function checkVersion(value: unknown, name: string): void {
  if (!Number.isSafeInteger(value) || (value as number) < 0) {
    throw new TmemError(ErrorCode.BadArgument, `${name} must be a safe integer >= 0`, {
      details: { [name]: value },
    });
  }
}

/** Creates an empty page store. Throws BAD_ARGUMENT for a capacity that is not an integer 0..MAX_CAPACITY_BYTES. */
export function createPageStore(options: PageStoreOptions): PageStore {
  const capacityBytes = options.capacityBytes;
  if (!Number.isSafeInteger(capacityBytes) || capacityBytes < 0 || capacityBytes > MAX_CAPACITY_BYTES) {
    throw new TmemError(ErrorCode.BadArgument, `capacityBytes must be an integer 0..${MAX_CAPACITY_BYTES}`, {
      details: { capacityBytes, max: MAX_CAPACITY_BYTES },
    });
  }
  const dedupOn = options.dedup === true;
  if (dedupOn && capacityBytes > MAX_DEDUP_CAPACITY_BYTES) {
    throw new TmemError(
      ErrorCode.BadArgument,
      `capacityBytes with dedup must be at most ${MAX_DEDUP_CAPACITY_BYTES}; run more nodes for more memory`,
      { details: { capacityBytes, max: MAX_DEDUP_CAPACITY_BYTES } },
    );
  }
  const slabBytes = options.slabBytes ?? DEFAULT_SLAB_BYTES;
  if (!Number.isSafeInteger(slabBytes) || slabBytes <= 0) {
    throw new TmemError(ErrorCode.BadArgument, 'slabBytes must be a positive integer', {
      details: { slabBytes },
    });
  }

  const spares = createSpareSlabs({
    maxBytes:
      options.spareSlabMaxBytes ?? Math.min(Math.floor(capacityBytes / 4), DEFAULT_SPARE_SLAB_MAX_BYTES),
    idleMs: options.spareSlabIdleMs ?? DEFAULT_SPARE_SLAB_IDLE_MS,
  });

  const minRecords = options.minRecords ?? INITIAL_RECORDS;
  if (!Number.isSafeInteger(minRecords) || minRecords < 1 || minRecords > 2 ** 30) {
    throw new TmemError(ErrorCode.BadArgument, 'minRecords must be an integer 1..2^30', {
      details: { minRecords },
    });
  }

  const codecs = options.codecs ?? PAGE_CODECS;
  const { maxBytes: quotaBytes = Infinity, maxPages: quotaPages = Infinity } = options.ownerQuota ?? {};
  for (const [name, value] of [
    ['maxBytes', quotaBytes],
    ['maxPages', quotaPages],
  ] as const) {
    if (value !== Infinity && (!Number.isSafeInteger(value) || value < 0)) {
      throw new TmemError(ErrorCode.BadArgument, `ownerQuota.${name} must be an integer >= 0`, {
        details: { [name]: value },
      });
    }
  }
  const quotaOn = quotaBytes !== Infinity || quotaPages !== Infinity;
  /** Eviction state of every owner with pools, in the order they came (evictOne breaks ties by it). */
  const accounts = new Map<string, OwnerAccount>();
  const counters: StoreStats = zeroStoreCounters(capacityBytes);
  const ownerCounters = createOwnerCounterTable();
  /** A checksum no page of each size can match: what an undecodable compressed copy is returned with. */
  const unmatchableSums = new Map<number, number>();
  /** Bytes charged for ephemeral pages: how much eviction could free at most. */
  let ephemeralBytes = 0;

  const pools = new Map<number, PoolState>();
  const slabClasses = new Map<number, SlabAllocator>();
  const dedup = createPageDedup();

  // ---- page records (struct of arrays) ----
  let recordCapacity = minRecords;
  let recordHighWater = 0; // records [0, highWater) have been used at least once
  let freeRecord = NIL; // free list linked through rNext
  let rObject = new Int32Array(recordCapacity);
  let rIndex = new Uint32Array(recordCapacity);
  let rHash = new Uint32Array(recordCapacity);
  /** Slot ref in the pool's slab class, or the fill byte of a SAME_FILLED page. */
  let rSlot = new Uint32Array(recordCapacity);
  let rFlags = new Uint8Array(recordCapacity);
  /** LRU links (ephemeral pages only); rNext also links free records. */
  let rPrev = new Int32Array(recordCapacity);
  let rNext = new Int32Array(recordCapacity);
  /** Links in the object's page list. */
  let rObjPrev = new Int32Array(recordCapacity);
  let rObjNext = new Int32Array(recordCapacity);
  /** Version of the page: a double, since versions are safe integers that may pass 2^32. */
  let rVersion = new Float64Array(recordCapacity);
  /** CRC-32C of the page when HAS_SUM is set. */
  let rSum = new Uint32Array(recordCapacity);
  /** Compressed length when COMPRESSED is set (below 64 KiB: only lengths that save a size class are kept). */
  let rPacked = new Uint16Array(recordCapacity);

  // ---- objects: one per (pool, oid) holding pages ----
  let objectCapacity = INITIAL_RECORDS;
  let objectHighWater = 0;
  let freeObject = NIL; // free list linked through oHead
  let oPool = new Uint32Array(objectCapacity);
  let oHead = new Int32Array(objectCapacity);
  let oCount = new Int32Array(objectCapacity);
  const oKey: string[] = [];
  /** Objects of shared pools: the identity that put to the object last (PageMeta.putter); else undefined. */
  const oPutter: (string | undefined)[] = [];

  const table = createHandleTable({
    objectOf: (record) => rObject[record] as number,
    indexOf: (record) => rIndex[record] as number,
  });

  /** Set while a scan predicate runs, so a re-entrant call fails loudly instead of corrupting a scan. */
  let scanning = false;

  /** Ends an op that may have removed pages: `value` is its result, returned after the arrays may shrink. */
  function settled<T>(value: T): T {
    shrinkRecords();
    return value;
  }

  function enter(): void {
    if (scanning) {
      throw new TmemError(ErrorCode.Internal, 'the page store was called from a scan predicate');
    }
  }

  function slabClassFor(pageSize: number): SlabAllocator {
    let slab = slabClasses.get(pageSize);
    if (slab === undefined) {
      slab = createSlabAllocator({
        slotSize: pageSize,
        slabBytes,
        spares,
        // Compaction moved a page: its record (or its shared slot's entry) follows it.
        onMove: (owner, to) => {
          if (dedupOn && owner >= DEDUP_OWNER_BASE) dedup.setSlot(owner - DEDUP_OWNER_BASE, to);
          else rSlot[owner] = to;
        },
      });
      slabClasses.set(pageSize, slab);
    }
    return slab;
  }

  function requirePool(id: number): PoolState {
    const pool = pools.get(id);
    if (pool === undefined) {
      throw new UnknownPoolError(`pool ${String(id)} does not exist; create it first`, {
        details: { pool: id },
      });
    }
    return pool;
  }

  // ---- record and object allocation ----

  /** A free record number; may grow the arrays (and throw RangeError if memory runs out, changing nothing). */
  function newRecord(): number {
    if (freeRecord !== NIL) {
      const record = freeRecord;
      freeRecord = rNext[record] as number;
      return record;
    }
    if (recordHighWater === recordCapacity) {
      const n = recordCapacity * 2;
      // Build every array before assigning any, so a failed allocation leaves the store as it was.
      const next = [
        grown(rObject, n),
        grown(rIndex, n),
        grown(rHash, n),
        grown(rSlot, n),
        grown(rFlags, n),
        grown(rPrev, n),
        grown(rNext, n),
        grown(rObjPrev, n),
        grown(rObjNext, n),
        grown(rVersion, n),
        grown(rSum, n),
        grown(rPacked, n),
      ] as const;
      [rObject, rIndex, rHash, rSlot, rFlags, rPrev, rNext, rObjPrev, rObjNext, rVersion, rSum, rPacked] =
        next;
      recordCapacity = n;
    }
    return recordHighWater++;
  }

  function releaseRecord(record: number): void {
    rFlags[record] = 0;
    rNext[record] = freeRecord;
    freeRecord = record;
  }

  /** Gives live record `from` the free number `to`, rewriting every reference to it. */
  function moveRecord(from: number, to: number): void {
    const flags = rFlags[from] as number;
    const object = rObject[from] as number;
    rObject[to] = object;
    rIndex[to] = rIndex[from] as number;
    rHash[to] = rHash[from] as number;
    rSlot[to] = rSlot[from] as number;
    rFlags[to] = flags;
    rVersion[to] = rVersion[from] as number;
    rSum[to] = rSum[from] as number;
    rPacked[to] = rPacked[from] as number;
    const prev = (rPrev[to] = rPrev[from] as number);
    const next = (rNext[to] = rNext[from] as number);
    if (!(flags & PERSISTENT)) {
      const account = poolOfRecord(to).account;
      if (prev === NIL) account.lruHead = to;
      else rNext[prev] = to;
      if (next === NIL) account.lruTail = to;
      else rPrev[next] = to;
    }
    const objPrev = (rObjPrev[to] = rObjPrev[from] as number);
    const objNext = (rObjNext[to] = rObjNext[from] as number);
    if (objPrev === NIL) oHead[object] = to;
    else rObjNext[objPrev] = to;
    if (objNext !== NIL) rObjPrev[objNext] = to;
    table.renumber(from, to);
    // A shared slot belongs to its entry, which does not know its records: only a record's own slot follows it.
    if (!(flags & (SAME_FILLED | DEDUP))) slabOfRecord(to, poolOfRecord(to)).setOwner(rSlot[to], to);
    rFlags[from] = 0;
  }

  /**
   * Halves the record arrays when at most a quarter of them is live, so metadata memory returns after mass
   * flushes and evictions: the live records of the upper half move into free numbers of the lower half (there
   * are enough: at most a quarter is live), then the free list is rebuilt and the arrays are cut. Halving at a
   * quarter (not at a half) is hysteresis, so an add/remove pair at the boundary does not copy the arrays every
   * time; the work is O(capacity), paid for by the quarter-capacity of removals since the last resize. Runs only
   * between ops, never inside one: removals in the middle of an op (scans, object walks) hold record numbers.
   */
  function shrinkRecords(): void {
    if (scanning) return;
    const live = counters.ephemeralPages + counters.persistentPages;
    // Halve until the condition no longer holds (a mass flush may free far more than half): geometric, O(capacity).
    while (recordCapacity > minRecords && live * 4 <= recordCapacity) {
      if (!halveRecords()) return;
    }
  }

  /** One halving of shrinkRecords; false if the smaller arrays could not be allocated. */
  function halveRecords(): boolean {
    const half = Math.max(minRecords, recordCapacity / 2);
    if (recordHighWater > half) {
      let to = 0;
      for (let from = half; from < recordHighWater; from++) {
        if (!((rFlags[from] as number) & LIVE)) continue;
        while ((rFlags[to] as number) & LIVE) to++;
        moveRecord(from, to);
      }
      recordHighWater = half;
    }
    freeRecord = NIL;
    for (let record = recordHighWater - 1; record >= 0; record--) {
      if (!((rFlags[record] as number) & LIVE)) releaseRecord(record);
    }
    try {
      const next = [
        rObject.slice(0, half),
        rIndex.slice(0, half),
        rHash.slice(0, half),
        rSlot.slice(0, half),
        rFlags.slice(0, half),
        rPrev.slice(0, half),
        rNext.slice(0, half),
        rObjPrev.slice(0, half),
        rObjNext.slice(0, half),
        rVersion.slice(0, half),
        rSum.slice(0, half),
        rPacked.slice(0, half),
      ] as const;
      [rObject, rIndex, rHash, rSlot, rFlags, rPrev, rNext, rObjPrev, rObjNext, rVersion, rSum, rPacked] =
        next;
      recordCapacity = half;
      return true;
    } catch (error) {
      // Shrinking only saves memory: if even the smaller arrays cannot be had, keep the current ones (the
      // records already fit below `half`, which is consistent with any capacity above it).
      if (!(error instanceof RangeError)) throw error;
      return false;
    }
  }

  function newObject(pool: PoolState, key: string): number {
    let object: number;
    if (freeObject !== NIL) {
      object = freeObject;
      freeObject = oHead[object] as number;
    } else {
      if (objectHighWater === objectCapacity) {
        const n = objectCapacity * 2;
        const next = [grown(oPool, n), grown(oHead, n), grown(oCount, n)] as const;
        [oPool, oHead, oCount] = next;
        objectCapacity = n;
      }
      object = objectHighWater++;
    }
    oPool[object] = pool.spec.id;
    oHead[object] = NIL;
    oCount[object] = 0;
    oKey[object] = key;
    pool.objects.set(key, object);
    chargeRecords(pool, objectCharge(key.length));
    return object;
  }

  /** Frees an object with no pages left. */
  function releaseObject(pool: PoolState, object: number): void {
    const key = oKey[object] as string;
    pool.objects.delete(key);
    chargeRecords(pool, -objectCharge(key.length));
    oKey[object] = ''; // drop the string so the oid's memory can be collected
    oPutter[object] = undefined;
    oHead[object] = freeObject;
    freeObject = object;
  }

  // ---- LRU ----

  function lruAppend(record: number, account: OwnerAccount): void {
    rPrev[record] = account.lruTail;
    rNext[record] = NIL;
    if (account.lruTail === NIL) account.lruHead = record;
    else rNext[account.lruTail] = record;
    account.lruTail = record;
  }

  function lruUnlink(record: number, account: OwnerAccount): void {
    const prev = rPrev[record] as number;
    const next = rNext[record] as number;
    if (prev === NIL) account.lruHead = next;
    else rNext[prev] = next;
    if (next === NIL) account.lruTail = prev;
    else rPrev[next] = prev;
  }

  /** Charges (or with a negative `bytes`, credits) records of `pool`: node, owner, and what eviction may free. */
  function chargeRecords(pool: PoolState, bytes: number): void {
    counters.recordBytes += bytes;
    pool.owned.recordBytes += bytes;
    if (!pool.persistent) chargeEphemeral(pool, bytes);
  }

  /** Counts `bytes` of `pool`'s ephemeral charge (page or records) as evictable: node-wide and for its owner. */
  function chargeEphemeral(pool: PoolState, bytes: number): void {
    ephemeralBytes += bytes;
    pool.account.ephemeralCharge += bytes;
  }

  // ---- pages ----

  function costOf(record: number, pool: PoolState): number {
    const flags = rFlags[record] as number;
    if (flags & SAME_FILLED) return PAGE_META_BYTES;
    if (flags & COMPRESSED) return slotSizeFor(pool.spec.pageSize, rPacked[record] as number);
    return pool.spec.pageSize;
  }

  /** The slab class holding a slotted record's bytes. */
  function slabOfRecord(record: number, pool: PoolState): SlabAllocator {
    return (rFlags[record] as number) & COMPRESSED ? slabClassFor(costOf(record, pool)) : pool.slab;
  }

  /** Counts a compressed page of `pool` in (+1) or out (-1) of the compression stats. */
  function countCompressed(sign: 1 | -1, pool: PoolState, packed: number, slotSize: number): void {
    const pageSize = pool.spec.pageSize;
    const owned = pool.owned;
    counters.compressedPages += sign;
    counters.compressedPageBytes += sign * pageSize;
    counters.compressedBytes += sign * packed;
    counters.compressedSlotBytes += sign * slotSize;
    owned.compressedPages += sign;
    owned.compressedPageBytes += sign * pageSize;
    owned.compressedBytes += sign * packed;
    owned.compressedSlotBytes += sign * slotSize;
  }

  /** Counts a page sharing a slot of `slotSize` in (+1) or out (-1) of the dedup stats. */
  function countDeduped(sign: 1 | -1, owned: OwnerCounters, slotSize: number): void {
    counters.dedupedPages += sign;
    counters.dedupSavedBytes += sign * (slotSize - PAGE_META_BYTES);
    owned.dedupedPages += sign;
    owned.dedupSavedBytes += sign * (slotSize - PAGE_META_BYTES);
  }

  /** The slot ref of a slotted record: its own, or its shared slot's. */
  function slotOfRecord(record: number): number {
    const slot = rSlot[record] as number;
    return (rFlags[record] as number) & DEDUP ? dedup.slotOf(slot) : slot;
  }

  function lookup(pool: PoolState, key: string, index: number): number {
    const object = pool.objects.get(key);
    return object === undefined ? NIL : table.get(object, index);
  }

  /**
   * Removes a live page of `pool` and frees everything it held. A page on a shared slot frees only its
   * PAGE_META_BYTES while other pages still share the slot; the last one frees the slot.
   */
  function removeRecord(record: number, pool: PoolState): void {
    const flags = rFlags[record] as number;
    const entry = flags & DEDUP ? (rSlot[record] as number) : NO_ENTRY;
    const sharedOn = entry !== NO_ENTRY && dedup.refsOf(entry) > 1;
    const cost = sharedOn ? PAGE_META_BYTES : costOf(record, pool);
    const owned = pool.owned;
    if (sharedOn) countDeduped(-1, owned, costOf(record, pool));
    if (flags & PERSISTENT) {
      counters.persistentPages--;
      owned.persistentPages--;
    } else {
      lruUnlink(record, pool.account);
      counters.ephemeralPages--;
      owned.ephemeralPages--;
      chargeEphemeral(pool, -cost);
    }
    counters.usedBytes -= cost;
    owned.usedBytes -= cost;
    chargeRecords(pool, -RECORD_BYTES);
    if (flags & COMPRESSED && !sharedOn) countCompressed(-1, pool, rPacked[record] as number, cost);

    const object = rObject[record] as number;
    table.remove(object, rIndex[record] as number);
    const prev = rObjPrev[record] as number;
    const next = rObjNext[record] as number;
    if (prev === NIL) oHead[object] = next;
    else rObjNext[prev] = next;
    if (next !== NIL) rObjPrev[next] = prev;
    const left = (oCount[object] as number) - 1;
    oCount[object] = left;
    if (left === 0) releaseObject(pool, object);

    // Last: freeing a slot may compact the slab class, which moves other pages and rewrites their rSlot.
    if (entry !== NO_ENTRY) {
      const slot = dedup.slotOf(entry);
      if (dedup.release(entry) === 0) {
        slabOfRecord(record, pool).free(slot);
        owned.dedupSlots--;
      }
    } else if (!(flags & SAME_FILLED)) {
      slabOfRecord(record, pool).free(rSlot[record] as number);
    }
    releaseRecord(record);
  }

  function poolOfRecord(record: number): PoolState {
    return pools.get(oPool[rObject[record] as number] as number) as PoolState;
  }

  /**
   * What a put of a page charged `charge` (its bytes and RECORD_BYTES) into (pool, key) still needs: the
   * object's charge too while the object does not exist. Evictions may remove the object, so ask again after each.
   */
  function putNeed(charge: number, pool: PoolState, key: string): number {
    return pool.objects.has(key) ? charge : charge + objectCharge(key.length);
  }

  /**
   * Why a put of a page charged `charge` (its bytes and RECORD_BYTES) into (pool, key) cannot be stored even
   * after evicting every page it may evict: the owner's quota ('capped') or the node's capacity ('full'); null if
   * it can. Evicting an ephemeral pool's pages may remove the object as well, so that worst case counts its charge.
   */
  function refusal(charge: number, pool: PoolState, key: string): PutResult | null {
    const owned = pool.owned;
    const worst = pool.persistent ? putNeed(charge, pool, key) : charge + objectCharge(key.length);
    if (quotaOn) {
      const ownFixed = owned.usedBytes + owned.recordBytes - pool.account.ephemeralCharge;
      if (ownFixed + worst > quotaBytes || owned.persistentPages + 1 > quotaPages) return REFUSED_CAPPED;
    }
    if (capacityBytes - counters.usedBytes - counters.recordBytes + ephemeralBytes < worst)
      return REFUSED_FULL;
    return null;
  }

  /**
   * Evicts ephemeral pages until a put of `charge` into (pool, key), of which `precharged` bytes are charged
   * already, fits: the owner's own pages while it is over its quota, then anyone's (evictOne) while the node is
   * over capacity. Call it only when refusal() said the put fits: then it always ends with room.
   */
  function evictFor(charge: number, pool: PoolState, key: string, precharged: number): void {
    const account = pool.account;
    const owned = pool.owned;
    if (quotaOn) {
      while (
        (owned.usedBytes + owned.recordBytes + putNeed(charge, pool, key) - precharged > quotaBytes ||
          owned.ephemeralPages + owned.persistentPages + 1 > quotaPages) &&
        account.lruHead !== NIL
      ) {
        evict(account.lruHead);
      }
    }
    for (;;) {
      const need = putNeed(charge, pool, key) - precharged;
      if (counters.usedBytes + counters.recordBytes + need <= capacityBytes) return;
      if (!evictOne(pool.persistent ? null : account, need)) return;
    }
  }

  /**
   * Evicts one ephemeral page to make room: the least recently used page of the owner charged most for
   * ephemeral pages (counting the page being put, `pending` bytes of `putter`, as if it were stored), so a heavy
   * owner cannot push a light one out: the owners' ephemeral shares tend to equal. Ties go to the owner that
   * came first. False if no page may be evicted.
   */
  function evictOne(putter: OwnerAccount | null, pending: number): boolean {
    let victim: OwnerAccount | null = null;
    let most = -1;
    for (const account of accounts.values()) {
      if (account.lruHead === NIL) continue;
      const charge = account.ephemeralCharge + (account === putter ? pending : 0);
      if (charge > most) {
        most = charge;
        victim = account;
      }
    }
    if (victim === null) return false;
    evict(victim.lruHead);
    return true;
  }

  /** Evicts one ephemeral page, counted against its owner. */
  function evict(record: number): void {
    const pool = poolOfRecord(record);
    removeRecord(record, pool);
    counters.evictions++;
    pool.owned.evictions++;
  }

  function checkPage(pool: PoolState, page: Uint8Array): void {
    if (!(page instanceof Uint8Array)) {
      throw new TmemError(ErrorCode.BadArgument, 'page must be a Uint8Array');
    }
    if (page.length !== pool.spec.pageSize) {
      throw new BadPageSizeError(
        `page is ${page.length} bytes but pool ${pool.spec.id} has ${pool.spec.pageSize}-byte pages`,
        { details: { pool: pool.spec.id, length: page.length, pageSize: pool.spec.pageSize } },
      );
    }
  }

  /** Checks put's metadata; returns the version (default 0). */
  function checkMeta(meta: PageMeta | undefined): number {
    if (meta === undefined) return 0;
    if (typeof meta !== 'object' || meta === null) {
      throw new TmemError(ErrorCode.BadArgument, 'page meta must be an object');
    }
    const { version = 0, sum } = meta;
    checkVersion(version, 'version');
    if (sum !== undefined && !isU32(sum)) {
      throw new TmemError(ErrorCode.BadArgument, 'sum must be a u32 (a CRC-32C)', { details: { sum } });
    }
    return version;
  }

  /** The record of (pool, oid, index), or NIL, after checking the oid and index (BAD_ARGUMENT). */
  function findRecord(pool: PoolState, oid: Uint8Array, index: number): number {
    const oidBytes = toOidBytes(oid);
    checkIndex(index);
    return lookup(pool, oidKey(oidBytes), index);
  }

  /** A copy of a live record's page and metadata, in `arena` if given (decompressed pages are fresh anyway). */
  function copyOut(record: number, pool: PoolState, arena?: PageArena): StoredPage {
    const flags = rFlags[record] as number;
    const version = rVersion[record] as number;
    const sum = flags & HAS_SUM ? rSum[record] : undefined;
    const pageSize = pool.spec.pageSize;
    if (flags & SAME_FILLED) {
      const page = arena === undefined ? new Uint8Array(pageSize) : arena.take(pageSize);
      return { page: page.fill(rSlot[record] as number), version, sum };
    }
    if (!(flags & COMPRESSED)) {
      const slot = slotOfRecord(record);
      if (arena === undefined) return { page: pool.slab.read(slot), version, sum };
      const page = arena.take(pageSize);
      page.set(pool.slab.view(slot, pageSize));
      return { page, version, sum };
    }
    const packed = slabOfRecord(record, pool).view(slotOfRecord(record), rPacked[record] as number);
    const page = (pool.codec as PageCodec).decompress(packed, pool.spec.pageSize);
    if (page !== null) return { page, version, sum };
    // Undecodable: returned as a page that fails its checksum, so the one corrupt-copy path of each reader
    // (drop and repair from another copy, or a miss for an ephemeral page) handles it like any other.
    counters.corruptCompressedReads++;
    pool.owned.corruptCompressedReads++;
    return { page: new Uint8Array(pool.spec.pageSize), version, sum: unmatchableSum(pool.spec.pageSize) };
  }

  function unmatchableSum(pageSize: number): number {
    let sum = unmatchableSums.get(pageSize);
    if (sum === undefined) {
      sum = (pageChecksum(new Uint8Array(pageSize)) ^ 1) >>> 0;
      unmatchableSums.set(pageSize, sum);
    }
    return sum;
  }

  /** Removes the pages of `object` whose version is below `olderThan`, walking only that object's list. */
  function removeOlder(pool: PoolState, object: number, olderThan: number): number {
    let removed = 0;
    let record = oHead[object] as number;
    // Take the next link before removing: removal rewrites the neighbours' links but not this record's next.
    // If the last page goes, the object is freed, and by then every page was removed, so next is NIL.
    while (record !== NIL) {
      const next = rObjNext[record] as number;
      if ((rVersion[record] as number) < olderThan) {
        removeRecord(record, pool);
        removed++;
      }
      record = next;
    }
    return removed;
  }

  /** Calls `visit` for every live record that `predicate` matches, with the re-entrancy guard up meanwhile. */
  function scan(
    predicate: (pool: PoolSpec, hash: number) => boolean,
    visit: (record: number, pool: PoolState) => void,
  ): void {
    enter();
    for (let record = 0; record < recordHighWater; record++) {
      if (!((rFlags[record] as number) & LIVE)) continue;
      const pool = poolOfRecord(record);
      let match: boolean;
      scanning = true;
      try {
        match = predicate(pool.spec, rHash[record] as number);
      } finally {
        scanning = false;
      }
      // A removed record is only reused by a later put, never during this scan.
      if (match) visit(record, pool);
    }
  }

  /** PageStore.read; a named function so get can wrap it without depending on `this`. */
  function read(poolId: number, oid: Uint8Array, index: number, arena?: PageArena): StoredPage | null {
    enter();
    const pool = requirePool(poolId);
    const record = findRecord(pool, oid, index);
    const owned = pool.owned;
    counters.gets++;
    owned.gets++;
    if (record === NIL) {
      counters.misses++;
      owned.misses++;
      return null;
    }
    counters.hits++;
    owned.hits++;
    const stored = copyOut(record, pool, arena);
    // Exclusive get from a private ephemeral pool: the caller takes the only copy. A shared pool's page stays
    // for the other sharers, and the hit makes it the most recently used of its owner's LRU list.
    if (pool.shared) {
      lruUnlink(record, pool.account);
      lruAppend(record, pool.account);
    } else if (!pool.persistent) {
      removeRecord(record, pool);
    }
    return settled(stored);
  }

  function removeObject(pool: PoolState, object: number): number {
    // Removing the last page frees the object, so count first and never touch `object` after that.
    const n = oCount[object] as number;
    for (let i = 0; i < n; i++) removeRecord(oHead[object] as number, pool);
    return n;
  }

  return {
    createPool(spec) {
      enter();
      if (typeof spec !== 'object' || spec === null) {
        throw new TmemError(ErrorCode.BadArgument, 'pool spec must be an object');
      }
      const { id, kind, pageSize, owner } = spec;
      if (!isU32(id)) {
        throw new TmemError(ErrorCode.BadArgument, 'pool id must be a u32', { details: { pool: id } });
      }
      if (!POOL_KINDS.has(kind)) {
        throw new TmemError(ErrorCode.BadArgument, 'pool kind must be "ephemeral" or "persistent"', {
          details: { kind },
        });
      }
      if (typeof owner !== 'string') {
        throw new TmemError(ErrorCode.BadArgument, 'pool owner must be a string');
      }
      if (spec.shared === true && kind !== 'ephemeral') {
        throw new TmemError(ErrorCode.BadArgument, 'only ephemeral pools can be shared', {
          details: { kind },
        });
      }
      const { compression } = spec;
      if (compression !== undefined && !isCompression(compression)) {
        throw new TmemError(ErrorCode.BadArgument, 'pool compression must be "lz4" or absent', {
          details: { compression },
        });
      }
      if (!isValidPageSize(pageSize)) {
        throw new BadPageSizeError('page size must be a power of two from 512 to 65536 bytes', {
          details: { pageSize },
        });
      }
      if (pools.has(id)) {
        throw new TmemError(ErrorCode.BadArgument, `pool ${id} already exists; pick another id`, {
          details: { pool: id },
        });
      }
      const owned = ownerCounters.attachPool(owner);
      let account = accounts.get(owner);
      if (account === undefined) {
        account = { lruHead: NIL, lruTail: NIL, ephemeralCharge: 0 };
        accounts.set(owner, account);
      }
      pools.set(id, {
        spec: Object.freeze({
          id,
          kind,
          pageSize,
          owner,
          ...(compression ? { compression } : {}),
          ...(spec.shared === true ? { shared: true } : {}),
        }),
        persistent: kind === 'persistent',
        shared: spec.shared === true,
        objects: new Map(),
        slab: slabClassFor(pageSize),
        codec: compression === undefined ? undefined : codecs[compression],
        maxPacked: maxCompressedBytes(pageSize),
        owned,
        account,
        dedupScope: dedupOn && kind === 'ephemeral' ? dedup.scopeOf(owner, pageSize, compression) : -1,
      });
      counters.pools = pools.size;
    },

    getPool(id) {
      return pools.get(id)?.spec;
    },

    destroyPool(id) {
      enter();
      const pool = pools.get(id);
      if (pool === undefined) return false;
      counters.flushes++;
      pool.owned.flushes++;
      // Deleting the current entry while iterating a Map is safe in JS.
      for (const object of pool.objects.values()) removeObject(pool, object);
      pools.delete(id);
      counters.pools = pools.size;
      // Last: with the owner's last pool its counters go, and every page of it was removed above.
      ownerCounters.detachPool(pool.spec.owner);
      if (pool.owned.pools === 0) accounts.delete(pool.spec.owner);
      return settled(true);
    },

    put(poolId, oid, index, page, meta) {
      enter();
      const pool = requirePool(poolId);
      const oidBytes = toOidBytes(oid);
      checkIndex(index);
      checkPage(pool, page);
      const version = checkMeta(meta);
      const sum = meta?.sum;
      const key = oidKey(oidBytes);
      const owned = pool.owned;
      counters.puts++;
      owned.puts++;

      // Put-put-get coherency: the old page goes first, so a refusal below cannot leave it readable.
      const existing = lookup(pool, key, index);
      if (existing !== NIL) {
        counters.duplicatePuts++;
        owned.duplicatePuts++;
        removeRecord(existing, pool);
      }

      const fill = fillByteOf(page);
      // Same-filled pages stay metadata only; others are compressed when that saves a size class, and go to the
      // slab class of their compressed length. A slotted page costs its slot.
      let packed: Uint8Array | undefined;
      if (fill < 0 && pool.codec !== undefined && !looksIncompressible(page)) {
        const compressed = pool.codec.compress(page);
        if (compressed.length <= pool.maxPacked) packed = compressed;
      }
      const slab =
        packed === undefined ? pool.slab : slabClassFor(slotSizeFor(pool.spec.pageSize, packed.length));
      const stored = packed ?? page;

      // Dedup (ephemeral pools of a dedup store): share the slot of identical contents in this scope if there
      // is one; else this page's slot becomes a shared slot others may find (unless its hash collided).
      const dedupHash = fill < 0 && pool.dedupScope >= 0 ? (sum ?? pageChecksum(page)) : -1;
      const shared =
        dedupHash < 0
          ? NO_ENTRY
          : dedup.findIdentical(pool.dedupScope, dedupHash, stored, packed?.length ?? 0, slab);
      if (shared === COLLIDED) {
        counters.dedupCollisions++;
        owned.dedupCollisions++;
      }
      const cost = fill >= 0 ? PAGE_META_BYTES : shared >= 0 ? PAGE_META_BYTES : slab.slotSize;
      // A page sharing a slot fits in the worst case only if it fits holding the slot alone (evicting may take
      // every other page on it).
      const refused = refusal((shared >= 0 ? slab.slotSize : cost) + RECORD_BYTES, pool, key);
      if (refused !== null) {
        counters.refusedPuts++;
        owned.refusedPuts++;
        return settled(refused);
      }
      if (shared >= 0) {
        // Charged and referenced before any eviction, so evicting the slot's other pages can never free it:
        // whatever the slot's other pages, the slot stays with this one.
        dedup.retain(shared);
        counters.usedBytes += cost;
        owned.usedBytes += cost;
        chargeEphemeral(pool, cost);
        countDeduped(1, owned, slab.slotSize);
        evictFor(cost + RECORD_BYTES, pool, key, cost);
      } else {
        evictFor(cost + RECORD_BYTES, pool, key, 0);
      }

      // Everything that allocates comes first, and is undone if any of it fails: a RangeError here means an
      // ArrayBuffer could not be had, and a refusal is an answer the caller already handles.
      let record = NIL;
      let object = pool.objects.get(key) ?? NIL;
      const objectIsNew = object === NIL;
      let inTable = false;
      let entry = shared >= 0 ? shared : NO_ENTRY;
      let slot: number;
      try {
        record = newRecord();
        if (objectIsNew) object = newObject(pool, key);
        rObject[record] = object;
        rIndex[record] = index;
        table.insert(record);
        inTable = true;
        if (fill >= 0) {
          slot = fill;
        } else if (shared >= 0) {
          slot = shared;
        } else if (shared === NO_ENTRY && dedupHash >= 0) {
          entry = dedup.add(pool.dedupScope, dedupHash, packed?.length ?? 0);
          dedup.setSlot(entry, slab.alloc(DEDUP_OWNER_BASE + entry));
          slot = entry;
        } else {
          slot = slab.alloc(record);
        }
      } catch (error) {
        if (inTable) table.remove(object, index);
        if (objectIsNew && object !== NIL) releaseObject(pool, object);
        if (record !== NIL) releaseRecord(record);
        // A shared slot loses the reference taken above, as if its page were removed (if its other pages were
        // evicted meanwhile, this was the last one and frees the slot); a new entry whose slot could not be had
        // goes again, having been charged nothing.
        if (shared >= 0) {
          const last = dedup.refsOf(shared) === 1;
          const freed = last ? slab.slotSize : PAGE_META_BYTES;
          counters.usedBytes -= freed;
          owned.usedBytes -= freed;
          chargeEphemeral(pool, -freed);
          if (!last) countDeduped(-1, owned, slab.slotSize);
          else if (packed !== undefined) countCompressed(-1, pool, packed.length, freed);
          const entrySlot = dedup.slotOf(shared);
          if (dedup.release(shared) === 0) {
            slab.free(entrySlot);
            owned.dedupSlots--;
          }
        } else if (entry !== NO_ENTRY) {
          dedup.release(entry);
        }
        if (!(error instanceof RangeError)) throw error;
        counters.refusedPuts++;
        owned.refusedPuts++;
        return settled(REFUSED_FULL);
      }
      if (fill < 0 && shared < 0) slab.write(entry === NO_ENTRY ? slot : dedup.slotOf(entry), stored);
      // A new shared slot is its owner's from here on (the global count is the index's size).
      if (shared < 0 && entry !== NO_ENTRY) owned.dedupSlots++;

      rHash[record] = partitionHash(pool.spec.id, oidBytes, index);
      rSlot[record] = slot;
      rVersion[record] = version;
      rSum[record] = sum ?? 0;
      rPacked[record] = packed?.length ?? 0;
      rFlags[record] =
        LIVE |
        (pool.persistent ? PERSISTENT : 0) |
        (fill >= 0 ? SAME_FILLED : 0) |
        (sum !== undefined ? HAS_SUM : 0) |
        (packed !== undefined ? COMPRESSED : 0) |
        (entry !== NO_ENTRY ? DEDUP : 0);
      const head = oHead[object] as number;
      rObjPrev[record] = NIL;
      rObjNext[record] = head;
      if (head !== NIL) rObjPrev[head] = record;
      oHead[object] = record;
      oCount[object] = (oCount[object] as number) + 1;

      // A page on a shared slot was charged when it took its reference; compression counts slots, not pages.
      if (shared >= 0) {
        counters.dedupHits++;
        owned.dedupHits++;
      } else {
        counters.usedBytes += cost;
        owned.usedBytes += cost;
      }
      chargeRecords(pool, RECORD_BYTES);
      if (packed !== undefined && shared < 0) countCompressed(1, pool, packed.length, cost);
      if (packed === undefined && fill < 0 && pool.codec !== undefined) {
        counters.incompressiblePuts++;
        owned.incompressiblePuts++;
      }
      if (pool.persistent) {
        counters.persistentPages++;
        owned.persistentPages++;
      } else {
        counters.ephemeralPages++;
        owned.ephemeralPages++;
        if (shared < 0) chargeEphemeral(pool, cost);
        lruAppend(record, pool.account); // most recently used
        // Who touched the object last decides whose departure flushes it (flushObjectsPutBy).
        if (pool.shared) oPutter[object] = meta?.putter;
      }
      counters.acceptedPuts++;
      owned.acceptedPuts++;
      return settled(ACCEPTED);
    },

    get(poolId, oid, index) {
      return read(poolId, oid, index)?.page ?? null;
    },

    flushObjectsPutBy(poolId, identity) {
      enter();
      const pool = requirePool(poolId);
      if (!pool.shared) {
        throw new TmemError(ErrorCode.BadArgument, `pool ${poolId} is not shared`, {
          details: { pool: poolId },
        });
      }
      let removed = 0;
      // Deleting the current entry while iterating a Map is safe in JS.
      for (const object of pool.objects.values()) {
        if (oPutter[object] === identity) removed += removeObject(pool, object);
      }
      return settled(removed);
    },

    read,

    peek(poolId, oid, index) {
      enter();
      const pool = requirePool(poolId);
      const record = findRecord(pool, oid, index);
      return record === NIL ? null : copyOut(record, pool);
    },

    versionOf(poolId, oid, index) {
      enter();
      const record = findRecord(requirePool(poolId), oid, index);
      return record === NIL ? -1 : (rVersion[record] as number);
    },

    flushPage(poolId, oid, index) {
      enter();
      const pool = requirePool(poolId);
      const record = findRecord(pool, oid, index);
      counters.flushes++;
      pool.owned.flushes++;
      if (record === NIL) return false;
      removeRecord(record, pool);
      return settled(true);
    },

    discard(poolId, oid, index) {
      enter();
      const pool = requirePool(poolId);
      const record = findRecord(pool, oid, index);
      if (record === NIL) return false;
      removeRecord(record, pool);
      return settled(true);
    },

    flushObject(poolId, oid, olderThan) {
      enter();
      const pool = requirePool(poolId);
      const oidBytes = toOidBytes(oid);
      if (olderThan !== undefined) checkVersion(olderThan, 'olderThan');
      counters.flushes++;
      pool.owned.flushes++;
      const object = pool.objects.get(oidKey(oidBytes));
      if (object === undefined) return 0;
      return settled(
        olderThan === undefined ? removeObject(pool, object) : removeOlder(pool, object, olderThan),
      );
    },

    removePages(predicate) {
      let removed = 0;
      scan(predicate, (record, pool) => {
        removeRecord(record, pool);
        removed++;
      });
      return settled(removed);
    },

    objectIndexes(poolId, oid) {
      enter();
      const pool = requirePool(poolId);
      const object = pool.objects.get(oidKey(toOidBytes(oid)));
      const indexes: number[] = [];
      if (object === undefined) return indexes;
      for (let record = oHead[object] as number; record !== NIL; record = rObjNext[record] as number) {
        indexes.push(rIndex[record] as number);
      }
      return indexes;
    },

    handlesWhere(predicate) {
      const handles: PageHandle[] = [];
      // One oid per object, built on first use: a large object would otherwise cost one copy per page.
      const oids = new Map<number, Uint8Array>();
      scan(predicate, (record) => {
        const object = rObject[record] as number;
        let oid = oids.get(object);
        if (oid === undefined) {
          oid = oidFromKey(oKey[object] as string);
          oids.set(object, oid);
        }
        handles.push({ pool: oPool[object] as number, oid, index: rIndex[record] as number });
      });
      return handles;
    },

    stats() {
      counters.dedupSlots = dedup.size;
      return { ...counters };
    },

    ownerStats(owner) {
      return ownerCounters.snapshot(owner);
    },

    owners() {
      return ownerCounters.owners();
    },

    memory() {
      let slab = 0;
      let free = 0;
      for (const allocator of slabClasses.values()) {
        slab += allocator.slabBytes;
        free += allocator.freeSlots * allocator.slotSize;
      }
      const records = [
        rObject,
        rIndex,
        rHash,
        rSlot,
        rFlags,
        rPrev,
        rNext,
        rObjPrev,
        rObjNext,
        rVersion,
        rSum,
        rPacked,
      ];
      let metadata = table.capacity * Int32Array.BYTES_PER_ELEMENT + dedup.memoryBytes();
      for (const a of [...records, oPool, oHead, oCount]) metadata += a.byteLength;
      return {
        slabBytes: slab,
        freeSlotBytes: free,
        spareSlabBytes: spares.heldBytes,
        metadataBytes: metadata,
      };
    },

    releaseIdleSlabs() {
      return spares.releaseIdle();
    },
  };
}
