/**
 * Fixed-size slots cut from large ArrayBuffers ("slabs"), one allocator per slot size.
 *
 * Why slabs: one Buffer per page would put millions of small objects on the heap (GC pauses, ~100 bytes of
 * overhead each, an unpredictable footprint). A slab is one allocation holding many pages; a slot is named by a
 * plain number (`SlotRef`), so the page store's metadata holds no pointers at all.
 *
 * Memory bound (the invariant `free()` restores after every call): a class never holds 2 * slotsPerSlab or more
 * free slots. When a free reaches that many, the emptiest slab is compacted: its live slots are copied into free
 * slots of the other slabs (there are always enough: they hold at least slotsPerSlab free slots), the owner of
 * each moved slot is told its new ref through `onMove`, and the slab is released to the garbage collector so its
 * memory can serve another page size. Hence, per class:
 *
 *     slab bytes <= (usedSlots + 2 * slotsPerSlab - 1) * slotSize  <  used slot bytes + 2 slabs
 *
 * Compaction is amortised O(1) copies per free: after one, the class has at most slotsPerSlab free slots again,
 * so the next needs slotsPerSlab more frees, and it moves fewer than slotsPerSlab slots. Keeping up to two slabs'
 * worth of free slots (rather than one) is hysteresis: an alloc/free pair at the boundary must not allocate and
 * release a slab every time. A released slab goes to the store's spares (spare-slabs.ts) when it has them.
 */

import type { SpareSlabs } from './spare-slabs.ts';

/** A slot's name: `slabId * slotsPerSlab + slotInSlab`. Non-negative integer. */
export type SlotRef = number;

/**
 * Default slab size: just over 32 MiB, so that glibc's malloc always serves a slab with its own mmap and a
 * released slab goes back to the OS. Smaller slabs (1 MiB before) are served from the brk heap, interleaved
 * with the node's transient 1 MiB frame buffers, once glibc's dynamic mmap threshold has risen (it rises to
 * the size of any freed mmapped chunk up to 32 MiB): measured, a node kept 712 MiB resident after destroying a
 * 1 GiB pool with 1 MiB slabs, 169 MiB with these. An untouched slot costs no RSS (calloc of fresh mmapped
 * memory writes nothing), so a large slab costs address space, not memory; the price is coarser release (a
 * class keeps up to 2 slabs' worth of free slots, which stay resident once written) and a compaction that moves
 * up to one slab's live slots (32 MiB) in one free.
 */
export const DEFAULT_SLAB_BYTES = 32 * 1024 * 1024 + 64 * 1024;

/** Options of one slab class. */
export interface SlabAllocatorOptions {
  /** Bytes per slot (the page size of the pools using this class). */
  slotSize: number;
  /**
   * Target bytes per slab; a slab holds `max(1, floor(slabBytes / slotSize))` slots.
   * @default 33619968 (DEFAULT_SLAB_BYTES, 32 MiB + 64 KiB)
   */
  slabBytes?: number;
  /**
   * Called when compaction moves a live slot: `owner` (as given to `alloc`) now lives at `to`. The old ref is
   * already invalid when this runs. Must not call back into the allocator.
   */
  onMove: (owner: number, to: SlotRef) => void;
  /**
   * Where emptied slabs go and new ones come from first (spare-slabs.ts), shared by the classes of one store:
   * memory already touched costs no page faults to write. Without it, an emptied slab is released at once.
   */
  spares?: SpareSlabs;
}

/** One slab class: fixed-size slots with a free list, compaction and slab release. */
export interface SlabAllocator {
  /** Bytes per slot. */
  readonly slotSize: number;
  /** Slots per slab. */
  readonly slotsPerSlab: number;
  /** Slots currently allocated. */
  readonly usedSlots: number;
  /** Free slots in the slabs currently held (always < 2 * slotsPerSlab). */
  readonly freeSlots: number;
  /** Slabs currently held. */
  readonly slabCount: number;
  /** Bytes of slab memory currently held. */
  readonly slabBytes: number;
  /** Takes a free slot for `owner` (a non-negative int32 the caller uses to find its metadata in `onMove`). */
  alloc(owner: number): SlotRef;
  /** Returns a slot to the free list; may compact (calling `onMove` for other slots) and release a slab. */
  free(ref: SlotRef): void;
  /**
   * Copies `src` (at most slotSize bytes) to the start of the slot. A shorter `src` (a compressed page in its
   * size class) leaves the rest of the slot as it was: the owner keeps the length it wrote.
   */
  write(ref: SlotRef, src: Uint8Array): void;
  /** A fresh copy of the slot's bytes: the slot may be reused or moved right after. */
  read(ref: SlotRef): Uint8Array<ArrayBuffer>;
  /**
   * The first `length` bytes of the slot, as a view, not a copy: valid only until the next alloc or free of
   * this class (a free may compact, moving the bytes). For reading them right away (decompressing).
   */
  view(ref: SlotRef, length: number): Uint8Array<ArrayBuffer>;
  /** The owner of a live slot (for invariant checks). Throws if the slot is not allocated. */
  ownerOf(ref: SlotRef): number;
  /** Gives a live slot a new owner (the caller renumbered its metadata). Throws if the slot is not allocated. */
  setOwner(ref: SlotRef, owner: number): void;
}

interface Slab {
  readonly bytes: Uint8Array<ArrayBuffer>;
  /** Owner per slot, FREE when the slot is free. */
  readonly owners: Int32Array;
  /** Stack of free slot numbers, `freeTop` entries deep. */
  readonly freeStack: Int32Array;
  freeTop: number;
  /** Position in `partial`, or -1 when the slab has no free slot. */
  partialPos: number;
}

const FREE = -1;
const MAX_OWNER = 0x7fffffff;

/** Creates one slab class. */
export function createSlabAllocator(options: SlabAllocatorOptions): SlabAllocator {
  const { slotSize, onMove, spares } = options;
  const targetSlabBytes = options.slabBytes ?? DEFAULT_SLAB_BYTES;
  if (!Number.isSafeInteger(slotSize) || slotSize <= 0) {
    throw new RangeError(`slotSize must be a positive integer, got ${slotSize}`);
  }
  if (!Number.isSafeInteger(targetSlabBytes) || targetSlabBytes <= 0) {
    throw new RangeError(`slabBytes must be a positive integer, got ${targetSlabBytes}`);
  }
  const slotsPerSlab = Math.max(1, Math.floor(targetSlabBytes / slotSize));
  const bytesPerSlab = slotsPerSlab * slotSize;

  // Slab ids are reused after release so refs stay small; `slabs[id]` is undefined for a released id.
  const slabs: (Slab | undefined)[] = [];
  const releasedIds: number[] = [];
  // Slabs with at least one free slot, in no particular order (swap-remove keeps removal O(1)).
  const partial: number[] = [];
  let usedSlots = 0;
  let slabCount = 0;

  function addPartial(id: number, slab: Slab): void {
    slab.partialPos = partial.length;
    partial.push(id);
  }

  function removePartial(slab: Slab): void {
    const pos = slab.partialPos;
    const lastId = partial.pop() as number;
    if (pos < partial.length) {
      partial[pos] = lastId;
      (slabs[lastId] as Slab).partialPos = pos;
    }
    slab.partialPos = -1;
  }

  function newSlab(): number {
    const freeStack = new Int32Array(slotsPerSlab);
    // Hand out low slots first: not needed for correctness, but keeps dumps and tests readable.
    for (let i = 0; i < slotsPerSlab; i++) freeStack[i] = slotsPerSlab - 1 - i;
    const slab: Slab = {
      bytes: spares?.take(bytesPerSlab) ?? new Uint8Array(bytesPerSlab),
      owners: new Int32Array(slotsPerSlab).fill(FREE),
      freeStack,
      freeTop: slotsPerSlab,
      partialPos: -1,
    };
    const id = releasedIds.pop() ?? slabs.length;
    if (id * slotsPerSlab + slotsPerSlab - 1 > Number.MAX_SAFE_INTEGER) {
      throw new RangeError('slab allocator exhausted its slot numbering');
    }
    slabs[id] = slab;
    slabCount++;
    addPartial(id, slab);
    return id;
  }

  function slabOf(ref: SlotRef): Slab {
    const slab = Number.isSafeInteger(ref) && ref >= 0 ? slabs[Math.floor(ref / slotsPerSlab)] : undefined;
    if (slab === undefined) throw new RangeError(`slot ${ref} is not in a live slab`);
    return slab;
  }

  /** The slab of an allocated slot; throws on a free or unknown ref (a bug in the caller, never silent). */
  function liveSlab(ref: SlotRef): Slab {
    const slab = slabOf(ref);
    if (slab.owners[ref % slotsPerSlab] === FREE) throw new RangeError(`slot ${ref} is not allocated`);
    return slab;
  }

  function take(owner: number): SlotRef {
    const id = partial.length > 0 ? (partial[partial.length - 1] as number) : newSlab();
    const slab = slabs[id] as Slab;
    const slot = slab.freeStack[--slab.freeTop] as number;
    if (slab.freeTop === 0) removePartial(slab);
    slab.owners[slot] = owner;
    usedSlots++;
    return id * slotsPerSlab + slot;
  }

  /** Empties the slab with the most free slots into the others and releases it. */
  function compact(): void {
    let victimId = -1;
    let victimFree = -1;
    for (const id of partial) {
      const free = (slabs[id] as Slab).freeTop;
      if (free > victimFree) {
        victimFree = free;
        victimId = id;
      }
    }
    const victim = slabs[victimId] as Slab;
    // Out of `partial` first, so `take` below never hands out a slot of the slab being emptied.
    removePartial(victim);
    for (let slot = 0; slot < slotsPerSlab; slot++) {
      const owner = victim.owners[slot] as number;
      if (owner === FREE) continue;
      usedSlots--; // `take` counts it again
      const to = take(owner);
      const dest = slabs[Math.floor(to / slotsPerSlab)] as Slab;
      const from = slot * slotSize;
      dest.bytes.set(victim.bytes.subarray(from, from + slotSize), (to % slotsPerSlab) * slotSize);
      victim.owners[slot] = FREE;
      onMove(owner, to);
    }
    slabs[victimId] = undefined;
    spares?.give(victim.bytes);
    releasedIds.push(victimId);
    slabCount--;
  }

  return {
    slotSize,
    slotsPerSlab,
    get usedSlots() {
      return usedSlots;
    },
    get freeSlots() {
      return slabCount * slotsPerSlab - usedSlots;
    },
    get slabCount() {
      return slabCount;
    },
    get slabBytes() {
      return slabCount * bytesPerSlab;
    },

    alloc(owner) {
      if (!Number.isInteger(owner) || owner < 0 || owner > MAX_OWNER) {
        throw new RangeError(`owner must be a non-negative int32, got ${owner}`);
      }
      return take(owner);
    },

    free(ref) {
      const slab = liveSlab(ref);
      const slot = ref % slotsPerSlab;
      slab.owners[slot] = FREE;
      slab.freeStack[slab.freeTop++] = slot;
      if (slab.partialPos === -1) addPartial(Math.floor(ref / slotsPerSlab), slab);
      usedSlots--;
      if (slabCount * slotsPerSlab - usedSlots >= 2 * slotsPerSlab) compact();
    },

    write(ref, src) {
      if (src.length > slotSize)
        throw new RangeError(`expected at most ${slotSize} bytes, got ${src.length}`);
      liveSlab(ref).bytes.set(src, (ref % slotsPerSlab) * slotSize);
    },

    read(ref) {
      const from = (ref % slotsPerSlab) * slotSize;
      return liveSlab(ref).bytes.slice(from, from + slotSize);
    },

    view(ref, length) {
      if (!Number.isInteger(length) || length < 0 || length > slotSize) {
        throw new RangeError(`length must be 0..${slotSize}, got ${length}`);
      }
      const from = (ref % slotsPerSlab) * slotSize;
      return liveSlab(ref).bytes.subarray(from, from + length);
    },

    ownerOf(ref) {
      return liveSlab(ref).owners[ref % slotsPerSlab] as number;
    },

    setOwner(ref, owner) {
      if (!Number.isInteger(owner) || owner < 0 || owner > MAX_OWNER) {
        throw new RangeError(`owner must be a non-negative int32, got ${owner}`);
      }
      liveSlab(ref).owners[ref % slotsPerSlab] = owner;
    },
  };
}
