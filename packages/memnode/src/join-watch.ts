// Waits, at startup, until a node is a member of the cluster and serving, or says why it never will be: a
// seed that refused its handshake (the cluster secret) ends the wait at once; seeds that stay unreachable end
// it after the join timeout. The launcher (cli.ts) turns the outcome into the `ready` line or an exit.
import { ErrorCode, TmemError } from '@tmem/protocol';
import type { ClusterMember } from './cluster/cluster-member.ts';

/** Options of waitUntilServing. */
export interface ServingWaitOptions {
  /** The seeds the node joins through (none: it founded the cluster), for the messages. */
  seeds: readonly string[];
  /** Whether this node has a cluster secret (TMEM_CLUSTER_SECRET), for the message of a refusal. */
  hasSecret: boolean;
  /** How long the node may take to be a member holding a lease. @default 60_000 */
  timeoutMs?: number;
  /** How often the member is looked at; only until it serves. @default 25 */
  pollMs?: number;
}

/** What the node serves once it is ready. */
export interface ServingInfo {
  stateVersion: number;
  members: number;
}

/** Default of `--join-timeout`. */
export const DEFAULT_JOIN_TIMEOUT_MS = 60_000;

/**
 * Resolves once this incarnation is in a committed state and holds a lease (it answers the ops of its
 * partitions). Rejects with UNAUTHORIZED or VERSION_MISMATCH (a seed refused this node; the message names
 * TMEM_CLUSTER_SECRET), with CERTIFICATE_REJECTED (a seed's TLS certificate did not verify against --tls-ca) or with TIMEOUT (not serving within `timeoutMs`; the message names the last seed tried
 * and its error).
 */
export function waitUntilServing(member: ClusterMember, options: ServingWaitOptions): Promise<ServingInfo> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_JOIN_TIMEOUT_MS;
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const timer = setInterval(check, options.pollMs ?? 25);
    function finish(outcome: () => void): void {
      clearInterval(timer);
      outcome();
    }
    function check(): void {
      const status = member.joinStatus();
      if (status.refused !== null) {
        const { seed, error } = status.refused;
        // This node refused the seed's certificate; every other refusal is the seed's.
        const refusal =
          error.code === ErrorCode.CertificateRejected
            ? `this node does not trust seed ${seed}`
            : `seed ${seed} refused this node`;
        const fix =
          error.code === ErrorCode.CertificateRejected
            ? 'give every node a certificate signed by a CA in --tls-ca'
            : error.code !== ErrorCode.Unauthorized
              ? 'run the same tmem version on every node'
              : options.hasSecret
                ? "TMEM_CLUSTER_SECRET differs from the cluster's; give every node the same value"
                : "TMEM_CLUSTER_SECRET is not set, and the cluster requires one; set it to the cluster's secret";
        return finish(() =>
          reject(
            new TmemError(error.code, `${refusal} (${error.message}): ${fix}`, {
              cause: error,
            }),
          ),
        );
      }
      const described = member.describe();
      if (described.role !== 'joining' && described.leaseHeld) {
        const members = member.committed()?.members.length ?? 0;
        return finish(() => resolve({ stateVersion: described.stateVersion, members }));
      }
      if (Date.now() >= deadline) {
        const last = status.lastFailure;
        const why =
          last === null
            ? `it is not a member holding a lease yet (state v${described.stateVersion}, role ${described.role})`
            : `${status.attempts} attempts; the last, through ${last.seed}, failed: ${last.error.message}`;
        const through =
          options.seeds.length === 0 ? 'founding' : `joining through ${options.seeds.join(', ')}`;
        return finish(() =>
          reject(
            new TmemError(
              ErrorCode.Timeout,
              `not serving ${timeoutMs / 1000} s after ${through}: ${why}; check that a seed is up and reachable, or raise --join-timeout`,
            ),
          ),
        );
      }
    }
  });
}
