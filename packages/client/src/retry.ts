// The retry policy of the client, as one pure function over a typed failure (in the style of ioredis's
// clusterRetryStrategy): no I/O, timers or clock; the router's loop feeds it and carries out its decision.
import { ConnectionLostError, ErrorCode, TimeoutError, TmemError } from '@tmem/protocol';

/** First pause before a reconnection, in milliseconds; it doubles per attempt. */
const BASE_BACKOFF_MS = 25;
/** Longest pause between reconnections, in milliseconds. */
const MAX_BACKOFF_MS = 1000;
/** First pause before retrying after a topology answer, in milliseconds; it doubles per attempt. */
export const TOPOLOGY_BACKOFF_MS = 10;
/** Longest pause between retries after topology answers, in milliseconds. */
export const MAX_TOPOLOGY_BACKOFF_MS = 200;

/**
 * Pause before retry number `attempt` (1-based): exponential, capped, with jitter (`random` in [0, 1)) so that
 * many clients cut off by the same failure do not reconnect in lockstep.
 */
export function backoffMs(attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(MAX_BACKOFF_MS, BASE_BACKOFF_MS * 2 ** (attempt - 1));
  return ceiling / 2 + random() * (ceiling / 2);
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

/** True when a lost connection certainly did not carry the op (it was still queued in the client). */
export function wasNotSent(error: unknown): boolean {
  return error instanceof ConnectionLostError && error.details['sent'] === false;
}

/**
 * One failed attempt, as the policy sees it. The wire's and the connection's `details` flags are read in
 * `classifyFailure` only; everything after it branches on `kind`.
 */
export type Failure =
  /** A topology answer (STALE_STATE, NOT_SERVING, NO_COORDINATOR, SHUTTING_DOWN, or unreachable): not applied. */
  | { readonly kind: 'topology'; readonly error: TmemError }
  /** The connection closed while the op still waited in the client: it never left, so it cannot apply twice. */
  | { readonly kind: 'unsent'; readonly error: ConnectionLostError }
  /** The connection was lost after the op was sent: it may have been applied. */
  | { readonly kind: 'lost'; readonly error: ConnectionLostError }
  /** The op ran out of time. */
  | { readonly kind: 'timeout'; readonly error: TimeoutError }
  /** An answer (an error reply, a protocol error, CLIENT_CLOSED...): never retried. */
  | { readonly kind: 'final'; readonly error: unknown };

/** Sorts an error an attempt threw into the failure the policy decides on. */
export function classifyFailure(error: unknown): Failure {
  if (isTopologyError(error)) return { kind: 'topology', error };
  if (isRetryable(error)) {
    const lost = error as ConnectionLostError;
    return wasNotSent(lost) ? { kind: 'unsent', error: lost } : { kind: 'lost', error: lost };
  }
  if (error instanceof TimeoutError) return { kind: 'timeout', error };
  return { kind: 'final', error };
}

/** What the policy knows of the op that failed. */
export interface RetryRequest {
  /** May be sent again after a lost connection (false for newPool and destroyPool). */
  readonly retryLost: boolean;
  /** A write: a lost connection is retried only when the op was never sent (else it is in doubt). */
  readonly onlyUnsent: boolean;
  /** Retries after lost connections the op may spend. */
  readonly retries: number;
  /** Retries after lost connections it spent so far. */
  readonly lostRetries: number;
  /** Rerouting retries (topology answers, unsent ops) since the last lost-connection retry. */
  readonly reroutes: number;
  /** Milliseconds left before the op's deadline. */
  readonly msLeft: number;
}

/** What to do after a failed attempt. */
export type RetryDecision =
  /**
   * Try again after `delayMs` (0: at once). `spends` says whether this retry counts against `retries`;
   * `refresh` whether the cluster state is to be refreshed before the next attempt.
   */
  | { readonly retry: true; readonly delayMs: number; readonly spends: boolean; readonly refresh: boolean }
  /** Give up: `outOfTime` when the op would have been retried but its deadline does not allow it. */
  | { readonly retry: false; readonly outOfTime: boolean };

const GIVE_UP: RetryDecision = { retry: false, outOfTime: false };
const OUT_OF_TIME: RetryDecision = { retry: false, outOfTime: true };

/**
 * The client's whole retry policy. `viewMoved` says whether the cluster state changed since the attempt was
 * routed (the loop refreshes before asking, for topology answers and unsent ops).
 * - A topology answer or an op that never left the client follows the new view: at once when the view moved,
 *   else after a backoff (10 ms doubling to 200 ms), for as long as the deadline allows, without spending
 *   retries. An unsent op must follow the view whatever the budget: its member may just have left.
 * - A connection lost under a sent op is retried, after a jittered backoff and a refresh, while `retries` and
 *   time last, and only for ops that may be sent again (never for a write: it is in doubt).
 * - Anything else is an answer, or the end of the op's time.
 */
export function retryDecision(
  request: RetryRequest,
  failure: Failure,
  viewMoved: boolean,
  random: () => number = Math.random,
): RetryDecision {
  switch (failure.kind) {
    case 'topology':
    case 'unsent': {
      if (viewMoved) return { retry: true, delayMs: 0, spends: false, refresh: false };
      const delayMs = Math.min(MAX_TOPOLOGY_BACKOFF_MS, TOPOLOGY_BACKOFF_MS * 2 ** request.reroutes);
      if (delayMs >= request.msLeft) return OUT_OF_TIME;
      return { retry: true, delayMs, spends: false, refresh: false };
    }
    case 'lost': {
      if (!request.retryLost || request.onlyUnsent || request.lostRetries >= request.retries) return GIVE_UP;
      const delayMs = backoffMs(request.lostRetries + 1, random);
      if (delayMs >= request.msLeft) return GIVE_UP;
      return { retry: true, delayMs, spends: true, refresh: true };
    }
    case 'timeout':
    case 'final':
      return GIVE_UP;
  }
}
