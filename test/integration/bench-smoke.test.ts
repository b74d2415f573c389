// `npm run bench -- --quick` as CI runs it: bench/setup, then the bench as a child process writing into a
// temporary directory. A smoke test: it asserts the run completes and reports every system and case, never a
// speed (the machine is shared; speed is what the bench itself is for).
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { CASES } from '../../bench/cases.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** The bench promises under 60 s for --quick; a loaded two-core CI machine gets some slack on top. */
const BENCH_TIMEOUT_MS = 240_000;

const tempDirs: string[] = [];
afterEach(async () => {
  await Promise.all(tempDirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

/** Runs the bench to its end and resolves with its exit code and output; SIGINT (its clean stop) on timeout. */
function runBench(args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'bench/run.ts', ...args], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    const append = (chunk: Buffer): void => {
      output = (output + chunk.toString()).slice(-256 * 1024);
    };
    child.stdout.on('data', append);
    child.stderr.on('data', append);
    const timer = setTimeout(() => child.kill('SIGINT'), BENCH_TIMEOUT_MS - 10_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

describe('npm run bench -- --quick', () => {
  it(
    'installs what is missing, runs every system and case, and writes the table and the chart',
    async () => {
      await promisify(execFile)('bash', [join(ROOT, 'bench/setup')]);
      const out = await mkdtemp(join(tmpdir(), 'tmem-bench-'));
      tempDirs.push(out);

      const { code, output } = await runBench(['--quick', '--out', out]);
      expect(code, output).toBe(0);

      const table = await readFile(join(out, 'latest.md'), 'utf8');
      const systems = [
        'tmem, 1 node, ephemeral',
        'tmem, 1 node, ephemeral, lz4',
        'tmem, 1 node, ephemeral, dedup',
        'tmem, 1 node, ephemeral, /metrics scraped every 1 s',
        'tmem, 3 nodes, persistent R=2',
        'Redis via ioredis',
        'memcached via memjs',
      ];
      for (const c of CASES) {
        // memjs has no batch API: its batched case is the row of 256 concurrent single calls.
        const expected = c.batched ? systems.filter((s) => !s.startsWith('memcached')) : systems;
        for (const system of expected) {
          expect(table, `row "${c.label} | ${system}"`).toContain(`| ${c.label} | ${system} |`);
        }
      }
      expect(table).toContain('redis-benchmark');
      expect(table).toContain('## Compression');
      expect(table).toMatch(
        /^\| text \| tmem, 1 node, ephemeral, lz4 \| [\d,]+ \| \d+\.\d\d \| \d+\.\d\d \|/m,
      );
      expect(table).toContain('## Memory');
      expect(table).toContain('## Targets');
      expect(table).toContain('## Metrics cost');
      expect(await readFile(join(out, 'throughput.svg'), 'utf8')).toMatch(/^<svg[\s\S]*<\/svg>\s*$/);
    },
    BENCH_TIMEOUT_MS,
  );
});
