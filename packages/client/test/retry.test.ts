import { describe, expect, it } from 'vitest';
import { ConnectionLostError, ErrorCode, TimeoutError, TmemError, errorFromWire } from '@tmem/protocol';
import { now } from '../src/deadline.ts';
import { backoffMs, isRetryable, withRetries } from '../src/retry.ts';

const lost = (): ConnectionLostError => new ConnectionLostError('lost');

describe('retry policy', () => {
  it('backs off exponentially with jitter, capped', () => {
    for (let attempt = 1; attempt < 20; attempt++) {
      const ceiling = Math.min(1000, 25 * 2 ** (attempt - 1));
      const pause = backoffMs(attempt);
      expect(pause).toBeGreaterThanOrEqual(ceiling / 2);
      expect(pause).toBeLessThanOrEqual(ceiling);
    }
  });

  it('retries only connections lost under the op, never error replies or timeouts', () => {
    expect(isRetryable(lost())).toBe(true);
    expect(isRetryable(errorFromWire({ code: ErrorCode.ConnectionLost, message: 'remote' }))).toBe(false);
    expect(isRetryable(new TimeoutError(10))).toBe(false);
    expect(isRetryable(new TmemError(ErrorCode.UnknownPool, 'x'))).toBe(false);
  });

  it('runs the op up to 1 + retries times, then throws the last error', async () => {
    let attempts = 0;
    const failing = (): Promise<never> => {
      attempts++;
      return Promise.reject(lost());
    };
    const signal = new AbortController().signal;
    const error = await withRetries(failing, { retries: 2, deadline: now() + 10_000, signal }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ConnectionLostError);
    expect(attempts).toBe(3);
  });

  it('starts no retry that the deadline would cut short', async () => {
    let attempts = 0;
    const failing = (): Promise<never> => {
      attempts++;
      return Promise.reject(lost());
    };
    const signal = new AbortController().signal;
    await expect(withRetries(failing, { retries: 5, deadline: now() + 1, signal })).rejects.toBeInstanceOf(
      ConnectionLostError,
    );
    expect(attempts).toBe(1);
  });

  it('gives up with the abort reason once the signal aborts', async () => {
    const controller = new AbortController();
    const reason = new TmemError(ErrorCode.ClientClosed, 'closed');
    const failing = (): Promise<never> => {
      controller.abort(reason);
      return Promise.reject(lost());
    };
    await expect(
      withRetries(failing, { retries: 5, deadline: now() + 10_000, signal: controller.signal }),
    ).rejects.toBe(reason);
  });
});
