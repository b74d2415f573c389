import { ErrorCode, TmemError } from '@tmem/protocol';
import { abortReason } from './deadline.ts';

/** One seed (or member) that could not be used, as reported in NO_NODES details. */
export interface SeedFailure {
  url: string;
  code: string;
  message: string;
}

/** A SeedFailure describing `error`. */
export function seedFailure(url: string, error: unknown): SeedFailure {
  return {
    url,
    code: error instanceof TmemError ? error.code : ErrorCode.Internal,
    message: error instanceof Error ? error.message : String(error),
  };
}

/** Seeds whose failure the NO_NODES message names; `details.failures` has them all. */
const MAX_CAUSES_IN_MESSAGE = 3;

/** The NO_NODES error for a list of failed attempts; `cause` is the one error, or all of them. */
export function noNodesError(message: string, failures: SeedFailure[], errors: unknown[]): TmemError {
  // The causes belong in the message too: "NO_NODES" alone sends the reader to the details to learn that the
  // port was refused. At most the first few, so the message stays one readable line.
  const causes = failures
    .slice(0, MAX_CAUSES_IN_MESSAGE)
    .map((f) => `${f.url}: ${f.message}`)
    .join('; ');
  const more =
    failures.length > MAX_CAUSES_IN_MESSAGE ? `; and ${failures.length - MAX_CAUSES_IN_MESSAGE} more` : '';
  return new TmemError(ErrorCode.NoNodes, causes === '' ? message : `${message} (${causes}${more})`, {
    details: { failures },
    cause: errors.length === 1 ? errors[0] : new AggregateError(errors, 'every node failed'),
  });
}

/**
 * Runs `use` on each seed, in order, until one succeeds, and returns its result. Rejects with NO_NODES, whose
 * `details.failures` says why each seed failed; with UNAUTHORIZED if a seed refused the client's token, or
 * CERTIFICATE_REJECTED if the client did not trust a seed's TLS certificate; or with
 * the abort reason once `signal` aborts.
 */
export async function connectFirst<T>(
  seeds: readonly string[],
  use: (url: string) => Promise<T>,
  signal: AbortSignal,
): Promise<T> {
  const failures: SeedFailure[] = [];
  const errors: unknown[] = [];
  for (const url of seeds) {
    try {
      return await use(url);
    } catch (error) {
      if (signal.aborted) throw abortReason(signal);
      failures.push(seedFailure(url, error));
      errors.push(error);
    }
  }
  // A node that refused our credentials will refuse them again: that, not "no nodes", is what to fix.
  // A certificate this client does not trust is the same: it is the CA option to change.
  const refusal = errors.find(
    (error) =>
      error instanceof TmemError &&
      (error.code === ErrorCode.Unauthorized || error.code === ErrorCode.CertificateRejected),
  );
  if (refusal !== undefined) throw refusal as TmemError;
  throw noNodesError(
    `none of the ${seeds.length} seeds answered with the cluster state; check the seed URLs and that the nodes run`,
    failures,
    errors,
  );
}
