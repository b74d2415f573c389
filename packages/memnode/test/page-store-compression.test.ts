// The page store with compressed pools: size classes, raw fallback, same-filled pages, capacity accounting,
// the slab memory bound with pages of varying size (and its fragmentation, measured), corrupt data.
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ErrorCode, TmemError, checksumMatches, pageChecksum } from '@tmem/protocol';
import { lz4Codec, type PageCodec } from '../src/page-compression.ts';
import {
  createPageStore,
  objectCharge,
  PAGE_META_BYTES,
  RECORD_BYTES,
  type PageStore,
} from '../src/page-store.ts';
import { maxCompressedBytes, slotSizeFor, SIZE_CLASS_STEPS } from '../src/size-classes.ts';

const PAGE = 4096;
const oid = (s: string): Uint8Array => new TextEncoder().encode(s);
const WORDS = 'page pool node cluster memory copy replica lease state partition the a of to and is'.split(
  ' ',
);

/** Deterministic bytes for a seed (xorshift), incompressible to lz4. */
function noise(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** Text of words in a seeded order: compresses to about half. */
function textPage(seed: number, size = PAGE): Uint8Array {
  const words = noise(size, seed);
  let s = '';
  for (let i = 0; s.length < size; i++) s += WORDS[(words[i % size] as number) % WORDS.length] + ' ';
  return new TextEncoder().encode(s.slice(0, size));
}

/** `randomBytes` bytes of noise, then text: its compressed length grows with `randomBytes`. */
function mixedPage(noiseBytes: number, seed: number): Uint8Array {
  const page = new Uint8Array(PAGE).fill(0x61);
  page.set(noise(noiseBytes, seed));
  page[PAGE - 1] = 0x62; // never same-filled
  return page;
}

function compressedStore(capacityBytes: number, extra: Partial<Parameters<typeof createPageStore>[0]> = {}) {
  const store = createPageStore({ capacityBytes, ...extra });
  store.createPool({ id: 1, kind: 'persistent', pageSize: PAGE, owner: 'a', compression: 'lz4' });
  store.createPool({ id: 2, kind: 'ephemeral', pageSize: PAGE, owner: 'a', compression: 'lz4' });
  store.createPool({ id: 3, kind: 'persistent', pageSize: PAGE, owner: 'a' });
  return store;
}

/** What the store should charge for `page` in a compressed pool. */
function expectedCost(page: Uint8Array): number {
  if (page.every((b) => b === page[0])) return PAGE_META_BYTES;
  const packed = lz4Codec.compress(page).length;
  return packed <= maxCompressedBytes(PAGE) ? slotSizeFor(PAGE, packed) : PAGE;
}

function expectSame(actual: Uint8Array | null | undefined, expected: Uint8Array): void {
  expect(actual).not.toBeNull();
  expect(Buffer.compare(actual!, expected)).toBe(0);
}

describe('page store with compressed pools', () => {
  it('returns text, random, same-filled and mixed pages byte-exact, with their version and checksum', () => {
    const store = compressedStore(1 << 24);
    const pages = [
      textPage(1),
      new Uint8Array(randomBytes(PAGE)),
      new Uint8Array(PAGE),
      new Uint8Array(PAGE).fill(0xee),
      mixedPage(1000, 2),
    ];
    pages.forEach((p, i) => store.put(1, oid('o'), i, p, { version: 10 + i, sum: pageChecksum(p) }));
    pages.forEach((p, i) => {
      const stored = store.read(1, oid('o'), i);
      expectSame(stored?.page, p);
      expect(stored?.version).toBe(10 + i);
      expect(stored?.sum).toBe(pageChecksum(p));
      expect(checksumMatches(stored!.page, stored!.sum)).toBe(true);
    });
    // Ephemeral: exclusive get decompresses and removes.
    store.put(2, oid('e'), 0, pages[0]!);
    expectSame(store.get(2, oid('e'), 0), pages[0]!);
    expect(store.get(2, oid('e'), 0)).toBeNull();
  });

  it('stores a page that looks random raw without running the codec (early abort)', () => {
    let calls = 0;
    const counting = {
      compress: (page: Uint8Array) => {
        calls++;
        return lz4Codec.compress(page);
      },
      decompress: (packed: Uint8Array, pageSize: number) => lz4Codec.decompress(packed, pageSize),
    };
    const store = compressedStore(1 << 24, { codecs: { lz4: counting } });
    for (let i = 0; i < 20; i++) store.put(1, oid('r'), i, new Uint8Array(randomBytes(PAGE)));
    expect(calls).toBe(0);
    expect(store.stats()).toMatchObject({ incompressiblePuts: 20, compressedPages: 0, usedBytes: 20 * PAGE });
    // A page with a compressible part still goes through the codec, and is stored compressed.
    const padded = new Uint8Array(PAGE);
    padded.set(randomBytes(PAGE / 2));
    store.put(1, oid('p'), 0, padded);
    expect(calls).toBe(1);
    expect(store.stats().compressedPages).toBe(1);
    expect(store.read(1, oid('p'), 0)?.page).toEqual(padded);
  });

  it('charges a compressed page its size class, a raw one its page size, a same-filled one metadata', () => {
    const store = compressedStore(1 << 24);
    const text = textPage(3);
    const random = new Uint8Array(randomBytes(PAGE));
    store.put(1, oid('t'), 0, text);
    const packed = lz4Codec.compress(text).length;
    const slot = slotSizeFor(PAGE, packed);
    expect(slot).toBeLessThan(PAGE);
    expect(store.stats()).toMatchObject({
      usedBytes: slot,
      compressedPages: 1,
      compressedPageBytes: PAGE,
      compressedBytes: packed,
      compressedSlotBytes: slot,
      incompressiblePuts: 0,
    });
    store.put(1, oid('r'), 0, random);
    store.put(1, oid('z'), 0, new Uint8Array(PAGE));
    expect(store.stats()).toMatchObject({
      usedBytes: slot + PAGE + PAGE_META_BYTES,
      compressedPages: 1,
      incompressiblePuts: 1,
    });
    // The same page in an uncompressed pool costs the whole page and counts nothing.
    store.put(3, oid('t'), 0, text);
    expect(store.stats()).toMatchObject({ usedBytes: 2 * PAGE + slot + PAGE_META_BYTES, compressedPages: 1 });
    // A duplicate put and a flush give the charge back exactly.
    store.put(1, oid('t'), 0, random);
    expect(store.stats()).toMatchObject({ usedBytes: 3 * PAGE + PAGE_META_BYTES, compressedPages: 0 });
    store.flushObject(1, oid('t'));
    store.flushObject(1, oid('r'));
    store.flushObject(1, oid('z'));
    store.flushObject(3, oid('t'));
    expect(store.stats()).toMatchObject({
      usedBytes: 0,
      compressedPages: 0,
      compressedPageBytes: 0,
      compressedBytes: 0,
      compressedSlotBytes: 0,
    });
  });

  it('puts pages of every compressed length in the size class that holds them', () => {
    const store = compressedStore(1 << 26);
    const classes = new Set<number>();
    for (let n = 0; n <= PAGE; n += 64) {
      const p = mixedPage(n, n);
      const before = store.stats().usedBytes;
      store.put(1, oid('m'), n, p);
      const cost = store.stats().usedBytes - before;
      expect(cost).toBe(expectedCost(p));
      classes.add(cost);
    }
    // Every eighth from 1/8 to 7/8, plus raw pages.
    expect([...classes].sort((a, b) => a - b)).toEqual(
      Array.from({ length: SIZE_CLASS_STEPS }, (_, i) => ((i + 1) * PAGE) / SIZE_CLASS_STEPS),
    );
    for (let n = 0; n <= PAGE; n += 64) expectSame(store.read(1, oid('m'), n)?.page, mixedPage(n, n));
  });

  it('holds more text pages than an uncompressed pool in the same capacity', () => {
    const fill = (pool: number): number => {
      const store = compressedStore(256 * (PAGE + RECORD_BYTES) + objectCharge(1));
      let n = 0;
      while (store.put(pool, oid('f'), n, textPage(n)).status === 'accepted') n++;
      for (let i = 0; i < n; i++) expectSame(store.read(pool, oid('f'), i)?.page, textPage(i));
      return n;
    };
    const raw = fill(3);
    const compressed = fill(1);
    expect(raw).toBe(256);
    expect(compressed).toBeGreaterThan(1.5 * raw);
  });

  it('evicts compressed ephemeral pages least recently used first, only as many as needed', () => {
    const capacity = 16 * PAGE;
    const store = compressedStore(capacity);
    const text = textPage(9);
    // Each page is charged its slot and its record; each object its charge.
    const cost = expectedCost(text) + RECORD_BYTES;
    const fit = Math.floor((capacity - objectCharge(1)) / cost);
    for (let i = 0; i < fit; i++) expect(store.put(2, oid('e'), i, textPage(9)).status).toBe('accepted');
    expect(store.stats().evictions).toBe(0);
    // A raw page of a new object needs PAGE + RECORD_BYTES + its object's charge: the fewest oldest text pages go.
    store.put(2, oid('r'), 0, new Uint8Array(randomBytes(PAGE)));
    const evicted = store.stats().evictions;
    const free = capacity - objectCharge(1) - fit * cost;
    expect(evicted).toBe(Math.ceil((PAGE + RECORD_BYTES + objectCharge(1) - free) / cost));
    for (let i = 0; i < evicted; i++) expect(store.get(2, oid('e'), i)).toBeNull();
    expectSame(store.get(2, oid('e'), evicted), text);
    expect(store.stats().usedBytes + store.stats().recordBytes).toBeLessThanOrEqual(capacity);
  });

  it('keeps pages intact through compaction and record renumbering', () => {
    // Tiny slabs and minRecords 1: frees compact slab classes and shrink the record arrays all the time.
    const store = compressedStore(1 << 26, { slabBytes: 4 * PAGE, minRecords: 1 });
    const pages = new Map<number, Uint8Array>();
    for (let i = 0; i < 400; i++) {
      const p = i % 3 === 0 ? textPage(i) : mixedPage((i * 37) % PAGE, i);
      pages.set(i, p);
      store.put(1, oid('k'), i, p);
    }
    for (let i = 0; i < 400; i++) {
      if (i % 5 !== 0) {
        store.flushPage(1, oid('k'), i);
        pages.delete(i);
      }
    }
    for (const [i, p] of pages) expectSame(store.read(1, oid('k'), i)?.page, p);
    const expected = [...pages.values()].reduce((sum, p) => sum + expectedCost(p), 0);
    expect(store.stats().usedBytes).toBe(expected);
  });

  it('matches a model of contents and charges under any sequence of puts, gets and flushes', () => {
    const kinds = ['text', 'random', 'zero', 'mixed'] as const;
    const make = (kind: (typeof kinds)[number], seed: number): Uint8Array =>
      kind === 'text'
        ? textPage(seed)
        : kind === 'random'
          ? noise(PAGE, seed)
          : kind === 'zero'
            ? new Uint8Array(PAGE)
            : mixedPage((seed * 97) % PAGE, seed);
    const op = fc.oneof(
      fc.record({
        t: fc.constant('put' as const),
        key: fc.integer({ min: 0, max: 15 }),
        kind: fc.constantFrom(...kinds),
        seed: fc.integer({ min: 1, max: 1000 }),
      }),
      fc.record({ t: fc.constant('get' as const), key: fc.integer({ min: 0, max: 15 }) }),
      fc.record({ t: fc.constant('flush' as const), key: fc.integer({ min: 0, max: 15 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const store = compressedStore(1 << 24, { slabBytes: 3 * PAGE, minRecords: 2 });
        const model = new Map<number, Uint8Array>();
        for (const o of ops) {
          if (o.t === 'put') {
            const p = make(o.kind, o.seed);
            expect(store.put(1, oid('p'), o.key, p).status).toBe('accepted');
            model.set(o.key, p);
          } else if (o.t === 'get') {
            const got = store.get(1, oid('p'), o.key);
            const want = model.get(o.key);
            if (want === undefined) expect(got).toBeNull();
            else expectSame(got, want);
          } else {
            store.flushPage(1, oid('p'), o.key);
            model.delete(o.key);
          }
          const charged = [...model.values()].reduce((sum, p) => sum + expectedCost(p), 0);
          expect(store.stats().usedBytes).toBe(charged);
        }
      }),
      { numRuns: 40 },
    );
  });

  it('keeps slab memory within stored slot bytes plus two slabs per size class, and measures fragmentation', () => {
    const slabBytes = 64 * PAGE;
    const store = compressedStore(1 << 30, { slabBytes });
    // Pages spread over every size class: noise of 0..4 KiB, so compressed lengths fall evenly.
    const n = 4000;
    for (let i = 0; i < n; i++) store.put(1, oid('f'), i, mixedPage((i * 613) % (PAGE + 1), i));
    const bound = (s: PageStore): void => {
      const { slabBytes: held, freeSlotBytes } = s.memory();
      const { usedBytes } = s.stats();
      // One slab class per slot size in use: at most 8 for one page size.
      expect(held).toBe(usedBytes + freeSlotBytes);
      expect(held).toBeLessThan(usedBytes + 2 * SIZE_CLASS_STEPS * slabBytes);
    };
    bound(store);
    const full = { ...store.stats(), ...store.memory() };
    // Remove 3 of 4 pages in a scattered order: compaction must give the slabs back.
    for (let i = 0; i < n; i++) if (i % 4 !== 0) store.flushPage(1, oid('f'), (i * 7919) % n);
    bound(store);
    const after = { ...store.stats(), ...store.memory() };
    const report = (label: string, s: typeof full): string =>
      `${label}: ${s.compressedPages} compressed + ${s.persistentPages - s.compressedPages} raw pages; ` +
      `compressed ${s.compressedBytes} B in ${s.compressedSlotBytes} B of slots ` +
      `(internal waste ${((1 - s.compressedBytes / s.compressedSlotBytes) * 100).toFixed(1)}%); ` +
      `slabs ${s.slabBytes} B for ${s.usedBytes} B charged (free slots ${((s.freeSlotBytes / s.slabBytes) * 100).toFixed(1)}%)`;
    console.log(report('fragmentation, full', full));
    console.log(report('fragmentation, 3/4 removed', after));
    // Inside slots a page wastes less than one step (pageSize / 8).
    expect(full.compressedSlotBytes - full.compressedBytes).toBeLessThan(full.compressedPages * (PAGE / 8));
  });

  it('reads an undecodable compressed copy as a page whose checksum cannot match, and counts it', () => {
    let spoil = false;
    // A codec that, when told to, garbles what it decompresses from, as a bit flip in memory would.
    const flaky: PageCodec = {
      compress: (p) => lz4Codec.compress(p),
      decompress: (packed, size) => {
        if (!spoil) return lz4Codec.decompress(packed, size);
        const junk = Uint8Array.from(packed);
        junk.fill(0xff, 4, Math.min(junk.length, 40));
        return lz4Codec.decompress(junk, size);
      },
    };
    const store = compressedStore(1 << 24, { codecs: { lz4: flaky } });
    const p = textPage(5);
    const sum = pageChecksum(p);
    store.put(1, oid('c'), 0, p, { sum, version: 3 });
    store.put(1, oid('c'), 1, p); // no checksum given: still detected
    spoil = true;
    for (const index of [0, 1]) {
      const stored = store.peek(1, oid('c'), index);
      expect(stored).not.toBeNull();
      expect(checksumMatches(stored!.page, stored!.sum)).toBe(false);
      expect(stored!.page.length).toBe(PAGE);
    }
    expect(store.read(1, oid('c'), 0)?.version).toBe(3);
    expect(store.stats().corruptCompressedReads).toBe(3);
    spoil = false;
    expectSame(store.read(1, oid('c'), 0)?.page, p);
  });

  it('refuses an unknown compression with BAD_ARGUMENT, changing nothing', () => {
    const store = createPageStore({ capacityBytes: 1 << 20 });
    let error: unknown;
    try {
      store.createPool({
        id: 9,
        kind: 'ephemeral',
        pageSize: PAGE,
        owner: 'a',
        compression: 'zstd' as 'lz4',
      });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(TmemError);
    expect((error as TmemError).code).toBe(ErrorCode.BadArgument);
    expect(store.getPool(9)).toBeUndefined();
    expect(store.stats().pools).toBe(0);
  });
});
