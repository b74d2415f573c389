import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { looksIncompressible, lz4Codec } from '../src/page-compression.ts';
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

/** Pages of many kinds, `size` bytes each, as an application might put them. */
function pageKinds(size: number): Record<string, Uint8Array> {
  const fill = (make: (i: number) => string): Uint8Array => {
    let out = '';
    for (let i = 0; out.length < size; i++) out += make(i);
    return new TextEncoder().encode(out).subarray(0, size);
  };
  const block = randomBytes(256);
  const floats = new Float64Array(size / 8).map((_, i) => Math.sin(i / 50) * 1000);
  const counters = new Uint32Array(size / 4).map((_, i) => 1_000_000 + i * 3);
  const sparse = new Uint8Array(size);
  for (let i = 0; i < size; i += 97) sparse[i] = randomBytes(1)[0]!;
  // Random data in all but the last eighth, zero padding there: a partly filled page of packed data.
  const padded = new Uint8Array(size);
  padded.set(randomBytes((size * 7) / 8));
  return {
    padded,
    text: fill((i) => `line ${i}: the quick brown fox jumps over the lazy dog\n`),
    json: fill(
      (i) => JSON.stringify({ id: i, name: `user-${i}`, at: 1_700_000_000 + i, ok: i % 3 === 0 }) + ',',
    ),
    hex: fill(() => randomBytes(32).toString('hex')),
    base64: fill(() => randomBytes(48).toString('base64')),
    repeatedBlock: new Uint8Array(size).map((_, i) => block[i % 256]!),
    floats: new Uint8Array(floats.buffer),
    counters: new Uint8Array(counters.buffer),
    sparse,
  };
}

describe('looksIncompressible', () => {
  it('reads random pages as incompressible, at every page size it judges', () => {
    for (const size of [4096, 16384, 65536]) {
      let judged = 0;
      for (let i = 0; i < 200; i++) if (looksIncompressible(randomBytes(size))) judged++;
      expect(judged, `${size}-byte pages`).toBeGreaterThanOrEqual(198);
    }
  });

  it('never judges a page below 4 KiB, where lz4 is cheap', () => {
    for (const size of [512, 1024, 2048]) expect(looksIncompressible(randomBytes(size))).toBe(false);
  });

  it('never judges a page incompressible that lz4 would shrink by a size class', () => {
    for (const size of [4096, 16384, 65536]) {
      for (const [kind, page] of Object.entries(pageKinds(size))) {
        const shrinks = lz4Codec.compress(page).length <= maxCompressedBytes(size);
        if (shrinks) expect(looksIncompressible(page), `${kind}, ${size} bytes`).toBe(false);
      }
    }
  });

  it('judges each page on its own, however many calls came before', () => {
    const random = randomBytes(4096);
    for (let i = 0; i < 600; i++) {
      expect(looksIncompressible(text)).toBe(false);
      expect(looksIncompressible(random)).toBe(true);
    }
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
