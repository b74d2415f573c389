// The coordination core: Raft over whole-state snapshots, with leases. Pure: no I/O, no timers, no clock,
// no randomness of its own. Inputs are tick(now), receive(from, message, now) and propose(change, now); each
// returns outputs (messages to send, notifications) that the caller must process IN ORDER.
//
// Protocol (docs/ring-design.md is the spec; where this differs, the comment at the rule says why):
// - Each member keeps its latest ACCEPTED state and its latest COMMITTED state instead of a log. A state is
//   identified by (term that proposed it, version); a member accepts a proposal of the current leader whose
//   id is lexicographically greater than its accepted id (Raft: the leader overwrites uncommitted entries).
// - Election: pre-vote, then Raft vote with the up-to-date check on the accepted (term, version); leader
//   stickiness; votes and acks count only from members of the relevant state with matching (id, incarnation).
// - A new leader first re-proposes its accepted state as version + 1 in its own term, then proposes changes
//   one at a time, FIFO (each moves at most one voter: single-server membership changes). Removals of dead
//   members go first; a voter change is proposed only if the new configuration has a responsive majority.
// - A proposal COMMITS when (a) a majority of its voters accepted it, (b) every member of the committed,
//   previous and proposed states, and every member this leader granted a lease, accepted it or its lease has
//   surely expired (last grant, or the election, + leaseMs + leaseMarginMs), and (c) if states between the
//   leader's committed state and its accepted one are unknown to it, leaseMs + leaseMarginMs passed since
//   its election.
// - Leases: a heartbeat grants min(leaseMs, what remains of the leader's own lease), counted from the
//   receiver's own clock reading in an earlier ack (delay can only shorten it). Grants go only to members
//   whose committed state is the leader's, and only after the leader committed a state of its own term.
//   The leader's own lease is sendTime + leaseMs of the newest heartbeat round a majority acked.
// - Serving: a member with a lease serves partition p iff it is p's primary in both its committed and its
//   accepted state and the accepted state is at most one version ahead. The simulation checks that at most
//   one member serves each partition at any instant.
import {
  applyChange,
  isMember,
  isVoterChange,
  type ChangeResult,
  type ClusterState,
  type StateChange,
} from './cluster-state.ts';
import {
  compareStateIds,
  sameStateId,
  stateIdOf,
  type Ack,
  type Commit,
  type ConsensusMessage,
  type Heartbeat,
  type PreVote,
  type PreVoteReply,
  type Propose,
  type RequestVote,
  type StateId,
  type Vote,
} from './consensus-messages.ts';
import { resolveConsensusOptions, type ConsensusOptions } from './consensus-options.ts';
import type { Consensus, ConsensusOutput, Role } from './consensus-types.ts';
import { memberKey, partitionTableFor, sameMember, type MemberRef } from './partition-table.ts';

export type { ConsensusOptions, ElectionTimeoutMs } from './consensus-options.ts';

export type { ChangeFailure, Consensus, ConsensusOutput, ProposeResult, Role } from './consensus-types.ts';

interface Peer {
  ref: MemberRef;
  /** Send time (leader's clock) of the newest heartbeat round the peer acked: failure detection. */
  lastAckAt: number | null;
  /** Latest `sentAt` the peer reported: its own clock, echoed back as `leaseFrom`. */
  echo: number | null;
  accepted: StateId | null;
  committed: StateId | null;
  ackedRound: number;
  /** Leader's clock when it last sent this peer a nonzero grant. */
  lastGrantSentAt: number | null;
  lastResendAt: number;
  /**
   * Leader's clock when it committed the state that added the peer: failure detection spares it JOIN_GRACE
   * failure timeouts from then, while it takes over its partitions (null: a member from before this leader).
   */
  joinedAt: number | null;
}

/**
 * Failure timeouts a member just added is not suspected for, counted from the commit that added it. A joiner
 * is busiest right then (the new state, its partitions, copies arriving), and on a loaded machine it missed
 * acks for one failure timeout and was removed again at once, doubling its rejoin time (netns.test.ts). It was
 * probed alive just before it was added, so this delays only the removal of one that dies right after.
 */
const JOIN_GRACE = 2;

interface Pending {
  change: StateChange;
}

interface InFlight {
  /** Null for the leader's own proposals (re-proposal, removals): nobody waits for those. */
  changeId: string | null;
  result: ChangeResult;
}

/** Removed identities remembered to refuse late joins of dead incarnations. */
const REMOVED_HISTORY = 4096;

/** Rounds whose send time is kept to compute the leader's lease; older acks no longer extend it. */
const ROUND_HISTORY = 256;

function majority(n: number): number {
  return Math.floor(n / 2) + 1;
}

function maxId(a: StateId | null, b: StateId | null): StateId | null {
  return compareStateIds(a, b) >= 0 ? a : b;
}

/** Creates the consensus core of one member (bootstrap node with `initialState`, joiner without). */
export function createConsensus(options: ConsensusOptions): Consensus {
  const opts = resolveConsensusOptions(options);
  const self: MemberRef = opts.self;
  const selfKey = memberKey(self);
  const { leaseMs, leaseMarginMs, heartbeatIntervalMs, failureTimeoutMs } = opts;
  const electionMin = opts.electionTimeoutMs.min;
  const electionMax = opts.electionTimeoutMs.max;
  /** A leader without a majority-acked round for this long steps down (check-quorum). */
  const quorumTimeoutMs = leaseMs + electionMax;

  let currentTerm = opts.initialState?.term ?? 0;
  let votedFor: string | null = null;
  let role: Role = 'follower';
  let leader: MemberRef | null = null;
  let accepted: ClusterState | null = opts.initialState ?? null;
  let committed: ClusterState | null = opts.initialState ?? null;
  let removed = false;

  let leaseUntil = -Infinity;
  let leaseHeld = false;
  let electionDeadline: number | null = null;
  let lastLeaderContact = -Infinity;

  let preVoteTerm: number | null = null;
  const preVotes = new Set<string>();
  const votes = new Set<string>();

  // Leader state, reset at each election.
  let peers = new Map<string, Peer>();
  let electedAt = -Infinity;
  let leaderLeaseUntil = -Infinity;
  let lastQuorumSentAt = -Infinity;
  let nextHeartbeatAt = -Infinity;
  let round = 0;
  const roundSentAt = new Map<number, number>();
  let proposal: ClusterState | null = null;
  let parent: ClusterState | null = null;
  let inFlight: InFlight | null = null;
  let queue: Pending[] = [];
  let commitNotBefore = -Infinity;
  let probeSince: { key: string; at: number } | null = null;
  const removedIdentities = new Set<string>();

  let lastRole: { role: Role; term: number; leaderId: string | null } = {
    role,
    term: currentTerm,
    leaderId: null,
  };
  /** Partitions served per (committed, accepted) pair: the list, and a mask so a page op's check is O(1). */
  let servingCache: {
    committed: ClusterState;
    accepted: ClusterState;
    partitions: number[];
    mask: Uint8Array;
  } | null = null;

  let out: ConsensusOutput[] = [];

  // ---------------------------------------------------------------- helpers

  function refOf(from: string, incarnation: number): MemberRef {
    return { id: from, incarnation };
  }

  function send(to: MemberRef, message: ConsensusMessage): void {
    out.push({ type: 'send', to: to.id, message });
  }

  function envelope(to: MemberRef, term = currentTerm) {
    return { term, from: self.id, fromIncarnation: self.incarnation, toIncarnation: to.incarnation };
  }

  function noteRole(): void {
    const leaderId = leader?.id ?? null;
    if (lastRole.role !== role || lastRole.term !== currentTerm || lastRole.leaderId !== leaderId) {
      lastRole = { role, term: currentTerm, leaderId };
      out.push({ type: 'roleChanged', role, term: currentTerm, leaderId });
    }
  }

  function resetElectionDeadline(now: number): void {
    electionDeadline = now + electionMin + opts.random() * (electionMax - electionMin);
  }

  /**
   * Who may campaign: a member of its accepted state (Raft: a configuration takes effect when received), and
   * a member of its committed state that accepted its own removal. The latter counts only the others' votes
   * and, once leader, commits its accepted state and retires; it may be the only live holder of that state,
   * and then nobody else could ever pass the up-to-date check. Deviation from "joiners wait for a committed
   * state": likewise, members just added may be the only holders of the newest state when the leader dies.
   * A joiner that has accepted nothing never campaigns.
   */
  function eligible(): boolean {
    return (
      !removed &&
      accepted !== null &&
      (isMember(accepted, self.id, self.incarnation) || isMember(committed, self.id, self.incarnation))
    );
  }

  /** True when `state` counts this member's own vote. */
  function votesIn(state: ClusterState | null): boolean {
    return isMember(state, self.id, self.incarnation);
  }

  function soleVoter(): boolean {
    return accepted !== null && accepted.members.length === 1 && votesIn(accepted) && eligible();
  }

  function refsOf(...states: (ClusterState | null)[]): MemberRef[] {
    const seen = new Map<string, MemberRef>();
    for (const s of states) {
      for (const m of s?.members ?? []) {
        const key = memberKey(m);
        if (key !== selfKey && !seen.has(key)) seen.set(key, { id: m.id, incarnation: m.incarnation });
      }
    }
    return [...seen.values()];
  }

  function peerOf(ref: MemberRef): Peer {
    const key = memberKey(ref);
    let peer = peers.get(key);
    if (!peer) {
      peer = {
        ref,
        lastAckAt: null,
        echo: null,
        accepted: null,
        committed: null,
        ackedRound: 0,
        lastGrantSentAt: null,
        lastResendAt: -Infinity,
        joinedAt: null,
      };
      peers.set(key, peer);
    }
    return peer;
  }

  function checkLease(now: number): void {
    if (leaseHeld && now >= leaseUntil) {
      leaseHeld = false;
      out.push({ type: 'leaseLost' });
    }
  }

  function extendLease(until: number, now: number): void {
    if (until > leaseUntil) leaseUntil = until;
    if (leaseUntil > now) leaseHeld = true;
  }

  function accept(state: ClusterState): void {
    noteRemovals(accepted, state);
    accepted = state;
    out.push({ type: 'accepted', state });
  }

  /**
   * Remembers identities that `next` drops. A removed incarnation learns it and restarts as a new one, so a
   * join of a removed identity (a retry still in flight) would add a member that will never answer.
   */
  function noteRemovals(previous: ClusterState | null, next: ClusterState): void {
    for (const m of previous?.members ?? []) {
      if (isMember(next, m.id, m.incarnation)) continue;
      removedIdentities.add(memberKey(m));
      if (removedIdentities.size > REMOVED_HISTORY) {
        removedIdentities.delete(removedIdentities.values().next().value as string);
      }
    }
  }

  /** Adopts a committed state (versions only grow); accepts it first when it is newer than `accepted`. */
  function adoptCommitted(state: ClusterState, now: number): void {
    if (committed !== null && state.version <= committed.version) return;
    if (compareStateIds(stateIdOf(state), stateIdOf(accepted)) > 0) accept(state);
    noteRemovals(committed, state);
    committed = state;
    out.push({ type: 'committed', state });
    if (!isMember(state, self.id, self.incarnation)) becomeRemoved(now);
  }

  function failPending(): void {
    if (inFlight && inFlight.changeId !== null) {
      out.push({ type: 'changeFailed', changeId: inFlight.changeId, reason: 'outcome-unknown' });
    }
    for (const p of queue) {
      out.push({ type: 'changeFailed', changeId: p.change.changeId, reason: 'leadership-lost' });
    }
    inFlight = null;
    queue = [];
    proposal = null;
    parent = null;
    probeSince = null;
    peers = new Map();
    roundSentAt.clear();
    leaderLeaseUntil = -Infinity;
  }

  /** Leaves the leader/candidate role; a higher `term` also forgets the vote and the leader. */
  function becomeFollower(term: number, now: number): void {
    const wasLeader = role === 'leader';
    if (term > currentTerm) {
      currentTerm = term;
      votedFor = null;
      leader = null;
    }
    if (wasLeader) {
      failPending();
      leader = null;
      lastLeaderContact = -Infinity;
    }
    if (role !== 'follower' || wasLeader) resetElectionDeadline(now);
    role = 'follower';
    preVoteTerm = null;
    noteRole();
  }

  function becomeRemoved(now: number): void {
    if (role === 'leader') becomeFollower(currentTerm, now);
    removed = true;
    role = 'follower';
    leaseUntil = -Infinity;
    checkLease(now);
    out.push({ type: 'removed' });
    noteRole();
  }

  // ---------------------------------------------------------------- elections

  function startPreVote(now: number): void {
    if (soleVoter()) {
      startElection(now);
      return;
    }
    preVoteTerm = currentTerm + 1;
    preVotes.clear();
    if (votesIn(accepted)) preVotes.add(selfKey);
    resetElectionDeadline(now);
    for (const ref of refsOf(accepted)) {
      const msg: PreVote = { type: 'preVote', ...envelope(ref, preVoteTerm), accepted: stateIdOf(accepted) };
      send(ref, msg);
    }
  }

  function startElection(now: number): void {
    preVoteTerm = null;
    if (!eligible()) return;
    currentTerm += 1;
    votedFor = selfKey;
    role = 'candidate';
    leader = null;
    votes.clear();
    if (votesIn(accepted)) votes.add(selfKey);
    resetElectionDeadline(now);
    noteRole();
    if (votes.size >= majority((accepted as ClusterState).members.length)) {
      becomeLeader(now);
      return;
    }
    for (const ref of refsOf(accepted)) {
      const msg: RequestVote = { type: 'requestVote', ...envelope(ref), accepted: stateIdOf(accepted) };
      send(ref, msg);
    }
  }

  function becomeLeader(now: number): void {
    role = 'leader';
    leader = self;
    electedAt = now;
    peers = new Map();
    roundSentAt.clear();
    round = 0;
    leaderLeaseUntil = -Infinity;
    lastQuorumSentAt = now;
    queue = [];
    inFlight = null;
    proposal = null;
    probeSince = null;
    const acc = accepted as ClusterState;
    // States between our committed state and our accepted state's predecessor are unknown to us; their
    // members may hold leases from an earlier leader that we cannot see. Those end by electedAt + leaseMs.
    const unknownBetween = committed === null || committed.version + 1 < acc.version;
    commitNotBefore = unknownBetween ? now + leaseMs + leaseMarginMs : -Infinity;
    noteRole();
    // Re-propose what we accepted in our own term: committing it commits anything a predecessor left.
    proposeState(applyChange(acc, { type: 'noop', changeId: 'reproposal' }).state, null, now);
    sendHeartbeat(now);
    advance(now);
  }

  // ---------------------------------------------------------------- leader: proposals and commits

  function audience(): MemberRef[] {
    return refsOf(committed, parent, accepted);
  }

  function proposeState(next: ClusterState, flight: InFlight | null, now: number): void {
    parent = accepted;
    const state: ClusterState = { ...next, term: currentTerm };
    proposal = state;
    inFlight = flight ?? { changeId: null, result: { ok: true } };
    accept(state);
    for (const ref of audience()) {
      const peer = peerOf(ref);
      peer.lastResendAt = now;
      const msg: Propose = { type: 'propose', ...envelope(ref), state };
      send(ref, msg);
    }
  }

  function leaseSafeAt(ref: MemberRef): number {
    const grant = peers.get(memberKey(ref))?.lastGrantSentAt ?? -Infinity;
    return Math.max(electedAt, grant) + leaseMs + leaseMarginMs;
  }

  /** Commits the proposal if (a), (b) and (c) hold; true when it did. */
  function tryCommit(now: number): boolean {
    if (role !== 'leader' || proposal === null) return false;
    const id = stateIdOf(proposal);
    const hasAccepted = (ref: MemberRef): boolean =>
      sameStateId(peers.get(memberKey(ref))?.accepted ?? null, id);
    // (a) a majority of the proposal's voters (self included when a member) accepted it.
    let acks = isMember(proposal, self.id, self.incarnation) ? 1 : 0;
    for (const ref of refsOf(proposal)) if (hasAccepted(ref)) acks++;
    if (acks < majority(proposal.members.length)) return false;
    // (c) unknown intermediate states: wait until leases of earlier leaders have surely ended.
    if (now < commitNotBefore) return false;
    // (b) everyone who may serve under an older state accepted this one, or its lease surely expired.
    const mayHoldLease = refsOf(committed, parent, proposal);
    for (const peer of peers.values()) if (peer.lastGrantSentAt !== null) mayHoldLease.push(peer.ref);
    for (const ref of mayHoldLease) {
      if (!hasAccepted(ref) && now < leaseSafeAt(ref)) return false;
    }
    commit(now);
    return true;
  }

  function commit(now: number): void {
    const state = proposal as ClusterState;
    const previous = committed;
    const flight = inFlight;
    committed = state;
    proposal = null;
    parent = null;
    inFlight = null;
    out.push({ type: 'committed', state });
    if (flight && flight.changeId !== null) {
      out.push({ type: 'changeDone', changeId: flight.changeId, result: flight.result });
    }
    for (const ref of refsOf(state)) {
      if (previous !== null && !isMember(previous, ref.id, ref.incarnation)) peerOf(ref).joinedAt = now;
    }
    // Members removed by this state are no longer heartbeated: tell them whole, so they learn it.
    for (const ref of refsOf(previous)) {
      if (!isMember(state, ref.id, ref.incarnation)) {
        const msg: Commit = { type: 'commit', ...envelope(ref), state };
        send(ref, msg);
        peers.delete(memberKey(ref));
      }
    }
    if (!isMember(state, self.id, self.incarnation)) {
      // We leave: hand the members the committed state now, so they elect a successor right away.
      for (const ref of refsOf(state)) {
        const msg: Commit = { type: 'commit', ...envelope(ref), state };
        send(ref, msg);
      }
      becomeRemoved(now);
      return;
    }
    // Commit broadcast: a heartbeat round carries the new committed id (followers hold the state already).
    sendHeartbeat(now);
  }

  /** Commits and proposes as far as possible right now (iterative: a lone member commits at once). */
  function advance(now: number): void {
    while (role === 'leader') {
      if (proposal !== null) {
        if (!tryCommit(now)) return;
      } else if (!proposeNext(now)) {
        return;
      }
    }
  }

  function suspected(ref: MemberRef, now: number): boolean {
    return now - (peers.get(memberKey(ref))?.lastAckAt ?? electedAt) > failureTimeoutMs;
  }

  /**
   * True while a member's join is fresh enough to spare it removal (JOIN_GRACE). Only removal: the quorum
   * checks keep counting it as what it is, since a configuration whose majority is gone is gone for good.
   */
  function inJoinGrace(ref: MemberRef, now: number): boolean {
    const joinedAt = peers.get(memberKey(ref))?.joinedAt ?? null;
    return joinedAt !== null && now - joinedAt <= JOIN_GRACE * failureTimeoutMs;
  }

  /**
   * True when a majority of `next`'s members is responsive (self, unsuspected peers, the joiner itself).
   * Without persistence a configuration whose majority is gone is gone for good, and an uncommitted one
   * still blocks elections (its holder is the most up to date), so a voter change that could not commit
   * right now is not proposed at all.
   */
  function keepsQuorum(next: ClusterState, joining: MemberRef | null, now: number): boolean {
    let responsive = 0;
    for (const m of next.members) {
      if (sameMember(m, self) || sameMember(m, joining ?? undefined) || !suspected(m, now)) responsive++;
    }
    return responsive >= majority(next.members.length);
  }

  /**
   * A joiner is added only after it answered this leader recently: a join request may have waited in the
   * queue while its process died, and adding a dead member to a small configuration (1 -> 2) would leave a
   * configuration without a live majority for good. Probes with lease-less heartbeats for up to
   * failureTimeoutMs.
   */
  function probeJoiner(joining: MemberRef, now: number): 'ready' | 'wait' | 'unreachable' {
    const peer = peerOf(joining);
    if (peer.lastAckAt !== null && now - peer.lastAckAt <= failureTimeoutMs / 2) {
      probeSince = null;
      return 'ready';
    }
    if (probeSince === null || probeSince.key !== memberKey(joining)) {
      probeSince = { key: memberKey(joining), at: now };
    } else if (now - probeSince.at > failureTimeoutMs) {
      probeSince = null;
      return 'unreachable';
    }
    if (now - peer.lastResendAt >= heartbeatIntervalMs) {
      peer.lastResendAt = now;
      const msg: Heartbeat = {
        type: 'heartbeat',
        ...envelope(joining),
        round,
        leaseFrom: null,
        leaseMs: 0,
        committed: stateIdOf(committed),
        proposal: stateIdOf(accepted),
      };
      send(joining, msg);
    }
    return 'wait';
  }

  /** Proposes a due removal, else the next queued change that applies; false when there is nothing to do. */
  function proposeNext(now: number): boolean {
    // Dead members go first: their partitions are unserved until they are gone.
    const removal = dueRemoval(now);
    if (removal !== null) {
      proposeState(removal, null, now);
      return true;
    }
    while (queue.length > 0) {
      const head = queue[0] as Pending;
      const change = head.change;
      const base = accepted as ClusterState;
      const finish = (result: ChangeResult): void => {
        queue.shift();
        out.push({ type: 'changeDone', changeId: change.changeId, result });
      };
      const refuseNoQuorum = (): void => {
        queue.shift();
        out.push({ type: 'changeFailed', changeId: change.changeId, reason: 'no-quorum' });
      };
      const joining = change.type === 'addMember' ? change.member : null;
      if (joining && !isMember(base, joining.id, joining.incarnation)) {
        if (!removedIdentities.has(memberKey(joining))) {
          const probe = probeJoiner(joining, now);
          if (probe === 'wait') return false;
          if (probe === 'unreachable') {
            queue.shift();
            out.push({ type: 'changeFailed', changeId: change.changeId, reason: 'unreachable' });
            continue;
          }
        }
        if (removedIdentities.has(memberKey(joining))) {
          finish({ ok: false, error: 'stale-incarnation' });
          // If that incarnation still runs (removed before it ever committed), this tells it to restart.
          const notice: Commit = { type: 'commit', ...envelope(joining), state: committed as ClusterState };
          send(joining, notice);
          continue;
        }
        const old = base.members.find((m) => m.id === joining.id);
        if (old && old.incarnation < joining.incarnation) {
          // A restarted process: remove its old incarnation first (one voter per change); the add stays queued.
          const removal = applyChange(base, {
            type: 'removeMember',
            changeId: `replace:${memberKey(old)}`,
            id: old.id,
            incarnation: old.incarnation,
          });
          if (removal.result.ok) {
            if (!keepsQuorum(removal.state, null, now)) {
              refuseNoQuorum();
              continue;
            }
            proposeState(removal.state, null, now);
            return true;
          }
        }
      }
      const applied = applyChange(base, change);
      if (!applied.result.ok) {
        finish(applied.result);
        continue;
      }
      if (isVoterChange(change) && !keepsQuorum(applied.state, joining, now)) {
        refuseNoQuorum();
        continue;
      }
      queue.shift();
      proposeState(applied.state, { changeId: change.changeId, result: applied.result }, now);
      return true;
    }
    return false;
  }

  function sendHeartbeat(now: number): void {
    round += 1;
    roundSentAt.set(round, now);
    roundSentAt.delete(round - ROUND_HISTORY);
    nextHeartbeatAt = now + heartbeatIntervalMs;
    updateLeaderLease(now);
    const committedId = stateIdOf(committed);
    const proposalId = stateIdOf(accepted);
    const committedInOwnTerm = committed !== null && committed.term === currentTerm;
    for (const ref of audience()) {
      const peer = peerOf(ref);
      let grant = 0;
      // Grants go only to unsuspected members of the committed state whose last ack showed that same committed
      // state (a grant it cannot use would only delay commits that wait for its lease), never beyond our lease,
      // and only once we committed a state of our own term: until then our committed state may be older than
      // one a predecessor committed, and a member that state removed would serve from the older one.
      if (
        committedInOwnTerm &&
        !suspected(ref, now) &&
        peer.echo !== null &&
        sameStateId(peer.committed, committedId) &&
        isMember(committed, ref.id, ref.incarnation)
      ) {
        grant = Math.max(0, Math.min(leaseMs, leaderLeaseUntil - now));
      }
      if (grant > 0) peer.lastGrantSentAt = now;
      const msg: Heartbeat = {
        type: 'heartbeat',
        ...envelope(ref),
        round,
        leaseFrom: grant > 0 ? peer.echo : null,
        leaseMs: grant,
        committed: committedId,
        proposal: proposalId,
      };
      send(ref, msg);
    }
  }

  /** Leader's own lease: send time of the newest round acked by a majority of both committed and accepted. */
  function updateLeaderLease(now: number): void {
    let quorumRound = Infinity;
    for (const config of [committed, accepted]) {
      if (config === null) continue;
      const rounds: number[] = [];
      for (const m of config.members) {
        if (m.id === self.id && m.incarnation === self.incarnation) rounds.push(round);
        else rounds.push(peers.get(memberKey(m))?.ackedRound ?? 0);
      }
      rounds.sort((a, b) => b - a);
      quorumRound = Math.min(quorumRound, rounds[majority(rounds.length) - 1] ?? 0);
    }
    const sentAt = roundSentAt.get(quorumRound);
    if (sentAt === undefined) return;
    lastQuorumSentAt = Math.max(lastQuorumSentAt, sentAt);
    leaderLeaseUntil = Math.max(leaderLeaseUntil, sentAt + leaseMs);
    // Only our own send time is used: every acker received the round after we sent it.
    extendLease(leaderLeaseUntil, now);
  }

  /**
   * The removal of a member that is suspected and whose lease has surely expired, if one is due and leaves a
   * responsive majority. Decided when proposing (not queued earlier), so a member that recovered in the
   * meantime is kept.
   */
  function dueRemoval(now: number): ClusterState | null {
    const base = accepted as ClusterState;
    for (const ref of refsOf(committed)) {
      if (!isMember(base, ref.id, ref.incarnation)) continue;
      if (!suspected(ref, now) || inJoinGrace(ref, now) || now < leaseSafeAt(ref)) continue;
      const applied = applyChange(base, {
        type: 'removeMember',
        changeId: `auto-remove:${memberKey(ref)}`,
        id: ref.id,
        incarnation: ref.incarnation,
      });
      if (applied.result.ok && keepsQuorum(applied.state, null, now)) return applied.state;
    }
    return null;
  }

  /** Re-sends the proposal or the committed state to a peer whose ack shows it lagging (rate-limited). */
  function catchUp(peer: Peer, now: number): void {
    if (now - peer.lastResendAt < heartbeatIntervalMs) return;
    const ref = peer.ref;
    if (!isMember(committed, ref.id, ref.incarnation) && !isMember(accepted, ref.id, ref.incarnation)) return;
    if (proposal !== null && compareStateIds(peer.accepted, stateIdOf(proposal)) < 0) {
      peer.lastResendAt = now;
      const msg: Propose = { type: 'propose', ...envelope(ref), state: proposal };
      send(ref, msg);
    } else if (
      committed !== null &&
      isMember(committed, ref.id, ref.incarnation) &&
      compareStateIds(peer.committed, stateIdOf(committed)) < 0 &&
      !sameStateId(peer.accepted, stateIdOf(committed))
    ) {
      peer.lastResendAt = now;
      const msg: Commit = { type: 'commit', ...envelope(ref), state: committed };
      send(ref, msg);
    }
  }

  // ---------------------------------------------------------------- message handlers

  function ackTo(ref: MemberRef, round: number | null, success: boolean, now: number): void {
    const msg: Ack = {
      type: 'ack',
      ...envelope(ref),
      round,
      success,
      accepted: stateIdOf(accepted),
      committed: stateIdOf(committed),
      sentAt: now,
    };
    send(ref, msg);
  }

  /** Common part of messages only a leader sends; false when the message must be ignored. */
  function fromLeader(msg: Propose | Heartbeat, sender: MemberRef, now: number): boolean {
    if (msg.term < currentTerm) {
      ackTo(sender, msg.type === 'heartbeat' ? msg.round : null, false, now);
      return false;
    }
    if (role === 'leader' && msg.term === currentTerm) return false; // cannot happen: one leader per term
    if (msg.term > currentTerm || role !== 'follower') becomeFollower(msg.term, now);
    if (leader === null) {
      leader = sender;
      noteRole();
    } else if (!sameMember(leader, sender)) {
      return false;
    }
    lastLeaderContact = now;
    preVoteTerm = null;
    resetElectionDeadline(now);
    return true;
  }

  function onPropose(msg: Propose, sender: MemberRef, now: number): void {
    if (!fromLeader(msg, sender, now)) return;
    const state = msg.state;
    // A joiner only takes a state that includes it; members take every newer state (removals too).
    const joinerRefuses = committed === null && !isMember(state, self.id, self.incarnation);
    if (!joinerRefuses && compareStateIds(stateIdOf(state), stateIdOf(accepted)) > 0) accept(state);
    ackTo(sender, null, true, now);
  }

  function onHeartbeat(msg: Heartbeat, sender: MemberRef, now: number): void {
    if (!fromLeader(msg, sender, now)) return;
    if (
      msg.committed !== null &&
      accepted !== null &&
      sameStateId(msg.committed, stateIdOf(accepted)) &&
      compareStateIds(msg.committed, stateIdOf(committed)) > 0
    ) {
      adoptCommitted(accepted, now);
      if (removed) return;
    }
    // A grant counts only when our committed state is the leader's: a member that missed commits must not
    // serve from a state the leader no longer protects.
    if (
      msg.leaseMs > 0 &&
      msg.leaseFrom !== null &&
      sameStateId(msg.committed, stateIdOf(committed)) &&
      isMember(committed, self.id, self.incarnation)
    ) {
      extendLease(msg.leaseFrom + Math.min(msg.leaseMs, leaseMs), now);
    }
    ackTo(sender, msg.round, true, now);
  }

  function onAck(msg: Ack, sender: MemberRef, now: number): void {
    if (msg.term > currentTerm) {
      becomeFollower(msg.term, now);
      return;
    }
    if (role !== 'leader' || msg.term !== currentTerm || !msg.success) return;
    const key = memberKey(sender);
    const peer = peers.get(key);
    if (!peer) return;
    // Liveness is dated by when we SENT the round it acks, not when the ack arrived: acks that sat in a
    // buffer (a slow link, our own pause) must not make a member that died since look alive.
    const roundAt = msg.round === null ? undefined : roundSentAt.get(msg.round);
    if (roundAt !== undefined && roundAt > (peer.lastAckAt ?? -Infinity)) peer.lastAckAt = roundAt;
    peer.echo = peer.echo === null ? msg.sentAt : Math.max(peer.echo, msg.sentAt);
    peer.accepted = maxId(peer.accepted, msg.accepted);
    peer.committed = maxId(peer.committed, msg.committed);
    if (msg.round !== null && msg.round > peer.ackedRound) {
      peer.ackedRound = msg.round;
      updateLeaderLease(now);
    }
    catchUp(peer, now);
    advance(now);
  }

  function onCommit(msg: Commit, now: number): void {
    const state = msg.state;
    if (committed === null && !isMember(state, self.id, self.incarnation)) {
      // Nobody sends a joiner a committed state without it unless it was added and removed again (it never
      // answered in time) or its join was refused as stale: either way this incarnation is finished.
      becomeRemoved(now);
      return;
    }
    adoptCommitted(state, now);
  }

  /** A vote request from a member our committed state no longer has: tell it, so it can rejoin. */
  function relayCommitted(sender: MemberRef, senderAccepted: StateId | null): void {
    if (committed === null || isMember(committed, sender.id, sender.incarnation)) return;
    if (compareStateIds(senderAccepted, stateIdOf(committed)) > 0) return;
    const msg: Commit = { type: 'commit', ...envelope(sender), state: committed };
    send(sender, msg);
  }

  /** Raft leader stickiness: while a leader is known to be alive, nobody votes the cluster into a new term. */
  function leaderAlive(now: number): boolean {
    return role === 'leader' || now - lastLeaderContact < electionMin;
  }

  function onPreVote(msg: PreVote, sender: MemberRef, now: number): void {
    const granted =
      msg.term > currentTerm && !leaderAlive(now) && compareStateIds(msg.accepted, stateIdOf(accepted)) >= 0;
    const reply: PreVoteReply = { type: 'preVoteReply', ...envelope(sender), forTerm: msg.term, granted };
    send(sender, reply);
    relayCommitted(sender, msg.accepted);
  }

  function onPreVoteReply(msg: PreVoteReply, sender: MemberRef, now: number): void {
    if (!msg.granted && msg.term > currentTerm) {
      // Refused by a member of a later term: catch up with it (as etcd does), or our next pre-vote would ask
      // for a term it has already passed and be refused forever.
      becomeFollower(msg.term, now);
      return;
    }
    if (preVoteTerm === null || msg.forTerm !== preVoteTerm || !msg.granted || role === 'leader') return;
    if (!isMember(accepted, sender.id, sender.incarnation)) return;
    preVotes.add(memberKey(sender));
    if (preVotes.size >= majority((accepted as ClusterState).members.length)) startElection(now);
  }

  function onRequestVote(msg: RequestVote, sender: MemberRef, now: number): void {
    relayCommitted(sender, msg.accepted);
    if (msg.term > currentTerm && leaderAlive(now)) {
      const deny: Vote = { type: 'vote', ...envelope(sender), granted: false };
      send(sender, deny);
      return;
    }
    if (msg.term > currentTerm) becomeFollower(msg.term, now);
    const key = memberKey(sender);
    const granted =
      msg.term === currentTerm &&
      (votedFor === null || votedFor === key) &&
      compareStateIds(msg.accepted, stateIdOf(accepted)) >= 0;
    if (granted) {
      votedFor = key;
      resetElectionDeadline(now);
    }
    const reply: Vote = { type: 'vote', ...envelope(sender), granted };
    send(sender, reply);
  }

  function onVote(msg: Vote, sender: MemberRef, now: number): void {
    if (msg.term > currentTerm) {
      becomeFollower(msg.term, now);
      return;
    }
    if (role !== 'candidate' || msg.term !== currentTerm || !msg.granted) return;
    if (!isMember(accepted, sender.id, sender.incarnation)) return;
    votes.add(memberKey(sender));
    if (votes.size >= majority((accepted as ClusterState).members.length)) becomeLeader(now);
  }

  // ---------------------------------------------------------------- serving

  const NONE_SERVED = { partitions: [] as number[], mask: new Uint8Array(0) };

  function primaryPartitions(): { partitions: number[]; mask: Uint8Array } {
    if (committed === null || accepted === null) return NONE_SERVED;
    if (servingCache && servingCache.committed === committed && servingCache.accepted === accepted) {
      return servingCache;
    }
    const partitions: number[] = [];
    const mask = new Uint8Array(committed.partitionCount);
    // With accepted more than one version ahead, a state between them (committed elsewhere, unknown here)
    // may have given p to someone else who serves it now. Accepted is committed or its direct successor.
    if (
      accepted.version - committed.version <= 1 &&
      isMember(committed, self.id, self.incarnation) &&
      isMember(accepted, self.id, self.incarnation) &&
      committed.partitionCount === accepted.partitionCount
    ) {
      const a = partitionTableFor(committed, 1);
      const b = partitionTableFor(accepted, 1);
      for (let p = 0; p < committed.partitionCount; p++) {
        if (sameMember(a.primary(p), self) && sameMember(b.primary(p), self)) {
          partitions.push(p);
          mask[p] = 1;
        }
      }
    }
    servingCache = { committed, accepted, partitions, mask };
    return servingCache;
  }

  function hasLease(now: number): boolean {
    return !removed && now < leaseUntil;
  }

  // ---------------------------------------------------------------- public API

  function run(now: number, body: () => void): ConsensusOutput[] {
    out = [];
    if (!removed) {
      body();
      checkLease(now);
    }
    const result = out;
    out = [];
    return result;
  }

  return {
    self,
    get role() {
      return role;
    },
    get term() {
      return currentTerm;
    },
    get leaderId() {
      return leader?.id ?? null;
    },
    get accepted() {
      return accepted;
    },
    get committed() {
      return committed;
    },
    get leaseUntil() {
      return leaseUntil;
    },
    get removed() {
      return removed;
    },
    hasLease,
    isServingPrimary(now, partition) {
      // Called for every page op: a mask lookup, not a scan of up to partitionCount entries.
      return hasLease(now) && primaryPartitions().mask[partition] === 1;
    },
    servingPartitions(now) {
      return hasLease(now) ? primaryPartitions().partitions : [];
    },
    nextTickAt() {
      if (removed) return Infinity;
      let next = leaseHeld ? leaseUntil : Infinity;
      if (role === 'leader') next = Math.min(next, nextHeartbeatAt);
      else if (electionDeadline === null) next = -Infinity;
      else if (eligible()) next = Math.min(next, electionDeadline);
      return next;
    },
    tick(now) {
      return run(now, () => {
        if (electionDeadline === null) {
          resetElectionDeadline(now);
          if (soleVoter()) startElection(now);
        }
        if (role === 'leader') {
          if (now >= nextHeartbeatAt) sendHeartbeat(now);
          if (role === 'leader' && now - lastQuorumSentAt > quorumTimeoutMs) {
            becomeFollower(currentTerm, now);
            return;
          }
          advance(now);
        } else if (eligible() && now >= (electionDeadline as number)) {
          startPreVote(now);
        }
      });
    },
    receive(from, message, now) {
      return run(now, () => {
        if (message.from !== from) return;
        const sender = refOf(message.from, message.fromIncarnation);
        if (sender.id === self.id) return;
        if (message.toIncarnation !== self.incarnation) {
          // Meant for our previous incarnation. A campaigner that still counts on it was probably removed
          // while cut off and has nobody else to learn it from: tell it (when we know the committed state).
          if (message.type === 'preVote' || message.type === 'requestVote') {
            relayCommitted(sender, message.accepted);
          }
          return;
        }
        switch (message.type) {
          case 'preVote':
            onPreVote(message, sender, now);
            break;
          case 'preVoteReply':
            onPreVoteReply(message, sender, now);
            break;
          case 'requestVote':
            onRequestVote(message, sender, now);
            break;
          case 'vote':
            onVote(message, sender, now);
            break;
          case 'propose':
            onPropose(message, sender, now);
            break;
          case 'heartbeat':
            onHeartbeat(message, sender, now);
            break;
          case 'ack':
            onAck(message, sender, now);
            break;
          case 'commit':
            onCommit(message, now);
            break;
        }
      });
    },
    propose(change, now) {
      if (removed || role !== 'leader') return { ok: false, leaderId: leader?.id ?? null };
      const outputs = run(now, () => {
        const pending =
          inFlight?.changeId === change.changeId || queue.some((p) => p.change.changeId === change.changeId);
        if (pending) return;
        queue.push({ change });
        advance(now);
      });
      return { ok: true, outputs };
    },
  };
}
