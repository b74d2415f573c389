// Memory probe: what one node's RSS is when empty and how it tracks the pages it holds. Starts one node process
// (through the `tmem` launcher, as the tests and `npm run cluster` do, or through tsx as before), reports its
// empty RSS, fills an ephemeral pool with random 4 KiB pages through the client, and reports RSS / payload and
// the node's own breakdown (JS heap, slabs, metadata), read from the `memory` line it logs on SIGUSR2.
// Run: npx tsx bench/memory-probe.ts [--fill 1GiB] [--capacity 3GiB] [--runtime launcher|tsx] [--node-arg ...]
import { spawn, type ChildProcess } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { connect } from '@tmem/client';
import { parseByteSize } from '../packages/memnode/src/size.ts';

const { values } = parseArgs({
  options: {
    fill: { type: 'string', default: '1GiB' },
    capacity: { type: 'string', default: '3GiB' },
    page: { type: 'string', default: '4096' },
    runtime: { type: 'string', default: 'launcher' },
    'node-arg': { type: 'string', multiple: true, default: [] },
    json: { type: 'boolean', default: false },
  },
});
const FILL = parseByteSize(values.fill);
const PAGE_SIZE = Number(values.page);
const BIN = fileURLToPath(new URL('../packages/memnode/bin/tmem.js', import.meta.url));
const CLI = fileURLToPath(new URL('../packages/memnode/src/cli.ts', import.meta.url));
const MiB = 1024 * 1024;

/** The lines of /proc/<pid>/status this probe reports, in KiB. */
interface ProcMemory {
  VmRSS: number;
  VmHWM: number;
  RssAnon: number;
  RssFile: number;
  Threads: number;
}

function procMemory(pid: number): ProcMemory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN);
  return {
    VmRSS: field('VmRSS'),
    VmHWM: field('VmHWM'),
    RssAnon: field('RssAnon'),
    RssFile: field('RssFile'),
    Threads: field('Threads'),
  };
}

/**
 * Resident KiB by kind of mapping, from /proc/<pid>/smaps: the malloc heap (`[heap]`, brk), anonymous mappings
 * (mmap: large mallocs, V8's heap pages, thread stacks) and file mappings (the node binary, native addons).
 */
function residentByMapping(pid: number): { heap: number; anon: number; file: number } {
  const totals = { heap: 0, anon: 0, file: 0 };
  let kind: keyof typeof totals = 'anon';
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const header = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \d+\s*(.*)$/.exec(line);
    if (header) {
      const name = header[1] ?? '';
      kind = name === '[heap]' ? 'heap' : name === '' || name.startsWith('[') ? 'anon' : 'file';
    } else if (line.startsWith('Rss:')) {
      totals[kind] += Number(/\d+/.exec(line)?.[0] ?? 0);
    }
  }
  return totals;
}

/** CPU seconds (user + system) the process used so far, from /proc/<pid>/stat. */
function cpuSeconds(pid: number): number {
  // Fields after the command name (which may hold spaces, so split after its closing parenthesis).
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

interface Started {
  child: ChildProcess;
  url: string;
  /** Resolves with the next `memory` line the node logs (after a SIGUSR2). */
  nextMemoryLine(): Promise<Record<string, number>>;
}

async function startProbeNode(): Promise<Started> {
  const entry = values.runtime === 'tsx' ? ['--import', 'tsx', CLI] : [BIN];
  const args = [
    ...values['node-arg'],
    ...entry,
    'node',
    '--open',
    '--port',
    '0',
    '--capacity',
    values.capacity,
  ];
  const child = spawn(process.execPath, args, {
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    env: { ...process.env, TMEM_CLUSTER_SECRET: 'memory-probe', TMEM_LOG_LEVEL: 'info' },
  });
  const waiting: ((line: Record<string, number>) => void)[] = [];
  createInterface({ input: child.stderr! }).on('line', (line) => {
    if (!line.includes('"memory"')) return;
    const parsed = JSON.parse(line) as { msg?: string } & Record<string, number>;
    if (parsed.msg === 'memory') waiting.shift()?.(parsed);
  });
  const url = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line.includes('"listening"')) resolve((JSON.parse(line) as { url: string }).url);
    });
    child.once('exit', (code) => reject(new Error(`node exited (${code}) before listening`)));
    setTimeout(() => reject(new Error('node not listening after 30 s')), 30_000).unref();
  });
  return {
    child,
    url,
    nextMemoryLine: () =>
      new Promise((resolve) => {
        waiting.push(resolve);
        child.kill('SIGUSR2');
      }),
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const mib = (kib: number) => (kib / 1024).toFixed(1);

async function snapshot(node: Started, label: string, payload: number) {
  // Let the node finish what it was doing (timers, the last replies) before reading.
  await sleep(1500);
  const self = await node.nextMemoryLine();
  const proc = procMemory(node.child.pid!);
  const maps = residentByMapping(node.child.pid!);
  const row = { label, payload, ...proc, mallocHeapKiB: maps.heap, anonMapKiB: maps.anon, ...self };
  if (!values.json) {
    const ratio = payload > 0 ? ` RSS/payload ${((proc.VmRSS * 1024) / payload).toFixed(3)}` : '';
    process.stdout.write(
      `${label}: RSS ${mib(proc.VmRSS)} MiB (anon ${mib(proc.RssAnon)}, file ${mib(proc.RssFile)}), ` +
        `peak ${mib(proc.VmHWM)} MiB, threads ${proc.Threads}; brk heap ${mib(maps.heap)} MiB, ` +
        `anon mmaps ${mib(maps.anon)} MiB; JS heap ${(self['heapUsed']! / MiB).toFixed(1)}/` +
        `${(self['heapTotal']! / MiB).toFixed(1)} MiB, arrayBuffers ${(self['arrayBuffers']! / MiB).toFixed(1)} MiB, ` +
        `slabs ${(self['slabBytes']! / MiB).toFixed(1)} MiB, metadata ${(self['metadataBytes']! / MiB).toFixed(1)} MiB` +
        `${ratio}\n`,
    );
  }
  return row;
}

const node = await startProbeNode();
const rows = [await snapshot(node, 'empty', 0)];
if (FILL > 0) {
  const client = await connect({ seeds: [node.url] });
  const pool = await client.createPool({ kind: 'ephemeral', pageSize: PAGE_SIZE });
  const pages = Math.floor(FILL / PAGE_SIZE);
  const BATCH = 256;
  // Random pages, drawn from a 64 MiB pool of random bytes at rotating offsets so no two are equal.
  const random = new Uint8Array(64 * MiB + PAGE_SIZE);
  randomFillSync(random);
  const started = performance.now();
  const cpuBefore = cpuSeconds(node.child.pid!);
  let accepted = 0;
  for (let first = 0; first < pages; first += BATCH) {
    const entries = [];
    for (let i = first; i < Math.min(pages, first + BATCH); i++) {
      const offset = ((i * 4099) % (64 * MiB)) & ~7;
      entries.push({
        oid: `object-${i >>> 8}`,
        index: i & 0xff,
        page: random.subarray(offset, offset + PAGE_SIZE),
      });
    }
    accepted += (await pool.putMany(entries)).filter(Boolean).length;
  }
  const seconds = (performance.now() - started) / 1000;
  const cpuUsPerPage = ((cpuSeconds(node.child.pid!) - cpuBefore) * 1e6) / pages;
  if (!values.json) {
    process.stdout.write(
      `filled ${accepted}/${pages} pages in ${seconds.toFixed(1)} s, node CPU ${cpuUsPerPage.toFixed(1)} µs/page\n`,
    );
  }
  rows.push(await snapshot(node, `after ${values.fill}`, accepted * PAGE_SIZE));
  // Memory that comes back after the pages go: the slabs are released to the garbage collector at once, but
  // their bytes return to the OS only after a GC and only where malloc gives them back.
  await pool.destroy();
  rows.push(await snapshot(node, 'after destroying the pool', 0));
  await client.close();
}
if (values.json) process.stdout.write(`${JSON.stringify(rows)}\n`);
node.child.kill('SIGTERM');
