// `npm run cluster`: starts the nodes of cluster.config.ts as separate processes (the first founds the cluster,
// the others join it), prints where each listens, shows a live status, and stops them all on Ctrl-C.
//
// Logging: the nodes' stderr stays inherited, so warnings and crashes reach the terminal, but every node runs
// with TMEM_LOG_LEVEL=warn unless the environment sets another level: at `info` the JSON lines of three nodes
// would scroll the live status away. For the full log: `TMEM_LOG_LEVEL=info npm run cluster 2>nodes.log`.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createLogUpdate } from 'log-update';
import config, { type NodeConfig } from '../cluster.config.ts';
import { fetchClusterStatus, formatClusterStatus, type ClusterStatus } from '@tmem/memnode';

const CLI = fileURLToPath(new URL('../packages/memnode/src/cli.ts', import.meta.url));
const LOG_LEVEL = process.env['TMEM_LOG_LEVEL'] ?? 'warn';
const PARTITIONS = config.partitions ?? 1024;
const REPLICATION = config.replication ?? 2;
/** Pause between two status refreshes, in milliseconds. */
const STATUS_INTERVAL_MS = 1000;
/** Budget of each status connection: short, so one stuck node does not freeze the display for long. */
const STATUS_TIMEOUT_MS = 800;
/** How long a node may take to leave gracefully after SIGTERM before it is SIGKILLed. */
const KILL_AFTER_MS = 10_000;

interface RunningNode {
  readonly config: NodeConfig;
  readonly child: ChildProcess;
  /** Resolves with the URL from the node's `listening` line; rejects if it exits first. */
  readonly url: Promise<string>;
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
    '--import',
    'tsx',
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
    ...timingArgs(),
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
  const url = new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        const event = JSON.parse(line) as { event?: string; url?: string };
        if (event.event === 'listening' && event.url) resolve(event.url);
      } catch {
        // a line that is not ours
      }
    });
    child.once('exit', (code, signal) =>
      reject(new Error(`node on port ${node.port} exited (${code ?? signal}) before listening`)),
    );
  });
  const running: RunningNode = { config: node, child, url, exited, gone: false };
  void url.then(
    (listening) => (running.listeningUrl = listening),
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
  // Before every node listens, the startup code reports the failure; while stopping, exits are expected.
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

try {
  const [founder, ...joiners] = config.nodes;
  if (founder === undefined) throw new Error('cluster.config.ts lists no nodes; add at least one');
  // The founder must listen before anyone can join it; the others then start together, each told every URL
  // started before it: the founder's, then the fixed ports of earlier joiners (port 0 is known only later).
  const first = startNode(founder, []);
  nodes.push(first);
  const firstUrl = await first.url;
  joiners.forEach((node, i) => {
    const earlier = joiners.slice(0, i).filter((n) => n.port !== 0);
    nodes.push(startNode(node, [firstUrl, ...earlier.map((n) => `ws://${config.host}:${n.port}`)]));
  });
  const urls = await Promise.all(nodes.map((node) => node.url));
  started = true;
  process.stdout.write(
    `tmem cluster: ${urls.length} node${urls.length === 1 ? '' : 's'}, ${PARTITIONS} partitions, ` +
      `replication ${REPLICATION}, node log level ${LOG_LEVEL}\n`,
  );
  urls.forEach((url, i) => process.stdout.write(`  ${url}${i === 0 ? '  (founder)' : ''}\n`));
  process.stdout.write(
    `seeds for connect(): ${JSON.stringify(urls)}\n` +
      `add a node: TMEM_CLUSTER_SECRET=${config.clusterSecret} npx tmem node --port 0 --capacity 64MiB --join ${firstUrl}\n` +
      'Ctrl-C stops the cluster.\n\n',
  );
} catch (error) {
  process.stderr.write(`${(error as Error).message}\n`);
  await stopAll(1);
}
await liveStatus();
