import { describe, expect, it } from 'vitest';
import { VERSION_EPOCH } from '@tmem/protocol';
import { createVersionClock } from '../../src/replication/version-clock.ts';

describe('version clock', () => {
  it('stamps increasing versions per partition, at least the state epoch', () => {
    const clock = createVersionClock(4);
    const a = clock.stamp(0, 3);
    const b = clock.stamp(0, 3);
    expect(a).toBe(3 * VERSION_EPOCH);
    expect(b).toBe(a + 1);
    expect(clock.stamp(1, 3)).toBe(3 * VERSION_EPOCH);
  });

  it('a primary of a later state stamps above everything an earlier primary stamped', () => {
    const old = createVersionClock(1);
    let last = 0;
    for (let i = 0; i < 1000; i++) last = old.stamp(0, 7);
    const successor = createVersionClock(1);
    expect(successor.stamp(0, 8)).toBeGreaterThan(last);
  });

  it('stamps above every version it observed', () => {
    const clock = createVersionClock(2);
    clock.observe(1, 9 * VERSION_EPOCH + 50);
    expect(clock.stamp(1, 9)).toBe(9 * VERSION_EPOCH + 51);
    clock.observe(1, 5);
    expect(clock.stamp(1, 9)).toBe(9 * VERSION_EPOCH + 52);
  });
});
