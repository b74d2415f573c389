// `tmem node` as an operator meets it: flags checked before anything starts, a version, and (below) joins
// that cannot succeed, ports in use and the stdout events. Every case runs the real launcher.
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import {
  TEST_CLUSTER_SECRET,
  TEST_TIMING_ARGS,
  killAllNodes,
  memberIdsAt,
  runCli,
  startNode,
  stateOf,
  waitFor,
  deadUrl,
} from '../harness/index.ts';
import { connect } from '@tmem/client';

const VERSION = (
  JSON.parse(readFileSync(new URL('../../packages/memnode/package.json', import.meta.url), 'utf8')) as {
    version: string;
  }
).version;

afterEach(() => killAllNodes());

/** Parsed JSON lines of a stream (logs on stderr, events on stdout); other lines are skipped. */
function jsonLines(text: string): Record<string, unknown>[] {
  return text.split('\n').flatMap((line): Record<string, unknown>[] => {
    try {
      const value: unknown = JSON.parse(line);
      return typeof value === 'object' && value !== null ? [value as Record<string, unknown>] : [];
    } catch {
      return [];
    }
  });
}

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
      const run = await runCli(['node', '--open', '--capacity', size]);
      expect(run.code).toBe(1);
      expect(run.stdout).toBe('');
      expect(run.stderr.trim().split('\n')).toHaveLength(1);
      expect(run.stderr).toContain('--capacity');
    },
  );

  it('refuses --dedup with a capacity above 128 GiB, naming both flags', async () => {
    const run = await runCli(['node', '--open', '--dedup', '--capacity', '129GiB']);
    expect(run.code).toBe(1);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
    expect(run.stderr).toContain('--dedup');
    expect(run.stderr).toContain('--capacity');
  });

  it('refuses a --max-frame-bytes too small for one page', async () => {
    const run = await runCli(['node', '--open', '--capacity', '1MiB', '--max-frame-bytes', '10']);
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
    const run = await runCli(['node', '--open', '--capacity', '1MiB', '--port', port]);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    const lines = run.stderr.trim().split('\n');
    expect(lines, run.stderr).toHaveLength(1);
    expect(lines[0]).toContain(`127.0.0.1:${port}`);
    expect(lines[0]).toContain('--port');
    expect(run.stderr).not.toMatch(/\n\s+at /);
  });
});

describe('tmem node --join that cannot succeed', () => {
  it('a wrong cluster secret: exit 1 at once, naming TMEM_CLUSTER_SECRET and the seed', async () => {
    const seed = await startNode();
    // The default --join-timeout is 60 s and runCli kills after 20 s: exit code 1 means the node gave up
    // by itself, on the refusal, not on a timeout.
    const run = await runCli(['node', '--open', '--capacity', '1MiB', '--join', seed.url], {
      env: { TMEM_CLUSTER_SECRET: 'not-the-secret' },
    });
    expect(run.code, run.stderr).toBe(1);
    const events = jsonLines(run.stdout).map((e) => e['event']);
    expect(events).toEqual(['listening']);
    const last = run.stderr.trim().split('\n').at(-1) ?? '';
    expect(last).toContain('TMEM_CLUSTER_SECRET');
    expect(last).toContain(seed.url);
    expect(await memberIdsAt(seed.url)).toEqual([seed.nodeId]);
  });

  it('no cluster secret: refuses to start, naming TMEM_CLUSTER_SECRET', async () => {
    const seed = await startNode();
    const run = await runCli(['node', '--open', '--capacity', '1MiB', '--join', seed.url]);
    expect(run.code, run.stderr).toBe(1);
    expect(jsonLines(run.stdout)).toEqual([]);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
    expect(run.stderr).toContain('TMEM_CLUSTER_SECRET');
    expect(await memberIdsAt(seed.url)).toEqual([seed.nodeId]);
  });

  it('dead seeds: a warning per attempt naming the seed and the error, exit 1 after --join-timeout', async () => {
    const seeds = [await deadUrl(), await deadUrl()];
    const run = await runCli(
      ['node', '--open', '--capacity', '1MiB', '--join', seeds.join(','), '--join-timeout', '2s'],
      { env: { TMEM_CLUSTER_SECRET: TEST_CLUSTER_SECRET } },
    );
    expect(run.code, run.stderr).toBe(1);
    expect(run.elapsedMs).toBeGreaterThanOrEqual(2000);
    const warnings = jsonLines(run.stderr).filter((line) => line['msg'] === 'join attempt failed; retrying');
    for (const seed of seeds) {
      const ofSeed = warnings.filter((w) => w['seed'] === seed);
      expect(ofSeed.length, run.stderr).toBeGreaterThanOrEqual(2);
      for (const warning of ofSeed) {
        expect(warning['level']).toBe(40);
        expect(String(warning['err'])).toContain('ECONNREFUSED');
      }
    }
    // Retries back off: attempts come further apart, not in a tight loop.
    const times = warnings.filter((w) => w['seed'] === seeds[0]).map((w) => Number(w['time']));
    expect(times.length).toBeLessThan(20);
    const last = run.stderr.trim().split('\n').at(-1) ?? '';
    expect(last).toMatch(/^tmem node: not serving 2 s after joining through/);
    expect(last).toContain('--join-timeout');
  });

  it('refuses a --join-timeout that is not a duration', async () => {
    const run = await runCli(['node', '--open', '--capacity', '1MiB', '--join-timeout', 'soon']);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('--join-timeout');
  });
});

describe('tmem node stdout events', () => {
  it('prints listening, then ready once the node is a member holding a lease', async () => {
    const founder = await startNode({ args: TEST_TIMING_ARGS });
    const founderReady = await founder.ready;
    expect(founderReady).toMatchObject({ nodeId: founder.nodeId, url: founder.url, members: 1 });

    const joiner = await startNode({ args: [...TEST_TIMING_ARGS, '--join', founder.url] });
    const ready = await joiner.ready;
    expect(ready).toMatchObject({ event: 'ready', nodeId: joiner.nodeId, url: joiner.url, members: 2 });
    // At the ready line the joiner is in the committed state it reports, as its seed sees it too.
    const state = await stateOf(joiner.url);
    expect(state?.members.map((m) => m.id).sort()).toEqual([founder.nodeId, joiner.nodeId].sort());
    expect(state?.version).toBeGreaterThanOrEqual(ready.stateVersion);
    expect(await memberIdsAt(founder.url)).toEqual([founder.nodeId, joiner.nodeId].sort());
  });
});

describe('tmem node logs', () => {
  it('every line on stderr carries the node id and the component, from start through a leave', async () => {
    const env = { TMEM_LOG_LEVEL: 'debug' };
    const founder = await startNode({ env, args: [...TEST_TIMING_ARGS, '--node-id', 'log-a'] });
    const joiner = await startNode({
      env,
      until: 'ready',
      args: [...TEST_TIMING_ARGS, '--node-id', 'log-b', '--join', founder.url],
    });
    const client = await connect({ seeds: [founder.url] });
    try {
      const pool = await client.createPool({ kind: 'persistent', replication: 2 });
      expect(await pool.put('logged', 0, new Uint8Array(4096).fill(1))).toBe(true);
    } finally {
      await client.close();
    }
    joiner.signal('SIGUSR2');
    await waitFor(() => joiner.stderr().includes('"msg":"memory"'), { what: 'the memory report' });
    expect(await joiner.stop()).toEqual({ code: 0, signal: null });

    for (const [node, id] of [
      [founder, 'log-a'],
      [joiner, 'log-b'],
    ] as const) {
      // The harness keeps the last 64 KiB of stderr: a first line cut there is no line of the node's.
      const kept = node.stderr();
      const text = kept.length >= 64 * 1024 ? kept.slice(kept.indexOf('\n') + 1) : kept;
      const lines = text.trim().split('\n');
      const parsed = jsonLines(text);
      // Every line is a JSON log line: nothing unstructured slips through.
      expect(parsed).toHaveLength(lines.length);
      const unlabelled = parsed.filter((l) => l['nodeId'] !== id || typeof l['component'] !== 'string');
      expect(unlabelled).toEqual([]);
    }
    const components = new Set(jsonLines(joiner.stderr()).map((l) => l['component']));
    for (const component of ['server', 'cluster', 'launcher', 'replication']) {
      expect(components).toContain(component);
    }
  });
});

describe('tmem node --join with a secret the cluster does not have', () => {
  it('the seed admits no peer without a secret: the joiner exits 1 at once, naming TMEM_CLUSTER_SECRET', async () => {
    const seed = await startNode({ env: { TMEM_CLUSTER_SECRET: '', TMEM_LOG_LEVEL: 'warn' } });
    const run = await runCli(
      ['node', '--open', '--capacity', '1MiB', '--join', seed.url, ...TEST_TIMING_ARGS],
      {
        env: { TMEM_CLUSTER_SECRET: TEST_CLUSTER_SECRET },
      },
    );
    expect(run.code, run.stderr).toBe(1);
    expect(run.stderr.trim().split('\n').at(-1)).toContain('TMEM_CLUSTER_SECRET');
    // The seed says so too, once, for its operator.
    await waitFor(() => seed.stderr().includes('refused a peer'), { what: "the seed's warning" });
    expect(await memberIdsAt(seed.url)).toEqual([seed.nodeId]);
  });
});
