// The runnable examples, each through its npm script as a user runs it, against a real cluster: the file reader
// serves its second pass from tmem with the right contents; the big array survives a node SIGKILLed while it
// swaps out, and spills to its swap file when the pool refuses pages.
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { killAllNodes, runToExit, startCluster } from '../harness/index.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** A run is SIGKILLed after this long, so a hang fails with its output: tsx start-up on a loaded 2-core box. */
const EXAMPLE_TIMEOUT_MS = 90_000;

interface ExampleRun {
  code: number | null;
  output: string;
  /** The example's last line, its JSON summary. */
  summary: Record<string, unknown>;
}

/** `npm run <script> -- <args>` from the repository root, until it exits. */
async function runExample(script: string, args: readonly string[]): Promise<ExampleRun> {
  const run = await runToExit('npm', ['run', '--silent', script, '--', ...args], {
    cwd: ROOT,
    timeoutMs: EXAMPLE_TIMEOUT_MS,
  });
  let summary: Record<string, unknown> = {};
  try {
    summary = JSON.parse(run.stdout.trim().split('\n').at(-1) ?? '') as Record<string, unknown>;
  } catch {
    // No summary line: the assertions below fail and print the output.
  }
  return { code: run.code, output: `${run.stdout}\n${run.stderr}`, summary };
}

afterEach(async () => {
  await killAllNodes();
});

describe('examples', () => {
  it('file-reader: the second pass comes from tmem, none of it from disk, byte for byte', async () => {
    const nodes = await startCluster();
    const seeds = nodes.map((node) => node.url).join(',');
    const run = await runExample('example:file-reader', [
      '--seeds',
      seeds,
      '--mib',
      '4',
      '--local-pages',
      '128',
    ]);
    expect(run.code, run.output).toBe(0);
    expect(run.summary, run.output).toMatchObject({
      example: 'file-reader',
      identical: true,
      first: { counts: { diskReads: 1024, tmemHits: 0 } },
      second: { counts: { diskReads: 0 } },
    });
    // Every page comes from tmem: pass 1 evicted all but the last 128 to it, and pass 2's own evictions push
    // those 128 there too before it reaches them.
    expect((run.summary['second'] as { counts: { tmemHits: number } }).counts.tmemHits).toBe(1024);
  });

  it('big-array: a node SIGKILLed during the swap-outs loses nothing with R=2', async () => {
    const nodes = await startCluster();
    const seeds = nodes.map((node) => node.url).join(',');
    const victim = nodes[2]?.pid ?? 0;
    const run = await runExample('example:big-array', [
      '--seeds',
      seeds,
      '--mib',
      '16',
      '--budget-mib',
      '2',
      '--kill',
      String(victim),
    ]);
    expect(run.code, run.output).toBe(0);
    expect(run.summary, run.output).toMatchObject({
      example: 'big-array',
      killedAt: 2048,
      wrong: 0,
      lost: 0,
    });
    // Puts during the failover may be refused (fewer ready owners than R) and go to the swap file: every page
    // is in one place or the other, and none is wrong or lost.
    const stats = run.summary['stats'] as { inTmem: number; onDisk: number };
    expect(stats.inTmem + stats.onDisk).toBe(4096);
    expect(await nodes[2]?.exited).toMatchObject({ signal: 'SIGKILL' });
  });

  it('big-array: pages the pool refuses go to the swap file and come back intact', async () => {
    // 3 nodes of 2 MiB hold at most 3 MiB of a 2-copy pool: most of the 16 MiB array must go to disk.
    const seeds = (await startCluster({ capacity: '2MiB' })).map((node) => node.url).join(',');
    const run = await runExample('example:big-array', ['--seeds', seeds, '--mib', '16', '--budget-mib', '2']);
    expect(run.code, run.output).toBe(0);
    expect(run.summary, run.output).toMatchObject({ wrong: 0, lost: 0 });
    const stats = run.summary['stats'] as { inTmem: number; onDisk: number };
    expect(stats.inTmem).toBeGreaterThan(0);
    expect(stats.onDisk).toBeGreaterThan(2048);
    expect(stats.inTmem + stats.onDisk).toBe(4096);
  });
});
