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

/**
 * Runs the real `tmem` launcher with `args` until it exits, collecting its output. For commands that are
 * expected to end by themselves (`--version`, bad flags, a join that cannot succeed).
 */
export function runCli(args: readonly string[], options: RunCliOptions = {}): Promise<CliRun> {
  const env = { ...process.env, ...options.env };
  if (options.env?.['TMEM_CLUSTER_SECRET'] === undefined) delete env['TMEM_CLUSTER_SECRET'];
  const started = Date.now();
  const child = spawn(process.execPath, [BIN, ...args], {
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    env,
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
