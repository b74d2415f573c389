import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { checksumMatches, pageChecksum } from '../src/index.ts';

/** Bitwise CRC-32C (reflected polynomial 0x82F63B78): slow, obviously right, independent of any library. */
function crc32cReference(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const b of bytes) {
    crc ^= b;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

describe('pageChecksum (CRC-32C)', () => {
  it('matches the published check values (the CRC catalogue and RFC 3720, iSCSI)', () => {
    const ascii = new TextEncoder();
    expect(pageChecksum(ascii.encode('123456789'))).toBe(0xe3069283);
    expect(pageChecksum(new Uint8Array(0))).toBe(0);
    expect(pageChecksum(new Uint8Array(32))).toBe(0x8a9136aa);
    expect(pageChecksum(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43);
    expect(pageChecksum(Uint8Array.from({ length: 32 }, (_, i) => i))).toBe(0x46dd794e);
    expect(pageChecksum(Uint8Array.from({ length: 32 }, (_, i) => 31 - i))).toBe(0x113fdb5c);
  });

  it('agrees with a bitwise reference on arbitrary bytes, also on views into a larger buffer', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 5000 }), fc.nat({ max: 7 }), (bytes, offset) => {
        const backing = new Uint8Array(bytes.length + 16);
        backing.set(bytes, offset);
        const view = backing.subarray(offset, offset + bytes.length);
        expect(pageChecksum(bytes)).toBe(crc32cReference(bytes));
        expect(pageChecksum(view)).toBe(crc32cReference(bytes));
        expect(pageChecksum(Buffer.from(bytes))).toBe(crc32cReference(bytes));
      }),
      { numRuns: 200 },
    );
  });

  it('is an unsigned 32-bit integer, as frames carry it', () => {
    const page = new Uint8Array(4096).fill(0xa5);
    const sum = pageChecksum(page);
    expect(Number.isInteger(sum) && sum >= 0 && sum <= 0xffffffff).toBe(true);
    expect(sum).toBe(crc32cReference(page));
  });

  it('checksumMatches checks a present sum and skips an absent one', () => {
    const page = new Uint8Array(4096).fill(7);
    expect(checksumMatches(page, pageChecksum(page))).toBe(true);
    expect(checksumMatches(page, pageChecksum(page) ^ 1)).toBe(false);
    expect(checksumMatches(page, undefined)).toBe(true);
  });
});
