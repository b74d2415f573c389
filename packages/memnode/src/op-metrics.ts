import type { PageOp, PageReply } from '@tmem/protocol';

/**
 * Counts of the page ops a node answered, kept in plain typed arrays so the data path pays a few array writes
 * per op and nothing else. The Prometheus endpoint (metrics-server.ts) reads them only when scraped.
 */

/** The op kinds, as row numbers of the counters. */
export const OP_KINDS = ['put', 'get', 'flushPage', 'flushObject'] as const;
export type OpKindName = (typeof OP_KINDS)[number];
/** How an op ended, as column numbers of the counters. */
export const OP_RESULTS = ['ok', 'hit', 'miss', 'refused', 'error'] as const;
export type OpResultName = (typeof OP_RESULTS)[number];

const KIND_INDEX: Record<PageOp['t'], number> = { put: 0, get: 1, flushPage: 2, flushObject: 3 };
const RESULT_OK = 0;
const RESULT_HIT = 1;
const RESULT_MISS = 2;
const RESULT_REFUSED = 3;
const RESULT_ERROR = 4;

/**
 * Latency buckets: bucket i holds ops that took fewer than 2^i microseconds (bucket 0: under 1 µs), found with
 * one Math.clz32. The last bucket takes everything slower (2^26 µs is over a minute).
 */
export const LATENCY_BUCKETS = 27;

/** The upper bound of latency bucket i, in seconds (Prometheus' unit); Infinity for the last one. */
export function latencyBucketBound(i: number): number {
  return i >= LATENCY_BUCKETS - 1 ? Infinity : 2 ** i / 1e6;
}

/** The latency bucket of an op that took `micros` microseconds. */
export function latencyBucket(micros: number): number {
  const whole = micros >= 0xffffffff ? 0xffffffff : micros >>> 0;
  const bucket = 32 - Math.clz32(whole);
  return bucket < LATENCY_BUCKETS ? bucket : LATENCY_BUCKETS - 1;
}

/** One node's op counters. */
export interface OpMetrics {
  /** Records one answered op that started at `startMs` (performance.now()). */
  record(op: PageOp, reply: PageReply, startMs: number): void;
  /** Ops of a kind with a result. */
  count(kind: OpKindName, result: OpResultName): number;
  /** Refused puts by reason (the reply's `reason`), and error replies by code. */
  refusals(): ReadonlyMap<string, number>;
  errors(): ReadonlyMap<string, number>;
  /** Ops per latency bucket (not cumulative), their sum in seconds and their count. */
  latency(): { buckets: Float64Array; sumSeconds: number; count: number };
}

export function createOpMetrics(now: () => number = () => performance.now()): OpMetrics {
  // Float64: exact integers to 2^53, so no counter wraps in a node's life.
  const counts = new Float64Array(OP_KINDS.length * OP_RESULTS.length);
  const buckets = new Float64Array(LATENCY_BUCKETS);
  let latencySumMs = 0;
  // Maps only on the rare paths (a refusal, an error): their keys are few and come from the node's own replies.
  const refusals = new Map<string, number>();
  const errors = new Map<string, number>();

  return {
    record(op, reply, startMs) {
      let result: number;
      switch (reply.t) {
        case 'accepted':
        case 'ok':
          result = RESULT_OK;
          break;
        case 'hit':
          result = RESULT_HIT;
          break;
        case 'miss':
          result = RESULT_MISS;
          break;
        case 'refused':
          result = RESULT_REFUSED;
          refusals.set(reply.reason, (refusals.get(reply.reason) ?? 0) + 1);
          break;
        default:
          result = RESULT_ERROR;
          errors.set(reply.code, (errors.get(reply.code) ?? 0) + 1);
      }
      counts[(KIND_INDEX[op.t] ?? 0) * OP_RESULTS.length + result]! += 1;
      const elapsedMs = now() - startMs;
      latencySumMs += elapsedMs;
      buckets[latencyBucket(elapsedMs * 1000)]! += 1;
    },
    count(kind, result) {
      return counts[OP_KINDS.indexOf(kind) * OP_RESULTS.length + OP_RESULTS.indexOf(result)] ?? 0;
    },
    refusals: () => refusals,
    errors: () => errors,
    latency() {
      let count = 0;
      for (const n of buckets) count += n;
      return { buckets: buckets.slice(), sumSeconds: latencySumMs / 1000, count };
    },
  };
}
