/**
 * Reusable memory for encoded frames: a frame is encoded into a buffer from here and the buffer comes back
 * once the socket wrote it (ws's send callback), so a connection that sends many large frames allocates none.
 *
 * Why: each encoded frame is an `ArrayBuffer` of its own outside the JS heap, and V8 answers external
 * allocations with full garbage collections (about one per 64 MiB allocated). A node answering 32-page batches
 * of 4 KiB gets allocated 128 KiB per reply, and spent a third of its busy time in the collector; recycling the
 * reply buffers halved its CPU per get (measured in docs/architecture.md, "The path of a get").
 *
 * Buffers come in power-of-two classes from `minBytes` to `maxBytes`; smaller frames use Node's own pool and
 * larger ones are allocated as before. At most `maxIdleBytes` wait for reuse, so an idle process keeps little.
 * A buffer must be released only once the socket is done with it; releasing anything else (a buffer from
 * elsewhere, or one twice) is ignored.
 */

/** Options of a frame-buffer pool; every bound is in bytes. */
export interface FrameBuffersOptions {
  /** Smallest frame that gets a pooled buffer. @default 16384 */
  minBytes?: number;
  /** Largest frame that gets a pooled buffer (rounded up to a power of two). @default 1048576 */
  maxBytes?: number;
  /** Most bytes of released buffers kept for reuse. @default 8388608 */
  maxIdleBytes?: number;
}

/** A pool of frame buffers (see the module comment). */
export interface FrameBuffers {
  /** A buffer of exactly `size` bytes, uninitialised: the caller writes every byte. */
  acquire(size: number): Buffer;
  /** True when `bytes` came from `acquire` and is not released yet: its sender must release it. */
  owns(bytes: Uint8Array): boolean;
  /** The socket is done with `bytes`: its memory serves a later frame. */
  release(bytes: Uint8Array): void;
  /** Bytes of released buffers waiting for reuse. */
  readonly idleBytes: number;
}

export const DEFAULT_FRAME_BUFFER_MIN_BYTES = 16 * 1024;
export const DEFAULT_FRAME_BUFFER_MAX_BYTES = 1024 * 1024;
export const DEFAULT_FRAME_BUFFER_MAX_IDLE_BYTES = 8 * 1024 * 1024;

/** Creates an empty pool. */
export function createFrameBuffers(options: FrameBuffersOptions = {}): FrameBuffers {
  const minBytes = options.minBytes ?? DEFAULT_FRAME_BUFFER_MIN_BYTES;
  const maxBytes = options.maxBytes ?? DEFAULT_FRAME_BUFFER_MAX_BYTES;
  const maxIdleBytes = options.maxIdleBytes ?? DEFAULT_FRAME_BUFFER_MAX_IDLE_BYTES;
  for (const [name, value] of Object.entries({ minBytes, maxBytes, maxIdleBytes })) {
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new RangeError(`frame buffers: ${name} must be a positive integer, got ${value}`);
    }
  }
  if (minBytes > maxBytes) throw new RangeError('frame buffers: minBytes must be at most maxBytes');
  /** Idle buffers by class (log2 of their size). */
  const idle = new Map<number, ArrayBuffer[]>();
  /** Buffers handed out and not yet released. */
  const lent = new WeakSet<ArrayBuffer>();
  let idleBytes = 0;

  return {
    get idleBytes() {
      return idleBytes;
    },

    acquire(size) {
      if (size < minBytes || size > maxBytes) return Buffer.allocUnsafe(size);
      const log2 = Math.ceil(Math.log2(size));
      let memory = idle.get(log2)?.pop();
      if (memory === undefined) memory = new ArrayBuffer(2 ** log2);
      else idleBytes -= memory.byteLength;
      lent.add(memory);
      return Buffer.from(memory, 0, size);
    },

    owns(bytes) {
      return lent.has(bytes.buffer as ArrayBuffer);
    },

    release(bytes) {
      const memory = bytes.buffer as ArrayBuffer;
      if (!lent.delete(memory)) return;
      if (idleBytes + memory.byteLength > maxIdleBytes) return;
      const log2 = Math.log2(memory.byteLength);
      let list = idle.get(log2);
      if (list === undefined) idle.set(log2, (list = []));
      list.push(memory);
      idleBytes += memory.byteLength;
    },
  };
}
