// `npm run cluster`: starts the nodes of cluster.config.ts as separate processes, prints where each listens,
// and stops them all on Ctrl-C.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import config from '../cluster.config.ts';

const CLI = fileURLToPath(new URL('../packages/memnode/src/cli.ts', import.meta.url));

interface Started {
  child: ChildProcess;
  url: Promise<string>;
}

function startNode(port: number, capacity: string): Started {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', CLI, 'node', '--host', config.host, '--port', String(port), '--capacity', capacity],
    { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] },
  );
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
      reject(new Error(`node on port ${port} exited (${code ?? signal}) before listening`)),
    );
  });
  return { child, url };
}

const nodes = config.nodes.map((node) => startNode(node.port, node.capacity));
let stopping = false;

async function stopAll(exitCode: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  process.stdout.write('\nstopping the cluster...\n');
  await Promise.all(
    nodes.map(
      ({ child }) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          child.once('exit', () => resolve());
          child.kill('SIGTERM');
        }),
    ),
  );
  process.exit(exitCode);
}

process.on('SIGINT', () => void stopAll(0));
process.on('SIGTERM', () => void stopAll(0));
for (const { child } of nodes) {
  child.once('exit', (code) => {
    if (!stopping) {
      process.stderr.write(`a node exited unexpectedly (code ${code}); stopping the cluster\n`);
      void stopAll(1);
    }
  });
}

try {
  const urls = await Promise.all(nodes.map((node) => node.url));
  process.stdout.write(`tmem cluster: ${urls.length} nodes\n`);
  for (const url of urls) process.stdout.write(`  ${url}\n`);
  process.stdout.write(`seeds for connect(): ${JSON.stringify(urls)}\nCtrl-C stops the cluster.\n`);
} catch (error) {
  process.stderr.write(`${(error as Error).message}\n`);
  await stopAll(1);
}
