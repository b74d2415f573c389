import { TimeoutError } from '@tmem/protocol';

/** Milliseconds on a monotonic clock: deadlines must not jump when the wall clock is set. */
export function now(): number {
  return performance.now();
}

/** The reason an aborted signal carries, as an Error (the client aborts with CLIENT_CLOSED). */
export function abortReason(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  return reason instanceof Error ? reason : new Error('aborted', { cause: reason });
}

/** Resolves after `ms`, or rejects with the signal's reason as soon as it aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(abortReason(signal));
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(abortReason(signal));
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Settles like `promise`, unless `deadline` (on the `now` clock) passes first: then rejects with a
 * TimeoutError naming `timeoutMs`, the budget the deadline was computed from.
 */
export function beforeDeadline<T>(promise: Promise<T>, deadline: number, timeoutMs: number): Promise<T> {
  const remaining = deadline - now();
  if (remaining <= 0) {
    // The caller has started `promise` already; nobody else will see how it ends.
    promise.catch(() => undefined);
    return Promise.reject(new TimeoutError(timeoutMs));
  }
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(timeoutMs)), remaining);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}
