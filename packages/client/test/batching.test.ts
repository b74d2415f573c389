import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, ProtocolError, TimeoutError } from '../src/index.ts';
import { PAGE_SIZE, page, setup } from './helpers.ts';
import { closeAll, recordingLogger, rejectionOf, waitFor } from './support.ts';

afterEach(closeAll);

describe('automatic batching', () => {
  it('sends the page ops issued in one tick in one batch frame, in order, and maps the replies back', async () => {
    const { fake, pool } = await setup();
    await pool.put('held', 7, page(7));
    const before = fake.batches().length;
    const results = await Promise.all([
      pool.put('a', 0, page(1)),
      pool.put('a', 1, page(2)),
      pool.get('held', 7),
      pool.get('nothing', 0),
      pool.flushPage('a', 5),
      pool.flushObject('b'),
    ]);
    expect(results).toEqual([true, true, page(7), null, undefined, undefined]);
    const batches = fake.batches().slice(before);
    expect(batches).toHaveLength(1);
    expect(batches[0]?.ops.map((op) => op.t)).toEqual([
      'put',
      'put',
      'get',
      'get',
      'flushPage',
      'flushObject',
    ]);
  });

  it('also coalesces ops issued after awaits within the same turn of the event loop', async () => {
    const { fake, pool } = await setup();
    const before = fake.batches().length;
    const late = async (index: number): Promise<boolean> => {
      await Promise.resolve();
      await Promise.resolve();
      return pool.put('o', index, page(index));
    };
    await Promise.all([pool.put('o', 0, page(0)), late(1), late(2)]);
    expect(fake.batches().slice(before)).toHaveLength(1);
  });

  it('splits batches at maxBatchOps', async () => {
    const { fake, pool } = await setup({ maxBatchOps: 4 });
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => pool.put('o', i, page(i))));
    expect(results.every(Boolean)).toBe(true);
    expect(fake.batches().map((b) => b.ops.length)).toEqual([4, 4, 2]);
  });

  it('splits batches at maxBatchBytes and keeps every frame within it', async () => {
    const maxBatchBytes = 2000;
    const { fake, pool } = await setup({ maxBatchBytes });
    await Promise.all(Array.from({ length: 10 }, (_, i) => pool.put('o', i, page(i))));
    // Each put costs its page, its oid and a bounded overhead: three fit in 2000 bytes, four do not.
    expect(fake.batches().map((b) => b.ops.length)).toEqual([3, 3, 3, 1]);
    const batchFrames = fake.received.filter((r) => r.frame.t === 'batch');
    for (const { bytes } of batchFrames) expect(bytes).toBeLessThanOrEqual(maxBatchBytes);
  });

  it("counts a get's reply page against maxBatchBytes", async () => {
    const { fake, pool } = await setup({ maxBatchBytes: 2000 });
    const pages = await Promise.all(Array.from({ length: 7 }, (_, i) => pool.get('o', i)));
    expect(pages.every((p) => p === null)).toBe(true);
    expect(fake.batches().map((b) => b.ops.length)).toEqual([3, 3, 1]);
  });

  it('sends an op heavier than maxBatchBytes alone', async () => {
    const { fake, pool } = await setup({ maxBatchBytes: 100 });
    await Promise.all([pool.put('o', 0, page(0)), pool.put('o', 1, page(1)), pool.flushObject('x')]);
    expect(fake.batches().map((b) => b.ops.length)).toEqual([1, 1, 1]);
  });
});

describe("the node's frame limit", () => {
  const maxFrameBytes = 8192;

  it('cuts batches, and their replies, to the frame limit the node advertises', async () => {
    // The client's own bound (1 MiB) would put all 100 ops of a tick in one frame of about 60 KB.
    const { fake, client, pool } = await setup({}, { maxFrameBytes });
    const before = fake.batches().length;
    const puts = await Promise.all(Array.from({ length: 100 }, (_, i) => pool.put('o', i, page(i))));
    expect(puts.every(Boolean)).toBe(true);
    const gets = await Promise.all(Array.from({ length: 100 }, (_, i) => pool.get('o', i)));
    gets.forEach((got, i) => expect(got).toEqual(page(i)));
    expect(fake.batches().length - before).toBeGreaterThanOrEqual(
      2 * Math.ceil((100 * PAGE_SIZE) / maxFrameBytes),
    );
    for (const { bytes } of fake.received) expect(bytes).toBeLessThanOrEqual(maxFrameBytes);
    expect(fake.oversized).toEqual({ frames: 0, replies: 0 });
    expect(fake.connections).toBe(1);
    expect(client.view().members).toHaveLength(1);
  });

  it('keeps maxBatchBytes when it is the smaller bound', async () => {
    const { fake, pool } = await setup({ maxBatchBytes: 2000 }, { maxFrameBytes: 1 << 20 });
    await Promise.all(Array.from({ length: 10 }, (_, i) => pool.put('o', i, page(i))));
    expect(fake.batches().map((b) => b.ops.length)).toEqual([3, 3, 3, 1]);
  });

  it('fails an op too big for any frame the node accepts with FRAME_TOO_LARGE, without sending it', async () => {
    const { fake, client, pool } = await setup({}, { maxFrameBytes: 2048 });
    const big = await client.createPool({ kind: 'ephemeral', pageSize: 4096 });
    const before = fake.received.length;
    const [error, small] = await Promise.all([
      rejectionOf(big.put('o', 0, page(1, 4096))),
      pool.put('o', 0, page(2)),
    ]);
    expect(error).toBeInstanceOf(ProtocolError);
    expect(error).toMatchObject({ code: ErrorCode.FrameTooLarge, details: { maxFrameBytes: 2048 } });
    expect(small).toBe(true);
    expect(fake.received.slice(before).map((r) => r.frame.t)).toEqual(['batch']);
    expect(fake.oversized).toEqual({ frames: 0, replies: 0 });
    expect(fake.connections).toBe(1);
  });
});

describe('backpressure', () => {
  it('keeps at most maxFramesInFlight frames awaiting replies and queues the rest in the client', async () => {
    const { fake, pool } = await setup({ maxBatchOps: 1, maxFramesInFlight: 2 });
    fake.hold = true;
    const puts = Promise.all(Array.from({ length: 10 }, (_, i) => pool.put('o', i, page(i))));
    await waitFor(() => fake.held === 2, 'two frames at the node');
    await fake.barrier();
    expect(fake.batches()).toHaveLength(2);
    fake.hold = false;
    fake.releaseHeld();
    expect(await puts).toEqual(Array.from({ length: 10 }, () => true));
    expect(fake.batches()).toHaveLength(10);
    expect(fake.maxOutstanding).toBe(2);
  });
});

describe('timeouts', () => {
  it('rejects an op with TIMEOUT at its deadline and ignores the late reply', async () => {
    const { logger, lines } = recordingLogger();
    const { fake, pool } = await setup({ timeoutMs: 400, logger });
    fake.hold = true;
    const error = await rejectionOf(pool.get('o', 0));
    expect(error).toBeInstanceOf(TimeoutError);
    expect(error).toMatchObject({ code: ErrorCode.Timeout, timeoutMs: 400 });
    fake.releaseHeld();
    await waitFor(
      () => lines.some((l) => l.level === 'debug' && /unknown/.test(l.message ?? '')),
      'a debug line',
    );
    fake.hold = false;
    expect(await pool.put('o', 0, page(1))).toBe(true);
    expect(fake.connections).toBe(1);
  });

  it('counts the time an op waits in the client queue', async () => {
    const { fake, pool } = await setup({ timeoutMs: 400, maxBatchOps: 1, maxFramesInFlight: 1 });
    fake.hold = true;
    const sent = rejectionOf(pool.put('o', 0, page(0)));
    const queued = rejectionOf(pool.put('o', 1, page(1)));
    expect(await sent).toMatchObject({ code: ErrorCode.Timeout, details: { queued: false } });
    expect(await queued).toMatchObject({ code: ErrorCode.Timeout, details: { queued: true } });
    // The queued op never left the client.
    expect(fake.batches()).toHaveLength(1);
    fake.hold = false;
    fake.releaseHeld();
    expect(await pool.put('o', 2, page(2))).toBe(true);
    expect(fake.batches()).toHaveLength(2);
  });
});

describe('page copies', () => {
  it('returns pages the caller owns, not views into a reply frame', async () => {
    const { pool } = await setup();
    await Promise.all([pool.put('o', 0, page(1)), pool.put('o', 1, page(2))]);
    const [a, b] = await Promise.all([pool.get('o', 0), pool.get('o', 1)]);
    for (const got of [a, b]) {
      expect(got).toBeInstanceOf(Uint8Array);
      expect(Buffer.isBuffer(got)).toBe(false);
      expect(got?.byteOffset).toBe(0);
      expect(got?.buffer.byteLength).toBe(PAGE_SIZE);
    }
    expect(a).toEqual(page(1));
    expect(b).toEqual(page(2));
  });

  it("copies the caller's page and oid, which may be reused at once", async () => {
    const { pool } = await setup();
    const buffer = page(1);
    const oid = Uint8Array.of(1, 2, 3);
    const put = pool.put(oid, 0, buffer);
    buffer.fill(9);
    oid[0] = 9;
    expect(await put).toBe(true);
    expect(await pool.get(Uint8Array.of(1, 2, 3), 0)).toEqual(page(1));
  });
});
