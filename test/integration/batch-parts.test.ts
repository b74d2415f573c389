import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { BatchReply, ClientFrame, PageOp } from '@tmem/protocol';
import {
  closeAllRawPeers,
  killAllNodes,
  openRawPeer,
  startNode,
  waitFor,
  type NodeProcess,
  type RawPeer,
} from '../harness/index.ts';

// A batch answered in parts (the default; `--no-batch-reply-parts` turns it off), seen on the wire: the ops a node completes synchronously
// (ephemeral ones) go out in the first part at once; persistent ops, which wait for their copies, follow in
// later parts as they finish, coalesced (one part per turn of the event loop, not one frame per op); every op
// is answered exactly once and only the last part lacks `more: true`.

const page = new Uint8Array(4096).map((_, i) => (i * 7) & 0xff);
let parts: NodeProcess;
let whole: NodeProcess;

beforeAll(async () => {
  [parts, whole] = await Promise.all([
    startNode({ capacity: '32MiB', args: ['--replication', '1'] }),
    startNode({ capacity: '32MiB', args: ['--no-batch-reply-parts', '--replication', '1'] }),
  ]);
});

afterEach(() => closeAllRawPeers());

afterAll(async () => {
  await killAllNodes();
});

async function pools(raw: RawPeer): Promise<{ ephemeral: number; persistent: number }> {
  const ids: number[] = [];
  for (const [id, kind] of [
    [2, 'ephemeral'],
    [3, 'persistent'],
  ] as const) {
    const reply = await raw.request({ t: 'newPool', id, kind, pageSize: 4096 });
    if (reply.t !== 'pool') throw new Error(JSON.stringify(reply));
    ids.push(reply.pool);
  }
  return { ephemeral: ids[0]!, persistent: ids[1]! };
}

/** 8 ephemeral and 32 persistent puts, interleaved: ids 100.. ephemeral, 200.. persistent. */
function mixedBatch(pool: { ephemeral: number; persistent: number }, batchId: number): ClientFrame {
  const ops: PageOp[] = [];
  for (let i = 0; i < 32; i++) {
    if (i % 4 === 0) {
      ops.push({ t: 'put', id: 100 + i / 4, pool: pool.ephemeral, oid: new Uint8Array([1]), index: i, page });
    }
    ops.push({ t: 'put', id: 200 + i, pool: pool.persistent, oid: new Uint8Array([2]), index: i, page });
  }
  return { t: 'batch', id: batchId, ops };
}

/** The frames answering `batchId`, in arrival order, once one says it is the last. */
async function partsOf(raw: RawPeer, batchId: number): Promise<BatchReply[]> {
  const mine = () =>
    raw.received.filter(
      (frame): frame is BatchReply =>
        !(frame instanceof Error) && frame.t === 'batch' && frame.id === batchId,
    );
  await waitFor(() => mine().some((frame) => frame.more !== true));
  return mine();
}

const replyIds = (frames: BatchReply[]) => frames.flatMap((frame) => frame.replies.map((r) => r.id));

describe('batch replies in parts', () => {
  it('answers ephemeral ops in the first part and persistent ones in a few later parts', async () => {
    const raw = await openRawPeer(parts.url, 'parts');
    const pool = await pools(raw);
    raw.sendFrame(mixedBatch(pool, 50));
    const frames = await partsOf(raw, 50);

    const first = frames[0]!;
    expect(first.more).toBe(true);
    expect(first.replies.map((r) => r.id)).toEqual([100, 101, 102, 103, 104, 105, 106, 107]);
    expect(first.replies.every((r) => r.t === 'accepted')).toBe(true);

    const later = frames.slice(1);
    expect(later.length).toBeGreaterThanOrEqual(1);
    // Coalesced: far fewer frames than the 32 persistent ops they answer.
    expect(later.length).toBeLessThanOrEqual(4);
    expect(later.slice(0, -1).every((frame) => frame.more === true)).toBe(true);
    expect(later.at(-1)!.more).not.toBe(true);
    const persistentIds = replyIds(later).sort((a, b) => a - b);
    expect(persistentIds).toEqual(Array.from({ length: 32 }, (_, i) => 200 + i));
    expect(later.flatMap((frame) => frame.replies).every((r) => r.t === 'accepted')).toBe(true);

    // Every op answered exactly once over the parts; the pages are there.
    expect(new Set(replyIds(frames)).size).toBe(40);
    const got = await raw.request({
      t: 'get',
      id: 60,
      pool: pool.persistent,
      oid: new Uint8Array([2]),
      index: 31,
    });
    expect(got).toMatchObject({ t: 'hit', id: 60 });
  });

  it('sends a batch of ephemeral ops as one final frame', async () => {
    const raw = await openRawPeer(parts.url, 'parts-sync');
    const pool = await pools(raw);
    const ops: PageOp[] = Array.from({ length: 16 }, (_, i) => ({
      t: 'put',
      id: 300 + i,
      pool: pool.ephemeral,
      oid: new Uint8Array([3]),
      index: i,
      page,
    }));
    raw.sendFrame({ t: 'batch', id: 70, ops });
    const frames = await partsOf(raw, 70);
    expect(frames).toHaveLength(1);
    expect(frames[0]!.more).not.toBe(true);
    expect(replyIds(frames)).toEqual(ops.map((op) => op.id));
  });

  it('with --no-batch-reply-parts, answers the whole batch in one frame, in op order', async () => {
    const raw = await openRawPeer(whole.url, 'whole');
    const pool = await pools(raw);
    const batch = mixedBatch(pool, 80);
    raw.sendFrame(batch);
    const frames = await partsOf(raw, 80);
    expect(frames).toHaveLength(1);
    expect(replyIds(frames)).toEqual((batch as { ops: PageOp[] }).ops.map((op) => op.id));
  });
});
