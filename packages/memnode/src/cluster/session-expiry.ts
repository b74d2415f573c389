// The coordinator's session sweep, wired to the network: every quarter grace the coordinator asks every member
// which sessions holding pools are live there, and proposes endSession for those none reports live (the
// decision is session-sweep.ts). Pools of a client that went away are thus destroyed cluster-wide, and their
// pages freed on every node, between one grace and a grace and a quarter after its last connection closed.
import type { Logger } from '../logger.ts';
import type { SessionLiveness } from '../session-liveness.ts';
import type { ClusterMember } from './cluster-member.ts';
import { MAX_QUERIED_SESSIONS } from '@tmem/protocol';
import { sessionCandidates, sessionsToEnd } from './session-sweep.ts';
import { poolsThatFit } from './state-bound.ts';

/** Options of the sweep. */
export interface SessionExpiryOptions {
  member: Pick<ClusterMember, 'nodeId' | 'committed' | 'leaderId' | 'propose' | 'callMember'>;
  /** This node's own answers, and its grace period (every node of a cluster should have the same). */
  liveness: SessionLiveness;
  logger: Logger;
  /** How long the sweep waits for a member's answer; without it, that sweep ends nothing. @default 2000 */
  queryTimeoutMs?: number;
  /**
   * The node's frame limit: a query names at most as many sessions as half a frame holds pools (a session key
   * encodes smaller than a pool), so it always fits, and a state with more sessions is covered over sweeps.
   * @default DEFAULT_MAX_FRAME_BYTES
   */
  maxFrameBytes?: number;
}

/** A running sweep. */
export interface SessionExpiry {
  /** Runs one sweep now (if this node is the coordinator; none if one is running); resolves when done. */
  sweep(): Promise<void>;
  close(): void;
}

/** Starts the sweep; it does anything only while this node is the coordinator. */
export function startSessionExpiry(options: SessionExpiryOptions): SessionExpiry {
  const { member, liveness } = options;
  const log = options.logger.child({ component: 'sessions' });
  const queryTimeoutMs = options.queryTimeoutMs ?? Math.min(2000, liveness.graceMs);
  const perQuery = Math.min(
    MAX_QUERIED_SESSIONS,
    options.maxFrameBytes === undefined ? MAX_QUERIED_SESSIONS : poolsThatFit(options.maxFrameBytes),
  );
  let closed = false;
  let running: Promise<void> | undefined;
  /** Where the next sweep's window of sessions starts, when the state holds more than one query carries. */
  let cursor = 0;

  async function sweepOnce(): Promise<void> {
    const state = member.committed();
    if (closed || state === null || member.leaderId() !== member.nodeId) return;
    const candidates = sessionCandidates(state, cursor, perQuery);
    if (candidates.length === 0) return;
    cursor += candidates.length;
    const keys = candidates.map(({ owner, session }) => ({ owner, session }));
    const answers = await Promise.all(
      state.members.map((m) =>
        m.id === member.nodeId
          ? Promise.resolve(keys.map((k) => liveness.isLive(k.owner, k.session)))
          : member
              .callMember(
                m.id,
                (id) => ({ t: 'sessionsQuery', id, sessions: keys }),
                'sessionsLive',
                queryTimeoutMs,
              )
              .then(
                (reply) => reply.live,
                (error: unknown) => {
                  log.debug(
                    { member: m.id, err: (error as Error).message },
                    'no liveness answer; ending nothing',
                  );
                  return undefined;
                },
              ),
      ),
    );
    for (const end of sessionsToEnd(candidates, answers)) {
      // A client may have come back to this node while the others answered.
      if (closed || member.leaderId() !== member.nodeId || liveness.isLive(end.owner, end.session)) continue;
      try {
        const result = await member.propose({
          type: 'endSession',
          owner: end.owner,
          session: end.session,
          pools: end.pools,
        });
        if (result.ok)
          log.info({ owner: end.owner, pools: end.pools.length }, 'session expired: pools destroyed');
        else log.debug({ owner: end.owner, error: result.error }, 'session end refused');
      } catch (error) {
        log.debug(
          { owner: end.owner, err: (error as Error).message },
          'session end not committed; next sweep',
        );
      }
    }
  }

  function sweep(): Promise<void> {
    // One sweep at a time: a slow one (members not answering) is not stacked on.
    running ??= sweepOnce()
      .catch((error: unknown) => log.warn({ err: (error as Error).message }, 'session sweep failed'))
      .finally(() => {
        running = undefined;
      });
    return running;
  }

  const timer = setInterval(() => void sweep(), Math.max(1, liveness.graceMs / 4));
  timer.unref();
  return {
    sweep,
    close() {
      closed = true;
      clearInterval(timer);
    },
  };
}
