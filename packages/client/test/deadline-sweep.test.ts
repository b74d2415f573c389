import { describe, expect, it } from 'vitest';
import { now } from '../src/deadline.ts';
import { createDeadlineSweep } from '../src/deadline-sweep.ts';

interface Op {
  deadline: number;
  done: boolean;
  expiredAt?: number;
}

describe('deadline sweep', () => {
  it('expires each op at its deadline, earliest first, with one timer', async () => {
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
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(expired).toEqual([early, late]);
    expect(early.expiredAt).toBeGreaterThanOrEqual(early.deadline);
    expect(late.expiredAt).toBeGreaterThanOrEqual(late.deadline);
    sweep.stop();
  });

  it('stops: nothing expires after stop()', async () => {
    const op: Op = { deadline: now() + 10, done: false };
    let expired = 0;
    const sweep = createDeadlineSweep<Op>(
      () => [op],
      () => expired++,
    );
    sweep.arm(op.deadline);
    sweep.stop();
    await new Promise((resolve) => setTimeout(resolve, 40));
    expect(expired).toBe(0);
  });
});
