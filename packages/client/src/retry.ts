import { ConnectionLostError } from '@tmem/protocol';
import { abortReason, now, sleep } from './deadline.ts';

/** First pause before a reconnection, in milliseconds; it doubles per attempt. */
const BASE_BACKOFF_MS = 25;
/** Longest pause between reconnections, in milliseconds. */
const MAX_BACKOFF_MS = 1000;

/**
 * Pause before retry number `attempt` (1-based): exponential, capped, with jitter so that many clients cut off
 * by the same failure do not reconnect in lockstep.
 */
export function backoffMs(attempt: number): number {
  const ceiling = Math.min(MAX_BACKOFF_MS, BASE_BACKOFF_MS * 2 ** (attempt - 1));
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

/**
 * Only a connection lost under the op is worth another try. Error replies from a node (`remote`) are answers,
 * and a timeout has used up the op's time.
 */
export function isRetryable(error: unknown): boolean {
  return error instanceof ConnectionLostError && error.details['remote'] !== true;
}

/** Bounds of a retry loop. */
export interface RetryOptions {
  /** Retries after the first attempt. */
  retries: number;
  /** The op's deadline on the `now` clock; no retry starts that could not get a reply before it. */
  deadline: number;
  /** Aborts the pauses between attempts, rejecting with the signal's reason. */
  signal: AbortSignal;
}

/**
 * Runs `attempt` and runs it again after a backoff when it fails with a retryable error, while retries and
 * time are left. The last error is thrown as it is.
 */
export async function withRetries<T>(attempt: (n: number) => Promise<T>, options: RetryOptions): Promise<T> {
  for (let n = 0; ; n++) {
    try {
      return await attempt(n);
    } catch (error) {
      if (!isRetryable(error)) throw error;
      // Closing the client wins over a lost connection: the caller learns why nothing will be retried.
      if (options.signal.aborted) throw abortReason(options.signal);
      if (n >= options.retries) throw error;
      const pause = backoffMs(n + 1);
      if (now() + pause >= options.deadline) throw error;
      await sleep(pause, options.signal);
    }
  }
}
