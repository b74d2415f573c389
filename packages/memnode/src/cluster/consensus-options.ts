// Options of the consensus core and their defaults, kept apart so the wiring can show and validate them.
import type { ClusterState } from './cluster-state.ts';
import type { MemberRef } from './partition-table.ts';

/** Bounds of the randomized election timeout, in ms. */
export interface ElectionTimeoutMs {
  min: number;
  max: number;
}

/** Options of createConsensus. All durations are in ms of the caller's monotonic clock. */
export interface ConsensusOptions {
  /** This process: its member id and the incarnation it was started with. */
  self: MemberRef;
  /**
   * Bootstrap state (from initialState()) for the first node of a new cluster: taken as both accepted and
   * committed. Leave it out for every other process: it then waits, as a joiner, to be added by a leader.
   */
  initialState?: ClusterState;
  /** Uniform random numbers in [0, 1) for election timeouts (inject a seeded one in simulations). */
  random: () => number;
  /** How often the leader sends heartbeats (which carry leases and commits). @default 100 */
  heartbeatIntervalMs?: number;
  /** Randomized election timeout of followers. @default { min: 600, max: 1200 } */
  electionTimeoutMs?: ElectionTimeoutMs;
  /** Longest lease a heartbeat grants. @default 1000 */
  leaseMs?: number;
  /** Safety margin for clock-rate differences added whenever a lease must surely have expired. @default 200 */
  leaseMarginMs?: number;
  /** A member that has not acked for this long is suspected: no more grants, then removal. @default 800 */
  failureTimeoutMs?: number;
}

/** Options with every default filled in. */
export type ResolvedConsensusOptions = Required<Omit<ConsensusOptions, 'initialState'>> &
  Pick<ConsensusOptions, 'initialState'>;

/** Default heartbeat interval, ms. */
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 100;
/** Default election timeout bounds, ms. */
export const DEFAULT_ELECTION_TIMEOUT_MS: Readonly<ElectionTimeoutMs> = Object.freeze({
  min: 600,
  max: 1200,
});
/** Default lease, ms. */
export const DEFAULT_LEASE_MS = 1000;
/** Default lease margin, ms. */
export const DEFAULT_LEASE_MARGIN_MS = 200;
/** Default failure timeout, ms. */
export const DEFAULT_FAILURE_TIMEOUT_MS = 800;

/** Fills in defaults and rejects nonsensical values (a lease of 0, min > max) early. */
export function resolveConsensusOptions(options: ConsensusOptions): ResolvedConsensusOptions {
  const resolved: ResolvedConsensusOptions = {
    self: { id: options.self.id, incarnation: options.self.incarnation },
    initialState: options.initialState,
    random: options.random,
    heartbeatIntervalMs: options.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS,
    electionTimeoutMs: { ...(options.electionTimeoutMs ?? DEFAULT_ELECTION_TIMEOUT_MS) },
    leaseMs: options.leaseMs ?? DEFAULT_LEASE_MS,
    leaseMarginMs: options.leaseMarginMs ?? DEFAULT_LEASE_MARGIN_MS,
    failureTimeoutMs: options.failureTimeoutMs ?? DEFAULT_FAILURE_TIMEOUT_MS,
  };
  const positive = (name: string, v: number): void => {
    if (!(Number.isFinite(v) && v > 0)) throw new RangeError(`${name} must be a positive number, got ${v}`);
  };
  positive('heartbeatIntervalMs', resolved.heartbeatIntervalMs);
  positive('electionTimeoutMs.min', resolved.electionTimeoutMs.min);
  positive('leaseMs', resolved.leaseMs);
  positive('failureTimeoutMs', resolved.failureTimeoutMs);
  if (!(resolved.leaseMarginMs >= 0)) throw new RangeError('leaseMarginMs must be >= 0');
  if (!(resolved.electionTimeoutMs.max >= resolved.electionTimeoutMs.min)) {
    throw new RangeError('electionTimeoutMs.max must be >= electionTimeoutMs.min');
  }
  const self = options.self;
  if (
    options.initialState &&
    !options.initialState.members.some((m) => m.id === self.id && m.incarnation === self.incarnation)
  ) {
    throw new RangeError('initialState must contain self (same id and incarnation)');
  }
  return resolved;
}
