import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { lz4Codec } from '../src/page-compression.ts';
import { maxCompressedBytes, slotSizeFor, SIZE_CLASS_STEPS } from '../src/size-classes.ts';

const text = new TextEncoder()
  .encode('the quick brown fox jumps over the lazy dog; '.repeat(100))
  .subarray(0, 4096);

describe('lz4Codec', () => {
  it('round-trips a page, also one given as a view into a larger buffer', () => {
    const frame = new Uint8Array(8192);
    frame.set(text, 100);
    const view = frame.subarray(100, 100 + 4096);
    const packed = lz4Codec.compress(view);
    expect(packed.length).toBeLessThan(400);
    const back = lz4Codec.decompress(packed, 4096);
    expect(back).not.toBeNull();
    expect(Buffer.compare(back!, text)).toBe(0);
    // The page owns its whole ArrayBuffer (the store hands it out as is).
    expect(back!.byteOffset).toBe(0);
    expect(back!.buffer.byteLength).toBe(4096);
  });

  it('answers null, never throws, for corrupt, truncated or mislabelled data', () => {
    const packed = lz4Codec.compress(text);
    expect(lz4Codec.decompress(packed.subarray(0, packed.length - 5), 4096)).toBeNull();
    expect(lz4Codec.decompress(packed.subarray(0, 3), 4096)).toBeNull();
    // A page size other than the one written: the length prefix says 4096.
    expect(lz4Codec.decompress(packed, 8192)).toBeNull();
    // A corrupt length prefix must not make lz4 allocate what it claims.
    const huge = Uint8Array.from(packed);
    huge[3] = 0x7f;
    expect(lz4Codec.decompress(huge, 4096)).toBeNull();
    // Garbage: null, or a page that the checksum then tells apart (never an exception).
    for (let i = 0; i < 200; i++) {
      const junk = Uint8Array.from(packed);
      const at = 4 + (i % (junk.length - 4));
      junk[at] = (junk[at] as number) ^ (1 + (i % 255));
      const out = lz4Codec.decompress(junk, 4096);
      if (out !== null) expect(out.length).toBe(4096);
    }
  });

  it('makes random pages no smaller than a size class allows', () => {
    const packed = lz4Codec.compress(randomBytes(4096));
    expect(packed.length).toBeGreaterThan(maxCompressedBytes(4096));
  });
});

describe('size classes', () => {
  it('are eighths of the page, the smallest that holds the length', () => {
    expect(SIZE_CLASS_STEPS).toBe(8);
    expect(slotSizeFor(4096, 1)).toBe(512);
    expect(slotSizeFor(4096, 512)).toBe(512);
    expect(slotSizeFor(4096, 513)).toBe(1024);
    expect(slotSizeFor(4096, 3584)).toBe(3584);
    expect(slotSizeFor(512, 65)).toBe(128);
    expect(maxCompressedBytes(4096)).toBe(3584);
    expect(maxCompressedBytes(65536)).toBe(57344);
  });
});
