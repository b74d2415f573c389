// Per-identity counters of the page store (issue 9, finding 9): exact after a known sequence of two owners'
// ops, evictions across owners and compressed pages included; summing to the node's counters; dropped with an
// owner's last pool. The model test in page-store.test.ts checks the same over random op sequences.
import { describe, expect, it } from 'vitest';
import { createOwnerCounterTable, zeroOwnerCounters, type OwnerCounters } from '../src/owner-counters.ts';
import { lz4Codec } from '../src/page-compression.ts';
import {
  createPageStore,
  objectCharge,
  PAGE_META_BYTES,
  RECORD_BYTES,
  type PageStore,
} from '../src/page-store.ts';
import { maxCompressedBytes, slotSizeFor } from '../src/size-classes.ts';

const PAGE = 512;
/** What a raw PAGE-byte page, a same-filled page and an object of a one-byte oid are charged. */
const SLOT = PAGE + RECORD_BYTES;
const SAME_FILLED = PAGE_META_BYTES + RECORD_BYTES;
const OBJ = objectCharge(1);
const oid = (s: string): Uint8Array => new TextEncoder().encode(s);

/** A page no two seeds share, never same-filled and incompressible enough to stay raw in a plain pool. */
function page(seed: number, size = PAGE): Uint8Array {
  const p = new Uint8Array(size);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    p[i] = x & 0xff;
  }
  return p;
}

/** The counters of one owner: zero but for `changed`. */
function owned(changed: Partial<OwnerCounters>): OwnerCounters {
  return { ...zeroOwnerCounters(), ...changed };
}

/** Each counter of the owners summed equals the node's. */
function expectSums(store: PageStore): void {
  const sum = zeroOwnerCounters();
  for (const owner of store.owners()) {
    const counters = store.ownerStats(owner);
    for (const key of Object.keys(sum) as (keyof OwnerCounters)[]) sum[key] += counters[key];
  }
  const { capacityBytes, ...global } = store.stats();
  expect(capacityBytes).toBeGreaterThan(0);
  expect(sum).toEqual(global);
}

describe('owner counter table', () => {
  it('shares one object between the pools of an owner, and drops it with the last pool', () => {
    const table = createOwnerCounterTable();
    const first = table.attachPool('alice');
    const second = table.attachPool('alice');
    expect(second).toBe(first);
    expect(table.attachPool('bob')).not.toBe(first);
    first.puts += 3;
    expect(table.snapshot('alice')).toEqual(owned({ pools: 2, puts: 3 }));
    // A snapshot is a copy: changing it changes nothing in the table.
    table.snapshot('alice').puts = 99;
    expect(table.snapshot('alice').puts).toBe(3);
    table.detachPool('alice');
    expect(table.snapshot('alice')).toEqual(owned({ pools: 1, puts: 3 }));
    table.detachPool('alice');
    expect(table.snapshot('alice')).toEqual(zeroOwnerCounters());
    expect(table.owners()).toEqual(['bob']);
    table.detachPool('nobody');
    expect(table.owners()).toEqual(['bob']);
  });
});

describe('per-owner counters of the page store', () => {
  it('counts each owner exactly, evictions against the owner of the evicted page', () => {
    // Room for alice's pages below and two of bob's (each charged its record, each object its charge).
    const store = createPageStore({ capacityBytes: 4 * SLOT + SAME_FILLED + 2 * OBJ + 2 * SLOT + OBJ });
    store.createPool({ id: 1, kind: 'ephemeral', pageSize: PAGE, owner: 'alice' });
    store.createPool({ id: 2, kind: 'persistent', pageSize: PAGE, owner: 'alice' });
    store.createPool({ id: 3, kind: 'ephemeral', pageSize: PAGE, owner: 'bob' });
    expect(store.ownerStats('alice')).toEqual(owned({ pools: 2 }));
    expect(store.ownerStats('bob')).toEqual(owned({ pools: 1 }));

    // alice: 4 ephemeral pages (one same-filled), 1 persistent, a duplicate put.
    for (let i = 0; i < 3; i++) store.put(1, oid('a'), i, page(i));
    store.put(1, oid('a'), 3, new Uint8Array(PAGE).fill(7));
    store.put(2, oid('p'), 0, page(10));
    store.put(2, oid('p'), 0, page(11));
    // bob puts 3 pages: the third needs room, and alice is charged more for ephemeral pages (three raw and a
    // same-filled one against bob's three, his new one counted), so her least recently used page 0 goes: the
    // eviction is alice's.
    for (let i = 0; i < 3; i++) store.put(3, oid('b'), i, page(20 + i));
    expect(store.stats().evictions).toBe(1);
    expect(store.ownerStats('alice')).toEqual(
      owned({
        pools: 2,
        ephemeralPages: 3,
        persistentPages: 1,
        usedBytes: 2 * PAGE + PAGE_META_BYTES + PAGE,
        recordBytes: 4 * RECORD_BYTES + 2 * OBJ,
        puts: 6,
        acceptedPuts: 6,
        duplicatePuts: 1,
        evictions: 1,
      }),
    );
    expect(store.ownerStats('bob')).toEqual(
      owned({
        pools: 1,
        ephemeralPages: 3,
        usedBytes: 3 * PAGE,
        recordBytes: 3 * RECORD_BYTES + OBJ,
        puts: 3,
        acceptedPuts: 3,
      }),
    );
    expectSums(store);

    // bob: a get (exclusive: the page goes), a miss, a flush page, a flush object; alice's are untouched.
    expect(store.get(3, oid('b'), 0)).toEqual(page(20));
    expect(store.get(3, oid('b'), 0)).toBeNull();
    expect(store.flushPage(3, oid('b'), 1)).toBe(true);
    expect(store.flushObject(3, oid('b'))).toBe(1);
    expect(store.ownerStats('bob')).toEqual(
      owned({ pools: 1, puts: 3, acceptedPuts: 3, gets: 2, hits: 1, misses: 1, flushes: 2 }),
    );
    // alice: a persistent get keeps its page. Then persistent puts into bob's freed room: the first three fit,
    // the fourth and fifth each evict one of her raw ephemeral pages, and the sixth is refused evicting nothing
    // (her same-filled page and its object would not free enough).
    expect(store.get(2, oid('p'), 0)).toEqual(page(11));
    for (let i = 1; i <= 5; i++) expect(store.put(2, oid('p'), i, page(100 + i)).status).toBe('accepted');
    expect(store.put(2, oid('p'), 6, page(106)).status).toBe('refused');
    const alice = store.ownerStats('alice');
    expect(alice).toMatchObject({
      ephemeralPages: 1,
      persistentPages: 6,
      usedBytes: 6 * PAGE + PAGE_META_BYTES,
      evictions: 3,
      refusedPuts: 1,
      gets: 1,
      hits: 1,
    });
    expect(alice.puts).toBe(alice.acceptedPuts + alice.refusedPuts);
    expect(store.ownerStats('bob').usedBytes).toBe(0);
    expectSums(store);

    // removePages (hand-over, lost ownership) takes pages off their owner too.
    expect(store.removePages((spec) => spec.id === 2)).toBe(6);
    expect(store.ownerStats('alice')).toMatchObject({ persistentPages: 0, usedBytes: PAGE_META_BYTES });
    expectSums(store);

    // Destroying a pool counts a flush; the owner's last pool drops its counters.
    store.destroyPool(3);
    expect(store.ownerStats('bob')).toEqual(zeroOwnerCounters());
    expect(store.owners()).toEqual(['alice']);
    store.destroyPool(1);
    expect(store.ownerStats('alice')).toMatchObject({ pools: 1, flushes: 1 });
    store.destroyPool(2);
    expect(store.owners()).toEqual([]);
    expect(store.ownerStats('alice')).toEqual(zeroOwnerCounters());
  });

  it('counts compressed pages, their slots and incompressible puts per owner', () => {
    const size = 4096;
    const text = new TextEncoder().encode('tmem '.repeat(size / 5 + 1).slice(0, size));
    const packed = lz4Codec.compress(text).length;
    expect(packed).toBeLessThanOrEqual(maxCompressedBytes(size));
    const slot = slotSizeFor(size, packed);
    const store = createPageStore({ capacityBytes: 1 << 20 });
    store.createPool({ id: 1, kind: 'persistent', pageSize: size, owner: 'alice', compression: 'lz4' });
    store.createPool({ id: 2, kind: 'ephemeral', pageSize: size, owner: 'bob', compression: 'lz4' });
    store.put(1, oid('t'), 0, text);
    store.put(2, oid('r'), 0, page(1, size));
    expect(store.ownerStats('alice')).toEqual(
      owned({
        pools: 1,
        persistentPages: 1,
        usedBytes: slot,
        recordBytes: RECORD_BYTES + OBJ,
        puts: 1,
        acceptedPuts: 1,
        compressedPages: 1,
        compressedPageBytes: size,
        compressedBytes: packed,
        compressedSlotBytes: slot,
      }),
    );
    expect(store.ownerStats('bob')).toEqual(
      owned({
        pools: 1,
        ephemeralPages: 1,
        usedBytes: size,
        recordBytes: RECORD_BYTES + OBJ,
        puts: 1,
        acceptedPuts: 1,
        incompressiblePuts: 1,
      }),
    );
    expectSums(store);
    store.flushPage(1, oid('t'), 0);
    expect(store.ownerStats('alice')).toEqual(owned({ pools: 1, puts: 1, acceptedPuts: 1, flushes: 1 }));
    expectSums(store);
  });
});
