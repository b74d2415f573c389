// `tmem node` as an operator meets it: flags checked before anything starts, a version, and (below) joins
// that cannot succeed, ports in use and the stdout events. Every case runs the real launcher.
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { killAllNodes, runCli, startNode, stateOf } from '../harness/index.ts';

const VERSION = (
  JSON.parse(readFileSync(new URL('../../packages/memnode/package.json', import.meta.url), 'utf8')) as {
    version: string;
  }
).version;

afterEach(() => killAllNodes());

describe('tmem --version', () => {
  it('prints the version of package.json and exits 0', async () => {
    const run = await runCli(['--version']);
    expect(run.code).toBe(0);
    expect(run.stdout.trim()).toBe(VERSION);
  });
});

describe('tmem node sizes', () => {
  it.each(['0', '0B', '1KiB', 'lots', '-1MiB', '12XB', '1.2.3MiB', ''])(
    '--capacity %j is refused with exit 1 and a one-line message naming the flag',
    async (size) => {
      const run = await runCli(['node', '--capacity', size]);
      expect(run.code).toBe(1);
      expect(run.stdout).toBe('');
      expect(run.stderr.trim().split('\n')).toHaveLength(1);
      expect(run.stderr).toContain('--capacity');
    },
  );

  it('refuses a --max-frame-bytes too small for one page', async () => {
    const run = await runCli(['node', '--capacity', '1MiB', '--max-frame-bytes', '10']);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('--max-frame-bytes');
  });

  it('reads MB as 10^6 and MiB as 2^20 bytes (and KB, KiB, GB, GiB, plain bytes alike)', async () => {
    const cases: [string, number][] = [
      ['1MB', 1_000_000],
      ['1MiB', 1_048_576],
      ['1.5MiB', 1_572_864],
      ['640KB', 640_000],
      ['640KiB', 655_360],
      ['1GB', 1_000_000_000],
      ['1GiB', 1_073_741_824],
      ['2000000', 2_000_000],
    ];
    const nodes = await Promise.all(cases.map(([capacity]) => startNode({ capacity })));
    const announced = await Promise.all(
      nodes.map(async (n) => (await stateOf(n.url))?.members[0]?.capacityBytes),
    );
    expect(announced).toEqual(cases.map(([, bytes]) => bytes));
  });

  it('--help shows size defaults and units as people write them', async () => {
    const run = await runCli(['node', '--help']);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/--max-frame-bytes[\s\S]*default: 16\s+MiB/);
    expect(run.stdout).toContain('MB, GB, TB are powers of 1000');
    expect(run.stdout).toContain('KiB, MiB, GiB, TiB');
  });
});

describe('tmem node on a port in use', () => {
  it('exits 1 with one line that names the address and --port, and no stack trace', async () => {
    const holder = await startNode();
    const { port } = new URL(holder.url);
    const run = await runCli(['node', '--capacity', '1MiB', '--port', port]);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    const lines = run.stderr.trim().split('\n');
    expect(lines, run.stderr).toHaveLength(1);
    expect(lines[0]).toContain(`127.0.0.1:${port}`);
    expect(lines[0]).toContain('--port');
    expect(run.stderr).not.toMatch(/\n\s+at /);
  });
});
