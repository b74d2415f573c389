/**
 * Scratch memory for the pages of replies that are encoded before anything else runs: the copies an ephemeral
 * get takes out of its slab, reused from reply to reply instead of one fresh `ArrayBuffer` per page.
 *
 * Why: a get must copy its page out of the slab (an exclusive get frees the slot, and a later op of the same
 * batch may write into it before the reply is encoded), and a fresh 4 KiB `ArrayBuffer` per copy is external
 * memory that V8 only gives back in a full GC; at tens of thousands of gets per second that alone calls for
 * several full collections a second. The reply encoder copies each page into the frame it builds, so once the
 * frame is encoded the scratch copies are dead and their memory can serve the next reply.
 *
 * The rule a caller must keep: every page taken is done with (its reply encoded) before `reset`. The node's
 * session takes pages only for replies it encodes in the same synchronous run (a batch's first part, a single
 * op answered at once) and resets right after; replies that wait for another event get pages of their own.
 */

/** Default size of one scratch chunk: a batch of 256 pages of 4 KiB. */
export const DEFAULT_PAGE_ARENA_CHUNK_BYTES = 1024 * 1024;

/** Reusable scratch memory for reply pages (see the module comment). */
export interface PageArena {
  /** `byteLength` bytes of scratch memory, valid until the next `reset`; contents are left as they were. */
  take(byteLength: number): Uint8Array<ArrayBuffer>;
  /** Every page taken since the last reset is done with: their memory serves the next ones. */
  reset(): void;
}

/**
 * Creates an arena. It bump-allocates from one chunk; a reply larger than what is left of it gets a new chunk
 * (the old one stays alive as long as the pages in it), and `reset` keeps only the newest chunk, so an arena
 * holds one chunk at rest, or one reply's worth if a reply was larger.
 */
export function createPageArena(chunkBytes = DEFAULT_PAGE_ARENA_CHUNK_BYTES): PageArena {
  if (!Number.isSafeInteger(chunkBytes) || chunkBytes <= 0) {
    throw new RangeError(`page arena chunkBytes must be a positive integer, got ${chunkBytes}`);
  }
  let chunk: Uint8Array<ArrayBuffer> | undefined;
  let used = 0;
  return {
    take(byteLength) {
      if (chunk === undefined || used + byteLength > chunk.byteLength) {
        chunk = new Uint8Array(Math.max(chunkBytes, byteLength));
        used = 0;
      }
      const page = chunk.subarray(used, used + byteLength);
      used += byteLength;
      return page;
    },
    reset() {
      used = 0;
    },
  };
}
