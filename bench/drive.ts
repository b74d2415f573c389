// The closed loop every case runs: a fixed number of workers, each with one call outstanding, until the
// round's time is up or its keys run out. Latency goes into an HDR histogram; a batch call records its latency
// once per page, because that is how long each of its pages waited.
import { performance } from 'node:perf_hooks';
import * as hdr from 'hdr-histogram-js';
import { totalCpuMicros } from './proc.ts';

/** One case run once. */
export interface Sample {
  ops: number;
  seconds: number;
  opsPerSec: number;
  p50Us: number;
  p99Us: number;
  /** Server CPU (utime + stime of every server process) per op, in µs. */
  serverCpuUsPerOp: number;
  /** CPU of this process (the client library and the loop around it) per op, in µs. */
  clientCpuUsPerOp: number;
  /** Ops that missed (gets) or were refused (puts): a correct run has none. */
  failed: number;
}

/** Options of drive(). */
export interface DriveOptions {
  /** Calls outstanding at any time. */
  workers: number;
  /** Ops per call: 1 for single ops, 32 for a batch. */
  opsPerCall: number;
  /** Stop starting calls after this long. */
  seconds: number;
  /** Never more ops than this (a get case reads only the keys its put case wrote). */
  maxOps: number;
  /** The first key; call `c` gets keys firstKey + c * opsPerCall onwards. */
  firstKey: number;
  /** Server processes to charge CPU to. */
  pids: readonly number[];
  /** Runs one call on keys [key, key + opsPerCall) and resolves to how many of its ops failed. */
  call: (key: number) => Promise<number>;
}

/** Runs one case and measures it. */
export async function drive(options: DriveOptions): Promise<Sample> {
  const { workers, opsPerCall, maxOps, firstKey, call } = options;
  const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000 });
  let next = 0;
  let failed = 0;
  const cpuBefore = totalCpuMicros(options.pids);
  const clientBefore = process.cpuUsage();
  const started = performance.now();
  const stopAt = started + options.seconds * 1000;
  async function worker(): Promise<void> {
    while (performance.now() < stopAt && next + opsPerCall <= maxOps) {
      const key = firstKey + next;
      next += opsPerCall;
      const t0 = performance.now();
      failed += await call(key);
      histogram.recordValueWithCount(Math.max(1, Math.round((performance.now() - t0) * 1000)), opsPerCall);
    }
  }
  await Promise.all(Array.from({ length: workers }, worker));
  const seconds = (performance.now() - started) / 1000;
  const cpu = totalCpuMicros(options.pids) - cpuBefore;
  const client = process.cpuUsage(clientBefore);
  const sample: Sample = {
    ops: next,
    seconds,
    opsPerSec: next / seconds,
    p50Us: histogram.getValueAtPercentile(50),
    p99Us: histogram.getValueAtPercentile(99),
    serverCpuUsPerOp: next > 0 ? cpu / next : NaN,
    clientCpuUsPerOp: next > 0 ? (client.user + client.system) / next : NaN,
    failed,
  };
  histogram.destroy();
  return sample;
}

/** The median of a list (the lower middle for an even length, which is then a value that was measured). */
export function median(xs: readonly number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)] ?? NaN;
}
