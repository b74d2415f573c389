/**
 * The codecs compressed pools store their pages with. Compression happens in the node's page store, not in the
 * client: the contract is about node memory (a compressed page is charged its real cost against capacity), the
 * checksum stays over the page as the application wrote it, and every copy of a replicated page is compressed
 * by the owner that stores it (replicas receive the raw page, as from any put), so the wire and every
 * client stay the same for compressed and uncompressed pools.
 *
 * lz4 through `lz4-napi` (lz4_flex, a Rust build shipped as a prebuilt binary per platform through the npm
 * registry): the measured choice, see docs/architecture.md's dependency table and `bench/codecs.ts`.
 */
import type { Compression } from '@tmem/protocol';
import { compressSync, uncompressSync } from 'lz4-napi';

/** One compression algorithm, as the page store uses it. */
export interface PageCodec {
  /** The compressed form of `page` (a fresh buffer; `page` may be a view into a frame and is not kept). */
  compress(page: Uint8Array): Uint8Array;
  /**
   * The page `packed` came from, `pageSize` bytes owning their whole ArrayBuffer, or null when `packed` cannot
   * be decompressed into exactly that many bytes (corrupt data: never throws for it).
   */
  decompress(packed: Uint8Array, pageSize: number): Uint8Array<ArrayBuffer> | null;
}

/**
 * lz4 block format with lz4_flex's 4-byte little-endian length in front. The length is checked against the page
 * size before decompressing: lz4_flex allocates what it says, and a corrupt length must not ask for gigabytes.
 */
export const lz4Codec: PageCodec = {
  compress(page) {
    // lz4-napi's types ask for a Buffer; any Uint8Array (also a view) works, tested in page-compression.test.ts.
    return compressSync(page as Buffer);
  },
  decompress(packed, pageSize) {
    if (packed.length < 4) return null;
    const length = (packed[0]! | (packed[1]! << 8) | (packed[2]! << 16) | (packed[3]! << 24)) >>> 0;
    if (length !== pageSize) return null;
    let page: Buffer;
    try {
      page = uncompressSync(packed);
    } catch {
      return null;
    }
    if (page.length !== pageSize) return null;
    // A napi buffer owns its ArrayBuffer exactly; copy if a build ever hands out a view of a larger one.
    if (page.byteOffset === 0 && page.buffer.byteLength === pageSize) {
      return new Uint8Array(page.buffer as ArrayBuffer, 0, pageSize);
    }
    return new Uint8Array(page);
  },
};

/**
 * looksIncompressible reads the page as SEGMENTS equal parts (the size classes are eighths of the page: a part
 * that compresses can save one) and samples SEGMENT_SAMPLES bytes spread over each.
 */
const SEGMENTS = 8;
const SEGMENT_SAMPLES = 32;
/**
 * A part whose samples hold at least this many distinct values reads as random. Uniform random bytes give about
 * 30.2 of 32 (23 or fewer about once in 10^5 parts); text, JSON, numbers, zero padding and repeated blocks give
 * far fewer (tested on many kinds). Base64 or hex of random bytes may read as random: lz4 does not shrink them.
 */
const RANDOM_DISTINCT = 24;
/**
 * Smaller pages are always compressed: lz4 costs little on them, and a random block repeated within a page (which
 * lz4 does shrink) would read as random once it is longer than an eighth of the page.
 */
const MIN_JUDGED_BYTES = 4096;
/** The byte values seen in the current part, one bit each. */
const seen = new Uint32Array(8);

/**
 * Whether `page` looks like random data in every eighth, which no codec shrinks by a size class: the early abort
 * of compression, from a sample of 256 bytes (as btrfs's compression heuristic does). It costs about 1 µs on a
 * random page and stops at the first part that is not random, against a full lz4 pass of 8 µs that would be
 * thrown away. A page with any compressible part (random data and zero padding, say) is compressed as before;
 * so is one that repeats a block shorter than an eighth. A wrong answer (a random block longer than an eighth,
 * repeated) only stores a compressible page raw, as a pool without a codec would: memory, never data.
 */
export function looksIncompressible(page: Uint8Array): boolean {
  if (page.length < MIN_JUDGED_BYTES) return false;
  const part = page.length / SEGMENTS;
  const stride = Math.floor(part / SEGMENT_SAMPLES);
  for (let segment = 0; segment < SEGMENTS; segment++) {
    seen.fill(0);
    let distinct = 0;
    const from = segment * part;
    for (let i = 0; i < SEGMENT_SAMPLES; i++) {
      const b = page[from + i * stride] as number;
      const bit = 1 << (b & 31);
      const word = b >>> 5;
      const bits = seen[word] as number;
      if ((bits & bit) === 0) {
        seen[word] = bits | bit;
        distinct++;
      }
    }
    if (distinct < RANDOM_DISTINCT) return false;
  }
  return true;
}

/** The codec of each compression a pool may name. */
export const PAGE_CODECS: Readonly<Record<Compression, PageCodec>> = { lz4: lz4Codec };
