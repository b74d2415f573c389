import { pino, type Logger } from 'pino';

export type { Logger } from 'pino';

/** Options of a node's logger. */
export interface NodeLoggerOptions {
  nodeId: string;
  /** @default 'info', or the TMEM_LOG_LEVEL environment variable */
  level?: string;
}

/**
 * Structured JSON lines on stderr, so stdout stays free for the one machine-readable `listening` line.
 * Every line carries the node id (in the base bindings) and its component: each module logs through its own
 * `logger.child({ component })`, never through this root, so the component is serialized once per module and a
 * line costs nothing more than before.
 */
export function createNodeLogger(options: NodeLoggerOptions): Logger {
  return pino(
    { level: options.level ?? process.env['TMEM_LOG_LEVEL'] ?? 'info', base: { nodeId: options.nodeId } },
    pino.destination({ fd: 2, sync: true }),
  );
}

/** A logger that drops everything, for embedding a node in tests or other programs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
