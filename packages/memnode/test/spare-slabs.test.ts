import { describe, it, expect } from 'vitest';
import { createSpareSlabs } from '../src/spare-slabs.ts';
import { createSlabAllocator } from '../src/slab-allocator.ts';
import { createPageStore } from '../src/page-store.ts';

/** A reserve on a clock the test moves. */
function reserve(
  maxBytes: number,
  idleMs: number,
): { spares: ReturnType<typeof createSpareSlabs>; clock: { t: number } } {
  const clock = { t: 0 };
  return { spares: createSpareSlabs({ maxBytes, idleMs, now: () => clock.t }), clock };
}

describe('spare slabs', () => {
  it('hands back a kept slab of the asked size, the same memory, and only once', () => {
    const { spares } = reserve(4096, 1000);
    const slab = new Uint8Array(2048).fill(7);
    spares.give(slab);
    expect(spares.heldBytes).toBe(2048);
    expect(spares.take(1024)).toBeUndefined();
    expect(spares.take(2048)).toBe(slab);
    expect(spares.heldBytes).toBe(0);
    expect(spares.take(2048)).toBeUndefined();
  });

  it('keeps no more than maxBytes: a slab past the bound is left to the garbage collector', () => {
    const { spares } = reserve(3000, 1000);
    spares.give(new Uint8Array(2048));
    spares.give(new Uint8Array(2048));
    expect(spares.heldBytes).toBe(2048);
    const none = reserve(0, 1000).spares;
    none.give(new Uint8Array(1));
    expect(none.heldBytes).toBe(0);
  });

  it('releases a slab idleMs after it was given, oldest first, unless it was taken back', () => {
    const { spares, clock } = reserve(1 << 20, 1000);
    const first = new Uint8Array(1024);
    spares.give(first);
    clock.t = 600;
    spares.give(new Uint8Array(1024));
    clock.t = 999;
    expect(spares.releaseIdle()).toBe(0);
    clock.t = 1000;
    expect(spares.releaseIdle()).toBe(1024);
    expect(spares.heldBytes).toBe(1024);
    // The newer one is taken before it idles out; the older one is gone.
    const taken = spares.take(1024);
    expect(taken).toBeDefined();
    expect(taken).not.toBe(first);
    clock.t = 5000;
    expect(spares.releaseIdle()).toBe(0);
  });

  it('rejects a negative bound or idle time', () => {
    expect(() => createSpareSlabs({ maxBytes: -1, idleMs: 0 })).toThrow(RangeError);
    expect(() => createSpareSlabs({ maxBytes: 0, idleMs: -1 })).toThrow(RangeError);
  });

  it('gives a slab class the memory it emptied, so refilling takes no fresh slab', () => {
    const { spares } = reserve(1 << 20, 1000);
    const slabs = createSlabAllocator({ slotSize: 512, slabBytes: 2048, onMove: () => {}, spares });
    const refs = Array.from({ length: 12 }, (_, owner) => slabs.alloc(owner));
    refs.forEach((ref) => slabs.write(ref, new Uint8Array(512).fill(1)));
    for (const ref of refs) slabs.free(ref);
    // The class keeps one slab (hysteresis); the two it emptied went to the spares.
    expect(slabs.slabCount).toBe(1);
    expect(spares.heldBytes).toBe(2 * 2048);
    for (let owner = 0; owner < 12; owner++) slabs.alloc(owner);
    expect(slabs.slabCount).toBe(3);
    expect(spares.heldBytes).toBe(0);
  });

  it('in a page store: emptied slabs count as spare memory and refill the store', () => {
    const store = createPageStore({
      capacityBytes: 64 * 1024 * 1024,
      slabBytes: 64 * 1024,
      spareSlabIdleMs: 60_000,
    });
    const pool = 7;
    store.createPool({ id: pool, kind: 'ephemeral', pageSize: 4096, owner: 'app' });
    const oid = new Uint8Array([1]);
    // Not same-filled (those are metadata only): every page takes a slot.
    const page = (index: number): Uint8Array =>
      Uint8Array.from({ length: 4096 }, (_, i) => (i + index) & 255);
    const fill = (): void => {
      for (let index = 0; index < 64; index++) store.put(pool, oid, index, page(index));
    };
    fill();
    const full = store.memory();
    expect(full.spareSlabBytes).toBe(0);
    store.flushObject(pool, oid);
    const flushed = store.memory();
    expect(flushed.spareSlabBytes).toBeGreaterThan(0);
    expect(flushed.slabBytes + flushed.spareSlabBytes).toBe(full.slabBytes);
    // Not idle yet: nothing is released.
    expect(store.releaseIdleSlabs()).toBe(0);
    fill();
    expect(store.memory().slabBytes).toBe(full.slabBytes);
    expect(store.memory().spareSlabBytes).toBe(0);
  });
});
