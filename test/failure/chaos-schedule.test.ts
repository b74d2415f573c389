import { describe, expect, it } from 'vitest';
import { FAULT_KINDS, describeStep, makeSchedule, runSeed } from './chaos-schedule.ts';

describe('chaos schedules', () => {
  it('are a pure function of the seed and the run number', () => {
    expect(makeSchedule(42, 3, 5)).toEqual(makeSchedule(42, 3, 5));
    expect(makeSchedule(42, 3, 5)).not.toEqual(makeSchedule(42, 4, 5));
    expect(makeSchedule(42, 3, 5)).not.toEqual(makeSchedule(43, 3, 5));
    // A longer schedule starts with the shorter one: the count does not change what comes first.
    expect(makeSchedule(7, 1, 8).slice(0, 3)).toEqual(makeSchedule(7, 1, 3));
  });

  it('draw every fault kind, with parameters in range', () => {
    const steps = Array.from({ length: 50 }, (_, run) => makeSchedule(1, run + 1, 4)).flat();
    expect(new Set(steps.map((s) => s.kind))).toEqual(new Set(FAULT_KINDS));
    for (const step of steps) {
      expect(step.pick).toBeGreaterThanOrEqual(0);
      expect(step.pick).toBeLessThan(1);
      expect(step.holdOps).toBeGreaterThanOrEqual(100);
      expect(step.probability).toBeLessThan(0.05);
      expect(describeStep(step)).toMatch(new RegExp(`^${step.kind}\\(pick \\.\\d\\d`));
    }
  });

  it('give every run its own seed', () => {
    const seeds = new Set(Array.from({ length: 1000 }, (_, run) => runSeed(99, run + 1)));
    expect(seeds.size).toBe(1000);
  });
});
