import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, type PageReply } from '@tmem/protocol';
import { page, setup } from './helpers.ts';
import { closeAll, waitFor } from './support.ts';

afterEach(closeAll);

/** Cuts replies into parts of `size`, last part possibly shorter. */
function partsOf(size: number): (replies: PageReply[]) => PageReply[][] {
  return (replies) => {
    const parts: PageReply[][] = [];
    for (let i = 0; i < replies.length; i += size) parts.push(replies.slice(i, i + size));
    return parts;
  };
}

describe('a batch answered in parts', () => {
  it('settles every op, whichever part answers it', async () => {
    // Parts in reverse op order: each reply finds its op by id, not by position.
    const { fake, pool } = await setup({}, { replyParts: (replies) => partsOf(3)([...replies].reverse()) });
    const puts = await Promise.all(Array.from({ length: 10 }, (_, i) => pool.put('o', i, page(i))));
    expect(puts).toEqual(Array.from({ length: 10 }, () => true));
    const gets = await Promise.all(Array.from({ length: 10 }, (_, i) => pool.get('o', i)));
    gets.forEach((got, i) => expect(got).toEqual(page(i)));
    expect(fake.batches()).toHaveLength(2);
  });

  it('resolves the ops of an early part before the last part arrives', async () => {
    const { fake, pool } = await setup({}, { replyParts: partsOf(2) });
    fake.holdLaterParts = true;
    const settled: number[] = [];
    const puts = Array.from({ length: 6 }, (_, i) => pool.put('o', i, page(i)).then(() => settled.push(i)));
    await waitFor(() => settled.length === 2, 'the first part to settle its ops');
    expect(settled).toEqual([0, 1]);
    expect(fake.held).toBe(2);
    fake.holdLaterParts = false;
    fake.releaseHeld();
    await Promise.all(puts);
    expect(settled).toHaveLength(6);
  });

  it('keeps the frame in flight until its last part', async () => {
    const { fake, pool } = await setup({ maxBatchOps: 2, maxFramesInFlight: 1 }, { replyParts: partsOf(1) });
    fake.holdLaterParts = true;
    const puts = Promise.all(Array.from({ length: 4 }, (_, i) => pool.put('o', i, page(i))));
    await waitFor(() => fake.held === 1, 'the later part of the first frame to be held');
    await fake.barrier();
    // The first part freed no slot: the second frame waits in the client.
    expect(fake.batches()).toHaveLength(1);
    fake.holdLaterParts = false;
    fake.releaseHeld();
    expect(await puts).toEqual([true, true, true, true]);
    expect(fake.batches()).toHaveLength(2);
    expect(fake.maxOutstanding).toBe(1);
  });

  it('fails with INVALID_FRAME only the ops no part answered', async () => {
    // The last part is dropped: its ops were never answered.
    const { pool } = await setup({}, { replyParts: (replies) => [replies.slice(0, 2), []] });
    const outcomes = await Promise.allSettled(Array.from({ length: 4 }, (_, i) => pool.put('o', i, page(i))));
    expect(outcomes.slice(0, 2)).toEqual([
      { status: 'fulfilled', value: true },
      { status: 'fulfilled', value: true },
    ]);
    for (const outcome of outcomes.slice(2)) {
      expect(outcome.status).toBe('rejected');
      if (outcome.status === 'rejected')
        expect(outcome.reason).toMatchObject({ code: ErrorCode.InvalidFrame });
    }
  });
});
