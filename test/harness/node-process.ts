import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

// The `tmem` launcher, not `--import tsx` on cli.ts: it runs the same source without tsx's loader thread (about
// 30 MiB per node; see packages/memnode/bin/tmem.js).
const BIN = fileURLToPath(new URL('../../packages/memnode/bin/tmem.js', import.meta.url));

/** Options of a node process started for a test. */
export interface StartNodeOptions {
  /** @default '64MiB' */
  capacity?: string;
  /** Extra CLI arguments after `tmem node`. */
  args?: string[];
  /**
   * Extra arguments for the node runtime itself, before the CLI (e.g. `--cpu-prof`, or an `--import` of a
   * TypeScript module: given any, the node also loads tsx's loader). @default []
   */
  nodeArgs?: string[];
  /** Extra environment variables (e.g. TMEM_CLUSTER_SECRET: '' for a node without a secret). */
  env?: Record<string, string>;
  /**
   * Which stdout line startNode waits for: `listening` (the port is open; a joiner may still be joining) or
   * `ready` (a member of the cluster holding a lease, serving). @default 'listening'
   */
  until?: 'listening' | 'ready';
  /** How long to wait for that line. @default 20_000 */
  readyTimeoutMs?: number;
  /**
   * A command the node runtime is started through, e.g. `['ip', 'netns', 'exec', 'ns1']` to run the node in a
   * network namespace. It must exec the node in place (as `ip netns exec` does), so signals and the IPC channel
   * reach the node itself. @default none
   */
  wrapper?: readonly string[];
}

/** The node's `ready` line: it is a member of the committed state `stateVersion` and serves. */
export interface ReadyEvent {
  url: string;
  nodeId: string;
  stateVersion: number;
  members: number;
}

/** How a process ended. */
export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A real memory-node process, as tests see it. */
export interface NodeProcess {
  readonly url: string;
  readonly nodeId: string;
  /** From the `listening` line when the node was started with --metrics-port. */
  readonly metricsUrl: string | undefined;
  readonly pid: number;
  readonly child: ChildProcess;
  /** Resolves when the process has exited. */
  readonly exited: Promise<Exit>;
  /** Resolves with the `ready` line; rejects if the process exits first (never with a timeout). */
  readonly ready: Promise<ReadyEvent>;
  /** Everything the node logged to stderr so far (for failure messages). */
  stderr(): string;
  /** Sends a signal without waiting. */
  signal(signal: NodeJS.Signals): void;
  /** SIGKILL and wait for the exit. */
  kill(): Promise<Exit>;
  /** SIGTERM and wait for the exit (a graceful stop). */
  stop(): Promise<Exit>;
}

const running = new Set<NodeProcess>();

/** The cluster secret every test node gets unless a test says otherwise. */
export const TEST_CLUSTER_SECRET = 'test-cluster-secret';

/**
 * Starts `tmem node` as a child process on port 0 and resolves once it printed its `listening` line (or, with
 * `until: 'ready'`, its `ready` line). Rejects
 * if the process exits first or the line does not come in time; the process is then killed. Every process
 * started here is registered for killAllNodes().
 */
export async function startNode(options: StartNodeOptions = {}): Promise<NodeProcess> {
  const args = [
    // Runtime arguments may `--import` TypeScript (the bench's profiler), which needs tsx's loader: only then
    // is it registered, so ordinary test nodes keep the lighter launcher.
    ...(options.nodeArgs === undefined || options.nodeArgs.length === 0
      ? []
      : ['--import', 'tsx', ...options.nodeArgs]),
    BIN,
    'node',
    '--port',
    '0',
    '--capacity',
    options.capacity ?? '64MiB',
    // Test nodes run open (clients are not authenticated) unless the test authenticates them.
    ...(options.args?.includes('--tokens-file') === true ? [] : ['--open']),
    ...(options.args ?? []),
  ];
  // The IPC channel makes the node exit when this process dies, so no orphan survives a crashed test run.
  const [command, ...wrapperArgs] = options.wrapper ?? [];
  const child = spawn(
    command ?? process.execPath,
    command === undefined ? args : [...wrapperArgs, process.execPath, ...args],
    {
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      env: {
        ...process.env,
        TMEM_LOG_LEVEL: process.env['TMEM_LOG_LEVEL'] ?? 'info',
        TMEM_CLUSTER_SECRET: TEST_CLUSTER_SECRET,
        ...options.env,
      },
    },
  );
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-64 * 1024);
  });
  const exited = new Promise<Exit>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );

  type Listening = { url: string; nodeId: string; metricsUrl?: string };
  let onListening: (event: Listening) => void = () => undefined;
  const listening = new Promise<Listening>((resolve) => (onListening = resolve));
  let onReady: (event: ReadyEvent) => void = () => undefined;
  const readyLine = new Promise<ReadyEvent>((resolve, reject) => {
    onReady = resolve;
    void exited.then((exit) =>
      reject(new Error(`node exited before ready (${JSON.stringify(exit)}):\n${stderr}`)),
    );
  });
  // Nobody may await it (tests that kill a node early); the rejection is then no failure.
  readyLine.catch(() => undefined);
  createInterface({ input: child.stdout! }).on('line', (line) => {
    try {
      const event = JSON.parse(line) as Partial<ReadyEvent> & { event?: string; metricsUrl?: string };
      if (event.event === 'listening' && event.url && event.nodeId) {
        onListening({ url: event.url, nodeId: event.nodeId, metricsUrl: event.metricsUrl });
      }
      if (event.event === 'ready' && event.url && event.nodeId) onReady(event as ReadyEvent);
    } catch {
      // not our line
    }
  });
  const until = options.until ?? 'listening';
  const awaited = until === 'ready' ? readyLine : listening;
  const ready = new Promise<Listening>((resolve, reject) => {
    void awaited.then(resolve, reject);
    void exited.then((exit) =>
      reject(new Error(`node exited before ${until} (${JSON.stringify(exit)}):\n${stderr}`)),
    );
    setTimeout(
      () => reject(new Error(`node not ${until} after ${options.readyTimeoutMs ?? 20_000} ms:\n${stderr}`)),
      options.readyTimeoutMs ?? 20_000,
    ).unref();
  });

  const node: NodeProcess = {
    url: '',
    nodeId: '',
    metricsUrl: undefined,
    pid: child.pid!,
    child,
    exited,
    ready: readyLine,
    stderr: () => stderr,
    signal(signal) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
    async kill() {
      // A stopped process still dies on SIGKILL; no SIGCONT needed.
      node.signal('SIGKILL');
      return exited;
    },
    async stop() {
      node.signal('SIGCONT');
      node.signal('SIGTERM');
      return exited;
    },
  };
  running.add(node);
  void exited.then(() => running.delete(node));
  try {
    const { url, nodeId, metricsUrl } = await ready;
    // The listening line is awaited even with until 'ready', so metricsUrl is known either way.
    return Object.assign(node, { url, nodeId, metricsUrl: metricsUrl ?? (await listening).metricsUrl });
  } catch (error) {
    await node.kill();
    throw error;
  }
}

/** SIGKILLs every node process still running; call it in afterEach so failed tests leave nothing behind. */
export async function killAllNodes(): Promise<void> {
  await Promise.all([...running].map((node) => node.kill()));
}
