import { describe, expect, it } from 'vitest';
import { createCodec, createFrameBuffers } from '../src/index.ts';

describe('frame buffers', () => {
  it('lends a buffer of the exact size from a power-of-two class and reuses it once released', () => {
    const buffers = createFrameBuffers({ minBytes: 1024, maxBytes: 8192, maxIdleBytes: 1 << 20 });
    const a = buffers.acquire(3000);
    expect(a.byteLength).toBe(3000);
    expect(a.buffer.byteLength).toBe(4096);
    expect(buffers.owns(a)).toBe(true);
    buffers.release(a);
    expect(buffers.owns(a)).toBe(false);
    expect(buffers.idleBytes).toBe(4096);
    const b = buffers.acquire(2049);
    expect(b.buffer).toBe(a.buffer);
    expect(buffers.idleBytes).toBe(0);
    // Another class gets memory of its own.
    expect(buffers.acquire(5000).buffer).not.toBe(a.buffer);
  });

  it('leaves frames outside its range to Node, and ignores what it did not lend or lends no more', () => {
    const buffers = createFrameBuffers({ minBytes: 1024, maxBytes: 8192, maxIdleBytes: 1 << 20 });
    const small = buffers.acquire(100);
    const large = buffers.acquire(10_000);
    expect(buffers.owns(small)).toBe(false);
    expect(buffers.owns(large)).toBe(false);
    buffers.release(small);
    buffers.release(large);
    buffers.release(new Uint8Array(4096));
    expect(buffers.idleBytes).toBe(0);
    const lent = buffers.acquire(4096);
    buffers.release(lent);
    buffers.release(lent);
    expect(buffers.idleBytes).toBe(4096);
  });

  it('keeps at most maxIdleBytes for reuse', () => {
    const buffers = createFrameBuffers({ minBytes: 1024, maxBytes: 8192, maxIdleBytes: 8192 });
    const lent = [1, 2, 3].map(() => buffers.acquire(4096));
    for (const b of lent) buffers.release(b);
    expect(buffers.idleBytes).toBe(8192);
  });

  it('rejects bounds that are not positive integers or out of order', () => {
    expect(() => createFrameBuffers({ minBytes: 0 })).toThrow(RangeError);
    expect(() => createFrameBuffers({ maxIdleBytes: 1.5 })).toThrow(RangeError);
    expect(() => createFrameBuffers({ minBytes: 4096, maxBytes: 1024 })).toThrow(RangeError);
  });

  it('is what the codec encodes a large data frame into, with the same bytes as without', () => {
    const codec = createCodec();
    const buffers = createFrameBuffers();
    const page = Uint8Array.from({ length: 4096 }, (_, i) => i & 255);
    const replies = Array.from({ length: 8 }, (_, i) => ({ t: 'hit' as const, id: i + 1, page }));
    const frame = { t: 'batch' as const, id: 9, replies };
    const pooled = codec.encode(frame, buffers);
    expect(buffers.owns(pooled)).toBe(true);
    expect(Buffer.from(pooled).equals(Buffer.from(codec.encode(frame)))).toBe(true);
    // A small control frame never takes a pooled buffer.
    expect(buffers.owns(codec.encode({ t: 'ok', id: 1 }, buffers))).toBe(false);
  });
});
