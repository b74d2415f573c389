import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { TimeoutError } from '../src/index.ts';
import { beforeDeadline, now } from '../src/deadline.ts';

describe('beforeDeadline', () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => {
    unhandled.push(reason);
  };
  process.on('unhandledRejection', onUnhandled);
  afterEach(() => {
    unhandled.length = 0;
  });
  afterAll(() => {
    process.off('unhandledRejection', onUnhandled);
  });

  it('settles like the promise when it ends first', async () => {
    await expect(beforeDeadline(Promise.resolve(7), now() + 1000, 1000)).resolves.toBe(7);
  });

  it('rejects with TimeoutError when the deadline passes first', async () => {
    const never = new Promise<never>(() => undefined);
    await expect(beforeDeadline(never, now() + 5, 5)).rejects.toBeInstanceOf(TimeoutError);
  });

  it('does not leave the rejection of a promise it did not wait for unhandled', async () => {
    let fail!: (error: Error) => void;
    const started = new Promise<never>((_resolve, reject) => {
      fail = reject;
    });
    await expect(beforeDeadline(started, now() - 1, 10)).rejects.toBeInstanceOf(TimeoutError);
    fail(new Error('closed'));
    // Unhandled rejections are reported after the microtask queue drains; two macrotask turns cover it.
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    expect(unhandled).toEqual([]);
  });
});
