// The page store with dedup: identical ephemeral pages of one identity share one slot (a reference count),
// flushing, getting, evicting or overwriting one copy keeps the others, the slot is charged once and freed with
// its last page, eviction frees real memory, and hash collisions never share different contents. The model
// test in page-store.test.ts checks the same rules over random op sequences.
import { describe, expect, it } from 'vitest';
import { TmemError, pageChecksum } from '@tmem/protocol';
import { lz4Codec } from '../src/page-compression.ts';
import { COLLIDED, createPageDedup, NO_ENTRY } from '../src/page-dedup.ts';
import {
  createPageStore,
  MAX_DEDUP_CAPACITY_BYTES,
  objectCharge,
  PAGE_META_BYTES,
  RECORD_BYTES,
  type PageStore,
  type PageStoreOptions,
} from '../src/page-store.ts';
import { slotSizeFor } from '../src/size-classes.ts';

const PAGE = 4096;
const M = PAGE_META_BYTES;
/** What an object with a one-byte oid is charged. */
const OBJ = objectCharge(1);
const oid = (s: string): Uint8Array => new TextEncoder().encode(s);

/** A page that is not same-filled and differs for every seed (incompressible enough to stay raw). */
function page(seed: number, size = PAGE): Uint8Array {
  const out = new Uint8Array(size);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** A page lz4 shrinks to about a quarter. */
function textPage(seed: number): Uint8Array {
  const s = `block ${seed} of a file that many files share; `.repeat(PAGE).slice(0, PAGE);
  return new TextEncoder().encode(s);
}

const EPH = 1;
const EPH_SAME_OWNER = 2;
const EPH_OTHER_OWNER = 3;
const PERS = 4;
const EPH_LZ4 = 5;

function dedupStore(capacityBytes: number, extra: Partial<PageStoreOptions> = {}): PageStore {
  const store = createPageStore({ capacityBytes, dedup: true, slabBytes: PAGE, ...extra });
  store.createPool({ id: EPH, kind: 'ephemeral', pageSize: PAGE, owner: 'alice' });
  store.createPool({ id: EPH_SAME_OWNER, kind: 'ephemeral', pageSize: PAGE, owner: 'alice' });
  store.createPool({ id: EPH_OTHER_OWNER, kind: 'ephemeral', pageSize: PAGE, owner: 'bob' });
  store.createPool({ id: PERS, kind: 'persistent', pageSize: PAGE, owner: 'alice' });
  store.createPool({ id: EPH_LZ4, kind: 'ephemeral', pageSize: PAGE, owner: 'alice', compression: 'lz4' });
  return store;
}

function expectBytes(actual: Uint8Array | null | undefined, expected: Uint8Array): void {
  expect(actual).not.toBeNull();
  expect(Buffer.compare(actual as Uint8Array, expected)).toBe(0);
}

describe('dedup: shared slots', () => {
  it('stores identical pages of one identity once, across handles and pools, with stats', () => {
    const store = dedupStore(1 << 20);
    const a = page(1);
    store.put(EPH, oid('f1'), 0, a);
    store.put(EPH, oid('f2'), 7, a);
    store.put(EPH_SAME_OWNER, oid('f3'), 0, a);
    expect(store.stats()).toMatchObject({
      usedBytes: PAGE + 2 * M,
      ephemeralPages: 3,
      dedupSlots: 1,
      dedupedPages: 2,
      dedupSavedBytes: 2 * (PAGE - M),
      dedupHits: 2,
      dedupCollisions: 0,
    });
    // One slot of slab memory (slabs of one page here), not three.
    expect(store.memory().slabBytes).toBe(PAGE);
    for (const [pool, o, i] of [
      [EPH, 'f1', 0],
      [EPH, 'f2', 7],
      [EPH_SAME_OWNER, 'f3', 0],
    ] as const) {
      expectBytes(store.peek(pool, oid(o), i)?.page, a);
    }
  });

  it('never shares across identities, with persistent pages, or for same-filled pages', () => {
    const store = dedupStore(1 << 20);
    const a = page(1);
    store.put(EPH, oid('f'), 0, a);
    store.put(EPH_OTHER_OWNER, oid('f'), 0, a);
    store.put(PERS, oid('f'), 0, a);
    store.put(PERS, oid('g'), 0, a);
    store.put(EPH, oid('z'), 0, new Uint8Array(PAGE));
    store.put(EPH, oid('z'), 1, new Uint8Array(PAGE));
    expect(store.stats()).toMatchObject({
      usedBytes: 4 * PAGE + 2 * M,
      dedupSlots: 2, // alice's and bob's copy of `a`; persistent and zero pages have none
      dedupedPages: 0,
      dedupHits: 0,
    });
    expectBytes(store.peek(EPH_OTHER_OWNER, oid('f'), 0)?.page, a);
    expectBytes(store.peek(PERS, oid('g'), 0)?.page, a);
  });

  it('changes nothing without the dedup option', () => {
    const store = createPageStore({ capacityBytes: 1 << 20 });
    store.createPool({ id: EPH, kind: 'ephemeral', pageSize: PAGE, owner: 'alice' });
    for (let i = 0; i < 3; i++) store.put(EPH, oid('f'), i, page(1));
    expect(store.stats()).toMatchObject({ usedBytes: 3 * PAGE, dedupSlots: 0, dedupedPages: 0 });
  });

  it('shares compressed pages on their stored form, and never with an uncompressed pool', () => {
    const store = dedupStore(1 << 20);
    const t = textPage(1);
    const slot = slotSizeFor(PAGE, lz4Codec.compress(t).length);
    expect(slot).toBeLessThan(PAGE / 2);
    store.put(EPH_LZ4, oid('f'), 0, t);
    store.put(EPH_LZ4, oid('g'), 0, t);
    store.put(EPH, oid('f'), 0, t);
    expect(store.stats()).toMatchObject({
      usedBytes: slot + M + PAGE,
      dedupSlots: 2,
      dedupedPages: 1,
      dedupSavedBytes: slot - M,
      // Compression counts slots: one compressed slot, whatever shares it.
      compressedPages: 1,
      compressedSlotBytes: slot,
    });
    expectBytes(store.get(EPH_LZ4, oid('f'), 0), t);
    expectBytes(store.get(EPH_LZ4, oid('g'), 0), t);
    expectBytes(store.get(EPH, oid('f'), 0), t);
    expect(store.stats()).toMatchObject({ usedBytes: 0, dedupSlots: 0, compressedPages: 0 });
  });

  it('refuses a capacity above MAX_DEDUP_CAPACITY_BYTES', () => {
    const error = (() => {
      try {
        createPageStore({ capacityBytes: MAX_DEDUP_CAPACITY_BYTES + 1, dedup: true });
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(TmemError);
    expect((error as TmemError).code).toBe('BAD_ARGUMENT');
    expect(() => createPageStore({ capacityBytes: MAX_DEDUP_CAPACITY_BYTES, dedup: true })).not.toThrow();
  });
});

describe('dedup: one copy goes, the others stay', () => {
  it('flushing one copy keeps the others readable and byte-identical', () => {
    const store = dedupStore(1 << 20);
    const a = page(1);
    for (let i = 0; i < 3; i++) store.put(EPH, oid('f'), i, a);
    expect(store.flushPage(EPH, oid('f'), 1)).toBe(true);
    expect(store.stats()).toMatchObject({ usedBytes: PAGE + M, dedupedPages: 1, dedupSlots: 1 });
    expectBytes(store.peek(EPH, oid('f'), 0)?.page, a);
    expectBytes(store.peek(EPH, oid('f'), 2)?.page, a);
    // An exclusive get takes one copy; the last one still reads the same.
    expectBytes(store.get(EPH, oid('f'), 0), a);
    expectBytes(store.get(EPH, oid('f'), 2), a);
    expect(store.get(EPH, oid('f'), 2)).toBeNull();
  });

  it('an overwrite of one copy leaves the others (the new contents go to another slot)', () => {
    const store = dedupStore(1 << 20);
    const a = page(1);
    const b = page(2);
    store.put(EPH, oid('f'), 0, a);
    store.put(EPH, oid('g'), 0, a);
    store.put(EPH, oid('f'), 0, b);
    expectBytes(store.peek(EPH, oid('f'), 0)?.page, b);
    expectBytes(store.peek(EPH, oid('g'), 0)?.page, a);
    expect(store.stats()).toMatchObject({ usedBytes: 2 * PAGE, dedupSlots: 2, dedupedPages: 0 });
    // Overwriting with the other copy's contents shares it again.
    store.put(EPH, oid('f'), 0, a);
    expect(store.stats()).toMatchObject({ usedBytes: PAGE + M, dedupSlots: 1, dedupedPages: 1 });
    expectBytes(store.peek(EPH, oid('f'), 0)?.page, a);
  });

  it('frees the slot when its last page goes (flush object, destroy pool, partition drop)', () => {
    const store = dedupStore(1 << 20);
    const a = page(1);
    for (let i = 0; i < 4; i++) store.put(EPH, oid('f'), i, a);
    for (let i = 0; i < 4; i++) store.put(EPH_SAME_OWNER, oid('g'), i, a);
    expect(store.flushObject(EPH, oid('f'))).toBe(4);
    expect(store.stats()).toMatchObject({ usedBytes: PAGE + 3 * M, dedupSlots: 1, dedupedPages: 3 });
    expect(store.removePages((pool, hash) => pool.id === EPH_SAME_OWNER && hash % 2 === 0)).toBeGreaterThan(
      -1,
    );
    expect(store.destroyPool(EPH_SAME_OWNER)).toBe(true);
    expect(store.stats()).toMatchObject({ usedBytes: 0, dedupSlots: 0, dedupedPages: 0, dedupSavedBytes: 0 });
    // The freed slot serves new contents, which are their own.
    const b = page(2);
    store.put(EPH, oid('f'), 0, b);
    expectBytes(store.peek(EPH, oid('f'), 0)?.page, b);
    expect(store.stats()).toMatchObject({ usedBytes: PAGE, dedupSlots: 1 });
  });

  it('keeps every page right while slabs compact and records renumber under shared slots', () => {
    // Slabs of 4 pages and tiny record arrays: frees compact slabs (moving shared slots), flushes halve records.
    const store = dedupStore(1 << 24, { slabBytes: 4 * PAGE, minRecords: 2 });
    const contents = Array.from({ length: 8 }, (_, i) => page(i + 10));
    for (let i = 0; i < 400; i++) store.put(EPH, oid(`o${i % 5}`), i, contents[i % 8] as Uint8Array);
    for (let i = 0; i < 400; i++) store.put(EPH, oid(`u${i}`), 0, page(1000 + i));
    for (let i = 0; i < 400; i++) if (i % 7 !== 0) store.flushPage(EPH, oid(`u${i}`), 0);
    for (let i = 0; i < 400; i++) if (i % 3 !== 0) store.flushPage(EPH, oid(`o${i % 5}`), i);
    for (let i = 0; i < 400; i += 3)
      expectBytes(store.peek(EPH, oid(`o${i % 5}`), i)?.page, contents[i % 8]!);
    for (let i = 0; i < 400; i += 7) expectBytes(store.peek(EPH, oid(`u${i}`), 0)?.page, page(1000 + i));
    const held = Math.ceil(400 / 3);
    expect(store.stats()).toMatchObject({
      dedupSlots: 8 + Math.ceil(400 / 7),
      dedupedPages: held - 8,
      usedBytes: (8 + Math.ceil(400 / 7)) * PAGE + (held - 8) * M,
    });
  });
});

describe('dedup: accounting under pressure', () => {
  it('evicting one copy of a shared slot frees only its metadata, so eviction goes on until memory is free', () => {
    // Four pages' records and two objects' charges beside the bytes.
    const store = dedupStore(2 * PAGE + 2 * M + 4 * RECORD_BYTES + 2 * OBJ);
    const a = page(1);
    for (let i = 0; i < 3; i++) store.put(EPH, oid('a'), i, a);
    store.put(EPH, oid('b'), 0, page(2));
    expect(store.stats()).toMatchObject({ usedBytes: 2 * PAGE + 2 * M, evictions: 0 });
    // A new page needs a whole slot: the three copies of `a` (LRU first) must all go, the last freeing the slot.
    expect(store.put(EPH, oid('c'), 0, page(3)).status).toBe('accepted');
    expect(store.stats()).toMatchObject({
      usedBytes: 2 * PAGE,
      evictions: 3,
      dedupSlots: 2,
      dedupedPages: 0,
    });
    for (let i = 0; i < 3; i++) expect(store.peek(EPH, oid('a'), i)).toBeNull();
    expectBytes(store.peek(EPH, oid('b'), 0)?.page, page(2));
  });

  it('a copy put when full keeps its slot even when every other copy of it is evicted to make room', () => {
    const store = dedupStore(PAGE + M + 2 * RECORD_BYTES + OBJ);
    const a = page(1);
    store.put(EPH, oid('a'), 0, a);
    store.put(EPH, oid('a'), 1, a);
    expect(store.stats().usedBytes).toBe(PAGE + M);
    // Full: the third copy evicts the first (least recent), the page whose put wrote the slot.
    expect(store.put(EPH, oid('a'), 2, a).status).toBe('accepted');
    expect(store.peek(EPH, oid('a'), 0)).toBeNull();
    expect(store.put(EPH, oid('a'), 3, a).status).toBe('accepted');
    expect(store.peek(EPH, oid('a'), 1)).toBeNull();
    expectBytes(store.peek(EPH, oid('a'), 2)?.page, a);
    expectBytes(store.peek(EPH, oid('a'), 3)?.page, a);
    expect(store.stats()).toMatchObject({
      usedBytes: PAGE + M,
      evictions: 2,
      dedupSlots: 1,
      dedupedPages: 1,
    });
  });

  it('holds many more duplicate pages than its capacity in slots, and refuses only what cannot fit', () => {
    // Exactly the 100 pages below: two slots, 98 sharers, 100 records and one object.
    const capacity = 2 * PAGE + 98 * M + 100 * RECORD_BYTES + OBJ;
    const store = dedupStore(capacity);
    let accepted = 0;
    for (let i = 0; i < 100; i++)
      if (store.put(EPH, oid('d'), i, page(i % 2)).status === 'accepted') accepted++;
    expect(accepted).toBe(100);
    expect(store.stats()).toMatchObject({ evictions: 0, usedBytes: 2 * PAGE + 98 * M, dedupedPages: 98 });
    // Persistent pages take the room; eviction of shared copies frees it (at the end, the slots themselves).
    let persistent = 0;
    while (store.put(PERS, oid('p'), persistent, page(500 + persistent)).status === 'accepted') persistent++;
    expect(persistent).toBe(Math.floor((capacity - OBJ) / (PAGE + RECORD_BYTES)));
    expect(store.stats()).toMatchObject({ usedBytes: persistent * PAGE, ephemeralPages: 0, dedupSlots: 0 });
    expect(store.stats().usedBytes + store.stats().recordBytes).toBeLessThanOrEqual(capacity);
  });
});

describe('dedup: hash collisions', () => {
  it('never shares different contents whose hashes are equal (forced through the put sum)', () => {
    const store = dedupStore(1 << 20);
    const a = page(1);
    const b = page(2);
    // The sum is the content hash: the same sum for different pages is a forced collision.
    store.put(EPH, oid('a'), 0, a, { sum: 42 });
    store.put(EPH, oid('b'), 0, b, { sum: 42 });
    expect(store.stats()).toMatchObject({ usedBytes: 2 * PAGE, dedupCollisions: 1, dedupHits: 0 });
    expectBytes(store.peek(EPH, oid('a'), 0)?.page, a);
    expectBytes(store.peek(EPH, oid('b'), 0)?.page, b);
    // The indexed page is still found by its twins; the colliding one, stored apart, shares nothing.
    store.put(EPH, oid('a'), 1, a, { sum: 42 });
    store.put(EPH, oid('b'), 1, b, { sum: 42 });
    expect(store.stats()).toMatchObject({
      usedBytes: 3 * PAGE + M,
      dedupCollisions: 2,
      dedupHits: 1,
      dedupedPages: 1,
    });
    expectBytes(store.peek(EPH, oid('a'), 1)?.page, a);
    expectBytes(store.peek(EPH, oid('b'), 1)?.page, b);
    // The sums stay the pages' own.
    expect(store.peek(EPH, oid('b'), 1)?.sum).toBe(42);
    for (const o of ['a', 'b']) for (const i of [0, 1]) store.flushPage(EPH, oid(o), i);
    expect(store.stats()).toMatchObject({ usedBytes: 0, dedupSlots: 0 });
  });

  it('uses the true checksum when a put has none', () => {
    const store = dedupStore(1 << 20);
    const a = page(1);
    store.put(EPH, oid('a'), 0, a);
    store.put(EPH, oid('a'), 1, a, { sum: pageChecksum(a) });
    expect(store.stats()).toMatchObject({ dedupHits: 1, usedBytes: PAGE + M });
    expect(store.peek(EPH, oid('a'), 0)?.sum).toBeUndefined();
  });
});

describe('page-dedup index', () => {
  it('counts references, frees at zero, and reuses entry numbers', () => {
    const dedup = createPageDedup();
    const e = dedup.add(0, 0xffff_ffff, 0);
    dedup.setSlot(e, 17);
    expect(dedup.find(0, 0xffff_ffff)).toBe(e);
    expect(dedup.find(1, 0xffff_ffff)).toBe(NO_ENTRY);
    expect(dedup.retain(e)).toBe(2);
    expect(dedup.release(e)).toBe(1);
    expect(dedup.slotOf(e)).toBe(17);
    expect(dedup.release(e)).toBe(0);
    expect(dedup.size).toBe(0);
    expect(dedup.find(0, 0xffff_ffff)).toBe(NO_ENTRY);
    expect(dedup.add(3, 5, 100)).toBe(e);
    expect(dedup.storedOf(e)).toBe(100);
  });

  it('finds identical contents only: same scope, hash, stored length and bytes', () => {
    const dedup = createPageDedup();
    const alice = dedup.scopeOf('alice', PAGE, undefined);
    expect(dedup.scopeOf('alice', PAGE, undefined)).toBe(alice);
    expect(dedup.scopeOf('bob', PAGE, undefined)).not.toBe(alice);
    expect(dedup.scopeOf('alice', PAGE, 'lz4')).not.toBe(alice);
    expect(dedup.scopeOf('alice', PAGE / 2, undefined)).not.toBe(alice);
    const a = page(1);
    const slots = { view: (slot: number, length: number) => (slot === 7 ? a : page(2)).subarray(0, length) };
    const e = dedup.add(alice, 99, 0);
    dedup.setSlot(e, 7);
    expect(dedup.findIdentical(alice, 99, a, 0, slots)).toBe(e);
    expect(dedup.findIdentical(alice, 99, page(3), 0, slots)).toBe(COLLIDED);
    // A compressed form of the same length as no raw page is never taken for a raw one.
    expect(dedup.findIdentical(alice, 99, a, a.length, slots)).toBe(COLLIDED);
    expect(dedup.findIdentical(alice, 98, a, 0, slots)).toBe(NO_ENTRY);
    expect(dedup.findIdentical(dedup.scopeOf('bob', PAGE, undefined), 99, a, 0, slots)).toBe(NO_ENTRY);
  });

  it('grows past its first arrays and keeps every entry findable', () => {
    const dedup = createPageDedup();
    const entries = Array.from({ length: 5000 }, (_, i) => dedup.add(i % 3, (i * 2654435761) >>> 0, 0));
    entries.forEach((e, i) => expect(dedup.find(i % 3, (i * 2654435761) >>> 0)).toBe(e));
    for (let i = 0; i < 5000; i += 2) dedup.release(entries[i] as number);
    expect(dedup.size).toBe(2500);
    for (let i = 1; i < 5000; i += 2) expect(dedup.find(i % 3, (i * 2654435761) >>> 0)).toBe(entries[i]);
  });
});
