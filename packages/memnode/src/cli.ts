import { Command, InvalidArgumentError } from 'commander';
import { randomUUID } from 'node:crypto';
import { DEFAULT_MAX_FRAME_BYTES } from '@tmem/protocol';
import { createNodeLogger } from './logger.ts';
import { createMemnode } from './memnode.ts';
import { parseByteSize } from './size.ts';

function byteSize(text: string): number {
  try {
    return parseByteSize(text);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

function port(text: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0 || value > 65535) {
    throw new InvalidArgumentError('port must be an integer 0..65535 (0 picks a free port)');
  }
  return value;
}

interface NodeCommandOptions {
  port: number;
  host: string;
  capacity: number;
  nodeId?: string;
  maxFrameBytes: number;
}

async function runNode(options: NodeCommandOptions): Promise<void> {
  const nodeId = options.nodeId ?? randomUUID();
  const logger = createNodeLogger({ nodeId });
  const node = await createMemnode({
    nodeId,
    host: options.host,
    port: options.port,
    capacityBytes: options.capacity,
    maxFrameBytes: options.maxFrameBytes,
    logger,
  });
  // The one machine-readable line on stdout: launchers wait for it instead of sleeping.
  process.stdout.write(`${JSON.stringify({ event: 'listening', url: node.url, nodeId })}\n`);

  const stop = (reason: string) => {
    logger.info({ reason }, 'stopping');
    node.close().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'unclean stop');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  // Started by a launcher with an IPC channel (tests, `npm run cluster`): when the parent dies, so do we,
  // so no orphan node outlives a killed test run.
  if (process.send !== undefined) process.once('disconnect', () => stop('parent exited'));
}

/** Builds the `tmem` command line. */
export function buildCli(): Command {
  const program = new Command('tmem').description('transcendent memory: memory nodes and tools');
  program
    .command('node')
    .description('run a memory node')
    .option('-p, --port <port>', 'port to listen on; 0 picks a free one', port, 0)
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .requiredOption('-c, --capacity <size>', 'bytes of page data to hold, e.g. 256MiB', byteSize)
    .option('--node-id <id>', 'stable node id (default: random)')
    .option(
      '--max-frame-bytes <size>',
      'largest frame accepted from a peer',
      byteSize,
      DEFAULT_MAX_FRAME_BYTES,
    )
    .action((options: NodeCommandOptions) => runNode(options));
  return program;
}

await buildCli().parseAsync(process.argv);
