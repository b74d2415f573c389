// The budget of a graceful leave as `tmem node` flags: the ephemeral hand-over (cluster/ephemeral-hand-over.ts)
// and the drain of client sockets after it. One place names each flag, parses it and maps it to its node
// option, so cli.ts only adds them and reads them back.
import { InvalidArgumentError, Option, type Command } from 'commander';
import {
  DEFAULT_EPHEMERAL_HAND_OVER,
  MAX_HAND_OFF_FRAME_BYTES,
  type EphemeralHandOverOptions,
} from './cluster/ephemeral-hand-over.ts';
import { count } from './cli-limits.ts';
import { formatByteSize } from './cli-sizes.ts';
import { parseByteSize } from './size.ts';

/** The parsed flags, as commander names them. */
export interface HandOverFlags {
  handOverTimeoutMs: number;
  handOverMaxBytes: number;
  handOverFrameBytes: number;
  handOverFramesInFlight: number;
  handOverGateMs: number;
  leaveDrainMs: number;
}

/** MemnodeOptions.leaveDrainMs's default. */
const DEFAULT_LEAVE_DRAIN_MS = 2000;

function size(max: number): (text: string) => number {
  return (text) => {
    try {
      const bytes = parseByteSize(text);
      if (bytes < 1 || bytes > max) throw new RangeError(`must be 1 byte to ${formatByteSize(max)}`);
      return bytes;
    } catch (error) {
      throw new InvalidArgumentError((error as Error).message);
    }
  };
}

function sizeOption(flags: string, description: string, defaultBytes: number, max: number): Option {
  return new Option(flags, description)
    .argParser(size(max))
    .default(defaultBytes, formatByteSize(defaultBytes));
}

/** Adds the hand-over flags to the `node` command. */
export function addHandOverFlags(command: Command): Command {
  const d = DEFAULT_EPHEMERAL_HAND_OVER;
  return command
    .option(
      '--hand-over-timeout-ms <ms>',
      'time to hand the ephemeral pages of partitions moving away (leave, join) to their new primaries; 0 hands nothing over',
      count(0),
      d.timeoutMs,
    )
    .addOption(
      sizeOption(
        '--hand-over-max-bytes <size>',
        'most ephemeral page bytes copied out for one move (held in memory until sent; the rest is dropped)',
        d.maxBytes,
        Number.MAX_SAFE_INTEGER,
      ),
    )
    .addOption(
      sizeOption(
        '--hand-over-frame-bytes <size>',
        'most page bytes per handOff frame',
        d.frameBytes,
        MAX_HAND_OFF_FRAME_BYTES,
      ),
    )
    .option(
      '--hand-over-frames-in-flight <n>',
      'handOff frames awaiting an answer at once',
      count(1),
      d.framesInFlight,
    )
    .option(
      '--hand-over-gate-ms <ms>',
      'as a new primary, longest wait for handed-over pages before serving the partition anyway; 0 never waits',
      count(0),
      d.gateMs,
    )
    .option(
      '--leave-drain-ms <ms>',
      'after a graceful leave, longest wait for clients to take the answers to their last ops and close their connections',
      count(0),
      DEFAULT_LEAVE_DRAIN_MS,
    );
}

/** The node option the flags stand for. */
export function handOverFromFlags(flags: HandOverFlags): {
  ephemeralHandOver: EphemeralHandOverOptions;
  leaveDrainMs: number;
} {
  return {
    leaveDrainMs: flags.leaveDrainMs,
    ephemeralHandOver: {
      timeoutMs: flags.handOverTimeoutMs,
      maxBytes: flags.handOverMaxBytes,
      frameBytes: flags.handOverFrameBytes,
      framesInFlight: flags.handOverFramesInFlight,
      gateMs: flags.handOverGateMs,
    },
  };
}
