import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { now } from '../src/deadline.ts';
import { createDeadlineSweep } from '../src/deadline-sweep.ts';

interface Op {
  deadline: number;
  done: boolean;
  expiredAt?: number;
}

describe('deadline sweep', () => {
  // Fake timers and a fake performance clock: the sweep's timing is checked exactly, with no real waiting that a
  // loaded machine could stretch.
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('expires each op at its deadline, earliest first, with one timer', () => {
    const live = new Set<Op>();
    const expired: Op[] = [];
    const sweep = createDeadlineSweep<Op>(
      () => live,
      (op) => {
        op.done = true;
        op.expiredAt = now();
        live.delete(op);
        expired.push(op);
      },
    );
    const start = now();
    const late: Op = { deadline: start + 60, done: false };
    const early: Op = { deadline: start + 20, done: false };
    const answered: Op = { deadline: start + 10, done: false };
    for (const op of [late, early, answered]) {
      live.add(op);
      sweep.arm(op.deadline);
    }
    // Answered before its deadline: never expired.
    answered.done = true;
    live.delete(answered);
    vi.advanceTimersByTime(30);
    expect(expired).toEqual([early]);
    vi.advanceTimersByTime(70);
    expect(expired).toEqual([early, late]);
    expect(early.expiredAt).toBeGreaterThanOrEqual(early.deadline);
    expect(late.expiredAt).toBeGreaterThanOrEqual(late.deadline);
    sweep.stop();
  });

  it('stops: nothing expires after stop()', () => {
    const op: Op = { deadline: now() + 10, done: false };
    let expired = 0;
    const sweep = createDeadlineSweep<Op>(
      () => [op],
      () => expired++,
    );
    sweep.arm(op.deadline);
    sweep.stop();
    vi.advanceTimersByTime(40);
    expect(expired).toBe(0);
  });
});
