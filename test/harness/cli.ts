import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLI = 'packages/memnode/src/cli.ts';

/** What a finished CLI run printed, and how it exited. */
export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** CLI processes still running, for killAllCliRuns in afterEach. */
const running = new Set<ChildProcess>();

/** Runs the real `tmem` CLI from source, as a user would, and collects its output. */
export function runCli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    // A hung CLI fails the test with its output instead of hanging the run.
    timeout: 20_000,
  });
  running.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  return new Promise((resolve) => {
    child.once('close', (code) => {
      running.delete(child);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Kills every CLI run still going. */
export function killAllCliRuns(): void {
  for (const child of running) child.kill('SIGKILL');
  running.clear();
}
