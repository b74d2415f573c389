/**
 * Emptied slabs kept warm for reuse, up to a byte bound, and released once idle: the page store's answer to
 * the cost of first touch.
 *
 * Why: writing a page into memory the process has never touched costs a page fault per 4 KiB, and on this
 * kind of virtual machine that fault (the kernel zeroing and mapping the page) costs 14–24 µs, against 0.2 µs
 * for the same 4 KiB copy into memory already mapped (measured with a 32 MiB Uint8Array, first write against
 * second). A store that releases each slab as soon as compaction empties it pays that fault again for every
 * page of a workload that churns: exclusive gets (frontswap's swap-in, precache's read) free slots, compaction
 * releases the emptied slabs, and the next puts fault fresh slabs in. Profiled on batched 4 KiB puts after a
 * round of gets, the slab write was 47% of the node's busy time, 39 µs per put.
 *
 * The remedy is the one jemalloc applies to dirty pages (its `dirty_decay_ms`, 10 s by default): keep freed
 * memory mapped for a while, so a burst of frees followed by a burst of allocations reuses it, and give it back
 * when it stays unused. Here the unit is a whole slab (an ArrayBuffer; the page store's slabs are one size for
 * every power-of-two page size), kept up to `maxBytes` in all, each released `idleMs` after it was emptied
 * unless a slab class took it back first. A spare holds the bytes of freed pages: it is only ever handed to
 * the store's own allocators, which overwrite a slot before any read of it.
 */

/** Default bound of spare slab memory: at most a quarter of the node's capacity, and at most 1 GiB. */
export const DEFAULT_SPARE_SLAB_MAX_BYTES = 1024 * 1024 * 1024;

/** Default time an emptied slab is kept for reuse before it is released: jemalloc's dirty decay, 10 s. */
export const DEFAULT_SPARE_SLAB_IDLE_MS = 10_000;

/** Options of the spare-slab reserve. */
export interface SpareSlabsOptions {
  /** Most bytes of emptied slabs kept at once; 0 keeps none (every emptied slab is released at once). */
  maxBytes: number;
  /** Milliseconds an emptied slab is kept before `releaseIdle` lets it go. */
  idleMs: number;
  /** Monotonic clock in ms (tests pass their own). @default performance.now */
  now?: () => number;
}

/** Emptied slabs kept for reuse (see the module comment). */
export interface SpareSlabs {
  /** Bytes of spare slabs held now. */
  readonly heldBytes: number;
  /** A spare slab of exactly `byteLength` bytes (its old contents left as they were), or undefined. */
  take(byteLength: number): Uint8Array<ArrayBuffer> | undefined;
  /** Keeps an emptied slab for reuse if the bound allows; otherwise it is left to the garbage collector. */
  give(bytes: Uint8Array<ArrayBuffer>): void;
  /**
   * Lets go of every spare emptied more than `idleMs` ago; returns the bytes released. `take` and `give` call
   * it; a node that goes quiet calls it on a timer, or its spares would stay resident until traffic resumes.
   */
  releaseIdle(): number;
}

interface Spare {
  bytes: Uint8Array<ArrayBuffer>;
  since: number;
}

/** Creates an empty reserve. */
export function createSpareSlabs(options: SpareSlabsOptions): SpareSlabs {
  const { maxBytes, idleMs } = options;
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) {
    throw new RangeError(`spare slab maxBytes must be an integer >= 0, got ${maxBytes}`);
  }
  if (!Number.isFinite(idleMs) || idleMs < 0) {
    throw new RangeError(`spare slab idleMs must be >= 0, got ${idleMs}`);
  }
  const now = options.now ?? (() => performance.now());
  // Oldest first: `give` appends, `take` reuses the newest (the most likely still in the CPU caches and
  // least likely to be released next), `releaseIdle` drops from the front.
  const spares: Spare[] = [];
  let heldBytes = 0;

  return {
    get heldBytes() {
      return heldBytes;
    },

    take(byteLength) {
      this.releaseIdle();
      for (let i = spares.length - 1; i >= 0; i--) {
        const spare = spares[i] as Spare;
        if (spare.bytes.byteLength !== byteLength) continue;
        spares.splice(i, 1);
        heldBytes -= byteLength;
        return spare.bytes;
      }
      return undefined;
    },

    give(bytes) {
      this.releaseIdle();
      if (heldBytes + bytes.byteLength > maxBytes) return;
      spares.push({ bytes, since: now() });
      heldBytes += bytes.byteLength;
    },

    releaseIdle() {
      const cutoff = now() - idleMs;
      let released = 0;
      while (spares.length > 0 && (spares[0] as Spare).since <= cutoff) {
        released += (spares.shift() as Spare).bytes.byteLength;
      }
      heldBytes -= released;
      return released;
    },
  };
}
