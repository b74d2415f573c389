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

/** The codec of each compression a pool may name. */
export const PAGE_CODECS: Readonly<Record<Compression, PageCodec>> = { lz4: lz4Codec };
