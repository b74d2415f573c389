import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
  BadPageSizeError,
  MAX_OID_BYTES,
  TmemError,
  U32_MAX,
  UnknownPoolError,
  pageChecksum,
  partitionHash,
} from '@tmem/protocol';
import type { PoolKind } from '@tmem/protocol';
import {
  createPageStore,
  MAX_CAPACITY_BYTES,
  objectCharge,
  PAGE_META_BYTES,
  RECORD_BYTES,
} from '../src/page-store.ts';
import type { PageMeta, PageStore, PoolSpec, StoredPage, StoreStats } from '../src/page-store.ts';
import { zeroOwnerCounters, type OwnerCounters } from '../src/owner-counters.ts';

const utf8 = new TextEncoder();
const oid = (s: string): Uint8Array => utf8.encode(s);

/** A page that is not same-filled and differs for every seed. */
function page(size: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 7 + seed) & 0xff;
  new DataView(bytes.buffer).setUint32(0, seed);
  return bytes;
}

function filled(size: number, byte: number): Uint8Array {
  return new Uint8Array(size).fill(byte);
}

/** The error code `fn` throws, or undefined if it returns. */
function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    return error instanceof TmemError ? error.code : `not a TmemError: ${String(error)}`;
  }
  return undefined;
}

const EPH = 1;
const PERS = 2;
const EPH_1K = 3;
const PERS_1K = 4;

/** A store with one pool of each kind in 512 B and 1 KiB pages. */
function storeWithPools(capacityBytes: number, slabBytes?: number): PageStore {
  const store = createPageStore(slabBytes === undefined ? { capacityBytes } : { capacityBytes, slabBytes });
  store.createPool({ id: EPH, kind: 'ephemeral', pageSize: 512, owner: 'alice' });
  store.createPool({ id: PERS, kind: 'persistent', pageSize: 512, owner: 'alice' });
  store.createPool({ id: EPH_1K, kind: 'ephemeral', pageSize: 1024, owner: 'bob' });
  store.createPool({ id: PERS_1K, kind: 'persistent', pageSize: 1024, owner: 'bob' });
  return store;
}

const PAGE = 512;
/** What one PAGE-byte page is charged: its bytes and its record. */
const SLOT = PAGE + RECORD_BYTES;
/** What one object with a one-byte oid (every oid('x') here) is charged. */
const OBJ = objectCharge(1);
const kinds: { kind: PoolKind; pool: number }[] = [
  { kind: 'ephemeral', pool: EPH },
  { kind: 'persistent', pool: PERS },
];

describe('createPageStore', () => {
  it('rejects a capacity that is not an integer in range', () => {
    for (const capacityBytes of [-1, 1.5, Number.NaN, Infinity, MAX_CAPACITY_BYTES + 1]) {
      expect(codeOf(() => createPageStore({ capacityBytes }))).toBe('BAD_ARGUMENT');
    }
    expect(codeOf(() => createPageStore({ capacityBytes: 1024, slabBytes: 0 }))).toBe('BAD_ARGUMENT');
  });

  it('starts empty', () => {
    const stats = createPageStore({ capacityBytes: 4096 }).stats();
    expect(stats).toEqual({
      capacityBytes: 4096,
      usedBytes: 0,
      recordBytes: 0,
      pools: 0,
      ephemeralPages: 0,
      persistentPages: 0,
      puts: 0,
      acceptedPuts: 0,
      refusedPuts: 0,
      duplicatePuts: 0,
      gets: 0,
      hits: 0,
      misses: 0,
      flushes: 0,
      evictions: 0,
      compressedPages: 0,
      compressedPageBytes: 0,
      compressedBytes: 0,
      compressedSlotBytes: 0,
      incompressiblePuts: 0,
      corruptCompressedReads: 0,
      dedupSlots: 0,
      dedupedPages: 0,
      dedupSavedBytes: 0,
      dedupHits: 0,
      dedupCollisions: 0,
    });
  });
});

describe('pools', () => {
  it('creates pools and returns their spec', () => {
    const store = createPageStore({ capacityBytes: 4096 });
    const spec: PoolSpec = { id: 7, kind: 'persistent', pageSize: 4096, owner: 'carol' };
    store.createPool(spec);
    expect(store.getPool(7)).toEqual(spec);
    expect(store.getPool(8)).toBeUndefined();
    expect(store.stats().pools).toBe(1);
  });

  it('keeps its own frozen copy of the spec', () => {
    const store = createPageStore({ capacityBytes: 4096 });
    const spec: PoolSpec = { id: 7, kind: 'ephemeral', pageSize: 512, owner: 'carol' };
    store.createPool(spec);
    spec.pageSize = 1024;
    const kept = store.getPool(7) as PoolSpec;
    expect(kept.pageSize).toBe(512);
    expect(Object.isFrozen(kept)).toBe(true);
  });

  it('rejects invalid page sizes with BAD_PAGE_SIZE and creates nothing', () => {
    const store = createPageStore({ capacityBytes: 4096 });
    for (const pageSize of [0, 256, 511, 1000, 3 * 512, 128 * 1024, 4096.5, Number.NaN]) {
      expect(() => store.createPool({ id: 1, kind: 'ephemeral', pageSize, owner: 'a' })).toThrow(
        BadPageSizeError,
      );
    }
    expect(store.getPool(1)).toBeUndefined();
    expect(store.stats().pools).toBe(0);
  });

  it('accepts every power of two from 512 B to 64 KiB', () => {
    const store = createPageStore({ capacityBytes: 1 << 20 });
    for (let pageSize = 512, id = 0; pageSize <= 65536; pageSize *= 2, id++) {
      store.createPool({ id, kind: 'persistent', pageSize, owner: 'a' });
      expect(store.put(id, oid('x'), 0, page(pageSize, id))).toEqual({ status: 'accepted' });
      expect(store.get(id, oid('x'), 0)).toEqual(page(pageSize, id));
    }
  });

  it('rejects an id that exists with BAD_ARGUMENT and keeps the existing pool and its pages', () => {
    const store = storeWithPools(8192);
    store.put(PERS, oid('a'), 0, page(PAGE, 1));
    expect(
      codeOf(() => store.createPool({ id: PERS, kind: 'ephemeral', pageSize: 1024, owner: 'eve' })),
    ).toBe('BAD_ARGUMENT');
    expect(store.getPool(PERS)).toEqual({ id: PERS, kind: 'persistent', pageSize: 512, owner: 'alice' });
    expect(store.get(PERS, oid('a'), 0)).toEqual(page(PAGE, 1));
  });

  it('rejects bad ids, kinds and owners with BAD_ARGUMENT', () => {
    const store = createPageStore({ capacityBytes: 4096 });
    for (const id of [-1, 1.5, U32_MAX + 1, Number.NaN]) {
      expect(codeOf(() => store.createPool({ id, kind: 'ephemeral', pageSize: 512, owner: 'a' }))).toBe(
        'BAD_ARGUMENT',
      );
    }
    const badKind = { id: 1, kind: 'shared' as PoolKind, pageSize: 512, owner: 'a' };
    expect(codeOf(() => store.createPool(badKind))).toBe('BAD_ARGUMENT');
    const badOwner = { id: 1, kind: 'ephemeral' as PoolKind, pageSize: 512, owner: 5 as unknown as string };
    expect(codeOf(() => store.createPool(badOwner))).toBe('BAD_ARGUMENT');
    expect(store.stats().pools).toBe(0);
  });

  it('accepts pool id 0 and U32_MAX', () => {
    const store = createPageStore({ capacityBytes: 4096 });
    store.createPool({ id: 0, kind: 'ephemeral', pageSize: 512, owner: 'a' });
    store.createPool({ id: U32_MAX, kind: 'ephemeral', pageSize: 512, owner: 'a' });
    expect(store.put(U32_MAX, oid('x'), 0, page(PAGE, 1)).status).toBe('accepted');
    expect(store.get(0, oid('x'), 0)).toBeNull();
    expect(store.get(U32_MAX, oid('x'), 0)).toEqual(page(PAGE, 1));
  });
});

describe.each(kinds)('put and get in a $kind pool', ({ kind, pool }) => {
  it('returns what was put', () => {
    const store = storeWithPools(8192);
    expect(store.put(pool, oid('file'), 3, page(PAGE, 42))).toEqual({ status: 'accepted' });
    expect(store.get(pool, oid('file'), 3)).toEqual(page(PAGE, 42));
    const stats = store.stats();
    expect(stats.usedBytes).toBe(kind === 'persistent' ? PAGE : 0);
    expect([stats.puts, stats.acceptedPuts, stats.gets, stats.hits, stats.misses]).toEqual([1, 1, 1, 1, 0]);
  });

  it('copies the page in: later changes to the caller buffer do not reach the store', () => {
    const store = storeWithPools(8192);
    const buffer = page(PAGE, 5);
    store.put(pool, oid('f'), 0, buffer);
    buffer.fill(0xee);
    expect(store.get(pool, oid('f'), 0)).toEqual(page(PAGE, 5));
  });

  it('copies the page in from a view at any offset of a larger frame', () => {
    const store = storeWithPools(8192);
    const frame = new Uint8Array(PAGE + 10);
    frame.set(page(PAGE, 9), 3);
    store.put(pool, oid('f'), 0, frame.subarray(3, 3 + PAGE));
    frame.fill(0);
    expect(store.get(pool, oid('f'), 0)).toEqual(page(PAGE, 9));
  });

  it('copies the page out: the result owns its memory', () => {
    const store = storeWithPools(8192);
    store.put(pool, oid('f'), 0, page(PAGE, 5));
    store.put(pool, oid('f'), 1, page(PAGE, 6));
    const got = store.get(pool, oid('f'), 0) as Uint8Array;
    expect(got.byteOffset).toBe(0);
    expect(got.buffer.byteLength).toBe(PAGE);
    got.fill(1);
    expect(store.get(pool, oid('f'), 1)).toEqual(page(PAGE, 6));
    if (kind === 'persistent') expect(store.get(pool, oid('f'), 0)).toEqual(page(PAGE, 5));
  });

  it('keeps handles apart: pool, oid and index each name a different page', () => {
    const store = storeWithPools(16384);
    const other = pool === EPH ? PERS : EPH;
    store.put(pool, oid('a'), 0, page(PAGE, 1));
    store.put(pool, oid('a'), 1, page(PAGE, 2));
    store.put(pool, oid('b'), 0, page(PAGE, 3));
    store.put(pool, new Uint8Array([0x61, 0]), 0, page(PAGE, 4));
    store.put(other, oid('a'), 0, page(PAGE, 5));
    expect(store.get(pool, oid('a'), 0)).toEqual(page(PAGE, 1));
    expect(store.get(pool, oid('a'), 1)).toEqual(page(PAGE, 2));
    expect(store.get(pool, oid('b'), 0)).toEqual(page(PAGE, 3));
    expect(store.get(pool, new Uint8Array([0x61, 0]), 0)).toEqual(page(PAGE, 4));
    expect(store.get(other, oid('a'), 0)).toEqual(page(PAGE, 5));
  });

  it('accepts the extreme indexes and oids: 0, U32_MAX, one byte, MAX_OID_BYTES of any value', () => {
    const store = storeWithPools(16384);
    const longOid = new Uint8Array(MAX_OID_BYTES).map((_, i) => (i * 37) & 0xff);
    store.put(pool, new Uint8Array([0xff]), U32_MAX, page(PAGE, 1));
    store.put(pool, longOid, 0, page(PAGE, 2));
    expect(store.get(pool, new Uint8Array([0xff]), U32_MAX)).toEqual(page(PAGE, 1));
    expect(store.get(pool, new Uint8Array([0xff]), U32_MAX - 1)).toBeNull();
    expect(store.get(pool, longOid, 0)).toEqual(page(PAGE, 2));
  });

  it('misses on a handle never put, and a miss stays a miss until the handle is put again', () => {
    const store = storeWithPools(8192);
    expect(store.get(pool, oid('f'), 0)).toBeNull();
    store.put(pool, oid('f'), 1, page(PAGE, 1));
    store.put(pool, oid('g'), 0, page(PAGE, 2));
    for (let i = 0; i < 3; i++) expect(store.get(pool, oid('f'), 0)).toBeNull();
    store.put(pool, oid('f'), 0, page(PAGE, 3));
    expect(store.get(pool, oid('f'), 0)).toEqual(page(PAGE, 3));
    const stats = store.stats();
    expect([stats.gets, stats.hits, stats.misses]).toEqual([5, 1, 4]);
  });

  it('put-put-get: a second put replaces the first and counts as a duplicate', () => {
    const store = storeWithPools(8192);
    store.put(pool, oid('f'), 0, page(PAGE, 1));
    expect(store.put(pool, oid('f'), 0, page(PAGE, 2))).toEqual({ status: 'accepted' });
    const stats = store.stats();
    expect(stats.duplicatePuts).toBe(1);
    expect(stats.usedBytes).toBe(PAGE);
    expect(stats.ephemeralPages + stats.persistentPages).toBe(1);
    expect(store.get(pool, oid('f'), 0)).toEqual(page(PAGE, 2));
  });

  it('put-put-get: a refused duplicate put removes the old page too', () => {
    // Full of persistent pages, with the handle holding a cheap same-filled page: replacing it by a full page
    // needs more room than removing it frees, and nothing can be evicted.
    const store = storeWithPools(2 * SLOT + OBJ + PAGE_META_BYTES + RECORD_BYTES + OBJ);
    store.put(PERS, oid('p'), 0, page(PAGE, 1));
    store.put(PERS, oid('p'), 1, page(PAGE, 2));
    expect(store.put(pool, oid('f'), 0, filled(PAGE, 0))).toEqual({ status: 'accepted' });
    expect(store.stats().usedBytes + store.stats().recordBytes).toBe(store.stats().capacityBytes);
    expect(store.put(pool, oid('f'), 0, page(PAGE, 3))).toEqual({ status: 'refused', reason: 'full' });
    const stats = store.stats();
    expect([stats.duplicatePuts, stats.refusedPuts, stats.evictions]).toEqual([1, 1, 0]);
    expect(stats.usedBytes).toBe(2 * PAGE);
    expect(store.get(pool, oid('f'), 0)).toBeNull();
    expect(store.get(PERS, oid('p'), 0)).toEqual(page(PAGE, 1));
    expect(store.get(PERS, oid('p'), 1)).toEqual(page(PAGE, 2));
  });

  it('flushPage removes the page and reports whether there was one', () => {
    const store = storeWithPools(8192);
    store.put(pool, oid('f'), 0, page(PAGE, 1));
    store.put(pool, oid('f'), 1, page(PAGE, 2));
    expect(store.flushPage(pool, oid('f'), 0)).toBe(true);
    expect(store.flushPage(pool, oid('f'), 0)).toBe(false);
    expect(store.flushPage(pool, oid('nothing'), 0)).toBe(false);
    expect(store.get(pool, oid('f'), 0)).toBeNull();
    expect(store.get(pool, oid('f'), 1)).toEqual(page(PAGE, 2));
    expect(store.stats().flushes).toBe(3);
  });

  it('stores same-filled pages as metadata only and returns them whole', () => {
    const store = storeWithPools(8192);
    store.put(pool, oid('z'), 0, filled(PAGE, 0));
    store.put(pool, oid('z'), 1, filled(PAGE, 0xab));
    expect(store.stats().usedBytes).toBe(2 * PAGE_META_BYTES);
    expect(store.get(pool, oid('z'), 0)).toEqual(filled(PAGE, 0));
    expect(store.get(pool, oid('z'), 1)).toEqual(filled(PAGE, 0xab));
  });
});

describe('exclusive gets', () => {
  it('a get from an ephemeral pool removes the page', () => {
    const store = storeWithPools(8192);
    store.put(EPH, oid('f'), 0, page(PAGE, 1));
    store.put(EPH, oid('f'), 1, filled(PAGE, 0));
    expect(store.get(EPH, oid('f'), 0)).toEqual(page(PAGE, 1));
    expect(store.get(EPH, oid('f'), 1)).toEqual(filled(PAGE, 0));
    expect(store.get(EPH, oid('f'), 0)).toBeNull();
    expect(store.get(EPH, oid('f'), 1)).toBeNull();
    const stats = store.stats();
    expect([stats.usedBytes, stats.ephemeralPages, stats.flushes, stats.evictions]).toEqual([0, 0, 0, 0]);
  });

  it('a get from a persistent pool leaves the page', () => {
    const store = storeWithPools(8192);
    store.put(PERS, oid('f'), 0, page(PAGE, 1));
    for (let i = 0; i < 3; i++) expect(store.get(PERS, oid('f'), 0)).toEqual(page(PAGE, 1));
    expect(store.stats().persistentPages).toBe(1);
    expect(store.stats().usedBytes).toBe(PAGE);
  });
});

describe('same-filled detection', () => {
  it('charges a full page when any single byte differs', () => {
    const store = storeWithPools(1 << 16);
    const positions = [0, 1, 2, 3, 4, 255, 256, 257, 508, 510, 511];
    positions.forEach((at, i) => {
      const almost = filled(PAGE, 0);
      almost[at] = 1;
      store.put(PERS, oid('almost'), i, almost);
    });
    expect(store.stats().usedBytes).toBe(positions.length * PAGE);
    positions.forEach((at, i) => {
      const almost = filled(PAGE, 0);
      almost[at] = 1;
      expect(store.get(PERS, oid('almost'), i)).toEqual(almost);
    });
  });

  it('recognises same-filled pages at any alignment', () => {
    const store = storeWithPools(8192);
    const frame = new Uint8Array(PAGE + 8).fill(0x5a);
    for (let offset = 0; offset < 4; offset++) {
      store.put(PERS, oid('z'), offset, frame.subarray(offset, offset + PAGE));
    }
    expect(store.stats().usedBytes).toBe(4 * PAGE_META_BYTES);
    for (let offset = 0; offset < 4; offset++) {
      expect(store.get(PERS, oid('z'), offset)).toEqual(filled(PAGE, 0x5a));
    }
  });

  it('charges a full page for a near-same-filled page seen through an unaligned view', () => {
    const store = storeWithPools(8192);
    const frame = new Uint8Array(PAGE + 8).fill(7);
    frame[1 + 300] = 8;
    store.put(PERS, oid('z'), 0, frame.subarray(1, 1 + PAGE));
    expect(store.stats().usedBytes).toBe(PAGE);
    expect(store.get(PERS, oid('z'), 0)).toEqual(frame.slice(1, 1 + PAGE));
  });
});

describe('capacity and eviction', () => {
  it('refuses every put when the capacity is zero', () => {
    const store = storeWithPools(0);
    expect(store.put(EPH, oid('f'), 0, page(PAGE, 1))).toEqual({ status: 'refused', reason: 'full' });
    expect(store.put(PERS, oid('f'), 0, filled(PAGE, 0))).toEqual({ status: 'refused', reason: 'full' });
    expect(store.stats().refusedPuts).toBe(2);
    expect(store.stats().usedBytes).toBe(0);
  });

  it('fills exactly to capacity, then refuses persistent puts', () => {
    const store = storeWithPools(3 * SLOT + OBJ);
    for (let i = 0; i < 3; i++) expect(store.put(PERS, oid('f'), i, page(PAGE, i)).status).toBe('accepted');
    expect(store.stats().usedBytes).toBe(3 * PAGE);
    expect(store.put(PERS, oid('f'), 3, page(PAGE, 3))).toEqual({ status: 'refused', reason: 'full' });
    expect(store.put(PERS, oid('f'), 4, filled(PAGE, 0))).toEqual({ status: 'refused', reason: 'full' });
    expect(store.stats().usedBytes).toBe(3 * PAGE);
  });

  it('evicts the least recently used ephemeral page to make room', () => {
    const store = storeWithPools(3 * (SLOT + OBJ));
    for (const name of ['a', 'b', 'c']) store.put(EPH, oid(name), 0, page(PAGE, name.charCodeAt(0)));
    expect(store.put(EPH, oid('d'), 0, page(PAGE, 100)).status).toBe('accepted');
    expect(store.stats().evictions).toBe(1);
    expect(store.get(EPH, oid('a'), 0)).toBeNull();
    expect(store.get(EPH, oid('b'), 0)).toEqual(page(PAGE, 98));
    expect(store.get(EPH, oid('c'), 0)).toEqual(page(PAGE, 99));
    expect(store.get(EPH, oid('d'), 0)).toEqual(page(PAGE, 100));
  });

  it('a put touches a page: rewriting it makes it the most recently used', () => {
    const store = storeWithPools(3 * (SLOT + OBJ));
    for (const name of ['a', 'b', 'c']) store.put(EPH, oid(name), 0, page(PAGE, name.charCodeAt(0)));
    store.put(EPH, oid('a'), 0, page(PAGE, 1));
    store.put(EPH, oid('d'), 0, page(PAGE, 100));
    expect(store.get(EPH, oid('b'), 0)).toBeNull();
    expect(store.get(EPH, oid('a'), 0)).toEqual(page(PAGE, 1));
    expect(store.get(EPH, oid('c'), 0)).toEqual(page(PAGE, 99));
  });

  it("evicts across an owner's pools and page sizes, in one LRU order", () => {
    const store = createPageStore({ capacityBytes: 1024 + RECORD_BYTES + 2 * SLOT + 3 * OBJ });
    store.createPool({ id: EPH, kind: 'ephemeral', pageSize: 512, owner: 'alice' });
    store.createPool({ id: EPH_1K, kind: 'ephemeral', pageSize: 1024, owner: 'alice' });
    store.put(EPH_1K, oid('b'), 0, page(1024, 1));
    store.put(EPH, oid('s'), 0, page(PAGE, 2));
    store.put(EPH, oid('s'), 1, page(PAGE, 3));
    store.put(EPH, oid('n'), 0, page(PAGE, 4));
    expect(store.stats().evictions).toBe(1);
    expect(store.stats().usedBytes).toBe(3 * PAGE);
    expect(store.get(EPH_1K, oid('b'), 0)).toBeNull();
    expect(store.get(EPH, oid('s'), 0)).toEqual(page(PAGE, 2));
  });

  it('evicts from the owner charged most, so a heavy owner cannot push a light one out', () => {
    const store = createPageStore({ capacityBytes: 4 * SLOT + 2 * OBJ });
    store.createPool({ id: EPH, kind: 'ephemeral', pageSize: PAGE, owner: 'alice' });
    store.createPool({ id: 7, kind: 'ephemeral', pageSize: PAGE, owner: 'bob' });
    store.put(7, oid('b'), 0, page(PAGE, 1)); // bob's page is the oldest of all
    for (let i = 0; i < 3; i++) store.put(EPH, oid('a'), i, page(PAGE, 10 + i));
    // Full. Bob's second page is charged to bob, who is lighter: alice's oldest page goes, not bob's.
    expect(store.put(7, oid('b'), 1, page(PAGE, 2)).status).toBe('accepted');
    expect(store.peek(7, oid('b'), 0)?.page).toEqual(page(PAGE, 1));
    expect(store.peek(EPH, oid('a'), 0)).toBeNull();
    // Alice (three pages, the new one counted, against bob's two) is still charged more: she evicts her own.
    expect(store.put(EPH, oid('a'), 3, page(PAGE, 13)).status).toBe('accepted');
    expect(store.peek(EPH, oid('a'), 1)).toBeNull();
    expect(store.peek(EPH, oid('a'), 2)?.page).toEqual(page(PAGE, 12));
    expect([store.ownerStats('alice').evictions, store.ownerStats('bob').evictions]).toEqual([2, 0]);
    expect([store.ownerStats('alice').ephemeralPages, store.ownerStats('bob').ephemeralPages]).toEqual([
      2, 2,
    ]);
  });

  it('evicts no more than needed, even when that takes several pages', () => {
    const store = storeWithPools(4 * SLOT + 2 * OBJ);
    for (let i = 0; i < 4; i++) store.put(EPH, oid('f'), i, page(PAGE, i));
    expect(store.put(EPH_1K, oid('g'), 0, page(1024, 9)).status).toBe('accepted');
    expect(store.stats().evictions).toBe(2);
    expect(store.get(EPH, oid('f'), 0)).toBeNull();
    expect(store.get(EPH, oid('f'), 1)).toBeNull();
    expect(store.get(EPH, oid('f'), 2)).toEqual(page(PAGE, 2));
    expect(store.get(EPH, oid('f'), 3)).toEqual(page(PAGE, 3));
    expect(store.get(EPH_1K, oid('g'), 0)).toEqual(page(1024, 9));
  });

  it('evicts same-filled pages too, one by one until there is room', () => {
    const store = storeWithPools(PAGE + 2 * PAGE_META_BYTES);
    store.put(EPH, oid('z'), 0, filled(PAGE, 0));
    store.put(EPH, oid('z'), 1, filled(PAGE, 0));
    store.put(EPH, oid('x'), 0, page(PAGE, 1));
    expect(store.put(EPH, oid('y'), 0, page(PAGE, 2)).status).toBe('accepted');
    expect(store.stats().evictions).toBe(3);
    expect(store.stats().usedBytes).toBe(PAGE);
    expect(store.get(EPH, oid('y'), 0)).toEqual(page(PAGE, 2));
  });

  it('evicts ephemeral pages for a persistent put, and never evicts persistent pages', () => {
    const store = storeWithPools(3 * SLOT + 2 * OBJ);
    store.put(PERS, oid('p'), 0, page(PAGE, 1));
    store.put(EPH, oid('e'), 0, page(PAGE, 2));
    store.put(PERS, oid('p'), 1, page(PAGE, 3));
    expect(store.put(PERS, oid('p'), 2, page(PAGE, 4)).status).toBe('accepted');
    expect(store.stats().evictions).toBe(1);
    expect(store.put(PERS, oid('p'), 3, page(PAGE, 5))).toEqual({ status: 'refused', reason: 'full' });
    expect(store.put(EPH, oid('e'), 1, page(PAGE, 6))).toEqual({ status: 'refused', reason: 'full' });
    for (let i = 0; i < 3; i++)
      expect(store.get(PERS, oid('p'), i)).toEqual(page(PAGE, [1, 3, 4][i] as number));
    expect(store.get(EPH, oid('e'), 0)).toBeNull();
    const stats = store.stats();
    expect([stats.evictions, stats.refusedPuts, stats.persistentPages]).toEqual([1, 2, 3]);
  });

  it('refuses without evicting anything when even evicting everything would not make room', () => {
    const store = storeWithPools(3 * SLOT + 2 * OBJ);
    store.put(PERS, oid('p'), 0, page(PAGE, 1));
    store.put(PERS, oid('p'), 1, page(PAGE, 2));
    store.put(EPH, oid('e'), 0, page(PAGE, 3));
    expect(store.put(PERS_1K, oid('q'), 0, page(1024, 4))).toEqual({ status: 'refused', reason: 'full' });
    expect(store.put(EPH_1K, oid('q'), 0, page(1024, 5))).toEqual({ status: 'refused', reason: 'full' });
    expect(store.stats().evictions).toBe(0);
    expect(store.get(EPH, oid('e'), 0)).toEqual(page(PAGE, 3));
  });

  it('refuses a page larger than the whole capacity, evicting nothing', () => {
    const store = storeWithPools(SLOT + OBJ + 100);
    store.put(EPH, oid('e'), 0, page(PAGE, 1));
    expect(store.put(EPH_1K, oid('big'), 0, page(1024, 2))).toEqual({ status: 'refused', reason: 'full' });
    expect(store.get(EPH, oid('e'), 0)).toEqual(page(PAGE, 1));
  });

  it('refuses, leaving nothing behind, when memory for a page cannot be allocated', () => {
    // Slabs too large for any ArrayBuffer: every page that needs a slot fails to allocate one.
    const store = storeWithPools(1 << 20, 2 ** 50);
    const refused = { status: 'refused', reason: 'full' };
    expect(store.put(PERS, oid('a'), 0, filled(PAGE, 0)).status).toBe('accepted'); // metadata only
    expect(store.put(PERS, oid('a'), 1, page(PAGE, 1))).toEqual(refused); // object exists
    expect(store.put(PERS, oid('b'), 0, page(PAGE, 2))).toEqual(refused); // object would be new
    expect(store.put(EPH, oid('a'), 0, page(PAGE, 3))).toEqual(refused);
    expect(store.put(PERS, oid('c'), 0, filled(PAGE, 1)).status).toBe('accepted');
    expect(store.put(PERS, oid('c'), 0, page(PAGE, 4))).toEqual(refused); // duplicate: the old page goes too
    const stats = store.stats();
    expect([stats.persistentPages, stats.usedBytes, stats.refusedPuts, stats.duplicatePuts]).toEqual([
      1,
      PAGE_META_BYTES,
      4,
      1,
    ]);
    expect(store.get(PERS, oid('a'), 1)).toBeNull();
    expect(store.get(PERS, oid('b'), 0)).toBeNull();
    expect(store.get(PERS, oid('c'), 0)).toBeNull();
    expect(store.get(PERS, oid('a'), 0)).toEqual(filled(PAGE, 0));
    expect(store.flushObject(PERS, oid('b'))).toBe(0);
    expect(store.put(PERS, oid('b'), 0, filled(PAGE, 2)).status).toBe('accepted');
    expect(store.flushObject(PERS, oid('a'))).toBe(1);
    expect(store.get(PERS, oid('b'), 0)).toEqual(filled(PAGE, 2));
  });

  it('keeps pages intact when slab compaction moves them', () => {
    // Two 512-byte slots per slab: eight pages fill four slabs; freeing one slot in each of them leaves
    // no slab empty, so the fourth flush (two slabs' worth of free slots) must move a page to release a slab.
    const store = storeWithPools(1 << 16, 1024);
    for (let i = 0; i < 8; i++) store.put(PERS, oid('o'), i, page(PAGE, i));
    for (const i of [0, 2, 4, 6]) store.flushPage(PERS, oid('o'), i);
    for (const i of [1, 3, 5, 7]) expect(store.get(PERS, oid('o'), i)).toEqual(page(PAGE, i));
    // Reuse the freed slots and check nobody's bytes were overwritten.
    for (const i of [8, 9, 10, 11]) store.put(PERS, oid('o'), i, page(PAGE, i));
    for (const i of [1, 3, 5, 7, 8, 9, 10, 11]) expect(store.get(PERS, oid('o'), i)).toEqual(page(PAGE, i));
  });

  it('reuses memory through heavy churn across page sizes without losing or mixing pages', () => {
    // Small slabs so that slab release and compaction run constantly.
    const store = storeWithPools(16 * 1024 + 40 * RECORD_BYTES + 2 * OBJ, 2048);
    const live = new Map<string, Uint8Array>();
    let seed = 0;
    for (let round = 0; round < 50; round++) {
      for (let i = 0; i < 8; i++) {
        const [pool, size] = (round + i) % 2 === 0 ? [PERS, 512] : [PERS_1K, 1024];
        const index = (round * 3 + i) % 20;
        const p = page(size, ++seed);
        expect(store.put(pool, oid('o'), index, p).status).toBe('accepted');
        live.set(`${pool}/${index}`, p);
      }
      for (let i = 0; i < 6; i++) {
        const [pool, index] = [(round + i) % 2 === 0 ? PERS_1K : PERS, (round * 5 + i) % 20];
        store.flushPage(pool, oid('o'), index);
        live.delete(`${pool}/${index}`);
      }
      for (const [key, p] of live) {
        const [pool, index] = key.split('/').map(Number) as [number, number];
        expectPage(store.get(pool, oid('o'), index), p);
      }
      expect(store.stats().persistentPages).toBe(live.size);
    }
  });
});

describe('flush object', () => {
  it('removes every page of that object, and nothing else', () => {
    const store = storeWithPools(1 << 20);
    for (let i = 0; i < 20; i++) {
      store.put(PERS, oid('a'), i, page(PAGE, i));
      store.put(PERS, oid('b'), i, page(PAGE, 100 + i));
      store.put(EPH, oid('a'), i, page(PAGE, 200 + i));
    }
    store.put(PERS, oid('a'), U32_MAX, filled(PAGE, 0));
    expect(store.flushObject(PERS, oid('a'))).toBe(21);
    for (let i = 0; i < 20; i++) {
      expect(store.get(PERS, oid('a'), i)).toBeNull();
      expect(store.get(PERS, oid('b'), i)).toEqual(page(PAGE, 100 + i));
      expect(store.get(EPH, oid('a'), i)).toEqual(page(PAGE, 200 + i));
    }
    expect(store.get(PERS, oid('a'), U32_MAX)).toBeNull();
    expect(store.stats().usedBytes).toBe(20 * PAGE);
  });

  it('returns 0 for an object with no pages, and counts one flush per call', () => {
    const store = storeWithPools(8192);
    store.put(EPH, oid('a'), 0, page(PAGE, 1));
    store.put(EPH, oid('a'), 1, page(PAGE, 2));
    expect(store.flushObject(EPH, oid('a'))).toBe(2);
    expect(store.flushObject(EPH, oid('a'))).toBe(0);
    expect(store.flushObject(EPH, oid('never'))).toBe(0);
    expect(store.stats().flushes).toBe(3);
    expect(store.stats().ephemeralPages).toBe(0);
  });

  it('lets the object be written again afterwards', () => {
    const store = storeWithPools(8192);
    store.put(PERS, oid('a'), 0, page(PAGE, 1));
    store.flushObject(PERS, oid('a'));
    store.put(PERS, oid('a'), 0, page(PAGE, 2));
    expect(store.get(PERS, oid('a'), 0)).toEqual(page(PAGE, 2));
  });
});

describe('destroy pool', () => {
  it('removes the pool and all its pages, and leaves other pools alone', () => {
    const store = storeWithPools(1 << 20);
    for (let i = 0; i < 10; i++) {
      store.put(PERS, oid(`o${i % 3}`), i, page(PAGE, i));
      store.put(EPH, oid(`o${i % 3}`), i, page(PAGE, 50 + i));
    }
    store.put(PERS, oid('z'), 0, filled(PAGE, 0));
    expect(store.destroyPool(PERS)).toBe(true);
    const stats = store.stats();
    expect([
      stats.pools,
      stats.persistentPages,
      stats.ephemeralPages,
      stats.usedBytes,
      stats.flushes,
    ]).toEqual([3, 0, 10, 10 * PAGE, 1]);
    expect(store.getPool(PERS)).toBeUndefined();
    for (let i = 0; i < 10; i++) expect(store.get(EPH, oid(`o${i % 3}`), i)).toEqual(page(PAGE, 50 + i));
  });

  it('makes later ops on the pool fail with UNKNOWN_POOL', () => {
    const store = storeWithPools(8192);
    store.put(PERS, oid('a'), 0, page(PAGE, 1));
    store.destroyPool(PERS);
    expect(() => store.get(PERS, oid('a'), 0)).toThrow(UnknownPoolError);
    expect(() => store.put(PERS, oid('a'), 0, page(PAGE, 1))).toThrow(UnknownPoolError);
    expect(() => store.flushPage(PERS, oid('a'), 0)).toThrow(UnknownPoolError);
    expect(() => store.flushObject(PERS, oid('a'))).toThrow(UnknownPoolError);
  });

  it('returns false for an unknown pool and counts nothing', () => {
    const store = storeWithPools(8192);
    expect(store.destroyPool(99)).toBe(false);
    store.destroyPool(EPH);
    expect(store.destroyPool(EPH)).toBe(false);
    expect(store.stats().flushes).toBe(1);
  });

  it('a pool created again with the same id starts empty', () => {
    const store = storeWithPools(8192);
    store.put(PERS, oid('a'), 0, page(PAGE, 1));
    store.destroyPool(PERS);
    store.createPool({ id: PERS, kind: 'persistent', pageSize: 512, owner: 'alice' });
    expect(store.get(PERS, oid('a'), 0)).toBeNull();
  });
});

describe('removePages', () => {
  it('drops exactly the pages whose pool and partition hash match', () => {
    const store = storeWithPools(1 << 20);
    const handles: [number, string, number][] = [];
    for (const pool of [EPH, PERS]) {
      for (const name of ['a', 'b', 'c', 'd']) {
        for (const index of [0, 15, 16, 40, U32_MAX]) {
          store.put(pool, oid(name), index, index === 40 ? filled(PAGE, 0) : page(PAGE, index));
          handles.push([pool, name, index]);
        }
      }
    }
    const matches = (pool: number, hash: number): boolean => pool === PERS || hash % 2 === 0;
    const seen: [number, number][] = [];
    const removed = store.removePages((spec, hash) => {
      seen.push([spec.id, hash]);
      return matches(spec.id, hash);
    });
    expect(seen).toHaveLength(handles.length);
    const expected = handles.filter(([pool, name, index]) =>
      matches(pool, partitionHash(pool, oid(name), index)),
    );
    expect(removed).toBe(expected.length);
    expect(removed).toBeGreaterThan(20);
    expect(removed).toBeLessThan(handles.length);
    for (const [pool, name, index] of handles) {
      const hash = partitionHash(pool, oid(name), index);
      expect(seen).toContainEqual([pool, hash]);
      const got = store.get(pool, oid(name), index);
      if (matches(pool, hash)) expect(got).toBeNull();
      else expect(got).toEqual(index === 40 ? filled(PAGE, 0) : page(PAGE, index));
    }
    const stats = store.stats();
    expect([stats.flushes, stats.evictions]).toEqual([0, 0]);
  });

  it('passes the pool spec to the predicate', () => {
    const store = storeWithPools(8192);
    store.put(EPH_1K, oid('a'), 0, page(1024, 1));
    const specs: PoolSpec[] = [];
    store.removePages((spec) => {
      specs.push(spec);
      return false;
    });
    expect(specs).toEqual([{ id: EPH_1K, kind: 'ephemeral', pageSize: 1024, owner: 'bob' }]);
  });

  it('refuses to be re-entered from the predicate, and stays consistent', () => {
    const store = storeWithPools(8192);
    store.put(PERS, oid('a'), 0, page(PAGE, 1));
    store.put(PERS, oid('a'), 1, page(PAGE, 2));
    let inner: string | undefined;
    const removed = store.removePages(() => {
      inner = codeOf(() => store.put(PERS, oid('b'), 0, page(PAGE, 3)));
      return true;
    });
    expect(inner).toBe('INTERNAL');
    expect(removed).toBe(2);
    expect(store.stats().persistentPages).toBe(0);
    expect(store.put(PERS, oid('b'), 0, page(PAGE, 3)).status).toBe('accepted');
  });
});

describe('bad input changes nothing', () => {
  function populated(): PageStore {
    const store = storeWithPools(8192);
    store.put(PERS, oid('a'), 0, page(PAGE, 1));
    store.put(EPH, oid('a'), 0, page(PAGE, 2));
    return store;
  }

  function expectUnchanged(store: PageStore, before: StoreStats): void {
    expect(store.stats()).toEqual(before);
    expect(store.get(PERS, oid('a'), 0)).toEqual(page(PAGE, 1));
    expect(store.get(EPH, oid('a'), 0)).toEqual(page(PAGE, 2));
  }

  it('unknown pool: UNKNOWN_POOL from put, get, flushPage and flushObject', () => {
    const store = populated();
    const before = store.stats();
    for (const pool of [99, -1, 1.5]) {
      expect(() => store.put(pool, oid('a'), 0, page(PAGE, 1))).toThrow(UnknownPoolError);
      expect(() => store.get(pool, oid('a'), 0)).toThrow(UnknownPoolError);
      expect(() => store.flushPage(pool, oid('a'), 0)).toThrow(UnknownPoolError);
      expect(() => store.flushObject(pool, oid('a'))).toThrow(UnknownPoolError);
      expect(codeOf(() => store.get(pool, oid('a'), 0))).toBe('UNKNOWN_POOL');
    }
    expectUnchanged(store, before);
  });

  it('wrong page length: BAD_PAGE_SIZE, and the page already there stays', () => {
    const store = populated();
    const before = store.stats();
    for (const pool of [PERS, EPH]) {
      for (const length of [0, 1, 511, 513, 1024]) {
        expect(() => store.put(pool, oid('a'), 0, new Uint8Array(length))).toThrow(BadPageSizeError);
      }
    }
    expect(codeOf(() => store.put(PERS_1K, oid('a'), 0, new Uint8Array(512)))).toBe('BAD_PAGE_SIZE');
    expectUnchanged(store, before);
  });

  it('not a Uint8Array: BAD_ARGUMENT', () => {
    const store = populated();
    const before = store.stats();
    const notBytes = new Array<number>(512).fill(0) as unknown as Uint8Array;
    expect(codeOf(() => store.put(PERS, oid('a'), 0, notBytes))).toBe('BAD_ARGUMENT');
    expectUnchanged(store, before);
  });

  it('bad index: BAD_ARGUMENT from put, get and flushPage', () => {
    const store = populated();
    const before = store.stats();
    for (const index of [-1, 1.5, U32_MAX + 1, Number.NaN, Infinity]) {
      for (const pool of [PERS, EPH]) {
        expect(codeOf(() => store.put(pool, oid('a'), index, page(PAGE, 3)))).toBe('BAD_ARGUMENT');
        expect(codeOf(() => store.get(pool, oid('a'), index))).toBe('BAD_ARGUMENT');
        expect(codeOf(() => store.flushPage(pool, oid('a'), index))).toBe('BAD_ARGUMENT');
      }
    }
    expectUnchanged(store, before);
  });

  it('bad oid: BAD_ARGUMENT from put, get, flushPage and flushObject', () => {
    const store = populated();
    const before = store.stats();
    for (const bad of [new Uint8Array(0), new Uint8Array(MAX_OID_BYTES + 1)]) {
      for (const pool of [PERS, EPH]) {
        expect(codeOf(() => store.put(pool, bad, 0, page(PAGE, 3)))).toBe('BAD_ARGUMENT');
        expect(codeOf(() => store.get(pool, bad, 0))).toBe('BAD_ARGUMENT');
        expect(codeOf(() => store.flushPage(pool, bad, 0))).toBe('BAD_ARGUMENT');
        expect(codeOf(() => store.flushObject(pool, bad))).toBe('BAD_ARGUMENT');
      }
    }
    expectUnchanged(store, before);
  });
});

describe('stats', () => {
  it('counts every op, and is a snapshot', () => {
    const store = storeWithPools(2 * SLOT + 2 * OBJ);
    store.put(EPH, oid('a'), 0, page(PAGE, 1)); // accepted
    store.put(EPH, oid('a'), 0, page(PAGE, 2)); // duplicate, accepted
    store.put(PERS, oid('a'), 0, page(PAGE, 3)); // accepted
    store.put(PERS, oid('a'), 1, page(PAGE, 4)); // evicts EPH a/0
    store.put(PERS, oid('a'), 2, page(PAGE, 5)); // refused
    store.get(EPH, oid('a'), 0); // miss
    store.get(PERS, oid('a'), 0); // hit
    store.flushPage(PERS, oid('a'), 9);
    store.flushObject(PERS, oid('a'));
    const stats = store.stats();
    expect(stats).toEqual({
      capacityBytes: 2 * SLOT + 2 * OBJ,
      usedBytes: 0,
      recordBytes: 0,
      pools: 4,
      ephemeralPages: 0,
      persistentPages: 0,
      puts: 5,
      acceptedPuts: 4,
      refusedPuts: 1,
      duplicatePuts: 1,
      gets: 2,
      hits: 1,
      misses: 1,
      flushes: 2,
      evictions: 1,
      compressedPages: 0,
      compressedPageBytes: 0,
      compressedBytes: 0,
      compressedSlotBytes: 0,
      incompressiblePuts: 0,
      corruptCompressedReads: 0,
      dedupSlots: 0,
      dedupedPages: 0,
      dedupSavedBytes: 0,
      dedupHits: 0,
      dedupCollisions: 0,
    });
    stats.puts = 1000;
    expect(store.stats().puts).toBe(5);
  });
});

describe('versions and checksums', () => {
  it('stores the version and sum given at put, and defaults to version 0 and no sum', () => {
    const store = storeWithPools(8192);
    store.put(PERS, oid('a'), 0, page(PAGE, 1), { version: 7, sum: 0xdeadbeef });
    store.put(PERS, oid('a'), 1, page(PAGE, 2));
    store.put(PERS, oid('a'), 2, page(PAGE, 3), { sum: 0 }); // 0 is a checksum, not "none"
    store.put(PERS, oid('a'), 3, page(PAGE, 4), { version: Number.MAX_SAFE_INTEGER });
    expect(store.read(PERS, oid('a'), 0)).toEqual({ page: page(PAGE, 1), version: 7, sum: 0xdeadbeef });
    expect(store.read(PERS, oid('a'), 1)).toEqual({ page: page(PAGE, 2), version: 0, sum: undefined });
    expect(store.read(PERS, oid('a'), 2)).toEqual({ page: page(PAGE, 3), version: 0, sum: 0 });
    expect(store.peek(PERS, oid('a'), 3)).toEqual({
      page: page(PAGE, 4),
      version: Number.MAX_SAFE_INTEGER,
      sum: undefined,
    });
  });

  it('a duplicate put replaces the version and the sum, older or newer', () => {
    const store = storeWithPools(8192);
    store.put(PERS, oid('a'), 0, page(PAGE, 1), { version: 5, sum: 11 });
    store.put(PERS, oid('a'), 0, page(PAGE, 2), { version: 9 });
    expect(store.peek(PERS, oid('a'), 0)).toEqual({ page: page(PAGE, 2), version: 9, sum: undefined });
    store.put(PERS, oid('a'), 0, page(PAGE, 3), { version: 2, sum: 12 });
    expect(store.peek(PERS, oid('a'), 0)).toEqual({ page: page(PAGE, 3), version: 2, sum: 12 });
    store.put(PERS, oid('a'), 0, page(PAGE, 4));
    expect(store.versionOf(PERS, oid('a'), 0)).toBe(0);
    expect(store.stats().duplicatePuts).toBe(3);
  });

  it.each(kinds)('keeps the version and sum of same-filled pages in a $kind pool', ({ pool }) => {
    const store = storeWithPools(8192);
    store.put(pool, oid('z'), 0, filled(PAGE, 0), { version: 3, sum: 0x12345678 });
    store.put(pool, oid('z'), 1, filled(PAGE, 0xab), { version: 2 ** 40 });
    expect(store.stats().usedBytes).toBe(2 * PAGE_META_BYTES);
    expect(store.peek(pool, oid('z'), 0)).toEqual({ page: filled(PAGE, 0), version: 3, sum: 0x12345678 });
    expect(store.versionOf(pool, oid('z'), 1)).toBe(2 ** 40);
    expect(store.read(pool, oid('z'), 1)).toEqual({
      page: filled(PAGE, 0xab),
      version: 2 ** 40,
      sum: undefined,
    });
  });

  it('rejects a bad version or sum with BAD_ARGUMENT and changes nothing, not even the page there', () => {
    const store = storeWithPools(8192);
    store.put(PERS, oid('a'), 0, page(PAGE, 1), { version: 4, sum: 5 });
    const before = store.stats();
    const bad: unknown[] = [
      { version: -1 },
      { version: 1.5 },
      { version: 2 ** 53 },
      { version: Number.NaN },
      { version: '3' },
      { sum: -1 },
      { sum: 2 ** 32 },
      { sum: 0.5 },
      { sum: null },
      null,
      5,
    ];
    for (const meta of bad) {
      expect(codeOf(() => store.put(PERS, oid('a'), 0, page(PAGE, 2), meta as PageMeta))).toBe(
        'BAD_ARGUMENT',
      );
    }
    expect(store.stats()).toEqual(before);
    expect(store.peek(PERS, oid('a'), 0)).toEqual({ page: page(PAGE, 1), version: 4, sum: 5 });
  });

  it('a refused put with meta leaves no version behind', () => {
    const store = storeWithPools(SLOT + OBJ);
    store.put(PERS, oid('p'), 0, page(PAGE, 1), { version: 1 });
    expect(store.put(PERS, oid('q'), 0, page(PAGE, 2), { version: 8 }).status).toBe('refused');
    expect(store.versionOf(PERS, oid('q'), 0)).toBe(-1);
    expect(store.versionOf(PERS, oid('p'), 0)).toBe(1);
  });
});

describe('versionOf', () => {
  it.each(kinds)(
    'is the stored version, -1 without a page, and counts nothing in a $kind pool',
    ({ pool }) => {
      const store = storeWithPools(8192);
      store.put(pool, oid('a'), 0, page(PAGE, 1), { version: 12 });
      store.put(pool, oid('a'), 1, page(PAGE, 2));
      const before = store.stats();
      expect(store.versionOf(pool, oid('a'), 0)).toBe(12);
      expect(store.versionOf(pool, oid('a'), 1)).toBe(0);
      expect(store.versionOf(pool, oid('a'), 2)).toBe(-1);
      expect(store.versionOf(pool, oid('b'), 0)).toBe(-1);
      expect(store.stats()).toEqual(before);
      // An ephemeral page stays where versionOf looked.
      expect(store.versionOf(pool, oid('a'), 0)).toBe(12);
    },
  );
});

describe('peek', () => {
  it('returns a copy with its metadata and changes no counter', () => {
    const store = storeWithPools(8192);
    store.put(PERS, oid('a'), 0, page(PAGE, 1), { version: 3, sum: 9 });
    const before = store.stats();
    const peeked = store.peek(PERS, oid('a'), 0) as StoredPage;
    expect(peeked).toEqual({ page: page(PAGE, 1), version: 3, sum: 9 });
    expect(store.peek(PERS, oid('a'), 1)).toBeNull();
    expect(store.peek(PERS, oid('nothing'), 0)).toBeNull();
    expect(store.stats()).toEqual(before);
    // The copy owns its memory.
    expect(peeked.page.byteOffset).toBe(0);
    expect(peeked.page.buffer.byteLength).toBe(PAGE);
    peeked.page.fill(0);
    expect(store.peek(PERS, oid('a'), 0)?.page).toEqual(page(PAGE, 1));
  });

  it('leaves ephemeral pages in the store, and in their LRU place', () => {
    const store = storeWithPools(3 * (SLOT + OBJ));
    for (const name of ['a', 'b', 'c']) store.put(EPH, oid(name), 0, page(PAGE, name.charCodeAt(0)));
    const before = store.stats();
    for (let i = 0; i < 3; i++) expect(store.peek(EPH, oid('a'), 0)?.page).toEqual(page(PAGE, 97));
    expect(store.stats()).toEqual(before);
    // A get would take 'a'; a peek did not even make it recent: 'a' is still the first to go.
    store.put(EPH, oid('d'), 0, page(PAGE, 100));
    expect(store.peek(EPH, oid('a'), 0)).toBeNull();
    expect(store.peek(EPH, oid('b'), 0)?.page).toEqual(page(PAGE, 98));
    expect(store.stats().evictions).toBe(1);
  });
});

describe('read', () => {
  it.each(kinds)('has exactly the results and counters of get in a $kind pool', ({ pool }) => {
    const viaGet = storeWithPools(8192);
    const viaRead = storeWithPools(8192);
    for (const store of [viaGet, viaRead]) {
      store.put(pool, oid('a'), 0, page(PAGE, 1), { version: 2, sum: 3 });
      store.put(pool, oid('a'), 1, filled(PAGE, 6));
    }
    const handles: [string, number][] = [
      ['a', 0],
      ['a', 1],
      ['a', 2],
      ['a', 0],
      ['b', 0],
    ];
    for (const [name, index] of handles) {
      const got = viaGet.get(pool, oid(name), index);
      const read = viaRead.read(pool, oid(name), index);
      expect(read?.page ?? null).toEqual(got);
      expect(viaRead.stats()).toEqual(viaGet.stats());
    }
    const stats = viaRead.stats();
    expect([stats.gets, stats.hits, stats.misses]).toEqual(
      pool === EPH ? [5, 2, 3] : [5, 3, 2], // ephemeral: the first read of a/0 took it
    );
  });

  it('is an exclusive get in an ephemeral pool, returning the metadata of the page it took', () => {
    const store = storeWithPools(8192);
    store.put(EPH, oid('a'), 0, page(PAGE, 1), { version: 4, sum: 44 });
    expect(store.read(EPH, oid('a'), 0)).toEqual({ page: page(PAGE, 1), version: 4, sum: 44 });
    expect(store.read(EPH, oid('a'), 0)).toBeNull();
    expect(store.stats().ephemeralPages).toBe(0);
  });
});

describe('discard', () => {
  it.each(kinds)('removes one page without counting a flush in a $kind pool', ({ pool }) => {
    const store = storeWithPools(8192);
    store.put(pool, oid('a'), 0, page(PAGE, 1));
    store.put(pool, oid('a'), 1, filled(PAGE, 0));
    expect(store.discard(pool, oid('a'), 0)).toBe(true);
    expect(store.discard(pool, oid('a'), 0)).toBe(false);
    expect(store.discard(pool, oid('nothing'), 0)).toBe(false);
    const stats = store.stats();
    expect([stats.flushes, stats.evictions, stats.usedBytes]).toEqual([0, 0, PAGE_META_BYTES]);
    expect(stats.ephemeralPages + stats.persistentPages).toBe(1);
    expect(store.peek(pool, oid('a'), 0)).toBeNull();
    expect(store.peek(pool, oid('a'), 1)?.page).toEqual(filled(PAGE, 0));
    expect(store.discard(pool, oid('a'), 1)).toBe(true);
    // The object is gone with its last page, and can come back.
    expect(store.flushObject(pool, oid('a'))).toBe(0);
    expect(store.put(pool, oid('a'), 0, page(PAGE, 2)).status).toBe('accepted');
  });
});

describe('flush object older than a version', () => {
  it('removes only the pages whose version is below olderThan, and counts one flush', () => {
    const store = storeWithPools(1 << 20);
    for (let i = 0; i < 10; i++) {
      store.put(PERS, oid('a'), i, i % 3 === 0 ? filled(PAGE, i) : page(PAGE, i), { version: i });
      store.put(PERS, oid('b'), i, page(PAGE, 100 + i), { version: 0 });
    }
    expect(store.flushObject(PERS, oid('a'), 0)).toBe(0);
    expect(store.flushObject(PERS, oid('a'), 4)).toBe(4);
    for (let i = 0; i < 10; i++) {
      expect(store.versionOf(PERS, oid('a'), i)).toBe(i < 4 ? -1 : i);
      expect(store.versionOf(PERS, oid('b'), i)).toBe(0);
    }
    expect(store.flushObject(PERS, oid('a'), 4)).toBe(0);
    expect(store.flushObject(PERS, oid('never'), 4)).toBe(0);
    const stats = store.stats();
    expect([stats.flushes, stats.persistentPages]).toEqual([4, 16]);
    // Removing every remaining page frees the object, which then takes new pages.
    expect(store.flushObject(PERS, oid('a'), Number.MAX_SAFE_INTEGER)).toBe(6);
    expect(store.flushObject(PERS, oid('a'))).toBe(0);
    store.put(PERS, oid('a'), 3, page(PAGE, 1), { version: 1 });
    expect(store.versionOf(PERS, oid('a'), 3)).toBe(1);
    expect(store.stats().usedBytes).toBe(11 * PAGE);
  });

  it('works in an ephemeral pool too, keeping the LRU consistent', () => {
    const store = storeWithPools(4 * SLOT + 2 * OBJ);
    for (let i = 0; i < 4; i++) store.put(EPH, oid('a'), i, page(PAGE, i), { version: i % 2 });
    expect(store.flushObject(EPH, oid('a'), 1)).toBe(2);
    // Two pages' room was freed; the third put evicts index 1, the least recently used page left.
    for (let i = 0; i < 3; i++)
      expect(store.put(EPH, oid('b'), i, page(PAGE, 10 + i)).status).toBe('accepted');
    expect(store.peek(EPH, oid('a'), 1)).toBeNull();
    expect(store.peek(EPH, oid('a'), 3)?.version).toBe(1);
    expect(store.stats().evictions).toBe(1);
  });

  it('rejects an olderThan that is not a safe integer >= 0, changing nothing', () => {
    const store = storeWithPools(8192);
    store.put(PERS, oid('a'), 0, page(PAGE, 1));
    const before = store.stats();
    for (const olderThan of [-1, 0.5, Number.NaN, Infinity, 2 ** 53]) {
      expect(codeOf(() => store.flushObject(PERS, oid('a'), olderThan))).toBe('BAD_ARGUMENT');
    }
    expect(store.stats()).toEqual(before);
  });
});

describe('handlesWhere', () => {
  const binaryOids = [
    new Uint8Array([0x80]),
    new Uint8Array([0xff, 0x00, 0xfe]),
    new Uint8Array([0x00]),
    new Uint8Array(MAX_OID_BYTES).map((_, i) => 255 - (i & 0xff)),
    oid('plain'),
    utf8.encode('é€'), // UTF-8 bytes >= 0x80, not latin1 chars
  ];

  it('lists every matching page, with oids that round-trip as the bytes put', () => {
    const store = storeWithPools(1 << 20);
    const put: string[] = [];
    for (const pool of [EPH, PERS, PERS_1K]) {
      const size = pool === PERS_1K ? 1024 : PAGE;
      binaryOids.forEach((o, i) => {
        for (const index of [0, 16, U32_MAX]) {
          store.put(pool, o, index, index === 16 ? filled(size, i) : page(size, i + index));
          put.push(`${pool}/${Buffer.from(o).toString('hex')}/${index}`);
        }
      });
    }
    const before = store.stats();
    const all = store.handlesWhere(() => true);
    expect(all.map((h) => `${h.pool}/${Buffer.from(h.oid).toString('hex')}/${h.index}`).sort()).toEqual(
      put.sort(),
    );
    for (const h of all) {
      expect(h.oid).toBeInstanceOf(Uint8Array);
      expect(store.peek(h.pool, h.oid, h.index)).not.toBeNull();
    }
    // Selection by pool spec and partition hash, as removePages sees them.
    const seen: [number, number][] = [];
    const some = store.handlesWhere((spec, hash) => {
      seen.push([spec.id, hash]);
      return spec.kind === 'persistent' && hash % 2 === 0;
    });
    expect(seen).toHaveLength(put.length);
    expect(some.length).toBeGreaterThan(0);
    expect(some.length).toBeLessThan(put.length);
    for (const h of all) {
      const wanted = h.pool !== EPH && partitionHash(h.pool, h.oid, h.index) % 2 === 0;
      expect(
        some.some((s) => s.pool === h.pool && s.index === h.index && Buffer.compare(s.oid, h.oid) === 0),
      ).toBe(wanted);
    }
    // Listing counts nothing and takes nothing, even ephemeral pages.
    expect(store.stats()).toEqual(before);
  });

  it('is a snapshot: later changes to the store do not change it', () => {
    const store = storeWithPools(8192);
    store.put(PERS, binaryOids[0] as Uint8Array, 0, page(PAGE, 1));
    store.put(PERS, binaryOids[1] as Uint8Array, 0, page(PAGE, 2));
    const handles = store.handlesWhere(() => true);
    store.flushObject(PERS, binaryOids[0] as Uint8Array);
    store.put(PERS, oid('new'), 0, page(PAGE, 3));
    expect(handles).toHaveLength(2);
    expect(handles.map((h) => Buffer.from(h.oid).toString('hex')).sort()).toEqual(['80', 'ff00fe']);
    expect(store.handlesWhere(() => true)).toHaveLength(2);
    expect(store.handlesWhere(() => false)).toEqual([]);
  });

  it('refuses to be re-entered from the predicate', () => {
    const store = storeWithPools(8192);
    store.put(PERS, oid('a'), 0, page(PAGE, 1));
    const inner: (string | undefined)[] = [];
    const handles = store.handlesWhere(() => {
      inner.push(codeOf(() => store.peek(PERS, oid('a'), 0)));
      inner.push(codeOf(() => store.discard(PERS, oid('a'), 0)));
      return true;
    });
    expect(inner).toEqual(['INTERNAL', 'INTERNAL']);
    expect(handles).toHaveLength(1);
    expect(store.versionOf(PERS, oid('a'), 0)).toBe(0);
  });
});

describe('new methods on bad input', () => {
  it('throw UNKNOWN_POOL for an unknown pool and BAD_ARGUMENT for a bad oid or index, changing nothing', () => {
    const store = storeWithPools(8192);
    store.put(EPH, oid('a'), 0, page(PAGE, 1));
    const before = store.stats();
    const calls = [
      (pool: number, o: Uint8Array, index: number) => store.read(pool, o, index),
      (pool: number, o: Uint8Array, index: number) => store.peek(pool, o, index),
      (pool: number, o: Uint8Array, index: number) => store.versionOf(pool, o, index),
      (pool: number, o: Uint8Array, index: number) => store.discard(pool, o, index),
    ];
    for (const call of calls) {
      expect(codeOf(() => call(99, oid('a'), 0))).toBe('UNKNOWN_POOL');
      expect(codeOf(() => call(EPH, new Uint8Array(0), 0))).toBe('BAD_ARGUMENT');
      expect(codeOf(() => call(EPH, new Uint8Array(MAX_OID_BYTES + 1), 0))).toBe('BAD_ARGUMENT');
      for (const index of [-1, 1.5, U32_MAX + 1])
        expect(codeOf(() => call(EPH, oid('a'), index))).toBe('BAD_ARGUMENT');
    }
    expect(store.stats()).toEqual(before);
    expect(store.peek(EPH, oid('a'), 0)?.page).toEqual(page(PAGE, 1));
  });
});

describe('growth', () => {
  it('keeps versions and sums when records and objects grow past their initial 1024', () => {
    const store = storeWithPools(1 << 24);
    const n = 3000; // two doublings of the record arrays
    for (let i = 0; i < n; i++) {
      // Every third page same-filled; objects of 2 pages so the object arrays grow too.
      const bytes = i % 3 === 0 ? filled(PAGE, i & 0xff) : page(PAGE, i);
      const meta = i % 2 === 0 ? { version: 2 ** 40 + i, sum: (i * 2654435761) >>> 0 } : { version: i };
      expect(store.put(PERS, oid(`o${i >> 1}`), i & 1, bytes, meta).status).toBe('accepted');
    }
    for (let i = 0; i < n; i++) {
      const stored = store.peek(PERS, oid(`o${i >> 1}`), i & 1);
      const bytes = i % 3 === 0 ? filled(PAGE, i & 0xff) : page(PAGE, i);
      expectPage(stored?.page ?? null, bytes);
      expect(stored?.version).toBe(i % 2 === 0 ? 2 ** 40 + i : i);
      expect(stored?.sum).toBe(i % 2 === 0 ? (i * 2654435761) >>> 0 : undefined);
    }
    expect(store.handlesWhere(() => true)).toHaveLength(n);
  });
});

// ---- model-based property test ----

/** Same-filled, same-filled but one byte (`poke`), or distinct data. */
type Content = { fill: number; poke?: number } | { seed: number };
type Op =
  | {
      t: 'put';
      pool: number;
      oid: number;
      index: number;
      content: Content;
      offset: number;
      version: number | null;
      sum: number | null;
    }
  | { t: 'get' | 'flushPage' | 'peek' | 'discard'; pool: number; oid: number; index: number }
  | { t: 'flushObject'; pool: number; oid: number; olderThan: number | null }
  | { t: 'badPut'; pool: number; oid: number; index: number }
  | { t: 'destroy' | 'create'; pool: number }
  | { t: 'removePages'; pool: number; modulus: number; remainder: number };

const SPECS: readonly PoolSpec[] = [
  { id: EPH, kind: 'ephemeral', pageSize: 512, owner: 'alice' },
  { id: PERS, kind: 'persistent', pageSize: 512, owner: 'alice' },
  { id: EPH_1K, kind: 'ephemeral', pageSize: 1024, owner: 'bob' },
  { id: PERS_1K, kind: 'persistent', pageSize: 1024, owner: 'bob' },
];
const OIDS = [oid('a'), oid('b'), new Uint8Array([0, 0xff, 7])];
const INDEXES = [0, 1, 2, 3, 15, 16, 17, U32_MAX];

// Mostly pools that exist; sometimes one that never does (99).
const poolArb = fc.oneof(
  { weight: 12, arbitrary: fc.constantFrom(...SPECS.map((s) => s.id)) },
  { weight: 1, arbitrary: fc.constant(99) },
);
const oidArb = fc.nat({ max: OIDS.length - 1 });
const indexArb = fc.constantFrom(...INDEXES);
const contentArb: fc.Arbitrary<Content> = fc.oneof(
  { weight: 2, arbitrary: fc.record({ fill: fc.constantFrom(0, 0xff, 0x11) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      fill: fc.constantFrom(0, 0x11),
      poke: fc.constantFrom(0, 1, 3, 4, 5, 256, 511, 1023),
    }),
  },
  { weight: 4, arbitrary: fc.record({ seed: fc.nat({ max: 1_000_000 }) }) },
);
/** The ops of a model run over pools `pools`, putting pages of `content`. */
function makeOpArb(pools: fc.Arbitrary<number>, content: fc.Arbitrary<Content>): fc.Arbitrary<Op> {
  const poolArb = pools;
  const contentArb = content;
  return fc.oneof(
    {
      weight: 12,
      arbitrary: fc.record({
        t: fc.constant('put' as const),
        pool: poolArb,
        oid: oidArb,
        index: indexArb,
        content: contentArb,
        offset: fc.nat({ max: 3 }),
        // null: no meta at all, as callers from before versions put.
        version: fc.option(fc.nat({ max: 4 })),
        sum: fc.option(fc.constantFrom(0, 1, U32_MAX)),
      }),
    },
    {
      weight: 4,
      arbitrary: fc.record({ t: fc.constant('get' as const), pool: poolArb, oid: oidArb, index: indexArb }),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        t: fc.constantFrom('flushPage' as const, 'peek' as const, 'discard' as const),
        pool: poolArb,
        oid: oidArb,
        index: indexArb,
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        t: fc.constant('flushObject' as const),
        pool: poolArb,
        oid: oidArb,
        olderThan: fc.option(fc.nat({ max: 5 })),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        t: fc.constant('badPut' as const),
        pool: poolArb,
        oid: oidArb,
        index: indexArb,
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({ t: fc.constantFrom('destroy' as const, 'create' as const), pool: poolArb }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        t: fc.constant('removePages' as const),
        pool: poolArb,
        modulus: fc.integer({ min: 1, max: 3 }),
        remainder: fc.nat({ max: 2 }),
      }),
    },
  );
}
const opArb = makeOpArb(poolArb, contentArb);

/**
 * Dedup runs: a second ephemeral pool of alice's (its pages share slots with EPH's), one of carol's of the same
 * page size (never shared with alice's), and few distinct contents, so that most pages have twins.
 */
const EPH_B = 5;
const EPH_CAROL = 6;
const DEDUP_SPECS: readonly PoolSpec[] = [
  ...SPECS,
  { id: EPH_B, kind: 'ephemeral', pageSize: 512, owner: 'alice' },
  { id: EPH_CAROL, kind: 'ephemeral', pageSize: 512, owner: 'carol' },
];
const dedupOpArb = makeOpArb(
  fc.oneof(
    { weight: 12, arbitrary: fc.constantFrom(...DEDUP_SPECS.map((s) => s.id)) },
    { weight: 1, arbitrary: fc.constant(99) },
  ),
  fc.oneof(
    { weight: 1, arbitrary: fc.record({ fill: fc.constantFrom(0, 0x11) }) },
    { weight: 6, arbitrary: fc.record({ seed: fc.nat({ max: 3 }) }) },
    { weight: 1, arbitrary: fc.record({ seed: fc.nat({ max: 1_000_000 }) }) },
  ),
);

interface ModelPage {
  pool: number;
  oid: number;
  index: number;
  bytes: Uint8Array;
  cost: number;
  persistent: boolean;
  sameFilled: boolean;
  version: number;
  sum: number | undefined;
}

/** The contract, written as plainly as possible: Maps, an array for LRU order, linear scans. */
class Model {
  readonly pools = new Map<number, PoolSpec>();
  readonly pages = new Map<string, ModelPage>();
  /** Keys of ephemeral pages, least recently used first. */
  lru: string[] = [];
  readonly stats: StoreStats;
  /** Each owner's counters, while it has pools (the store drops them with the owner's last pool). */
  readonly owners = new Map<string, OwnerCounters>();
  /** The counters of owners dropped so far: with the live owners' they sum to the node's. */
  readonly dropped = zeroOwnerCounters();
  /**
   * With dedup, ephemeral pages of one owner and page size with equal bytes (not same-filled) share a slot,
   * charged once plus PAGE_META_BYTES for each further page.
   */
  readonly dedup: boolean;

  constructor(capacityBytes: number, dedup = false) {
    this.dedup = dedup;
    this.stats = {
      capacityBytes,
      usedBytes: 0,
      recordBytes: 0,
      pools: 0,
      ephemeralPages: 0,
      persistentPages: 0,
      puts: 0,
      acceptedPuts: 0,
      refusedPuts: 0,
      duplicatePuts: 0,
      gets: 0,
      hits: 0,
      misses: 0,
      flushes: 0,
      evictions: 0,
      // The model has no compressed pools (compression has its own tests).
      compressedPages: 0,
      compressedPageBytes: 0,
      compressedBytes: 0,
      compressedSlotBytes: 0,
      incompressiblePuts: 0,
      corruptCompressedReads: 0,
      // Set by dedupStats() when the model runs with dedup (every other run has none).
      dedupSlots: 0,
      dedupedPages: 0,
      dedupSavedBytes: 0,
      dedupHits: 0,
      dedupCollisions: 0,
    };
  }

  static key(pool: number, oid: number, index: number): string {
    return `${pool}/${oid}/${index}`;
  }

  /** Adds `delta` to a counter, the node's and that of the owner of `pool`. */
  count(pool: number, key: Exclude<keyof OwnerCounters, 'pools'>, delta = 1): void {
    this.stats[key] += delta;
    (this.owners.get((this.pools.get(pool) as PoolSpec).owner) as OwnerCounters)[key] += delta;
  }

  /** The slot `p` shares with its twins, or null if it is never shared. */
  group(p: ModelPage): string | null {
    if (!this.dedup || p.persistent || p.sameFilled) return null;
    const spec = this.pools.get(p.pool) as PoolSpec;
    return `${spec.owner}/${spec.pageSize}/${Buffer.from(p.bytes).toString('hex')}`;
  }

  /**
   * The charge of `pages`: their bytes, their records (RECORD_BYTES each, and each object's charge once), and
   * their shared slots (group -> pages on it).
   */
  charge(pages: Iterable<ModelPage>): { bytes: number; records: number; groups: Map<string, ModelPage[]> } {
    let bytes = 0;
    let records = 0;
    const objects = new Set<string>();
    const groups = new Map<string, ModelPage[]>();
    for (const p of pages) {
      records += RECORD_BYTES;
      const object = `${p.pool}/${p.oid}`;
      if (!objects.has(object)) {
        objects.add(object);
        records += objectCharge((OIDS[p.oid] as Uint8Array).length);
      }
      const g = this.group(p);
      if (g === null) {
        bytes += p.cost;
        continue;
      }
      const members = groups.get(g);
      if (members === undefined) {
        groups.set(g, [p]);
        bytes += p.cost;
      } else {
        members.push(p);
        bytes += PAGE_META_BYTES;
      }
    }
    return { bytes, records, groups };
  }

  /** The pages of `owner`. */
  pagesOf(owner: string): ModelPage[] {
    return [...this.pages.values()].filter((q) => (this.pools.get(q.pool) as PoolSpec).owner === owner);
  }

  /** usedBytes and the dedup gauges, the node's and every owner's, from the pages held. */
  recount(): void {
    const { bytes, records, groups } = this.charge(this.pages.values());
    this.stats.usedBytes = bytes;
    this.stats.recordBytes = records;
    this.stats.dedupSlots = groups.size;
    this.stats.dedupedPages = 0;
    this.stats.dedupSavedBytes = 0;
    for (const members of groups.values()) {
      this.stats.dedupedPages += members.length - 1;
      this.stats.dedupSavedBytes += (members.length - 1) * ((members[0] as ModelPage).cost - PAGE_META_BYTES);
    }
    for (const [owner, owned] of this.owners) {
      const charged = this.charge(this.pagesOf(owner));
      owned.usedBytes = charged.bytes;
      owned.recordBytes = charged.records;
      owned.dedupSlots = charged.groups.size;
      owned.dedupedPages = 0;
      owned.dedupSavedBytes = 0;
      for (const members of charged.groups.values()) {
        owned.dedupedPages += members.length - 1;
        owned.dedupSavedBytes += (members.length - 1) * ((members[0] as ModelPage).cost - PAGE_META_BYTES);
      }
    }
  }

  remove(key: string): void {
    const p = this.pages.get(key) as ModelPage;
    this.pages.delete(key);
    this.recount();
    if (p.persistent) {
      this.count(p.pool, 'persistentPages', -1);
    } else {
      this.count(p.pool, 'ephemeralPages', -1);
      this.lru = this.lru.filter((k) => k !== key);
    }
  }

  create(spec: PoolSpec): void {
    this.pools.set(spec.id, spec);
    this.stats.pools = this.pools.size;
    const owned = this.owners.get(spec.owner) ?? zeroOwnerCounters();
    owned.pools++;
    this.owners.set(spec.owner, owned);
  }

  destroy(pool: number): boolean {
    const spec = this.pools.get(pool);
    if (spec === undefined) return false;
    this.count(pool, 'flushes');
    for (const [key, p] of this.pages) if (p.pool === pool) this.remove(key);
    this.pools.delete(pool);
    this.stats.pools = this.pools.size;
    const owned = this.owners.get(spec.owner) as OwnerCounters;
    if (--owned.pools === 0) {
      this.owners.delete(spec.owner);
      for (const k of OWNER_KEYS) this.dropped[k] += owned[k];
    }
    return true;
  }

  put(
    pool: number,
    oid: number,
    index: number,
    bytes: Uint8Array,
    meta: PageMeta = {},
  ): 'accepted' | 'refused' {
    const spec = this.pools.get(pool) as PoolSpec;
    const key = Model.key(pool, oid, index);
    this.count(pool, 'puts');
    if (this.pages.has(key)) {
      this.count(pool, 'duplicatePuts');
      this.remove(key);
    }
    const sameFilled = bytes.every((b) => b === bytes[0]);
    const cost = sameFilled ? PAGE_META_BYTES : spec.pageSize;
    const persistent = spec.kind === 'persistent';
    const { version = 0, sum } = meta;
    const p: ModelPage = {
      pool,
      oid,
      index,
      bytes: bytes.slice(),
      cost,
      persistent,
      sameFilled,
      version,
      sum,
    };
    const g = this.group(p);
    const twin = g !== null && [...this.pages.values()].some((q) => this.group(q) === g);
    // Room: the charge with the new page must fit, evicting LRU pages; if even evicting all of them would not
    // do, nothing is evicted.
    const lru = new Set(this.lru);
    const rest = [...this.pages].filter(([k]) => !lru.has(k)).map(([, q]) => q);
    const worst = this.charge([...rest, p]);
    if (worst.bytes + worst.records > this.stats.capacityBytes) {
      this.count(pool, 'refusedPuts');
      return 'refused';
    }
    this.pages.set(key, p);
    this.recount();
    while (this.stats.usedBytes + this.stats.recordBytes > this.stats.capacityBytes) {
      // From the owner charged most for ephemeral pages (the new one counted), its least recently used page;
      // ties go to the owner that came first. Counted against the owner of the page evicted.
      let victimOwner = '';
      let most = -1;
      for (const owner of this.owners.keys()) {
        if (!this.lru.some((k) => this.ownerOfKey(k) === owner)) continue;
        const ephemeral = this.charge(this.pagesOf(owner).filter((q) => !q.persistent));
        if (ephemeral.bytes + ephemeral.records > most) {
          most = ephemeral.bytes + ephemeral.records;
          victimOwner = owner;
        }
      }
      const victim = this.lru.find((k) => this.ownerOfKey(k) === victimOwner) as string;
      const victimPool = (this.pages.get(victim) as ModelPage).pool;
      this.remove(victim);
      this.count(victimPool, 'evictions');
    }
    if (twin) this.count(pool, 'dedupHits');
    if (persistent) {
      this.count(pool, 'persistentPages');
    } else {
      this.count(pool, 'ephemeralPages');
      this.lru.push(key);
    }
    this.count(pool, 'acceptedPuts');
    return 'accepted';
  }

  ownerOfKey(key: string): string {
    return (this.pools.get((this.pages.get(key) as ModelPage).pool) as PoolSpec).owner;
  }

  get(pool: number, oid: number, index: number): ModelPage | null {
    const key = Model.key(pool, oid, index);
    const p = this.pages.get(key);
    this.count(pool, 'gets');
    if (p === undefined) {
      this.count(pool, 'misses');
      return null;
    }
    this.count(pool, 'hits');
    if (!p.persistent) this.remove(key);
    return p;
  }
}

/** Checks a read or peek against the model's page: bytes, version and checksum. */
function expectStored(actual: StoredPage | null, expected: ModelPage | null | undefined): void {
  if (expected === null || expected === undefined) {
    expect(actual).toBeNull();
    return;
  }
  expectPage(actual?.page ?? null, expected.bytes);
  if (actual?.version !== expected.version || actual.sum !== expected.sum) {
    expect({ version: actual?.version, sum: actual?.sum }).toEqual({
      version: expected.version,
      sum: expected.sum,
    });
  }
}

function contentBytes(content: Content, size: number): Uint8Array {
  if ('seed' in content) return page(size, content.seed);
  const bytes = filled(size, content.fill);
  if (content.poke !== undefined) bytes[content.poke % size] = content.fill ^ 0x80;
  return bytes;
}

function sameBytes(a: Uint8Array | null, b: Uint8Array | null): boolean {
  return a === null || b === null ? a === b : Buffer.compare(a, b) === 0;
}

/** Like expect(actual).toEqual(expected) for pages, without its cost on the (hot) passing path. */
function expectPage(actual: Uint8Array | null, expected: Uint8Array | null): void {
  if (!sameBytes(actual, expected)) expect(actual).toEqual(expected);
}

const STAT_KEYS = Object.keys(new Model(0).stats) as (keyof StoreStats)[];
const OWNER_KEYS = Object.keys(zeroOwnerCounters()) as (keyof OwnerCounters)[];
/** The owners of SPECS, and 'x', which never gets a pool (its create is refused). */
const OWNERS = ['alice', 'bob', 'carol', 'x'];

function expectStats(actual: StoreStats, expected: StoreStats): void {
  if (STAT_KEYS.some((k) => actual[k] !== expected[k]) || Object.keys(actual).length !== STAT_KEYS.length) {
    expect(actual).toEqual(expected);
  }
}

/** Every owner's counters are the model's, the owners with pools are the model's, and they sum to the node's. */
function expectOwners(store: PageStore, model: Model): void {
  const owners = store.owners().sort();
  if (owners.join() !== [...model.owners.keys()].sort().join()) {
    expect(owners).toEqual([...model.owners.keys()].sort());
  }
  // Counters of dropped owners are gone from the store but still in the node's totals.
  const sum = { ...model.dropped };
  for (const owner of OWNERS) {
    const actual = store.ownerStats(owner);
    const expected = model.owners.get(owner) ?? zeroOwnerCounters();
    if (
      OWNER_KEYS.some((k) => actual[k] !== expected[k]) ||
      Object.keys(actual).length !== OWNER_KEYS.length
    ) {
      expect({ owner, ...actual }).toEqual({ owner, ...expected });
    }
    for (const k of OWNER_KEYS) sum[k] += actual[k];
  }
  const global = store.stats();
  if (OWNER_KEYS.some((k) => sum[k] !== global[k])) {
    expect(sum).toEqual({ ...global, capacityBytes: undefined });
  }
}

/** What the dedup runs did in total, so that a test can tell they shared slots and evicted under pressure. */
const dedupSeen = { hits: 0, evictions: 0 };

/** Runs `ops` against a real store and the model, checking every result and invariant after every op. */
function runAgainstModel(
  capacityBytes: number,
  slabBytes: number,
  ops: Op[],
  minRecords = 1024,
  dedup = false,
): void {
  const specs = dedup ? DEDUP_SPECS : SPECS;
  const store = createPageStore({ capacityBytes, slabBytes, minRecords, dedup });
  const model = new Model(capacityBytes, dedup);
  for (const spec of specs) {
    store.createPool(spec);
    model.create(spec);
  }

  const check = (): void => {
    const stats = store.stats();
    expectStats(stats, model.stats);
    expectOwners(store, model);
    if (
      stats.usedBytes > stats.capacityBytes ||
      stats.usedBytes < 0 ||
      stats.puts !== stats.acceptedPuts + stats.refusedPuts ||
      stats.gets !== stats.hits + stats.misses ||
      stats.ephemeralPages + stats.persistentPages !== model.pages.size
    ) {
      expect.fail(`inconsistent stats ${JSON.stringify(stats)} with ${model.pages.size} pages in the model`);
    }
  };

  /** Every persistent page the model holds is readable, byte for byte (persistent gets remove nothing). */
  const checkPersistent = (): void => {
    for (const p of model.pages.values()) {
      if (!p.persistent) continue;
      expectStored(store.read(p.pool, OIDS[p.oid] as Uint8Array, p.index), p);
      model.get(p.pool, p.oid, p.index);
    }
  };

  for (const op of ops) {
    const spec = model.pools.get(op.pool);
    const oidBytes = 'oid' in op ? (OIDS[op.oid] as Uint8Array) : new Uint8Array(1);
    if (spec === undefined && op.t !== 'create' && op.t !== 'destroy' && op.t !== 'removePages') {
      // Every page op on a missing pool fails, and changes nothing.
      const before = store.stats();
      const index = 'index' in op ? op.index : 0;
      // (UNKNOWN_POOL is checked before the page, so a same-filled 512-byte page does for every pool id.)
      expect(codeOf(() => store.put(op.pool, oidBytes, index, filled(512, 0)))).toBe('UNKNOWN_POOL');
      expect(codeOf(() => store.get(op.pool, oidBytes, index))).toBe('UNKNOWN_POOL');
      expect(codeOf(() => store.flushPage(op.pool, oidBytes, index))).toBe('UNKNOWN_POOL');
      expect(codeOf(() => store.flushObject(op.pool, oidBytes))).toBe('UNKNOWN_POOL');
      expect(codeOf(() => store.peek(op.pool, oidBytes, index))).toBe('UNKNOWN_POOL');
      expect(codeOf(() => store.discard(op.pool, oidBytes, index))).toBe('UNKNOWN_POOL');
      expect(codeOf(() => store.versionOf(op.pool, oidBytes, index))).toBe('UNKNOWN_POOL');
      expectStats(store.stats(), before);
      continue;
    }
    switch (op.t) {
      case 'put': {
        const size = (spec as PoolSpec).pageSize;
        const frame = new Uint8Array(size + op.offset);
        frame.set(contentBytes(op.content, size), op.offset);
        const view = frame.subarray(op.offset);
        const meta: PageMeta | undefined =
          op.version === null && op.sum === null
            ? undefined
            : {
                ...(op.version === null ? {} : { version: op.version }),
                // With dedup the sum is the content hash, so it must be the page's (the node checks it).
                ...(op.sum === null ? {} : { sum: dedup ? pageChecksum(view) : op.sum }),
              };
        const expected = model.put(op.pool, op.oid, op.index, view, meta);
        expect(store.put(op.pool, oidBytes, op.index, view, meta).status).toBe(expected);
        frame.fill(0x33); // the store must have copied
        break;
      }
      case 'badPut': {
        const before = store.stats();
        const size = (spec as PoolSpec).pageSize;
        expect(codeOf(() => store.put(op.pool, oidBytes, op.index, new Uint8Array(size / 2)))).toBe(
          'BAD_PAGE_SIZE',
        );
        expect(store.stats()).toEqual(before);
        break;
      }
      case 'get':
        expectPage(
          store.get(op.pool, oidBytes, op.index),
          model.get(op.pool, op.oid, op.index)?.bytes ?? null,
        );
        break;
      case 'peek': {
        const p = model.pages.get(Model.key(op.pool, op.oid, op.index));
        expectStored(store.peek(op.pool, oidBytes, op.index), p);
        expect(store.versionOf(op.pool, oidBytes, op.index)).toBe(p === undefined ? -1 : p.version);
        break;
      }
      case 'discard': {
        const key = Model.key(op.pool, op.oid, op.index);
        const had = model.pages.has(key);
        if (had) model.remove(key);
        expect(store.discard(op.pool, oidBytes, op.index)).toBe(had);
        break;
      }
      case 'flushPage': {
        const key = Model.key(op.pool, op.oid, op.index);
        const had = model.pages.has(key);
        if (had) model.remove(key);
        model.count(op.pool, 'flushes');
        expect(store.flushPage(op.pool, oidBytes, op.index)).toBe(had);
        break;
      }
      case 'flushObject': {
        let n = 0;
        for (const [key, p] of model.pages) {
          if (p.pool === op.pool && p.oid === op.oid && (op.olderThan === null || p.version < op.olderThan)) {
            model.remove(key);
            n++;
          }
        }
        model.count(op.pool, 'flushes');
        const olderThan = op.olderThan ?? undefined;
        expect(store.flushObject(op.pool, oidBytes, olderThan)).toBe(n);
        break;
      }
      case 'destroy':
        expect(store.destroyPool(op.pool)).toBe(model.destroy(op.pool));
        break;
      case 'create': {
        const fresh = specs.find((s) => s.id === op.pool);
        if (fresh === undefined) {
          expect(
            codeOf(() => store.createPool({ id: op.pool, kind: 'ephemeral', pageSize: 3, owner: 'x' })),
          ).toBe('BAD_PAGE_SIZE');
        } else if (spec !== undefined) {
          expect(codeOf(() => store.createPool(fresh))).toBe('BAD_ARGUMENT');
        } else {
          store.createPool(fresh);
          model.create(fresh);
        }
        break;
      }
      case 'removePages': {
        const matches = (pool: number, hash: number): boolean =>
          pool === op.pool || hash % op.modulus === op.remainder;
        const name = (pool: number, oidIndex: number, index: number): string =>
          `${pool}/${oidIndex}/${index}`;
        // handlesWhere lists exactly what removePages is about to remove.
        const listed = store
          .handlesWhere((s, hash) => matches(s.id, hash))
          .map((h) =>
            name(
              h.pool,
              OIDS.findIndex((o) => Buffer.compare(o, h.oid) === 0),
              h.index,
            ),
          );
        const doomed: string[] = [];
        for (const [key, p] of model.pages) {
          if (matches(p.pool, partitionHash(p.pool, OIDS[p.oid] as Uint8Array, p.index))) {
            model.remove(key);
            doomed.push(name(p.pool, p.oid, p.index));
          }
        }
        expect(listed.sort()).toEqual(doomed.sort());
        expect(store.removePages((s, hash) => matches(s.id, hash))).toBe(doomed.length);
        break;
      }
    }
    check();
    checkPersistent();
    check();
  }

  if (dedup) {
    dedupSeen.hits += model.stats.dedupHits;
    dedupSeen.evictions += model.stats.evictions;
  }
  // Drain: everything left is readable exactly as the model says, then the store is empty.
  for (const p of [...model.pages.values()]) {
    expectStored(store.read(p.pool, OIDS[p.oid] as Uint8Array, p.index), model.get(p.pool, p.oid, p.index));
  }
  for (const id of [...model.pools.keys()]) expect(store.destroyPool(id)).toBe(model.destroy(id));
  check();
  expect(store.stats().usedBytes).toBe(0);
  expect(store.owners()).toEqual([]);
}

/** Store shapes of the short model runs: capacities from none to a few pages. */
const capacityArb = fc.constantFrom(0, 700, 4 * 512 + 3 * PAGE_META_BYTES, 5000, 1 << 13);
/** Slabs of 1 to 6 small pages, so that slab release and compaction happen in short runs too. */
const slabBytesArb = fc.constantFrom(512, 1024, 1536, 3072);
/** Tiny record arrays, so that growing and shrinking them (renumbering live records) happens too. */
const minRecordsArb = fc.constantFrom(1, 2, 8, 1024);

describe('page store against a model', () => {
  it('agrees with the model on every result and counter, with eviction under pressure', () => {
    fc.assert(
      fc.property(
        capacityArb,
        slabBytesArb,
        fc.array(opArb, { maxLength: 150, size: 'max' }),
        minRecordsArb,
        (capacityBytes, slabBytes, ops, minRecords) =>
          runAgainstModel(capacityBytes, slabBytes, ops, minRecords),
      ),
      { numRuns: 500 },
    );
  });

  it('agrees with the model with dedup: shared slots, their charges and eviction under pressure', () => {
    fc.assert(
      fc.property(
        capacityArb,
        slabBytesArb,
        fc.array(dedupOpArb, { maxLength: 150, size: 'max' }),
        minRecordsArb,
        (capacityBytes, slabBytes, ops, minRecords) =>
          runAgainstModel(capacityBytes, slabBytes, ops, minRecords, true),
      ),
      { numRuns: 500 },
    );
    // Not vacuous: the runs shared slots and evicted (the mix of few contents and small capacities does both).
    expect(dedupSeen.hits).toBeGreaterThan(100);
    expect(dedupSeen.evictions).toBeGreaterThan(100);
  });

  it('agrees with the model with dedup over long runs', () => {
    fc.assert(
      fc.property(fc.array(dedupOpArb, { minLength: 500, maxLength: 1500 }), (ops) =>
        runAgainstModel(10 * 512 + 2 * PAGE_META_BYTES, 1024, ops, 2, true),
      ),
      { numRuns: 30 },
    );
  });

  it('agrees with the model over long runs', () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 500, maxLength: 1500 }), (ops) =>
        runAgainstModel(10 * 512 + 2 * PAGE_META_BYTES, 1024, ops, 2),
      ),
      { numRuns: 30 },
    );
  });
});

describe('objectIndexes', () => {
  it('lists the indexes an object holds, and nothing for an unknown object', () => {
    const store = createPageStore({ capacityBytes: 1 << 20 });
    store.createPool({ id: 1, kind: 'persistent', pageSize: 512, owner: 'o' });
    const page = new Uint8Array(512).fill(3);
    for (const index of [5, 0, 9]) store.put(1, Uint8Array.of(1, 2), index, page);
    store.put(1, Uint8Array.of(7), 4, page);
    expect(store.objectIndexes(1, Uint8Array.of(1, 2)).sort((a, b) => a - b)).toEqual([0, 5, 9]);
    expect(store.objectIndexes(1, Uint8Array.of(9))).toEqual([]);
    store.flushPage(1, Uint8Array.of(1, 2), 5);
    expect(store.objectIndexes(1, Uint8Array.of(1, 2)).sort((a, b) => a - b)).toEqual([0, 9]);
  });
});

describe('memory tracks the pages held', () => {
  const page = (i: number) => {
    const p = new Uint8Array(512);
    for (let j = 0; j < 512; j++) p[j] = (i * 7 + j) & 0xff;
    return p;
  };
  const oid = (i: number) => Uint8Array.of(i % 7);

  it('starts small whatever the capacity', () => {
    const small = createPageStore({ capacityBytes: 1 << 20 }).memory();
    const huge = createPageStore({ capacityBytes: MAX_CAPACITY_BYTES }).memory();
    expect(huge).toEqual(small);
    expect(huge.slabBytes).toBe(0);
    expect(huge.metadataBytes).toBeLessThan(128 * 1024);
  });

  it('grows the metadata with the pages, shrinks it after a mass flush, and keeps every page and the LRU order', () => {
    const store = createPageStore({ capacityBytes: 2000 * 512, slabBytes: 4096, minRecords: 16 });
    store.createPool({ id: EPH, kind: 'ephemeral', pageSize: 512, owner: 'a' });
    store.createPool({ id: PERS, kind: 'persistent', pageSize: 512, owner: 'a' });
    const empty = store.memory().metadataBytes;
    for (let i = 0; i < 1000; i++)
      expect(store.put(i % 2 ? EPH : PERS, oid(i), i, page(i)).status).toBe('accepted');
    const full = store.memory();
    expect(full.metadataBytes).toBeGreaterThan(empty + 1000 * 40);
    expect(full.slabBytes).toBeGreaterThanOrEqual(1000 * 512);

    // Flush all but every 50th page, low numbers first, so the survivors must move down.
    for (let i = 0; i < 1000; i++) if (i % 50 !== 49) store.flushPage(i % 2 ? EPH : PERS, oid(i), i);
    const after = store.memory();
    // The object arrays (a fixed 12 KiB here) keep their size; the record arrays and the table shrink.
    expect(after.metadataBytes - empty).toBeLessThan((full.metadataBytes - empty) / 8);
    expect(after.slabBytes).toBeLessThan(full.slabBytes / 8);
    for (let i = 49; i < 1000; i += 50) {
      expect(store.peek(i % 2 ? EPH : PERS, oid(i), i)?.page).toEqual(page(i));
      expect(store.objectIndexes(i % 2 ? EPH : PERS, oid(i))).toContain(i);
    }
    // Fill to capacity with persistent pages: the ephemeral survivors go in the order they were put.
    const evicted: number[] = [];
    for (let i = 1000; store.stats().ephemeralPages > 0; i++) {
      const before = new Set(
        Array.from({ length: 20 }, (_, k) => 49 + 50 * k).filter((j) => store.peek(EPH, oid(j), j) !== null),
      );
      store.put(PERS, oid(i), i, page(i));
      for (const j of before) if (store.peek(EPH, oid(j), j) === null) evicted.push(j);
    }
    expect(evicted).toEqual(Array.from({ length: 20 }, (_, k) => 49 + 50 * k).filter((j) => j % 2 === 1));
  });

  it('shrinks after exclusive gets drain an ephemeral pool, and grows again', () => {
    const store = createPageStore({ capacityBytes: 4000 * 512, slabBytes: 64 * 1024, minRecords: 8 });
    store.createPool({ id: EPH, kind: 'ephemeral', pageSize: 512, owner: 'a' });
    const base = store.memory().metadataBytes;
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 3000; i++) store.put(EPH, oid(i), i, page(i + round));
      expect(store.memory().metadataBytes).toBeGreaterThan(base + 3000 * 40);
      let wrong = 0;
      for (let i = 0; i < 3000; i++) {
        const got = store.get(EPH, oid(i), i);
        if (got === null || !Buffer.from(got).equals(page(i + round))) wrong++;
      }
      expect(wrong).toBe(0);
      expect(store.memory().metadataBytes).toBeLessThan(base + 1024);
      expect(store.memory().slabBytes).toBeLessThanOrEqual(2 * 64 * 1024);
    }
  });

  it('rejects a bad minRecords with BAD_ARGUMENT', () => {
    for (const minRecords of [0, -1, 1.5, 2 ** 31]) {
      expect(codeOf(() => createPageStore({ capacityBytes: 1024, minRecords }))).toBe('BAD_ARGUMENT');
    }
  });
});
