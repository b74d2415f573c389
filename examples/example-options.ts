// What every example shares: where the cluster is. By default the nodes of cluster.config.ts, which is what
// `npm run cluster` starts; `--seeds ws://host:port,...` points an example at any other cluster.
import config from '../cluster.config.ts';

/** The seeds `--seeds` names, or the fixed ports of cluster.config.ts. */
export function seedsFrom(option: string | undefined): string[] {
  if (option !== undefined) return option.split(',').filter((seed) => seed !== '');
  const fixed = config.nodes.filter((node) => node.port !== 0);
  if (fixed.length === 0) throw new Error('cluster.config.ts uses port 0: pass --seeds ws://host:port,...');
  return fixed.map((node) => `ws://${config.host}:${node.port}`);
}

/** A positive integer option, or the default; anything else ends the example with a message. */
export function positiveInteger(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const parsed = Number(value);
  if (!Number.isSafeInteger(parsed) || parsed <= 0) throw new Error(`--${name} must be a positive integer`);
  return parsed;
}

/** Milliseconds since `start` (from performance.now()), rounded for printing. */
export function msSince(start: number): number {
  return Math.round(performance.now() - start);
}
