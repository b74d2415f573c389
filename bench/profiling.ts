// CPU profiles of one case's window, for the client (this process, through the inspector) and for every tmem
// node of the system (through bench/node-profiler.ts, loaded into each node with --import).
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NodeProcess } from '../test/harness/index.ts';

/** Node runtime arguments that make a tmem node obey start/stop profile messages. */
export const PROFILED_NODE_ARGS = ['--import', fileURLToPath(new URL('./node-profiler.ts', import.meta.url))];

const session = new Session();
let connected = false;

/** Resolves with the next profile message a node sends that matches `what`. */
function reply(node: NodeProcess, what: 'started' | 'written'): Promise<void> {
  return new Promise((resolve) => {
    const listener = (message: unknown): void => {
      if ((message as { benchProfile?: string } | null)?.benchProfile === what) {
        node.child.off('message', listener);
        resolve();
      }
    };
    node.child.on('message', listener);
  });
}

/**
 * Starts profiling the client and `nodes`; the returned function stops every profile and writes
 * `<name>-client.cpuprofile` and `<name>-node<i>.cpuprofile` into `dir`.
 */
export async function startProfiles(
  dir: string,
  name: string,
  nodes: readonly NodeProcess[],
): Promise<() => Promise<string[]>> {
  if (!connected) {
    session.connect();
    connected = true;
  }
  await Promise.all(
    nodes.map((node) => {
      const started = reply(node, 'started');
      node.child.send({ benchProfile: 'start' });
      return started;
    }),
  );
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 100 });
  await session.post('Profiler.start');
  return async () => {
    const { profile } = await session.post('Profiler.stop');
    const clientPath = join(dir, `${name}-client.cpuprofile`);
    writeFileSync(clientPath, JSON.stringify(profile));
    const nodePaths = nodes.map((_, i) => join(dir, `${name}-node${i}.cpuprofile`));
    await Promise.all(
      nodes.map((node, i) => {
        const written = reply(node, 'written');
        node.child.send({ benchProfile: 'stop', path: nodePaths[i] });
        return written;
      }),
    );
    return [clientPath, ...nodePaths];
  };
}
