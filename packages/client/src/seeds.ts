import { ErrorCode, TmemError } from '@tmem/protocol';
import type { NodeConnection } from './node-connection.ts';

/** One seed that could not be used, as reported in NO_NODES details. */
export interface SeedFailure {
  url: string;
  code: string;
  message: string;
}

/**
 * Opens a connection to the first seed, in order, that completes the handshake. Rejects with NO_NODES, whose
 * `details.failures` says why each seed failed, or with the abort reason once `signal` aborts.
 */
export async function connectFirst(
  seeds: readonly string[],
  open: (url: string) => Promise<NodeConnection>,
  signal: AbortSignal,
): Promise<NodeConnection> {
  const failures: SeedFailure[] = [];
  const errors: unknown[] = [];
  for (const url of seeds) {
    try {
      return await open(url);
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      failures.push({
        url,
        code: error instanceof TmemError ? error.code : ErrorCode.Internal,
        message: error instanceof Error ? error.message : String(error),
      });
      errors.push(error);
    }
  }
  throw new TmemError(
    ErrorCode.NoNodes,
    `none of the ${seeds.length} seeds completed the handshake; check the seed URLs and that the nodes run`,
    {
      details: { failures },
      cause: errors.length === 1 ? errors[0] : new AggregateError(errors, 'every seed failed'),
    },
  );
}
