import { describe, expect, it } from 'vitest';
import type { Batch, BatchReply, PageOp, PageReply } from '@tmem/protocol';
import { collectBatch, createBatchReplies } from '../src/batch-replies.ts';
import { createPageArena, type PageArena } from '../src/page-arena.ts';

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

/** A batch of gets; ops with odd ids are "persistent": they wait until the test settles them. */
function scenario(count: number, firstId = 1, batchId = 100) {
  const ops: PageOp[] = Array.from({ length: count }, (_, i) => ({
    t: 'get',
    id: firstId + i,
    pool: 1,
    oid: new Uint8Array([1]),
    index: i,
  }));
  const batch: Batch = { t: 'batch', id: batchId, ops };
  const waiting = new Map<number, (reply: PageReply) => void>();
  let calls = 0;
  const run = (op: PageOp): PageReply | Promise<PageReply> => {
    calls++;
    if (op.id % 2 === 0) return { t: 'miss', id: op.id };
    return new Promise((resolve) => waiting.set(op.id, resolve));
  };
  const settle = (id: number) => {
    waiting.get(id)?.({ t: 'ok', id });
    waiting.delete(id);
  };
  return { batch, run, settle, calls: () => calls };
}

const idsOf = (frame: BatchReply) => frame.replies.map((r) => r.id);

describe('batch replies in parts', () => {
  it('answers the synchronous ops at once in the first part, the waiting ones as they finish', async () => {
    const s = scenario(8);
    const sent: BatchReply[] = [];
    createBatchReplies({ parts: true, run: s.run, send: (f) => sent.push(f) }).answer(s.batch);
    // The first part goes out while the frame is handled, before any waiting op finished.
    expect(sent).toHaveLength(1);
    expect(sent[0]).toMatchObject({ t: 'batch', id: 100, more: true });
    expect(idsOf(sent[0]!)).toEqual([2, 4, 6, 8]);
    expect(s.calls()).toBe(8);

    s.settle(3);
    s.settle(7);
    await tick();
    await tick();
    // Both finished in one turn of the event loop: one part, not one frame per op.
    expect(sent).toHaveLength(2);
    expect(sent[1]).toMatchObject({ id: 100, more: true });
    expect(idsOf(sent[1]!).sort()).toEqual([3, 7]);

    s.settle(1);
    s.settle(5);
    await tick();
    await tick();
    expect(sent).toHaveLength(3);
    expect(sent[2]).toMatchObject({ id: 100, more: false });
    expect(idsOf(sent[2]!).sort()).toEqual([1, 5]);
    // Every op answered exactly once over the parts.
    expect(sent.flatMap(idsOf).sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it('sends one final frame when every op completes synchronously', () => {
    const sent: BatchReply[] = [];
    const run = (op: PageOp): PageReply => ({ t: 'accepted', id: op.id });
    const batch: Batch = {
      t: 'batch',
      id: 5,
      ops: [1, 2, 3].map((id) => ({ t: 'get', id, pool: 1, oid: new Uint8Array([1]), index: 0 })),
    };
    createBatchReplies({ parts: true, run, send: (f) => sent.push(f) }).answer(batch);
    expect(sent).toEqual([{ t: 'batch', id: 5, replies: batch.ops.map((op) => run(op)), more: false }]);
  });

  it('sends no empty first part when every op waits', async () => {
    const s = scenario(1);
    const sent: BatchReply[] = [];
    createBatchReplies({ parts: true, run: s.run, send: (f) => sent.push(f) }).answer(s.batch);
    expect(sent).toHaveLength(0);
    s.settle(1);
    await tick();
    await tick();
    expect(sent).toEqual([{ t: 'batch', id: 100, replies: [{ t: 'ok', id: 1 }], more: false }]);
  });

  it('coalesces the parts of several batches of one connection into one flush per turn', async () => {
    const a = scenario(3, 1, 100);
    const b = scenario(3, 11, 101);
    const sent: BatchReply[] = [];
    const run = (op: PageOp) => (op.id > 10 ? b.run(op) : a.run(op));
    const replies = createBatchReplies({ parts: true, run, send: (f) => sent.push(f) });
    replies.answer(a.batch);
    replies.answer(b.batch);
    expect(sent.map((f) => [f.id, f.more])).toEqual([
      [100, true],
      [101, true],
    ]);
    a.settle(1);
    a.settle(3);
    b.settle(11);
    await tick();
    await tick();
    expect(sent.slice(2).map((f) => [f.id, f.more, idsOf(f).sort()])).toEqual([
      [100, false, [1, 3]],
      [101, true, [11]],
    ]);
  });
});

describe('batch replies in one frame', () => {
  it('waits for the slowest op and keeps op order', async () => {
    const s = scenario(4);
    const sent: BatchReply[] = [];
    createBatchReplies({ parts: false, run: s.run, send: (f) => sent.push(f) }).answer(s.batch);
    expect(sent).toHaveLength(0);
    s.settle(3);
    await tick();
    expect(sent).toHaveLength(0);
    s.settle(1);
    await tick();
    expect(sent).toHaveLength(1);
    expect(idsOf(sent[0]!)).toEqual([1, 2, 3, 4]);
    expect(sent[0]!.more).toBeUndefined();
  });

  it('collectBatch resolves with the whole answer', async () => {
    const s = scenario(2);
    const answer = collectBatch(s.batch, s.run);
    s.settle(1);
    expect(idsOf(await answer)).toEqual([1, 2]);
  });
});

describe('batch replies with a page arena', () => {
  /** Hits whose pages come from the arena the batch passes, filled with the op id. */
  const hits = (op: PageOp, _sv: number | undefined, arena?: PageArena): PageReply => {
    const page = arena === undefined ? new Uint8Array(4) : arena.take(4);
    return { t: 'hit', id: op.id, page: page.fill(op.id) };
  };
  const batchOf = (id: number, ids: number[]): Batch => ({
    t: 'batch',
    id,
    ops: ids.map((opId) => ({ t: 'get', id: opId, pool: 1, oid: new Uint8Array([1]), index: 0 })),
  });
  const pagesOf = (frame: BatchReply) => frame.replies.map((r) => (r.t === 'hit' ? [...r.page] : null));

  it('hands the first part its pages intact, then reuses their memory for the next batch', () => {
    const seen: (number[] | null)[][] = [];
    const buffers: ArrayBufferLike[] = [];
    const replies = createBatchReplies({
      parts: true,
      run: hits,
      arena: createPageArena(64),
      send: (f) => {
        // What the encoder would see, copied at send time as the encoder copies.
        seen.push(pagesOf(f));
        for (const r of f.replies) if (r.t === 'hit') buffers.push(r.page.buffer);
      },
    });
    replies.answer(batchOf(1, [1, 2]));
    replies.answer(batchOf(2, [3, 4]));
    expect(seen).toEqual([
      [
        [1, 1, 1, 1],
        [2, 2, 2, 2],
      ],
      [
        [3, 3, 3, 3],
        [4, 4, 4, 4],
      ],
    ]);
    // One chunk served both batches: reset after each first part.
    expect(new Set(buffers).size).toBe(1);
  });

  it('gives no arena to a batch answered in one frame, whose replies may wait for a slow op', () => {
    const arenas: (PageArena | undefined)[] = [];
    const run = (op: PageOp, sv: number | undefined, arena?: PageArena) => {
      arenas.push(arena);
      return hits(op, sv, arena);
    };
    createBatchReplies({ parts: false, run, arena: createPageArena(64), send: () => {} }).answer(
      batchOf(1, [1]),
    );
    expect(arenas).toEqual([undefined]);
  });
});
