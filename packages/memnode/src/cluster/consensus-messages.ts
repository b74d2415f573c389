// Messages the consensus cores of two members exchange. The wire layer validates every incoming message
// with `ConsensusMessage.parse` before handing it to `Consensus.receive`.
//
// Every message carries the sender's `term` (for preVote: the term it would campaign in), the sender
// (`from`, `fromIncarnation`) and the incarnation it is meant for (`toIncarnation`): a message for a
// previous incarnation of the receiver's id is dropped, so a restarted process never takes a grant, vote or
// proposal meant for its former self.
import { z } from 'zod';
import { ClusterState } from './cluster-state.ts';

const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
/** Timestamps are readings of the SENDER's monotonic clock; only the sender ever compares them. */
const time = z.number().finite();

/** Identifies a state: the term that proposed it and its version. Unique across the cluster's history. */
export const StateId = z.strictObject({ term: count, version: count });
/** Identifies a state: the term that proposed it and its version. */
export type StateId = z.infer<typeof StateId>;

const envelope = {
  term: count,
  from: z.string().min(1).max(128),
  fromIncarnation: count,
  toIncarnation: count,
};

/**
 * Pre-vote (Raft §9.6): "would you vote for me in `term`?" Nobody changes its term for it, so a member that
 * was cut off cannot depose a working leader when it comes back.
 */
export const PreVote = z.strictObject({
  type: z.literal('preVote'),
  ...envelope,
  accepted: StateId.nullable(),
});
/** The PreVote message (schema above). */
export type PreVote = z.infer<typeof PreVote>;

/** Answer to a preVote; `forTerm` echoes the term asked about, `term` is the voter's own. */
export const PreVoteReply = z.strictObject({
  type: z.literal('preVoteReply'),
  ...envelope,
  forTerm: count,
  granted: z.boolean(),
});
/** The PreVoteReply message (schema above). */
export type PreVoteReply = z.infer<typeof PreVoteReply>;

/** A real vote request; `accepted` is the candidate's accepted state id for the up-to-date check. */
export const RequestVote = z.strictObject({
  type: z.literal('requestVote'),
  ...envelope,
  accepted: StateId.nullable(),
});
/** The RequestVote message (schema above). */
export type RequestVote = z.infer<typeof RequestVote>;

/** Answer to a requestVote. */
export const Vote = z.strictObject({ type: z.literal('vote'), ...envelope, granted: z.boolean() });
/** The Vote message (schema above). */
export type Vote = z.infer<typeof Vote>;

/** The leader proposes a whole state (`state.term` equals the leader's term). */
export const Propose = z.strictObject({ type: z.literal('propose'), ...envelope, state: ClusterState });
/** The Propose message (schema above). */
export type Propose = z.infer<typeof Propose>;

/**
 * Leader heartbeat. Grants a lease of `leaseMs` counted from `leaseFrom`, a reading of the RECEIVER's clock
 * that the receiver itself reported in an earlier ack (so message delay can only shorten a lease, never
 * stretch it past what the leader assumes). `committed` is the leader's committed state id, `proposal` its
 * current proposal (the latest state it accepted itself).
 */
export const Heartbeat = z.strictObject({
  type: z.literal('heartbeat'),
  ...envelope,
  round: count,
  leaseFrom: time.nullable(),
  leaseMs: z.number().finite().min(0),
  committed: StateId.nullable(),
  proposal: StateId.nullable(),
});
/** The Heartbeat message (schema above). */
export type Heartbeat = z.infer<typeof Heartbeat>;

/**
 * Answer to a heartbeat (`round` set) or a proposal (`round` null): what the sender has accepted and
 * committed, and `sentAt`, its own clock at sending (echoed back as a future `leaseFrom`). `success` is false
 * when the sender's term is higher than the message it answers.
 */
export const Ack = z.strictObject({
  type: z.literal('ack'),
  ...envelope,
  round: count.nullable(),
  success: z.boolean(),
  accepted: StateId.nullable(),
  committed: StateId.nullable(),
  sentAt: time,
});
/** The Ack message (schema above). */
export type Ack = z.infer<typeof Ack>;

/**
 * A committed state, sent whole to members that lag behind (or that were removed by it, so they learn it).
 * Any member may send it: a committed state is a fact, whoever relays it.
 */
export const Commit = z.strictObject({ type: z.literal('commit'), ...envelope, state: ClusterState });
/** The Commit message (schema above). */
export type Commit = z.infer<typeof Commit>;

/** Any consensus message, discriminated on `type`. */
export const ConsensusMessage = z.discriminatedUnion('type', [
  PreVote,
  PreVoteReply,
  RequestVote,
  Vote,
  Propose,
  Heartbeat,
  Ack,
  Commit,
]);
/** Any consensus message. */
export type ConsensusMessage = z.infer<typeof ConsensusMessage>;

/** Orders state ids lexicographically by (term, version); null (nothing accepted) is the lowest. */
export function compareStateIds(a: StateId | null, b: StateId | null): number {
  if (a === null || b === null) return a === b ? 0 : a === null ? -1 : 1;
  return a.term !== b.term ? a.term - b.term : a.version - b.version;
}

/** The id of `state`, or null. */
export function stateIdOf(state: ClusterState | null): StateId | null {
  return state === null ? null : { term: state.term, version: state.version };
}

/** True when both ids name the same state. */
export function sameStateId(a: StateId | null, b: StateId | null): boolean {
  return compareStateIds(a, b) === 0;
}
