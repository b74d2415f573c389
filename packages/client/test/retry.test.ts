import { describe, expect, it } from 'vitest';
import { ConnectionLostError, ErrorCode, TimeoutError, TmemError, errorFromWire } from '@tmem/protocol';
import { backoffMs, classifyFailure, isRetryable, retryDecision, type RetryRequest } from '../src/retry.ts';

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

  it('classifies failures by kind: topology, unsent, lost, timeout, final', () => {
    const unsent = new ConnectionLostError('queued', { details: { sent: false } });
    expect(classifyFailure(new TmemError(ErrorCode.NotServing, 'x')).kind).toBe('topology');
    expect(classifyFailure(unsent).kind).toBe('unsent');
    expect(classifyFailure(lost()).kind).toBe('lost');
    expect(classifyFailure(new TimeoutError(10)).kind).toBe('timeout');
    expect(classifyFailure(new TmemError(ErrorCode.UnknownPool, 'x')).kind).toBe('final');
  });
});

describe('retryDecision', () => {
  const request: RetryRequest = {
    retryLost: true,
    onlyUnsent: false,
    retries: 2,
    lostRetries: 0,
    reroutes: 0,
    msLeft: 5000,
  };
  const topology = classifyFailure(new TmemError(ErrorCode.StaleState, 'x'));
  const unsent = classifyFailure(new ConnectionLostError('queued', { details: { sent: false } }));
  const sentLost = classifyFailure(lost());
  const half = (): number => 0.5;

  it('reroutes a topology answer at once when the view moved, without spending retries', () => {
    expect(retryDecision(request, topology, true)).toEqual({
      retry: true,
      delayMs: 0,
      spends: false,
      refresh: false,
    });
  });

  it('backs off topology answers while the view stays, 10 ms doubling to 200 ms', () => {
    const delays = [0, 1, 2, 5, 9].map((reroutes) =>
      retryDecision({ ...request, reroutes }, topology, false),
    );
    expect(delays.map((d) => (d.retry ? d.delayMs : -1))).toEqual([10, 20, 40, 200, 200]);
    expect(delays.every((d) => d.retry && !d.spends)).toBe(true);
  });

  it('gives up out of time when the pause would reach the deadline', () => {
    expect(retryDecision({ ...request, msLeft: 5 }, topology, false)).toEqual({
      retry: false,
      outOfTime: true,
    });
  });

  it('reroutes an unsent op whatever the budget, writes and retry-less ops included', () => {
    const spent = { ...request, retries: 0, onlyUnsent: true, retryLost: false };
    expect(retryDecision(spent, unsent, true)).toMatchObject({ retry: true, spends: false, delayMs: 0 });
    expect(retryDecision(spent, unsent, false)).toMatchObject({ retry: true, spends: false, delayMs: 10 });
  });

  it('retries a sent op after a lost connection while retries last, with a refresh, spending one', () => {
    expect(retryDecision(request, sentLost, false, half)).toEqual({
      retry: true,
      delayMs: 18.75,
      spends: true,
      refresh: true,
    });
    expect(retryDecision({ ...request, lostRetries: 2 }, sentLost, false)).toEqual({
      retry: false,
      outOfTime: false,
    });
  });

  it('never sends a sent write again, nor an op that may not be retried', () => {
    expect(retryDecision({ ...request, onlyUnsent: true }, sentLost, false).retry).toBe(false);
    expect(retryDecision({ ...request, retryLost: false }, sentLost, false).retry).toBe(false);
  });

  it('starts no lost-connection retry that the deadline would cut short', () => {
    expect(retryDecision({ ...request, msLeft: 1 }, sentLost, false).retry).toBe(false);
  });

  it('never retries answers or timeouts', () => {
    expect(retryDecision(request, classifyFailure(new TimeoutError(10)), true).retry).toBe(false);
    const remote = errorFromWire({ code: ErrorCode.ConnectionLost, message: 'remote' });
    expect(retryDecision(request, classifyFailure(remote), true).retry).toBe(false);
  });
});
