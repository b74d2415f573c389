// What an operator sees when a node's address cannot work: a refused start for a wildcard advertised address,
// and a warning naming the URL when the coordinator cannot dial a joiner back.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { TEST_TIMING_ARGS, killAllNodes, startNode, waitFor } from '../harness/index.ts';

const BIN = fileURLToPath(new URL('../../packages/memnode/bin/tmem.js', import.meta.url));

afterEach(killAllNodes);

/** Runs `tmem node ...` to its exit; resolves with the exit code and stderr. */
function runToExit(args: string[]): Promise<{ code: number | null; stderr: string; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, 'node', '--capacity', '16MiB', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    let stdout = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`tmem node ${args.join(' ')} did not exit; stderr:\n${stderr}`));
    }, 20_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr, stdout });
    });
  });
}

describe('node addresses', () => {
  it('refuses to start on a wildcard address without --advertise-url: exit 1, one line naming the flag', async () => {
    const result = await runToExit(['--host', '0.0.0.0', '--port', '0']);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toContain('--advertise-url');
  });

  it('starts on a wildcard address with --advertise-url', async () => {
    const node = await startNode({ args: ['--host', '0.0.0.0', '--advertise-url', 'ws://127.0.0.1:9'] });
    expect(node.url).toMatch(/^ws:\/\/0\.0\.0\.0:\d+$/);
  });

  it('the coordinator warns, naming the url, when it cannot dial a joiner back', async () => {
    const founder = await startNode({ args: [...TEST_TIMING_ARGS, '--node-id', 'n0'] });
    // Port 9 (discard): nothing listens there on a test machine.
    const unreachable = 'ws://127.0.0.1:9';
    await startNode({
      args: [...TEST_TIMING_ARGS, '--node-id', 'n1', '--join', founder.url, '--advertise-url', unreachable],
    });
    const warning = await waitFor(
      () =>
        founder
          .stderr()
          .split('\n')
          .filter((line) => line.startsWith('{'))
          .map((line) => JSON.parse(line) as { level: number; msg: string; url?: string; err?: string })
          .find((line) => line.level === 40 && line.msg === 'peer unreachable' && line.url === unreachable),
      { what: 'a warning naming the joiner url', timeoutMs: 15_000 },
    );
    expect(warning.err).toMatch(/ECONNREFUSED/);
  });
});
