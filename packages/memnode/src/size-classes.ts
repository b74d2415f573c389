/**
 * Slot sizes for pages of varying stored length (compressed pages): eighths of the pool's page size.
 *
 * Why eighths: every size class is one slab class (slab-allocator.ts), and each slab class may hold up to two
 * slabs of free slots, so the number of classes multiplies the slack the memory bound allows; finer classes
 * waste less inside each slot. Eighths waste at most pageSize/8 - 1 bytes per page (on average pageSize/16, 6%
 * of a page, with lengths spread evenly) and add at most 7 slab classes per page size. Buddy-style halves
 * would waste up to half a page; packing pages of any length into shared slabs (zsmalloc) wastes nothing
 * inside slots but needs a compaction that moves pages of different sizes, which the slab allocator's
 * fixed-size slots keep simple.
 *
 * A class size is a multiple of 64 B (the smallest page, 512 B, over 8), so it is also the slot size of other
 * page sizes' classes and raw pages: one slab class per slot size serves them all.
 */

/** How many size classes a page size has, the page size itself (raw pages) being the last. */
export const SIZE_CLASS_STEPS = 8;

/** The slot a stored length takes in a pool of `pageSize`: the smallest multiple of pageSize/8 that holds it. */
export function slotSizeFor(pageSize: number, storedBytes: number): number {
  const step = pageSize / SIZE_CLASS_STEPS;
  return Math.max(1, Math.ceil(storedBytes / step)) * step;
}

/**
 * The longest compressed length worth keeping: one that saves at least one size class. A page that does not
 * compress to this is stored raw (it would cost the same slot and still pay for decompression on every get).
 */
export function maxCompressedBytes(pageSize: number): number {
  return pageSize - pageSize / SIZE_CLASS_STEPS;
}
