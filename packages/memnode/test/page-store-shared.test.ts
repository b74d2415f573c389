// Shared pools in the page store: gets leave the page and move it to the front of the LRU, each object
// remembers who put to it last, and a departure flushes exactly the objects its identity touched last.
import { describe, expect, it } from 'vitest';
import { ErrorCode, TmemError, sharedPoolOwner } from '@tmem/protocol';
import { createPageStore, objectCharge, RECORD_BYTES, type PageStore } from '../src/page-store.ts';

const PAGE = 512;
const SHARED = 7;
const PRIVATE = 8;
const OWNER = sharedPoolOwner('0f8fad5b-d9cb-469f-a165-70867728950e');

function page(seed: number): Uint8Array {
  const p = new Uint8Array(PAGE);
  for (let i = 0; i < PAGE; i++) p[i] = (seed * 31 + i * 7) & 0xff;
  return p;
}

const oid = (s: string): Uint8Array => new TextEncoder().encode(s);

function store(capacityBytes = 1 << 20): PageStore {
  const s = createPageStore({ capacityBytes });
  s.createPool({ id: SHARED, kind: 'ephemeral', pageSize: PAGE, owner: OWNER, shared: true });
  s.createPool({ id: PRIVATE, kind: 'ephemeral', pageSize: PAGE, owner: 'alice' });
  return s;
}

describe('shared pools in the page store', () => {
  it('a get leaves the page (not exclusive), in a private pool it takes it', () => {
    const s = store();
    s.put(SHARED, oid('o'), 0, page(1), { putter: 'alice' });
    s.put(PRIVATE, oid('o'), 0, page(1));
    expect(s.get(SHARED, oid('o'), 0)).toStrictEqual(page(1));
    expect(s.get(SHARED, oid('o'), 0)).toStrictEqual(page(1));
    expect(s.read(SHARED, oid('o'), 0)?.page).toStrictEqual(page(1));
    expect(s.stats()).toMatchObject({ ephemeralPages: 2, hits: 3 });
    expect(s.get(PRIVATE, oid('o'), 0)).toStrictEqual(page(1));
    expect(s.get(PRIVATE, oid('o'), 0)).toBeNull();
    expect(s.getPool(SHARED)?.shared).toBe(true);
    expect(s.getPool(PRIVATE)?.shared).toBeUndefined();
  });

  it('a hit moves the page to the front of the LRU: eviction takes the page not read since', () => {
    // Room for exactly three pages of one-page objects (one-byte oids) and no more.
    const s = createPageStore({ capacityBytes: 3 * (PAGE + RECORD_BYTES + objectCharge(1)) });
    s.createPool({ id: SHARED, kind: 'ephemeral', pageSize: PAGE, owner: OWNER, shared: true });
    for (const name of ['a', 'b', 'c'])
      expect(s.put(SHARED, oid(name), 0, page(1), { putter: 'x' }).status).toBe('accepted');
    // 'a' was put first but read last: 'b' is now the least recently used.
    expect(s.get(SHARED, oid('a'), 0)).not.toBeNull();
    expect(s.put(SHARED, oid('d'), 0, page(2), { putter: 'x' }).status).toBe('accepted');
    expect(s.stats().evictions).toBe(1);
    expect(s.peek(SHARED, oid('b'), 0)).toBeNull();
    for (const name of ['a', 'c', 'd']) expect(s.peek(SHARED, oid(name), 0)).not.toBeNull();
  });

  it('a departure flushes the objects the identity put to last, every page of them, and nothing else', () => {
    const s = store();
    s.put(SHARED, oid('alice-only'), 0, page(1), { putter: 'alice' });
    s.put(SHARED, oid('alice-only'), 1, page(2), { putter: 'alice' });
    // Bob put last to this one, though alice put to it first: it is bob's to flush.
    s.put(SHARED, oid('bob-last'), 0, page(3), { putter: 'alice' });
    s.put(SHARED, oid('bob-last'), 1, page(4), { putter: 'bob' });
    // Alice put last to this one: hers, whole, bob's page included.
    s.put(SHARED, oid('alice-last'), 0, page(5), { putter: 'bob' });
    s.put(SHARED, oid('alice-last'), 1, page(6), { putter: 'alice' });
    s.put(PRIVATE, oid('alice-only'), 0, page(7));
    // A get is not a put: it changes nobody's objects.
    expect(s.get(SHARED, oid('bob-last'), 0)).not.toBeNull();

    expect(s.flushObjectsPutBy(SHARED, 'alice')).toBe(4);
    expect(s.peek(SHARED, oid('alice-only'), 0)).toBeNull();
    expect(s.peek(SHARED, oid('alice-only'), 1)).toBeNull();
    expect(s.peek(SHARED, oid('alice-last'), 0)).toBeNull();
    expect(s.peek(SHARED, oid('alice-last'), 1)).toBeNull();
    expect(s.peek(SHARED, oid('bob-last'), 0)?.page).toStrictEqual(page(3));
    expect(s.peek(SHARED, oid('bob-last'), 1)?.page).toStrictEqual(page(4));
    expect(s.peek(PRIVATE, oid('alice-only'), 0)?.page).toStrictEqual(page(7));
    // A departure is no client's flush.
    expect(s.stats().flushes).toBe(0);
    expect(s.flushObjectsPutBy(SHARED, 'alice')).toBe(0);
    expect(s.flushObjectsPutBy(SHARED, 'bob')).toBe(2);
    expect(s.stats().ephemeralPages).toBe(1);
  });

  it('an object emptied and made again forgets its old putter', () => {
    const s = store();
    s.put(SHARED, oid('o'), 0, page(1), { putter: 'alice' });
    s.flushObject(SHARED, oid('o'));
    s.put(SHARED, oid('o'), 0, page(2), { putter: 'bob' });
    expect(s.flushObjectsPutBy(SHARED, 'alice')).toBe(0);
    expect(s.peek(SHARED, oid('o'), 0)?.page).toStrictEqual(page(2));
  });

  it('refuses a shared persistent pool and a departure from a pool that is not shared, changing nothing', () => {
    const s = store();
    const code = (f: () => unknown): string | undefined => {
      try {
        f();
        return undefined;
      } catch (error) {
        return error instanceof TmemError ? error.code : 'other';
      }
    };
    expect(
      code(() => s.createPool({ id: 9, kind: 'persistent', pageSize: PAGE, owner: OWNER, shared: true })),
    ).toBe(ErrorCode.BadArgument);
    expect(s.getPool(9)).toBeUndefined();
    s.put(PRIVATE, oid('o'), 0, page(1));
    expect(code(() => s.flushObjectsPutBy(PRIVATE, 'alice'))).toBe(ErrorCode.BadArgument);
    expect(code(() => s.flushObjectsPutBy(99, 'alice'))).toBe(ErrorCode.UnknownPool);
    expect(s.peek(PRIVATE, oid('o'), 0)).not.toBeNull();
  });

  it('destroying the pool frees every page and its owner account', () => {
    const s = store();
    for (let i = 0; i < 10; i++) s.put(SHARED, oid(`o${i}`), 0, page(i), { putter: i % 2 ? 'alice' : 'bob' });
    expect(s.owners()).toContain(OWNER);
    expect(s.destroyPool(SHARED)).toBe(true);
    expect(s.owners()).not.toContain(OWNER);
    expect(s.stats()).toMatchObject({ ephemeralPages: 0, usedBytes: 0, pools: 1 });
  });
});
