// `npm run bench`: tmem side by side with Redis (through ioredis, and redis-benchmark as a reference) and
// memcached (through memjs) on 4 KiB random pages, every system started here on loopback and stopped at the
// end, also on failure or Ctrl-C. Rounds are interleaved (round r runs every system's cases before round
// r + 1, and within a round each case runs on every system in turn) so all systems share the machine's
// noise; each cell is the median over rounds.
// Flags: --quick, --rounds N, --seconds S, --out DIR, --systems a,b, --cases a,b, --memory-mib N,
// --no-memory, --cpu-prof DIR (see the README's benchmark section).
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { killAllNodes } from '../test/harness/index.ts';
import {
  runRedisBenchmark,
  startMemcached,
  startRedis,
  stopAnchors,
  type RedisBenchmarkResult,
} from './anchors.ts';
import { CASES, REGION_KEYS, type Case } from './cases.ts';
import { drive, type Sample } from './drive.ts';
import { measureMemory } from './memory.ts';
import { pagesOf, type PageContent } from './page-contents.ts';
import { PROFILED_NODE_ARGS, startProfiles } from './profiling.ts';
import { markdown, svg, type CaseResult, type RunResult, type StorageResult } from './report.ts';
import {
  BATCH_OPS,
  PAGE_SIZE,
  SYSTEM_IDS,
  startIoredis,
  startMemjs,
  startTmemCluster,
  startTmemOneNode,
  startTmemOneNodeLz4,
  startTmemOneNodeDedup,
  startTmemOneNodeScraped,
  type System,
  type SystemId,
} from './systems.ts';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    rounds: { type: 'string' },
    seconds: { type: 'string' },
    out: { type: 'string', default: fileURLToPath(new URL('./results', import.meta.url)) },
    systems: { type: 'string', default: SYSTEM_IDS.join(',') },
    cases: { type: 'string', default: CASES.map((c) => c.id).join(',') },
    'memory-mib': { type: 'string' },
    'no-memory': { type: 'boolean', default: false },
    'cpu-prof': { type: 'string' },
  },
});
const quick = values.quick;
// --quick: 2 short rounds and a small memory fill, to finish within a minute (a smoke test, not a measurement).
const rounds = Number(values.rounds ?? (quick ? 2 : 3));
const seconds = Number(values.seconds ?? (quick ? 0.2 : 3));
const memoryMiB = Number(values['memory-mib'] ?? (quick ? 16 : 1024));
// A put case never writes more than this per round, which bounds what the anchors hold (memcached evicts).
const MAX_PUT_OPS = 160_000;
const profileDir = values['cpu-prof'];
const selectedSystems = values.systems.split(',') as SystemId[];
const selectedCases = new Set(values.cases.split(','));
for (const id of selectedSystems) {
  if (!SYSTEM_IDS.includes(id))
    throw new Error(`--systems: unknown system "${id}" (known: ${SYSTEM_IDS.join(', ')})`);
}
if (!(rounds >= 1) || !(seconds > 0)) throw new Error('--rounds must be >= 1 and --seconds > 0');

// Random unless a case says otherwise, so neither tmem's same-filled shortcut nor any compression can make a
// page cheaper than 4 KiB; text and zero pages for the compression cases (page-contents.ts).
const pages = Array.from({ length: 1024 }, () => randomBytes(PAGE_SIZE));
const pagesByContent: Record<PageContent, readonly Uint8Array[]> = {
  random: pages,
  text: pagesOf('text', 1024, PAGE_SIZE),
  json: pagesOf('json', 1024, PAGE_SIZE),
  zero: pagesOf('zero', 1024, PAGE_SIZE),
  dup: pagesOf('dup', 1024, PAGE_SIZE),
  unique: pagesOf('unique', 1024, PAGE_SIZE),
};

/** The page of `key`: for `unique` pages a copy with the key in its first bytes, so no two keys hold the same. */
function pageAt(content: PageContent, key: number): Uint8Array {
  const page = pagesByContent[content][key % 1024]!;
  if (content !== 'unique') return page;
  const copy = page.slice();
  new DataView(copy.buffer).setFloat64(0, key);
  return copy;
}

/** Runs one call of `c` on `system` at `key`. */
function callOf(system: System, c: Case): ((key: number) => Promise<number>) | undefined {
  if (c.batched) {
    const { putBatch, getBatch } = system;
    const keysAt = (key: number): number[] => Array.from({ length: BATCH_OPS }, (_, i) => key + i);
    if (c.op === 'put' && putBatch)
      return (key) =>
        putBatch(
          keysAt(key),
          keysAt(key).map((k) => pageAt(c.content, k)),
        );
    if (c.op === 'get' && getBatch) return (key) => getBatch(keysAt(key));
    return undefined;
  }
  return c.op === 'put' ? (key) => system.put(key, pageAt(c.content, key)) : (key) => system.get(key);
}

async function cleanUp(systems: readonly System[]): Promise<void> {
  await Promise.allSettled(systems.map((s) => s.close()));
  await killAllNodes();
  await stopAnchors();
}

const startedAt = new Date();
// Shown with the results: on a shared machine the load says how far absolute numbers can be trusted.
const loadAtStart = loadavg()[0] ?? NaN;
const startedMs = Date.now();
const systems: System[] = [];
process.once('SIGINT', () => {
  console.error('\ninterrupted: stopping every server the bench started');
  void cleanUp(systems).finally(() => process.exit(130));
});

const results = new Map<string, CaseResult>();
const storage = new Map<string, StorageResult>();
const redisBenchmark: RedisBenchmarkResult[] = [];
const notes: string[] = [];
let memory: RunResult['memory'];
try {
  const redis = await startRedis();
  const memcached = await startMemcached(3072);
  const nodeArgs = profileDir === undefined ? [] : PROFILED_NODE_ARGS;
  if (profileDir !== undefined) mkdirSync(profileDir, { recursive: true });
  // Started side by side (tsx start-up dominates a --quick run); whatever started is closed even if one fails.
  console.error(`starting ${selectedSystems.join(', ')}`);
  const starters: Record<SystemId, () => Promise<System>> = {
    'tmem-1': () => startTmemOneNode({ nodeArgs }),
    'tmem-1-lz4': () => startTmemOneNodeLz4({ nodeArgs }),
    'tmem-1-dedup': () => startTmemOneNodeDedup({ nodeArgs }),
    'tmem-1-metrics': () => startTmemOneNodeScraped({ nodeArgs }),
    'tmem-3': () => startTmemCluster({ nodeArgs }),
    ioredis: () => startIoredis(redis),
    memcached: () => startMemjs(memcached),
  };
  const start = (id: SystemId): Promise<System> => starters[id]();
  const started = await Promise.allSettled(selectedSystems.map(start));
  for (const outcome of started) if (outcome.status === 'fulfilled') systems.push(outcome.value);
  const failed = started.find((outcome) => outcome.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
  // Warm-up: the JIT, the nodes' slabs and every connection, on keys no case uses.
  for (const system of systems) {
    const warm = REGION_KEYS * CASES.length;
    const put = await drive({
      workers: 64,
      opsPerCall: 1,
      seconds: Math.min(1, seconds),
      maxOps: 20_000,
      firstKey: warm,
      pids: [],
      call: callOf(system, CASES[2]!)!,
    });
    await drive({
      workers: 64,
      opsPerCall: 1,
      seconds: Math.min(1, seconds),
      maxOps: put.ops,
      firstKey: warm,
      pids: [],
      call: callOf(system, CASES[3]!)!,
    });
  }
  for (let round = 0; round < rounds; round++) {
    // Case by case, every system in turn: neighbours in time share the machine's load (seconds apart, not a
    // whole system's round apart), and each get runs after every system's matching put.
    const written = new Map<string, number>();
    for (const c of CASES) {
      for (const system of systems) {
        const call = callOf(system, c);
        const wanted =
          selectedCases.has(c.id) || (c.op === 'put' && selectedCases.has(c.id.replace('put', 'get')));
        if (call === undefined || !wanted) continue;
        const options = {
          workers: c.workers,
          opsPerCall: c.opsPerCall,
          seconds,
          maxOps: c.op === 'put' ? MAX_PUT_OPS : (written.get(`${system.id} ${c.region}`) ?? 0),
          firstKey: c.region * REGION_KEYS,
          pids: system.pids,
          call,
        };
        if (!selectedCases.has(c.id)) {
          // Only the get is asked for: write its keys unmeasured.
          written.set(`${system.id} ${c.region}`, (await drive(options)).ops);
          continue;
        }
        const stopProfiles =
          profileDir === undefined
            ? undefined
            : await startProfiles(profileDir, `${system.id}-${c.id}-r${round}`, system.nodes);
        // What the node held before the put, so the compression table counts exactly the pages it wrote (a get
        // case that ran out of time leaves pages of its region behind).
        const before = c.op === 'put' ? await system.storeStats?.() : undefined;
        const sample: Sample = await drive(options);
        const files = await stopProfiles?.();
        if (profileDir !== undefined) {
          // Beside the profiles: what the window ran, for µs per op in the summaries.
          const sidecar = { system: system.id, case: c.id, round, ...sample };
          writeFileSync(
            join(profileDir, `${system.id}-${c.id}-r${round}.json`),
            JSON.stringify(sidecar, null, 2),
          );
        }
        if (c.op === 'put') written.set(`${system.id} ${c.region}`, sample.ops);
        if (before !== undefined && system.storeStats !== undefined) {
          const after = await system.storeStats();
          const entry: StorageResult = storage.get(`${system.id} ${c.id}`) ?? {
            system,
            case: c,
            snapshots: [],
          };
          entry.snapshots.push({
            pages: after.pages - before.pages,
            usedBytes: after.usedBytes - before.usedBytes,
            compressedPages: after.compressedPages - before.compressedPages,
            compressedBytes: after.compressedBytes - before.compressedBytes,
            compressedSlotBytes: after.compressedSlotBytes - before.compressedSlotBytes,
          });
          storage.set(`${system.id} ${c.id}`, entry);
        }
        const key = `${system.id} ${c.id}`;
        const result: CaseResult = results.get(key) ?? { system, case: c, samples: [] };
        result.samples.push(sample);
        results.set(key, result);
        if (sample.failed > 0)
          notes.push(
            `round ${round}, ${system.label}, ${c.label}: ${sample.failed} of ${sample.ops} ops missed or were refused`,
          );
        console.error(
          `round ${round + 1}/${rounds} ${system.id.padEnd(9)} ${c.label.padEnd(32)} ` +
            `${Math.round(sample.opsPerSec).toLocaleString('en-US').padStart(9)} ops/s  p50 ${sample.p50Us} µs  ` +
            `server ${sample.serverCpuUsPerOp.toFixed(1)} µs/op${files ? `  profiles: ${files.join(' ')}` : ''}`,
        );
      }
    }
    if (selectedSystems.includes('ioredis') && profileDir === undefined) {
      const reference = await runRedisBenchmark(redis.port, quick ? 5_000 : 200_000);
      redisBenchmark.push(reference);
      console.error(`round ${round + 1}/${rounds} redis-benchmark ${JSON.stringify(reference)}`);
    }
  }
  await cleanUp(systems.splice(0));
  if (!values['no-memory'] && profileDir === undefined) {
    console.error(`memory: filling ${memoryMiB} MiB into a tmem node and into redis-server`);
    memory = await measureMemory(memoryMiB * 1024 * 1024, pages);
  }
} finally {
  await cleanUp(systems);
}

const cpu = cpus()[0]?.model ?? 'unknown CPU';
const run: RunResult = {
  startedAt,
  machine: `Machine: ${cpus().length} × ${cpu}, Node ${process.version}; all processes on loopback, sharing the machine; load average ${loadAtStart.toFixed(1)} at the start, ${(loadavg()[0] ?? NaN).toFixed(1)} at the end (1 min).`,
  settings:
    `Settings: ${rounds} interleaved rounds of up to ${seconds} s per case (a put case writes at most ` +
    `${MAX_PUT_OPS.toLocaleString('en-US')} pages; its get reads exactly those keys, so every get is a hit and ` +
    `may end sooner), medians over rounds; ${memory === undefined ? 'no memory case' : `memory fill ${memoryMiB} MiB${quick ? ' (--quick: the target is stated at 1 GiB)' : ''}`}. ` +
    `Server CPU is utime + stime from /proc of the server process(es), summed over a cluster's nodes.` +
    (profileDir === undefined
      ? ''
      : ' Profiled run (--cpu-prof): the profilers slow every tmem process down.'),
  results: [...results.values()].sort(
    (a, b) =>
      CASES.indexOf(a.case) - CASES.indexOf(b.case) ||
      SYSTEM_IDS.indexOf(a.system.id) - SYSTEM_IDS.indexOf(b.system.id),
  ),
  redisBenchmark,
  storage: [...storage.values()],
  memory,
  notes: [
    'ioredis runs with enableAutoPipelining, so concurrent single calls leave in one write per tick, as tmem batches its queue per setImmediate.',
    ...notes,
    `Run took ${Math.round((Date.now() - startedMs) / 1000)} s.`,
  ],
};
const text = markdown(run);
mkdirSync(values.out, { recursive: true });
writeFileSync(join(values.out, 'latest.md'), text);
writeFileSync(join(values.out, 'throughput.svg'), svg(run));
console.log(text);
console.error(`written: ${join(values.out, 'latest.md')}, ${join(values.out, 'throughput.svg')}`);
