// End-to-end page checksums: the client computes one at put, nodes check it on every copy, the client checks
// it on every get. CRC-32C (Castagnoli) because it is the checksum storage systems use for exactly this
// (iSCSI, ext4 metadata, RocksDB blocks): it catches every burst error up to 32 bits and costs about 3 µs per
// 4 KiB page in pure JS (crc-32 by SheetJS; a native binding would be 2.5x faster but adds a platform binary).
import CRC32C from 'crc-32/crc32c.js';

/** CRC-32C of `page` as an unsigned 32-bit integer (what frames carry in `sum`). */
export function pageChecksum(page: Uint8Array): number {
  return CRC32C.buf(page) >>> 0;
}

/** True when `page` matches `sum`; a page put without a sum (`undefined`) is not checked. */
export function checksumMatches(page: Uint8Array, sum: number | undefined): boolean {
  return sum === undefined || pageChecksum(page) === sum;
}
