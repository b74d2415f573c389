// Throughput benchmark: 4 KiB put and get on a persistent pool through the client, against real node
// processes on loopback: one node, three nodes with one copy, three nodes with two copies (what replication
// costs), each with one op in flight and many in flight (batched by the client). Prints ops/s, latency
// percentiles and the ratio to the one-node row; each cell is the median of several rounds because the
// machine is shared and noisy. Run: npm run bench [-- --rounds 5 --ops 20000]
import { parseArgs } from 'node:util';
import * as hdr from 'hdr-histogram-js';
import { connect, type Pool } from '@tmem/client';
import { killAllNodes, startCluster, startNode } from '../test/harness/index.ts';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    ops: { type: 'string', default: '20000' },
    concurrency: { type: 'string', default: '256' },
  },
});
const ROUNDS = Number(values.rounds);
const OPS = Number(values.ops);
const CONCURRENCY = Number(values.concurrency);
const PAGE_SIZE = 4096;

interface Sample {
  opsPerSec: number;
  p50Us: number;
  p99Us: number;
}

function page(i: number): Uint8Array {
  const p = new Uint8Array(PAGE_SIZE);
  for (let j = 0; j < PAGE_SIZE; j += 64) p[j] = (i + j) & 0xff;
  p[1] = 1; // never same-filled: measure the full copy path
  return p;
}

/** Runs `count` ops with at most `inFlight` outstanding and records each op's latency. */
async function drive(count: number, inFlight: number, op: (i: number) => Promise<unknown>): Promise<Sample> {
  const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000 });
  let next = 0;
  const started = process.hrtime.bigint();
  async function worker(): Promise<void> {
    while (next < count) {
      const i = next++;
      const t0 = process.hrtime.bigint();
      await op(i);
      histogram.recordValue(Number((process.hrtime.bigint() - t0) / 1000n));
    }
  }
  await Promise.all(Array.from({ length: inFlight }, worker));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const sample = {
    opsPerSec: count / seconds,
    p50Us: histogram.getValueAtPercentile(50),
    p99Us: histogram.getValueAtPercentile(99),
  };
  histogram.destroy();
  return sample;
}

function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}

/** One deployment the cases run against: a cluster and the replication of its persistent pool. */
interface Setup {
  label: string;
  nodes: number;
  replication: number;
}

const SETUPS: Setup[] = [
  { label: '1 node', nodes: 1, replication: 1 },
  { label: '3 nodes, R=1', nodes: 3, replication: 1 },
  { label: '3 nodes, R=2', nodes: 3, replication: 2 },
];

/** Runs every case against `setup`, ROUNDS times, and returns the samples per case name. */
async function measure(setup: Setup): Promise<Map<string, Sample[]>> {
  const nodes =
    setup.nodes === 1
      ? [await startNode({ capacity: '1GiB' })]
      : await startCluster({ size: setup.nodes, capacity: '1GiB' });
  const client = await connect({ seeds: nodes.map((n) => n.url), timeoutMs: 60_000 });
  try {
    const pool: Pool = await client.createPool({
      kind: 'persistent',
      pageSize: PAGE_SIZE,
      replication: setup.replication,
    });
    const pages = Array.from({ length: 1024 }, (_, i) => page(i));
    const cases: [string, number, (i: number) => Promise<unknown>][] = [
      ['put 4 KiB, 1 in flight', 1, (i) => pool.put('bench', i % 50_000, pages[i % 1024]!)],
      ['get 4 KiB, 1 in flight', 1, (i) => pool.get('bench', i % 50_000)],
      [
        `put 4 KiB, ${CONCURRENCY} in flight`,
        CONCURRENCY,
        (i) => pool.put('bench', i % 50_000, pages[i % 1024]!),
      ],
      [`get 4 KiB, ${CONCURRENCY} in flight`, CONCURRENCY, (i) => pool.get('bench', i % 50_000)],
    ];
    // Warm up the JIT and the nodes' slabs before measuring.
    await drive(Math.min(OPS, 5000), CONCURRENCY, (i) => pool.put('bench', i % 50_000, pages[i % 1024]!));
    const results = new Map<string, Sample[]>();
    for (let round = 0; round < ROUNDS; round++) {
      for (const [name, inFlight, op] of cases) {
        // One-in-flight cases are latency bound; a tenth of the ops keeps the run short.
        const count = inFlight === 1 ? Math.ceil(OPS / 10) : OPS;
        const samples = results.get(name) ?? [];
        samples.push(await drive(count, inFlight, op));
        results.set(name, samples);
      }
    }
    return results;
  } finally {
    await client.close();
    await killAllNodes();
  }
}

console.log(
  `\ntmem throughput on loopback, persistent pool, median of ${ROUNDS} rounds (${OPS} ops per batched round)\n`,
);
console.log('| setup | case | ops/s | p50 µs | p99 µs | ops/s vs 1 node |');
console.log('| --- | --- | ---: | ---: | ---: | ---: |');
const baseline = new Map<string, number>();
for (const setup of SETUPS) {
  const results = await measure(setup);
  for (const [name, samples] of results) {
    const ops = median(samples.map((s) => s.opsPerSec));
    const p50 = median(samples.map((s) => s.p50Us));
    const p99 = median(samples.map((s) => s.p99Us));
    if (setup.nodes === 1) baseline.set(name, ops);
    const ratio = ops / (baseline.get(name) ?? ops);
    console.log(
      `| ${setup.label} | ${name} | ${Math.round(ops).toLocaleString('en-US')} | ${p50} | ${p99} | ${ratio.toFixed(2)} |`,
    );
  }
}
