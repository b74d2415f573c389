// What the coordinator's session sweep decides, with no I/O (session-expiry.ts does the asking and proposing).
//
// Every sweep lists the sessions that hold pools in the committed state, asks every member which of them are
// live there (session-liveness.ts), and ends those no member reports live. It needs EVERY member's answer: a
// member that does not answer (partitioned, slow, restarting) may be the one its client is connected to, so
// a sweep with a missing answer ends nothing. The ends it proposes carry the pools the sweep saw, so a pool
// created in the meantime (the client came back) makes the change refuse itself ('session-changed').
import { MAX_QUERIED_SESSIONS, type ClusterState, type SessionKey } from '@tmem/protocol';

/** Most sessions one sweep ends: the rest wait for the next sweep, so a burst of expiries cannot flood the log. */
export const MAX_ENDS_PER_SWEEP = 64;

/** A session that holds pools, with the ids of its pools in the state the sweep looked at. */
export interface SessionCandidate extends SessionKey {
  pools: number[];
}

/**
 * The sessions holding pools in `state`, in a fixed order (session, then owner), at most `max` of them starting
 * at `cursor` (wrapping), so that a state with more sessions than one query carries is covered over sweeps.
 * Pools without a session never expire and are not listed.
 */
export function sessionCandidates(
  state: ClusterState,
  cursor = 0,
  max: number = MAX_QUERIED_SESSIONS,
): SessionCandidate[] {
  const bySession = new Map<string, SessionCandidate>();
  for (const pool of state.pools) {
    if (pool.session === undefined) continue;
    const key = `${pool.session}\u0000${pool.owner}`;
    const candidate = bySession.get(key);
    if (candidate === undefined)
      bySession.set(key, { owner: pool.owner, session: pool.session, pools: [pool.id] });
    else candidate.pools.push(pool.id);
  }
  const all = [...bySession.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, c]) => c);
  if (all.length <= max) return all;
  const start = cursor % all.length;
  return [...all.slice(start), ...all.slice(0, start)].slice(0, max);
}

/**
 * The sessions to end: those every member answered not live. `answers` holds one entry per member, each the
 * member's `live` flags in the order of `candidates`, or undefined when the member did not answer (or answered
 * with the wrong count): then nothing is ended. At most `maxEnds`.
 */
export function sessionsToEnd(
  candidates: readonly SessionCandidate[],
  answers: readonly (readonly boolean[] | undefined)[],
  maxEnds: number = MAX_ENDS_PER_SWEEP,
): SessionCandidate[] {
  if (answers.length === 0) return [];
  if (answers.some((live) => live === undefined || live.length !== candidates.length)) return [];
  const ends: SessionCandidate[] = [];
  for (let i = 0; i < candidates.length && ends.length < maxEnds; i++) {
    if (answers.every((live) => live?.[i] === false)) ends.push(candidates[i] as SessionCandidate);
  }
  return ends;
}
