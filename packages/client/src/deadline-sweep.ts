// One timer per connection for the deadlines of all its ops, instead of a setTimeout per op.
import { now } from './deadline.ts';

/** What the sweep needs of an op. */
export interface Deadlined {
  /** When the op gives up, on the `now` clock. */
  readonly deadline: number;
  /** Settled: the sweep skips it. */
  readonly done: boolean;
}

/** The deadline timer of one connection. */
export interface DeadlineSweep {
  /** Makes sure the sweep runs by `deadline` (called for every new op; O(1) unless it is the earliest). */
  arm(deadline: number): void;
  /** Stops the timer (the connection closed). */
  stop(): void;
}

/**
 * Creates a sweep over the ops `live()` lists: one timer, set for the earliest deadline armed. When it fires it
 * expires every live op whose deadline has passed and sets itself for the earliest deadline left. Most ops are
 * answered long before their deadline, so the sweep runs about once per timeout, not once per op: arming is a
 * comparison, and a scan happens only when the earliest deadline is reached.
 */
export function createDeadlineSweep<T extends Deadlined>(
  live: () => Iterable<T>,
  expire: (op: T) => void,
): DeadlineSweep {
  let timer: NodeJS.Timeout | undefined;
  /** When the timer fires; Infinity while it is not set. */
  let at = Infinity;

  function sweep(): void {
    timer = undefined;
    at = Infinity;
    const t = now();
    const expired: T[] = [];
    let next = Infinity;
    for (const op of live()) {
      if (op.done) continue;
      if (op.deadline <= t) expired.push(op);
      else if (op.deadline < next) next = op.deadline;
    }
    // Expired after the scan: expiring changes the collections `live()` iterates.
    for (const op of expired) expire(op);
    if (next !== Infinity) arm(next);
  }

  function arm(deadline: number): void {
    if (deadline >= at) return;
    if (timer !== undefined) clearTimeout(timer);
    at = deadline;
    timer = setTimeout(sweep, Math.max(0, deadline - now()));
  }

  return {
    arm,
    stop() {
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      at = Infinity;
    },
  };
}
