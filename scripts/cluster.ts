// `npm run cluster`: starts the nodes of cluster.config.ts (or of the file `--config <path>` names) as separate
// processes (the first founds the cluster, the others join it), waits until they form one ring, prints where
// each listens, shows a live status, and stops them all on Ctrl-C.
//
// stdout: the human output, plus one machine-readable line `{"event":"ready","urls":[...],"pids":[...],"pid":n}`
// once every member has committed the same state listing all of them, so scripts and tests wait for it instead
// of sleeping (`pids` are the nodes' processes, `pid` this script's).
//
// Stopping: SIGINT, SIGTERM or SIGHUP to this script stops every node (last started first, each leaving
// gracefully). `npm run cluster` execs this script (package.json), so npm's own forwarding of SIGINT and
// SIGTERM lands here rather than in a shell that would die alone; and should whoever started the script go away
// without a signal reaching it (npm SIGKILLed, a shell in between killed), the parent check below notices and
// stops the nodes too, so no node is left running under PID 1.
//
// Logging: the nodes' stderr stays inherited, so warnings and crashes reach the terminal, but every node runs
// with TMEM_LOG_LEVEL=warn unless the environment sets another level: at `info` the JSON lines of three nodes
// would scroll the live status away. For the full log: `TMEM_LOG_LEVEL=info npm run cluster 2>nodes.log`.
import { spawn, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { createLogUpdate } from 'log-update';
import type { ClusterConfig, NodeConfig } from '../cluster.config.ts';
import { fetchClusterStatus, formatClusterStatus, type ClusterStatus } from '@tmem/memnode';

// The `tmem` launcher (not `--import tsx` on cli.ts): the same source without tsx's loader thread, about 30 MiB
// less per node (packages/memnode/bin/tmem.js).
const CLI = fileURLToPath(new URL('../packages/memnode/bin/tmem.js', import.meta.url));
const DEFAULT_CONFIG = fileURLToPath(new URL('../cluster.config.ts', import.meta.url));
const LOG_LEVEL = process.env['TMEM_LOG_LEVEL'] ?? 'warn';
/** Pause between two status refreshes, in milliseconds. */
const STATUS_INTERVAL_MS = 1000;
/** Budget of each status connection: short, so one stuck node does not freeze the display for long. */
const STATUS_TIMEOUT_MS = 800;
/** How long the nodes may take, once all listen, to agree on the full member list. */
const FORM_TIMEOUT_MS = 60_000;
/** Pause between two checks of whether the ring has formed, in milliseconds. */
const FORM_POLL_MS = 200;
/** How long a node may take to leave gracefully after SIGTERM before it is SIGKILLed. */
const KILL_AFTER_MS = 10_000;
/** How often the script checks that the process that started it still exists, in milliseconds. */
const PARENT_CHECK_MS = 500;

function fail(message: string): never {
  process.stderr.write(`tmem cluster: ${message}\n`);
  process.exit(2);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

/** Imports a config file and checks the fields the script relies on, naming the file in every complaint. */
async function loadConfig(path: string): Promise<ClusterConfig> {
  let loaded: unknown;
  try {
    loaded = ((await import(pathToFileURL(path).href)) as { default?: unknown }).default;
  } catch (error) {
    fail(`cannot load ${path}: ${(error as Error).message}`);
  }
  if (!isRecord(loaded)) fail(`${path} must default-export the cluster config object`);
  if (typeof loaded['host'] !== 'string') fail(`${path}: host must be a string such as '127.0.0.1'`);
  if (typeof loaded['clusterSecret'] !== 'string' || loaded['clusterSecret'] === '') {
    fail(`${path}: clusterSecret must be a non-empty string`);
  }
  const nodes = loaded['nodes'];
  if (!Array.isArray(nodes) || nodes.length === 0) fail(`${path}: nodes must list at least one node`);
  nodes.forEach((node: unknown, i) => {
    const port = isRecord(node) ? node['port'] : undefined;
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) {
      fail(`${path}: nodes[${i}].port must be an integer 0..65535 (0 picks a free port)`);
    }
    if (!isRecord(node) || typeof node['capacity'] !== 'string') {
      fail(`${path}: nodes[${i}].capacity must be a size such as '256MiB'`);
    }
    const metricsPort = isRecord(node) ? node['metricsPort'] : undefined;
    if (
      metricsPort !== undefined &&
      (typeof metricsPort !== 'number' ||
        !Number.isInteger(metricsPort) ||
        metricsPort < 0 ||
        metricsPort > 65535)
    ) {
      fail(`${path}: nodes[${i}].metricsPort must be an integer 0..65535 (0 picks a free port)`);
    }
  });
  return loaded as unknown as ClusterConfig;
}

let configPath: string;
try {
  const { values } = parseArgs({ options: { config: { type: 'string' } }, strict: true });
  // A path given on the command line is the user's, so relative to where they are, not to this script.
  configPath = values.config === undefined ? DEFAULT_CONFIG : resolve(process.cwd(), values.config);
} catch (error) {
  fail(`${(error as Error).message}; usage: npm run cluster -- [--config <path>]`);
}
const config = await loadConfig(configPath);
const PARTITIONS = config.partitions ?? 1024;
const REPLICATION = config.replication ?? 2;

/** A node's `listening` line; `metricsUrl` when its config gives a metrics port. */
interface Listening {
  url: string;
  nodeId: string;
  metricsUrl?: string;
}

interface RunningNode {
  readonly config: NodeConfig;
  readonly child: ChildProcess;
  /** Resolves with the URL and id from the node's `listening` line; rejects if it exits first. */
  readonly listening: Promise<Listening>;
  readonly exited: Promise<void>;
  /** The URL once known. */
  listeningUrl?: string;
  /** True once the process has exited. */
  gone: boolean;
}

function timingArgs(): string[] {
  const timing = config.timing ?? {};
  const flags: [string, number | undefined][] = [
    ['--heartbeat-ms', timing.heartbeatMs],
    ['--lease-ms', timing.leaseMs],
    ['--election-timeout-ms', timing.electionTimeoutMs],
    ['--failure-timeout-ms', timing.failureTimeoutMs],
  ];
  return flags.flatMap(([flag, value]) => (value === undefined ? [] : [flag, String(value)]));
}

function startNode(node: NodeConfig, join: readonly string[]): RunningNode {
  const args = [
    CLI,
    'node',
    '--host',
    config.host,
    '--port',
    String(node.port),
    '--capacity',
    node.capacity,
    '--partitions',
    String(PARTITIONS),
    '--replication',
    String(REPLICATION),
    // A local development cluster: clients are not authenticated (see README, "Security model").
    '--open',
    ...timingArgs(),
    ...(node.metricsPort === undefined ? [] : ['--metrics-port', String(node.metricsPort)]),
    ...(join.length === 0 ? [] : ['--join', join.join(',')]),
  ];
  // detached: a node gets its own process group, so the terminal's Ctrl-C reaches only this script, which then
  // stops the nodes in order. The IPC channel still makes every node exit if this script dies without that.
  const child = spawn(process.execPath, args, {
    stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
    detached: true,
    env: { ...process.env, TMEM_LOG_LEVEL: LOG_LEVEL, TMEM_CLUSTER_SECRET: config.clusterSecret },
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const listening = new Promise<Listening>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        const event = JSON.parse(line) as {
          event?: string;
          url?: string;
          nodeId?: string;
          metricsUrl?: string;
        };
        if (event.event === 'listening' && event.url && event.nodeId) {
          resolve({
            url: event.url,
            nodeId: event.nodeId,
            ...(event.metricsUrl === undefined ? {} : { metricsUrl: event.metricsUrl }),
          });
        }
      } catch {
        // a line that is not ours
      }
    });
    child.once('exit', (code, signal) =>
      reject(new Error(`node on port ${node.port} exited (${code ?? signal}) before listening`)),
    );
  });
  const running: RunningNode = { config: node, child, listening, exited, gone: false };
  void listening.then(
    (event) => (running.listeningUrl = event.url),
    () => undefined,
  );
  child.once('exit', (code, signal) => {
    running.gone = true;
    onNodeExit(running, code, signal);
  });
  return running;
}

const nodes: RunningNode[] = [];
let stopping = false;
let started = false;
// In place only on a terminal with a size: log-update draws nothing into a pty of 0 rows.
const display =
  process.stdout.isTTY && process.stdout.rows > 0
    ? createLogUpdate(process.stdout, { showCursor: true })
    : undefined;

/** Writes a line to stderr without tearing the in-place status (it is redrawn on the next refresh). */
function notice(text: string): void {
  display?.clear();
  process.stderr.write(`${text}\n`);
}

function onNodeExit(node: RunningNode, code: number | null, signal: NodeJS.Signals | null): void {
  // Before the ring has formed, the startup code reports the failure; while stopping, exits are expected.
  if (stopping || !started) return;
  notice(`node ${node.listeningUrl ?? `on port ${node.config.port}`} exited (${code ?? signal})`);
  // The others keep running (the ring survives a member's death, which is worth watching); not with none left.
  if (nodes.every((n) => n.gone)) {
    notice('every node exited; stopping');
    void stopAll(1);
  }
}

async function stopAll(exitCode: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  display?.done();
  process.stdout.write(
    `\nstopping the cluster (nodes that have not left after ${KILL_AFTER_MS / 1000} s are killed)...\n`,
  );
  const force = setTimeout(() => {
    for (const node of nodes) if (!node.gone) node.child.kill('SIGKILL');
  }, KILL_AFTER_MS);
  // One at a time, last started first: each leave is committed by the members still there. Stopped all at
  // once, the last ones to leave find no majority left and wait out their leave timeout.
  for (const node of [...nodes].reverse()) {
    if (node.gone) continue;
    node.child.kill('SIGTERM');
    await node.exited;
  }
  clearTimeout(force);
  process.stdout.write('all nodes stopped\n');
  process.exit(exitCode);
}

// A second signal changes nothing: `npm run` and tsx may relay the terminal's Ctrl-C once more, and that must
// not turn a graceful leave into a kill. Nodes that hang are SIGKILLed after KILL_AFTER_MS anyway.
function onSignal(): void {
  void stopAll(0);
}
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);
process.on('SIGHUP', onSignal);

/** True while a process of that pid exists (signal 0 only checks; EPERM means it exists but is not ours). */
function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

// process.ppid is read once at startup in Node, so the check asks whether that process still exists. Its going
// away is a stop like a signal: the nodes must not outlive the command that started them.
const parentPid = process.ppid;
setInterval(() => {
  if (stopping || processExists(parentPid)) return;
  notice(`the process that started this script (pid ${parentPid}) is gone; stopping`);
  void stopAll(0);
}, PARENT_CHECK_MS).unref();

function membershipKey(status: ClusterStatus): string {
  const members = status.members.map((m) => `${m.id}:${m.incarnation}:${m.reachable ? 'up' : 'down'}`);
  return `${status.version}|${members.join(',')}`;
}

/**
 * Refreshes the status every STATUS_INTERVAL_MS from the first of our nodes that answers (then members started
 * by hand). On a TTY it redraws in place; otherwise it prints a block only when the state version, the member
 * set or a member's reachability changes, so logs stay readable.
 */
async function liveStatus(): Promise<void> {
  let lastKey: string | undefined;
  let memberUrls: string[] = [];
  while (!stopping) {
    const ours = nodes.filter((n) => !n.gone && n.listeningUrl !== undefined).map((n) => n.listeningUrl!);
    const seeds = [...new Set([...ours, ...memberUrls])];
    let text: string;
    let key: string;
    try {
      const status = await fetchClusterStatus(seeds, { timeoutMs: STATUS_TIMEOUT_MS });
      memberUrls = status.members.map((m) => m.url);
      text = formatClusterStatus(status);
      key = membershipKey(status);
    } catch (error) {
      text = `no status: ${(error as Error).message}`;
      key = 'unavailable';
    }
    if (stopping) return;
    if (display !== undefined) {
      display(`${text}\nrefreshed ${new Date().toLocaleTimeString()}; Ctrl-C stops the cluster`);
    } else if (key !== lastKey) {
      process.stdout.write(`\n[${new Date().toISOString()}] ${text}\n`);
    }
    lastKey = key;
    await new Promise((resolve) => setTimeout(resolve, STATUS_INTERVAL_MS));
  }
}

/**
 * Resolves once the status from `seeds` lists exactly `ids` and every one of them answers with the seed's
 * committed version: one version is one state, so then all of them agree on the full member list. Rejects when
 * one of our nodes exits first or after FORM_TIMEOUT_MS.
 */
async function waitForRing(ids: readonly string[], seeds: readonly string[]): Promise<void> {
  const want = [...ids].sort().join(',');
  const deadline = Date.now() + FORM_TIMEOUT_MS;
  let last = 'no node answered yet';
  for (;;) {
    const gone = nodes.find((n) => n.gone);
    if (gone !== undefined) {
      throw new Error(
        `node ${gone.listeningUrl ?? `on port ${gone.config.port}`} exited before the ring formed`,
      );
    }
    try {
      const status = await fetchClusterStatus(seeds, { timeoutMs: STATUS_TIMEOUT_MS });
      const have = status.members.map((m) => m.id).sort();
      const lagging = status.members.filter((m) => m.stateVersion !== status.version);
      if (have.join(',') === want && lagging.length === 0) return;
      last = `state v${status.version} lists ${have.length} of ${ids.length} nodes, ${lagging.length} not at v${status.version}`;
    } catch (error) {
      last = (error as Error).message;
    }
    if (Date.now() > deadline) {
      throw new Error(`the nodes did not form one ring within ${FORM_TIMEOUT_MS / 1000} s (${last})`);
    }
    await new Promise((resolve) => setTimeout(resolve, FORM_POLL_MS));
  }
}

try {
  const [founder, ...joiners] = config.nodes;
  if (founder === undefined) throw new Error(`${configPath} lists no nodes; add at least one`);
  process.stderr.write(`tmem cluster: starting the nodes of ${configPath}...\n`);
  // The founder must listen before anyone can join it; the others then start together, each told every URL
  // started before it: the founder's, then the fixed ports of earlier joiners (port 0 is known only later).
  const first = startNode(founder, []);
  nodes.push(first);
  const firstUrl = (await first.listening).url;
  joiners.forEach((node, i) => {
    const earlier = joiners.slice(0, i).filter((n) => n.port !== 0);
    nodes.push(startNode(node, [firstUrl, ...earlier.map((n) => `ws://${config.host}:${n.port}`)]));
  });
  const listening = await Promise.all(nodes.map((node) => node.listening));
  const urls = listening.map((event) => event.url);
  // Listening is not joined: the count below and the ready line promise a formed ring.
  await waitForRing(
    listening.map((event) => event.nodeId),
    urls,
  );
  started = true;
  process.stdout.write(
    `tmem cluster: ${urls.length} node${urls.length === 1 ? '' : 's'}, ${PARTITIONS} partitions, ` +
      `replication ${REPLICATION}, node log level ${LOG_LEVEL}\n`,
  );
  listening.forEach(({ url, metricsUrl }, i) =>
    process.stdout.write(
      `  ${url}${metricsUrl === undefined ? '' : `  metrics ${metricsUrl}`}${i === 0 ? '  (founder)' : ''}\n`,
    ),
  );
  process.stdout.write(
    `seeds for connect(): ${JSON.stringify(urls)}\n` +
      `add a node: TMEM_CLUSTER_SECRET=${config.clusterSecret} npx tmem node --open --port 0 --capacity 64MiB --join ${firstUrl}\n` +
      'Ctrl-C stops the cluster.\n',
  );
  const pids = nodes.map((node) => node.child.pid);
  const metricsUrls = listening.flatMap((event) =>
    event.metricsUrl === undefined ? [] : [event.metricsUrl],
  );
  process.stdout.write(
    `${JSON.stringify({ event: 'ready', urls, metricsUrls, pids, pid: process.pid })}\n\n`,
  );
} catch (error) {
  // After Ctrl-C during startup, the nodes exiting is the stop itself, not a failure worth reporting.
  if (!stopping) process.stderr.write(`tmem cluster: ${(error as Error).message}\n`);
  await stopAll(1);
}
await liveStatus();
