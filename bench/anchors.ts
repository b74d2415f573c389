// The anchors the bench compares tmem with: redis-server and memcached, started on free loopback ports with
// nothing persisted, and redis-benchmark run against that redis-server as the reference line. Every process
// started here is registered, so one stopAnchors() call (in a finally, or on SIGINT) leaves nothing behind.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createConnection, createServer } from 'node:net';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** A server process the bench started. */
export interface Anchor {
  readonly name: string;
  readonly port: number;
  readonly pid: number;
  /** SIGTERM, then SIGKILL after 2 s; resolves once it has exited. */
  stop(): Promise<void>;
}

const running = new Set<Anchor>();

/**
 * A port that was free a moment ago: redis-server and memcached cannot be told to pick one (port 0) and report
 * it, so bind port 0, read the port, close. Another process could take it in between; start() then fails loudly.
 */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Resolves once something accepts TCP connections on the port, rejects when `child` exits or time is up. */
async function waitForPort(
  port: number,
  child: ChildProcess,
  what: string,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4096)));
  child.stderr?.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4096)));
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${what} exited before listening on ${port}:\n${output}`);
    }
    const open = await new Promise<boolean>((resolve) => {
      const socket = createConnection({ port, host: '127.0.0.1' });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline)
      throw new Error(`${what} not listening on ${port} after ${timeoutMs} ms:\n${output}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function startAnchor(name: string, command: string, args: (port: number) => string[]): Promise<Anchor> {
  const port = await freePort();
  const child = spawn(command, args(port), { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.once('error', () => undefined); // a missing binary shows as an early exit in waitForPort
  const anchor: Anchor = {
    name,
    port,
    pid: child.pid ?? -1,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
        await exited;
        clearTimeout(timer);
      }
      running.delete(anchor);
    },
  };
  running.add(anchor);
  try {
    await waitForPort(port, child, name);
    return anchor;
  } catch (error) {
    await anchor.stop();
    throw error;
  }
}

/** Starts redis-server on loopback with persistence off (no RDB snapshots, no AOF), so disk never enters. */
export async function startRedis(): Promise<Anchor> {
  return startAnchor('redis-server', 'redis-server', (port) => [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
    '--protected-mode',
    'no',
  ]);
}

/** Starts memcached on loopback with `memoryMiB` of item memory (its default, 64 MiB, would evict). */
export async function startMemcached(memoryMiB = 2048): Promise<Anchor> {
  return startAnchor('memcached', 'memcached', (port) => [
    '-p',
    String(port),
    '-l',
    '127.0.0.1',
    '-U',
    '0',
    '-m',
    String(memoryMiB),
    '-t',
    '1',
    // memcached refuses to run as root unless told which user to be; as anyone else -u is not allowed.
    ...(process.getuid?.() === 0 ? ['-u', 'root'] : []),
  ]);
}

/** Stops every anchor still running. */
export async function stopAnchors(): Promise<void> {
  await Promise.all([...running].map((anchor) => anchor.stop()));
}

/** Requests per second redis-benchmark reports, per test name (SET, GET). */
export type RedisBenchmarkResult = Record<string, number>;

/**
 * Runs `redis-benchmark -c8 -P32 -d 4096 -t set,get --csv` against the port and parses its CSV: the reference
 * of what the same redis-server does without a Node client in the way.
 */
export async function runRedisBenchmark(port: number, requests: number): Promise<RedisBenchmarkResult> {
  const { stdout } = await execFileAsync('redis-benchmark', [
    ...['-h', '127.0.0.1', '-p', String(port)],
    ...['-c', '8', '-P', '32', '-d', '4096', '-t', 'set,get', '-n', String(requests), '--csv'],
  ]);
  const result: RedisBenchmarkResult = {};
  for (const line of stdout.split('\n')) {
    // "test","rps",... header first, then e.g. "SET","303030.31","0.775",...
    const cells = line.split(',').map((cell) => cell.replace(/"/g, ''));
    const rps = Number(cells[1]);
    if (cells[0] && cells[0] !== 'test' && Number.isFinite(rps)) result[cells[0]] = rps;
  }
  return result;
}
