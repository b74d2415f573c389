// The connection limits and decode budgets as `tmem node` flags: one place that names each flag, parses it and
// maps it to its node option, so cli.ts only adds them and reads them back.

import { InvalidArgumentError, Option, type Command } from 'commander';
import { DEFAULT_CLIENT_DECODE_BUDGET, DEFAULT_PEER_DECODE_BUDGET, type DecodeBudget } from '@tmem/protocol';
import { DEFAULT_CONNECTION_LIMITS, type ConnectionLimits } from './connection-limits.ts';
import { formatByteSize } from './cli-sizes.ts';
import { parseByteSize } from './size.ts';

/** The parsed flags, as commander names them: one per connection limit (same name), and the decode budgets. */
export interface LimitFlags extends ConnectionLimits {
  maxFrameElements: number;
  maxPeerFrameElements: number;
  maxFrameDepth: number;
}

/** A commander parser for an integer flag of at least `min`. */
export function count(min: number): (text: string) => number {
  return (text) => {
    const value = Number(text);
    if (!Number.isSafeInteger(value) || value < min) {
      throw new InvalidArgumentError(`must be an integer of at least ${min}`);
    }
    return value;
  };
}

function size(text: string): number {
  try {
    const bytes = parseByteSize(text);
    if (bytes < 1) throw new RangeError('must be at least 1 byte');
    return bytes;
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

/** A size flag whose help shows its default as people write it ("64 MiB"). */
function sizeOption(flags: string, description: string, defaultBytes: number): Option {
  return new Option(flags, description).argParser(size).default(defaultBytes, formatByteSize(defaultBytes));
}

/** Adds the limit flags to the `node` command. */
export function addLimitFlags(command: Command): Command {
  const d = DEFAULT_CONNECTION_LIMITS;
  return command
    .option('--max-connections <n>', 'open WebSocket connections per node', count(1), d.maxConnections)
    .option(
      '--max-connections-per-identity <n>',
      'open client connections per identity',
      count(1),
      d.maxConnectionsPerIdentity,
    )
    .option(
      '--handshake-timeout-ms <ms>',
      'deadline from TCP accept to the end of the hello',
      count(1),
      d.handshakeTimeoutMs,
    )
    .addOption(sizeOption('--max-hello-bytes <size>', 'largest frame before the hello', d.maxHelloBytes))
    .option(
      '--idle-timeout-ms <ms>',
      'close a connection silent this long; 0 never does',
      count(0),
      d.idleTimeoutMs,
    )
    .addOption(
      sizeOption(
        '--max-buffered-reply-bytes <size>',
        'replies buffered for a slow reader before the node stops reading it',
        d.maxBufferedReplyBytes,
      ),
    )
    .option(
      '--max-pools-per-identity <n>',
      'pools one identity may have in the cluster',
      count(1),
      d.maxPoolsPerIdentity,
    )
    .option(
      '--max-pools <n>',
      'pools the whole cluster may hold (lowered to what half of --max-frame-bytes carries)',
      count(1),
      d.maxPools,
    )
    .option(
      '--max-frame-elements <n>',
      'msgpack values in one client frame',
      count(1),
      DEFAULT_CLIENT_DECODE_BUDGET.maxElements,
    )
    .option(
      '--max-peer-frame-elements <n>',
      'msgpack values in one peer frame',
      count(1),
      DEFAULT_PEER_DECODE_BUDGET.maxElements,
    )
    .option(
      '--max-frame-depth <n>',
      'nesting depth of maps and arrays in one frame',
      count(2),
      DEFAULT_CLIENT_DECODE_BUDGET.maxDepth,
    );
}

/** The node options the flags stand for. */
export function limitsFromFlags(flags: LimitFlags): {
  limits: ConnectionLimits;
  decodeBudgets: { client: DecodeBudget; peer: DecodeBudget };
} {
  return {
    // Every connection limit has a flag of its own name: take exactly those keys.
    limits: Object.fromEntries(
      Object.keys(DEFAULT_CONNECTION_LIMITS).map((key) => [key, flags[key as keyof ConnectionLimits]]),
    ) as unknown as ConnectionLimits,
    decodeBudgets: {
      client: { maxElements: flags.maxFrameElements, maxDepth: flags.maxFrameDepth },
      peer: { maxElements: flags.maxPeerFrameElements, maxDepth: flags.maxFrameDepth },
    },
  };
}
