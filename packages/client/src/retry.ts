import { ConnectionLostError, ErrorCode, TmemError } from '@tmem/protocol';
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

const TOPOLOGY_CODES = new Set<string>([
  ErrorCode.StaleState,
  ErrorCode.NotServing,
  ErrorCode.NoCoordinator,
  ErrorCode.ShuttingDown,
]);

/**
 * True for answers that say "ask again after refreshing the cluster state": the op was not applied, because the
 * node routed by another state version, does not serve the partition now, no coordinator could commit, or the
 * node is shutting down (the state that removes it is on its way).
 */
export function isTopologyError(error: unknown): error is TmemError {
  return error instanceof TmemError && TOPOLOGY_CODES.has(error.code);
}

/**
 * True when the member an op went to could not be reached: the connection was lost under the op, or could not
 * be opened (the router turns that into NOT_SERVING with `details.unreachable`). Nobody answered, so another
 * owner of the page may be asked instead.
 */
export function isUnreachable(error: unknown): boolean {
  return isRetryable(error) || (isTopologyError(error) && error.details['unreachable'] === true);
}

/** Bounds of a retry loop. */
export interface RetryOptions {
  /** Retries after the first attempt. */
  retries: number;
  /** The op's deadline on the `now` clock; no retry starts that could not get a reply before it. */
  deadline: number;
  /** Aborts the pauses between attempts, rejecting with the signal's reason. */
  signal: AbortSignal;
  /** Which retryable errors may be retried; default: all of them. */
  allow?: (error: unknown) => boolean;
}

/** True when a lost connection certainly did not carry the op (it was still queued in the client). */
export function wasNotSent(error: unknown): boolean {
  return error instanceof ConnectionLostError && error.details['sent'] === false;
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
      if (!isRetryable(error) || (options.allow !== undefined && !options.allow(error))) throw error;
      // Closing the client wins over a lost connection: the caller learns why nothing will be retried.
      if (options.signal.aborted) throw abortReason(options.signal);
      if (n >= options.retries) throw error;
      const pause = backoffMs(n + 1);
      if (now() + pause >= options.deadline) throw error;
      await sleep(pause, options.signal);
    }
  }
}
