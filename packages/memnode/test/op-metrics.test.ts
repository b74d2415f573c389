import { describe, expect, it } from 'vitest';
import type { PageOp, PageReply } from '@tmem/protocol';
import { LATENCY_BUCKETS, createOpMetrics, latencyBucket, latencyBucketBound } from '../src/op-metrics.ts';

const put = { t: 'put', id: 1, pool: 1, oid: new Uint8Array(1), index: 0 } as unknown as PageOp;
const get = { t: 'get', id: 2, pool: 1, oid: new Uint8Array(1), index: 0 } as unknown as PageOp;
const flush = { t: 'flushObject', id: 3, pool: 1, oid: new Uint8Array(1) } as unknown as PageOp;

describe('latencyBucket', () => {
  it('puts each duration under the first power of two above it', () => {
    expect(latencyBucket(0)).toBe(0);
    expect(latencyBucket(0.9)).toBe(0);
    expect(latencyBucket(1)).toBe(1);
    expect(latencyBucket(3)).toBe(2);
    expect(latencyBucket(4)).toBe(3);
    expect(latencyBucket(1000)).toBe(10);
    for (const micros of [0, 1, 7, 100, 5000, 123456]) {
      expect(micros / 1e6).toBeLessThan(latencyBucketBound(latencyBucket(micros)));
    }
  });

  it('sends anything slower than the last bound to the last bucket', () => {
    expect(latencyBucket(1e12)).toBe(LATENCY_BUCKETS - 1);
    expect(latencyBucketBound(LATENCY_BUCKETS - 1)).toBe(Infinity);
  });
});

describe('createOpMetrics', () => {
  it('counts ops by kind and result, refusals by reason, errors by code', () => {
    let clock = 0;
    const metrics = createOpMetrics(() => clock);
    const replies: [PageOp, PageReply][] = [
      [put, { t: 'accepted', id: 1 }],
      [put, { t: 'accepted', id: 1 }],
      [put, { t: 'refused', id: 1, reason: 'full' }],
      [get, { t: 'hit', id: 2, page: new Uint8Array(1) }],
      [get, { t: 'miss', id: 2 }],
      [get, { t: 'error', id: 2, code: 'UNKNOWN_POOL', message: 'no' }],
      [flush, { t: 'ok', id: 3 }],
    ];
    for (const [op, reply] of replies) {
      clock += 0.5; // each op took 500 µs
      metrics.record(op, reply, clock - 0.5);
    }
    expect(metrics.count('put', 'ok')).toBe(2);
    expect(metrics.count('put', 'refused')).toBe(1);
    expect(metrics.count('get', 'hit')).toBe(1);
    expect(metrics.count('get', 'miss')).toBe(1);
    expect(metrics.count('get', 'error')).toBe(1);
    expect(metrics.count('flushObject', 'ok')).toBe(1);
    expect(metrics.count('flushPage', 'ok')).toBe(0);
    expect([...metrics.refusals()]).toEqual([['full', 1]]);
    expect([...metrics.errors()]).toEqual([['UNKNOWN_POOL', 1]]);
    const latency = metrics.latency();
    expect(latency.count).toBe(replies.length);
    expect(latency.buckets[latencyBucket(500)]).toBe(replies.length);
    expect(latency.sumSeconds).toBeCloseTo(replies.length * 0.0005, 9);
  });
});
