import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../../packages/memnode/bin/tmem.js', import.meta.url));

/** How a `tmem` run that was expected to end, ended. */
export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Wall time from spawn to exit. */
  elapsedMs: number;
}

/** Options of runCli. */
export interface RunCliOptions {
  /** Extra environment variables; TMEM_CLUSTER_SECRET is removed unless given here. */
  env?: Record<string, string>;
  /** SIGKILL after this long, so a hang fails the test with its output. @default 20_000 */
  timeoutMs?: number;
}

/** Options of runToExit. */
export interface RunToExitOptions {
  /** @default the test process's */
  cwd?: string;
  /** The whole environment. @default the test process's */
  env?: NodeJS.ProcessEnv;
  /** SIGKILL after this long, so a hang fails the test with its output. @default 20_000 */
  timeoutMs?: number;
  /** Opens an IPC channel, so a node run this way exits with the test process (cli.ts). @default false */
  ipc?: boolean;
}

/** Runs `command` with `args` until it exits, collecting its output: for commands expected to end by themselves. */
export function runToExit(
  command: string,
  args: readonly string[],
  options: RunToExitOptions = {},
): Promise<CliRun> {
  const started = Date.now();
  const child = spawn(command, args, {
    cwd: options.cwd,
    stdio: options.ipc === true ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'],
    env: options.env ?? process.env,
    timeout: options.timeoutMs ?? 20_000,
    killSignal: 'SIGKILL',
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  return new Promise((resolve) => {
    child.once('close', (code, signal) =>
      resolve({ code, signal, stdout, stderr, elapsedMs: Date.now() - started }),
    );
  });
}

/**
 * Runs the real `tmem` launcher with `args` until it exits, collecting its output. For commands that are
 * expected to end by themselves (`--version`, bad flags, a join that cannot succeed).
 */
export function runCli(args: readonly string[], options: RunCliOptions = {}): Promise<CliRun> {
  const env = { ...process.env, ...options.env };
  if (options.env?.['TMEM_CLUSTER_SECRET'] === undefined) delete env['TMEM_CLUSTER_SECRET'];
  return runToExit(process.execPath, [BIN, ...args], {
    env,
    ipc: true,
    ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
  });
}
