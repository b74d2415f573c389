import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { createSlabAllocator, DEFAULT_SLAB_BYTES } from '../src/slab-allocator.ts';
import type { SlabAllocator } from '../src/slab-allocator.ts';

/** An allocator whose moves are tracked: `where.get(owner)` is always the owner's current slot. */
function tracked(slotSize: number, slabBytes: number): { slabs: SlabAllocator; where: Map<number, number> } {
  const where = new Map<number, number>();
  const slabs = createSlabAllocator({
    slotSize,
    slabBytes,
    onMove: (owner, to) => {
      expect(where.has(owner)).toBe(true);
      where.set(owner, to);
    },
  });
  return { slabs, where };
}

/** Slot contents that identify their owner. */
function contentOf(owner: number, size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (owner * 13 + i) & 0xff;
  return bytes;
}

function allocWrite(t: ReturnType<typeof tracked>, owner: number): number {
  const ref = t.slabs.alloc(owner);
  t.slabs.write(ref, contentOf(owner, t.slabs.slotSize));
  t.where.set(owner, ref);
  return ref;
}

function release(t: ReturnType<typeof tracked>, owner: number): void {
  t.slabs.free(t.where.get(owner) as number);
  t.where.delete(owner);
}

function expectIntact(t: ReturnType<typeof tracked>): void {
  for (const [owner, ref] of t.where) {
    const bytes = t.slabs.read(ref);
    const expected = contentOf(owner, t.slabs.slotSize);
    // expect() only on a mismatch: this runs for every slot after every op of the property test.
    if (t.slabs.ownerOf(ref) !== owner || Buffer.compare(bytes, expected) !== 0) {
      expect([t.slabs.ownerOf(ref), bytes]).toEqual([owner, expected]);
    }
  }
  const { slabs } = t;
  expect(slabs.usedSlots).toBe(t.where.size);
  expect(slabs.freeSlots).toBeLessThan(2 * slabs.slotsPerSlab);
  expect(slabs.slabBytes).toBe(slabs.slabCount * slabs.slotsPerSlab * slabs.slotSize);
  expect(slabs.slabBytes).toBeLessThanOrEqual(
    (slabs.usedSlots + 2 * slabs.slotsPerSlab - 1) * slabs.slotSize,
  );
}

describe('slab allocator', () => {
  it('cuts slabs into as many slots as fit, and at least one', () => {
    const noop = (): void => {};
    expect(createSlabAllocator({ slotSize: 4096, onMove: noop }).slotsPerSlab).toBe(
      DEFAULT_SLAB_BYTES / 4096,
    );
    expect(createSlabAllocator({ slotSize: 512, slabBytes: 2000, onMove: noop }).slotsPerSlab).toBe(3);
    expect(createSlabAllocator({ slotSize: 65536, slabBytes: 4096, onMove: noop }).slotsPerSlab).toBe(1);
  });

  it('rejects bad options', () => {
    const noop = (): void => {};
    expect(() => createSlabAllocator({ slotSize: 0, onMove: noop })).toThrow(RangeError);
    expect(() => createSlabAllocator({ slotSize: 1.5, onMove: noop })).toThrow(RangeError);
    expect(() => createSlabAllocator({ slotSize: 512, slabBytes: 0, onMove: noop })).toThrow(RangeError);
  });

  it('holds no memory until the first alloc', () => {
    const { slabs } = tracked(512, 2048);
    expect(slabs.slabCount).toBe(0);
    expect(slabs.slabBytes).toBe(0);
    expect(slabs.freeSlots).toBe(0);
  });

  it('stores and returns slot contents, as copies', () => {
    const t = tracked(512, 2048);
    const ref = allocWrite(t, 7);
    const copy = t.slabs.read(ref);
    expect(copy).toEqual(contentOf(7, 512));
    copy.fill(0);
    expect(t.slabs.read(ref)).toEqual(contentOf(7, 512));
    expect(t.slabs.read(ref).buffer.byteLength).toBe(512);
    expect(t.slabs.ownerOf(ref)).toBe(7);
  });

  it('adds a slab when the others are full', () => {
    const t = tracked(512, 2048);
    for (let owner = 0; owner < 4; owner++) allocWrite(t, owner);
    expect(t.slabs.slabCount).toBe(1);
    expect(t.slabs.freeSlots).toBe(0);
    allocWrite(t, 4);
    expect(t.slabs.slabCount).toBe(2);
    expect(t.slabs.freeSlots).toBe(3);
    expectIntact(t);
  });

  it('reuses freed slots before adding slabs', () => {
    const t = tracked(512, 2048);
    for (let owner = 0; owner < 4; owner++) allocWrite(t, owner);
    release(t, 2);
    allocWrite(t, 9);
    expect(t.slabs.slabCount).toBe(1);
    expectIntact(t);
  });

  it('releases a slab once two slabs worth of slots are free, keeping one as hysteresis', () => {
    const t = tracked(512, 2048);
    for (let owner = 0; owner < 12; owner++) allocWrite(t, owner);
    expect(t.slabs.slabCount).toBe(3);
    for (let owner = 0; owner < 12; owner++) {
      release(t, owner);
      expectIntact(t);
    }
    expect(t.slabs.usedSlots).toBe(0);
    expect(t.slabs.slabCount).toBe(1);
  });

  it('compacts scattered slots into fewer slabs and reports every move', () => {
    const t = tracked(512, 2048);
    for (let owner = 0; owner < 16; owner++) allocWrite(t, owner);
    expect(t.slabs.slabCount).toBe(4);
    // Free two slots in every slab: no slab ever becomes empty by itself, so only compaction can release one.
    const moves: number[] = [];
    const originalWhere = new Map(t.where);
    for (const owner of [0, 1, 4, 5, 8, 9, 12, 13]) release(t, owner);
    for (const [owner, ref] of t.where) if (originalWhere.get(owner) !== ref) moves.push(owner);
    expect(t.slabs.slabCount).toBe(3);
    expect(moves.length).toBeGreaterThan(0);
    expectIntact(t);
  });

  it('moves a slot under its new owner after setOwner', () => {
    const t = tracked(512, 2048);
    const refs = Array.from({ length: 8 }, (_, owner) => allocWrite(t, owner));
    t.slabs.setOwner(refs[7] as number, 70);
    t.where.delete(7);
    t.where.set(70, refs[7] as number);
    expect(t.slabs.ownerOf(refs[7] as number)).toBe(70);
    // Free the first slab's worth and more, so compaction moves the renamed slot's neighbours or itself.
    for (let owner = 0; owner < 6; owner++) {
      t.slabs.free(t.where.get(owner) as number);
      t.where.delete(owner);
    }
    expect(t.slabs.read(t.where.get(70) as number)).toEqual(contentOf(7, 512));
    expect(t.slabs.ownerOf(t.where.get(70) as number)).toBe(70);
    expect(() => t.slabs.setOwner(t.where.get(70) as number, -1)).toThrow(RangeError);
  });

  it('throws on double free, on reads of free slots and on refs outside any slab', () => {
    const t = tracked(512, 2048);
    const ref = allocWrite(t, 1);
    allocWrite(t, 2);
    release(t, 1);
    expect(() => t.slabs.free(ref)).toThrow(RangeError);
    expect(() => t.slabs.read(ref)).toThrow(RangeError);
    expect(() => t.slabs.ownerOf(ref)).toThrow(RangeError);
    expect(() => t.slabs.read(1000)).toThrow(RangeError);
    expect(() => t.slabs.read(-1)).toThrow(RangeError);
    expectIntact(t);
  });

  it('writes a shorter src at the start of the slot and views a prefix without copying', () => {
    const t = tracked(512, 2048);
    const ref = allocWrite(t, 1);
    const before = t.slabs.read(ref);
    t.slabs.write(ref, new Uint8Array(100).fill(7));
    const view = t.slabs.view(ref, 100);
    expect(view.length).toBe(100);
    expect(view.every((b) => b === 7)).toBe(true);
    // The rest of the slot is as it was.
    expect(t.slabs.read(ref).subarray(100)).toEqual(before.subarray(100));
    t.slabs.write(ref, before);
    expectIntact(t);
  });

  it('checks write length and owner numbers', () => {
    const t = tracked(512, 2048);
    const ref = allocWrite(t, 1);
    expect(() => t.slabs.write(ref, new Uint8Array(513))).toThrow(RangeError);
    expect(() => t.slabs.view(ref, 513)).toThrow(RangeError);
    expect(() => t.slabs.alloc(-1)).toThrow(RangeError);
    expect(() => t.slabs.alloc(2 ** 31)).toThrow(RangeError);
    expectIntact(t);
  });

  it('keeps every live slot intact and memory bounded under any alloc/free sequence', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }),
        fc.array(fc.tuple(fc.boolean(), fc.nat()), { maxLength: 300 }),
        (slotsPerSlab, ops) => {
          const t = tracked(512, 512 * slotsPerSlab);
          let nextOwner = 0;
          for (const [isAlloc, pick] of ops) {
            if (isAlloc || t.where.size === 0) {
              allocWrite(t, nextOwner++);
            } else {
              const owners = [...t.where.keys()];
              release(t, owners[pick % owners.length] as number);
            }
            expectIntact(t);
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});
