// `npm run cluster` as a user runs it: the real script, started from source on a port-0 config, driven by the
// README's client example, stopped by Ctrl-C (SIGINT) or killed outright.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect as connectTcp } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { TEST_TIMING_ARGS, waitFor, type Exit } from '../harness/index.ts';
import { connect, type TmemClient } from '@tmem/client';
import type { ClusterConfig, ClusterTimingConfig } from '../../cluster.config.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SCRIPT = 'scripts/cluster.ts';
/** How long the script may take to print its ready line: three node processes under tsx on two cores. */
const READY_TIMEOUT_MS = 45_000;
/**
 * How long the nodes may take to close their ports. After a SIGKILLed script they all leave at once, and the
 * last ones may find no majority left and wait out the node's 10 s change timeout before exiting.
 */
const PORTS_CLOSED_TIMEOUT_MS = 30_000;

/** The script as a test sees it. */
interface ScriptProcess {
  readonly child: ChildProcess;
  /** Resolves with the URLs of the `ready` line; rejects if the script exits first or takes too long. */
  readonly ready: Promise<string[]>;
  /** The `ready` line's pids: of the script itself and of each node. */
  readonly pids: Promise<{ script: number; nodes: number[] }>;
  readonly exited: Promise<Exit>;
  /** Everything the script and its nodes wrote so far (for failure messages). */
  output(): string;
}

/** Scripts still running, SIGKILLed in afterEach. */
const scripts = new Set<ScriptProcess>();
/** Node URLs the scripts reported; afterEach waits until none of them accepts connections. */
const nodeUrls = new Set<string>();
const tempDirs: string[] = [];
const clients = new Set<TmemClient>();

/** TEST_TIMING_ARGS as the config's timing, so the script's nodes run at the speed of the harness's. */
function testTiming(): ClusterTimingConfig {
  const keys: Record<string, keyof ClusterTimingConfig> = {
    '--heartbeat-ms': 'heartbeatMs',
    '--lease-ms': 'leaseMs',
    '--election-timeout-ms': 'electionTimeoutMs',
    '--failure-timeout-ms': 'failureTimeoutMs',
  };
  const timing: ClusterTimingConfig = {};
  for (let i = 0; i < TEST_TIMING_ARGS.length; i += 2) {
    const key = keys[TEST_TIMING_ARGS[i] ?? ''];
    if (key === undefined) throw new Error(`no config timing for ${TEST_TIMING_ARGS[i]}`);
    timing[key] = Number(TEST_TIMING_ARGS[i + 1]);
  }
  return timing;
}

/** Writes a three-node, port-0 config into a temp dir: a .ts module that imports nothing. */
async function writeConfig(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tmem-cluster-script-'));
  tempDirs.push(dir);
  const config: ClusterConfig = {
    host: '127.0.0.1',
    partitions: 64,
    replication: 2,
    clusterSecret: 'x',
    timing: testTiming(),
    nodes: [
      { port: 0, capacity: '16MiB', metricsPort: 0 },
      { port: 0, capacity: '16MiB', metricsPort: 0 },
      { port: 0, capacity: '16MiB', metricsPort: 0 },
    ],
  };
  const file = join(dir, 'cluster.config.ts');
  await writeFile(file, `export default ${JSON.stringify(config, null, 2)};\n`);
  return file;
}

/**
 * Starts `node --import tsx scripts/cluster.ts --config <file>` (or, `viaNpm`, `npm run cluster -- --config
 * <file>`, as a user types it) with piped stdio and registers it.
 */
function startScript(configFile: string, viaNpm = false): ScriptProcess {
  const [command, args] = viaNpm
    ? ['npm', ['run', '--silent', 'cluster', '--', '--config', configFile]]
    : [process.execPath, ['--import', 'tsx', SCRIPT, '--config', configFile]];
  const child = spawn(command, args, {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, TMEM_LOG_LEVEL: 'warn' },
  });
  let onPids: (pids: { script: number; nodes: number[] }) => void = () => undefined;
  const pids = new Promise<{ script: number; nodes: number[] }>((resolve) => (onPids = resolve));
  let output = '';
  // 'exit', not 'close': after a SIGKILL the nodes still hold the inherited stderr pipe until they are gone.
  const exited = new Promise<Exit>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const ready = new Promise<string[]>((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      output += `${line}\n`;
      try {
        const event = JSON.parse(line) as { event?: string; urls?: string[]; pids?: number[]; pid?: number };
        if (event.event === 'ready' && Array.isArray(event.urls)) {
          for (const url of event.urls) nodeUrls.add(url);
          resolve(event.urls);
          onPids({ script: event.pid ?? NaN, nodes: event.pids ?? [] });
        }
      } catch {
        // a human line
      }
    });
    void exited.then((exit) =>
      reject(new Error(`cluster script exited before ready (${JSON.stringify(exit)}):\n${output}`)),
    );
    setTimeout(
      () => reject(new Error(`no ready line after ${READY_TIMEOUT_MS} ms:\n${output}`)),
      READY_TIMEOUT_MS,
    ).unref();
  });
  // A test that fails before awaiting `ready` must not leave an unhandled rejection behind.
  ready.catch(() => undefined);
  const script: ScriptProcess = { child, ready, pids, exited, output: () => output };
  scripts.add(script);
  void exited.then(() => scripts.delete(script));
  return script;
}

/** True when something accepts a TCP connection at the URL's host and port. */
function acceptsConnections(url: string): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connectTcp({ host: hostname, port: Number(port) });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** True while `pid` is a live process: not gone, and not a zombie left for a parent that no longer reaps. */
function isRunning(pid: number): boolean {
  try {
    // /proc/<pid>/stat: "pid (comm) S ...", the state letter after the parenthesised name.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

async function waitForPortsClosed(urls: Iterable<string>): Promise<void> {
  const list = [...urls];
  await waitFor(async () => !(await Promise.all(list.map(acceptsConnections))).some(Boolean), {
    timeoutMs: PORTS_CLOSED_TIMEOUT_MS,
    intervalMs: 200,
    what: `no node listening at ${list.join(', ')}`,
  });
}

afterEach(async () => {
  await Promise.all([...clients].map((client) => client.close()));
  clients.clear();
  // SIGKILL reaches only the script; its nodes follow when their IPC channel closes.
  for (const script of scripts) script.child.kill('SIGKILL');
  await Promise.all([...scripts].map((script) => script.exited));
  // So the next test does not share two cores with the nodes of this one.
  await waitForPortsClosed(nodeUrls);
  nodeUrls.clear();
  await Promise.all(tempDirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

describe('npm run cluster (scripts/cluster.ts)', () => {
  it('forms a ring from --config, serves the README example, and stops every node on SIGINT', async () => {
    const script = startScript(await writeConfig());
    const urls = await script.ready;
    expect(urls).toHaveLength(3);
    // The human summary comes with the ready line, not before the ring has formed.
    expect(script.output()).toContain('tmem cluster: 3 nodes');
    // Each node's summary line names its Prometheus endpoint, and each one answers.
    const metricsUrls = [...script.output().matchAll(/ {2}metrics (http:\/\/\S+\/metrics)/g)].map(
      (m) => m[1]!,
    );
    expect(metricsUrls).toHaveLength(3);
    for (const metricsUrl of metricsUrls) {
      const scrape = await fetch(metricsUrl);
      expect(scrape.status).toBe(200);
      expect(await scrape.text()).toContain('tmem_ops_total');
    }

    const client = await connect({ seeds: urls });
    clients.add(client);
    const cache = await client.createPool({ kind: 'ephemeral', pageSize: 4096 });
    const page = new Uint8Array(4096).fill(7);
    expect(await cache.put('/var/data/file-17', 0, page)).toBe(true);
    expect(await cache.get('/var/data/file-17', 0)).toEqual(page);
    await cache.flushObject('/var/data/file-17');
    expect(client.view().members).toHaveLength(3);
    await client.close();
    clients.delete(client);

    script.child.kill('SIGINT');
    const exit = await script.exited;
    expect(exit, script.output()).toEqual({ code: 0, signal: null });
    expect(script.output()).toContain('all nodes stopped');
    await waitForPortsClosed(urls);
  });

  it('takes its nodes down when it is SIGKILLed (they exit once their IPC channel closes)', async () => {
    const script = startScript(await writeConfig());
    const urls = await script.ready;
    expect(await Promise.all(urls.map(acceptsConnections))).toEqual([true, true, true]);

    script.child.kill('SIGKILL');
    expect(await script.exited).toEqual({ code: null, signal: 'SIGKILL' });
    await waitForPortsClosed(urls);
  });
});

describe('npm run cluster, stopped the way scripts stop it', () => {
  it.each(['SIGTERM', 'SIGINT', 'SIGKILL'] as const)(
    'stops the script and every node on %s to the npm process',
    async (signal) => {
      const npm = startScript(await writeConfig(), true);
      const urls = await npm.ready;
      const pids = await npm.pids;
      expect(pids.nodes).toHaveLength(3);
      const all = [pids.script, ...pids.nodes];
      expect(all.every(isRunning)).toBe(true);

      npm.child.kill(signal);
      // SIGTERM and SIGINT: npm hands the signal to the script it exec'd, which stops the nodes in order. SIGKILL:
      // npm is gone without a word, and the script notices its parent is gone.
      await waitFor(() => !all.some(isRunning), {
        timeoutMs: PORTS_CLOSED_TIMEOUT_MS,
        intervalMs: 100,
        what: `script and nodes gone (${all.filter(isRunning).join(', ')} still running)`,
      });
      await waitForPortsClosed(urls);
    },
  );
});
