import { describe, expect, it } from 'vitest';
import { createPageArena } from '../src/page-arena.ts';
import { createPageStore } from '../src/page-store.ts';

describe('page arena', () => {
  it('hands out disjoint pages of one chunk until reset, then the same memory again', () => {
    const arena = createPageArena(16);
    const a = arena.take(8).fill(1);
    const b = arena.take(8).fill(2);
    expect(a.buffer).toBe(b.buffer);
    expect([...a]).toEqual(Array(8).fill(1));
    expect([...b]).toEqual(Array(8).fill(2));
    arena.reset();
    const c = arena.take(8);
    expect(c.buffer).toBe(a.buffer);
    expect(c.byteOffset).toBe(a.byteOffset);
  });

  it('starts a new chunk when a page does not fit, leaving earlier pages untouched', () => {
    const arena = createPageArena(16);
    const a = arena.take(12).fill(1);
    const b = arena.take(12).fill(2);
    expect(b.buffer).not.toBe(a.buffer);
    expect([...a]).toEqual(Array(12).fill(1));
    // A page larger than a chunk gets a chunk of its own size.
    expect(arena.take(40).byteLength).toBe(40);
  });

  it('rejects a chunk size that is not a positive integer', () => {
    expect(() => createPageArena(0)).toThrow(RangeError);
    expect(() => createPageArena(1.5)).toThrow(RangeError);
  });
});

describe('page store reads into an arena', () => {
  it('returns the same bytes as a fresh copy, for slotted and same-filled pages, and frees the slot', () => {
    const store = createPageStore({ capacityBytes: 16 * 1024 * 1024 });
    store.createPool({ id: 3, kind: 'ephemeral', pageSize: 4096, owner: 'app' });
    const oid = new Uint8Array([9]);
    const page = Uint8Array.from({ length: 4096 }, (_, i) => i & 255);
    store.put(3, oid, 0, page);
    store.put(3, oid, 1, new Uint8Array(4096).fill(5));
    const arena = createPageArena();
    const slotted = store.read(3, oid, 0, arena);
    const filled = store.read(3, oid, 1, arena);
    expect(slotted?.page).toEqual(page);
    expect(filled?.page).toEqual(new Uint8Array(4096).fill(5));
    expect(slotted?.page.buffer).toBe(filled?.page.buffer);
    // Still an exclusive get: both pages are gone.
    expect(store.read(3, oid, 0, arena)).toBeNull();
    expect(store.read(3, oid, 1)).toBeNull();
  });
});
