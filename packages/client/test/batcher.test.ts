import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_OID_BYTES, MAX_PAGE_SIZE, U32_MAX, createCodec, type PageOp } from '@tmem/protocol';
import {
  BATCH_OVERHEAD_BYTES,
  FRAME_MARGIN_MIN_BYTES,
  batchBytesFor,
  createOpQueue,
  pageOpWeight,
  type QueuedOp,
} from '../src/batcher.ts';

interface Item extends QueuedOp {
  name: string;
}

const page = (name: string, weight = 10): Item => ({ name, weight, batchable: true });
const control = (name: string): Item => ({ name, weight: 0, batchable: false });

function frames(queue: ReturnType<typeof createOpQueue<Item>>): string[][] {
  const out: string[][] = [];
  for (let frame = queue.nextFrame(); frame !== undefined; frame = queue.nextFrame()) {
    out.push(frame.map((op) => op.name));
  }
  return out;
}

describe('op queue', () => {
  it('cuts runs of page ops at maxOps', () => {
    const queue = createOpQueue<Item>({ maxOps: 2, maxBytes: 1e9 });
    for (const name of ['a', 'b', 'c', 'd', 'e']) queue.push(page(name));
    expect(frames(queue)).toEqual([['a', 'b'], ['c', 'd'], ['e']]);
  });

  it('cuts at maxBytes, counting the batch overhead, and sends an overweight op alone', () => {
    const queue = createOpQueue<Item>({ maxOps: 100, maxBytes: BATCH_OVERHEAD_BYTES + 25 });
    queue.push(page('a'));
    queue.push(page('b'));
    queue.push(page('c'));
    queue.push(page('big', 1000));
    queue.push(page('d'));
    expect(frames(queue)).toEqual([['a', 'b'], ['c'], ['big'], ['d']]);
  });

  it('keeps issue order and gives ops that are not page ops a frame of their own', () => {
    const queue = createOpQueue<Item>({ maxOps: 100, maxBytes: 1e9 });
    for (const item of [page('a'), page('b'), control('x'), control('y'), page('c')]) queue.push(item);
    expect(frames(queue)).toEqual([['a', 'b'], ['x'], ['y'], ['c']]);
  });

  it('starts a new frame when the group (the routing state version) changes', () => {
    const queue = createOpQueue<Item>({ maxOps: 100, maxBytes: 1e9 });
    const at = (name: string, group: number): Item => ({ ...page(name), group });
    for (const item of [at('a', 1), at('b', 1), at('c', 2), at('d', 2), at('e', 1)]) queue.push(item);
    expect(frames(queue)).toEqual([['a', 'b'], ['c', 'd'], ['e']]);
  });

  it('skips removed ops and counts only waiting ones', () => {
    const queue = createOpQueue<Item>({ maxOps: 100, maxBytes: 1e9 });
    const items = Array.from({ length: 300 }, (_, i) => page(`p${i}`));
    for (const item of items) queue.push(item);
    for (const item of items.slice(0, 250)) queue.remove(item);
    queue.remove(items[299] as Item);
    expect(queue.length).toBe(49);
    const rest = frames(queue).flat();
    expect(rest).toEqual(items.slice(250, 299).map((item) => item.name));
    expect(queue.length).toBe(0);
  });

  it('drains every waiting op', () => {
    const queue = createOpQueue<Item>({ maxOps: 1, maxBytes: 1e9 });
    const [a, b, c] = [page('a'), page('b'), page('c')];
    queue.push(a);
    queue.push(b);
    queue.push(c);
    queue.remove(b);
    expect(queue.drain()).toEqual([a, c]);
    expect(queue.nextFrame()).toBeUndefined();
  });
});

describe('batchBytesFor', () => {
  it('keeps maxBatchBytes when the node advertises no frame limit, or a much larger one', () => {
    expect(batchBytesFor(1 << 20, undefined)).toBe(1 << 20);
    expect(batchBytesFor(1 << 20, 16 << 20)).toBe(1 << 20);
  });

  it("cuts to the node's frame limit less a margin of 1/16, at least FRAME_MARGIN_MIN_BYTES", () => {
    expect(batchBytesFor(1 << 20, 256 * 1024)).toBe(240 * 1024);
    expect(batchBytesFor(1 << 20, 8192)).toBe(8192 - FRAME_MARGIN_MIN_BYTES);
    // A limit within the margin leaves 0: every op travels alone.
    expect(batchBytesFor(1 << 20, 512)).toBe(0);
  });

  it('leaves room below the limit for any batch the queue cuts, and for its reply', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 4096, max: 1 << 20 }),
        fc.array(fc.integer({ min: 1, max: 4096 }), { minLength: 1, maxLength: 300 }),
        (limit, weights) => {
          const maxBytes = batchBytesFor(1 << 20, limit);
          const queue = createOpQueue<Item>({ maxOps: 256, maxBytes });
          weights.forEach((weight, i) => queue.push(page(`p${i}`, weight)));
          for (let frame = queue.nextFrame(); frame !== undefined; frame = queue.nextFrame()) {
            if (frame.length === 1) continue;
            const bytes = BATCH_OVERHEAD_BYTES + frame.reduce((sum, op) => sum + op.weight, 0);
            expect(bytes).toBeLessThanOrEqual(limit - FRAME_MARGIN_MIN_BYTES);
          }
        },
      ),
      { numRuns: 100 },
    );
  });
});

describe('pageOpWeight', () => {
  const codec = createCodec();
  const u32 = fc.integer({ min: 0, max: U32_MAX });
  const oid = fc.uint8Array({ minLength: 1, maxLength: MAX_OID_BYTES });
  const pageOp: fc.Arbitrary<PageOp> = fc.oneof(
    fc.record({
      t: fc.constant('put' as const),
      id: u32,
      pool: u32,
      oid,
      index: u32,
      page: fc.integer({ min: 0, max: MAX_PAGE_SIZE }).map((n) => new Uint8Array(n)),
      sum: u32,
    }),
    fc.record({ t: fc.constant('get' as const), id: u32, pool: u32, oid, index: u32, replica: fc.boolean() }),
    fc.record({ t: fc.constant('flushPage' as const), id: u32, pool: u32, oid, index: u32 }),
    fc.record({ t: fc.constant('flushObject' as const), id: u32, pool: u32, oid }),
  );

  it('bounds the encoded size of any batch from above', () => {
    fc.assert(
      fc.property(u32, fc.array(pageOp, { minLength: 1, maxLength: 20 }), (id, ops) => {
        const encoded = codec.encode({ t: 'batch', id, ops }).length;
        const estimate = BATCH_OVERHEAD_BYTES + ops.reduce((sum, op) => sum + pageOpWeight(op, 0), 0);
        expect(encoded).toBeLessThanOrEqual(estimate);
      }),
      { numRuns: 200 },
    );
  });

  it('bounds the largest op of each kind: all fields at their maximum, a put with its sum', () => {
    const oidBytes = new Uint8Array(MAX_OID_BYTES);
    const fields = { id: U32_MAX, pool: U32_MAX, oid: oidBytes, index: U32_MAX };
    const ops: PageOp[] = [
      { t: 'put', ...fields, page: new Uint8Array(MAX_PAGE_SIZE), sum: U32_MAX },
      { t: 'get', ...fields, replica: true },
      { t: 'flushPage', ...fields },
      { t: 'flushObject', id: U32_MAX, pool: U32_MAX, oid: oidBytes },
    ];
    for (const op of ops) {
      const encoded = codec.encode({ t: 'batch', id: U32_MAX, ops: [op] }).length;
      expect(encoded).toBeLessThanOrEqual(BATCH_OVERHEAD_BYTES + pageOpWeight(op, MAX_PAGE_SIZE));
    }
  });

  it("counts a get's page, so the reply frame stays within the same bound", () => {
    fc.assert(
      fc.property(u32, fc.array(oid, { minLength: 1, maxLength: 20 }), (id, oids) => {
        const pageSize = MAX_PAGE_SIZE;
        const ops = oids.map((o, i) => ({ t: 'get' as const, id: i + 1, pool: 1, oid: o, index: i }));
        const reply = codec.encode({
          t: 'batch',
          id,
          replies: ops.map((op) => ({
            t: 'hit' as const,
            id: op.id,
            page: new Uint8Array(pageSize),
            sum: 2 ** 32 - 1,
          })),
        }).length;
        const estimate = BATCH_OVERHEAD_BYTES + ops.reduce((sum, op) => sum + pageOpWeight(op, pageSize), 0);
        expect(reply).toBeLessThanOrEqual(estimate);
      }),
      { numRuns: 50 },
    );
  });
});
