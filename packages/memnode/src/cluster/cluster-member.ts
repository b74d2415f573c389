// Wires one node's consensus core to the network, the clock and the page store. The core decides; this
// module delivers its messages, applies accepted and committed states to the store, keeps the serving rule,
// joins and leaves the cluster, and tells subscribed clients about every committed state.
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import {
  ErrorCode,
  MAX_LISTED_UNDER_REPLICATED,
  TmemError,
  readyMemberCount,
  underReplicatedPools,
  type ChangeResult as ChangeResultFrame,
  type ClientFrame,
  type ClusterState,
  type NodeFrame,
  type Codec,
  type MemberInfo,
} from '@tmem/protocol';
import type { Logger } from '../logger.ts';
import type { PageStore } from '../page-store.ts';
import { StateChange, isMember, type ChangeResult } from './cluster-state.ts';
import { newPoolIdKey } from './pool-ids.ts';
import { createSharers, type Sharers } from './sharers.ts';
import { ConsensusMessage } from './consensus-messages.ts';
import { createConsensus, type Consensus, type ConsensusOutput } from './consensus.ts';
import type { ConsensusOptions } from './consensus-options.ts';
import { createPageRetention, leaseLossFirst, type PageDrop, type PageRetention } from './page-retention.ts';
import { createPeerLinks, type PeerLinkTiming, type PeerLinks } from './peer-links.ts';
import {
  createEphemeralHandOver,
  DEFAULT_EPHEMERAL_HAND_OVER,
  type EphemeralHandOver,
  type EphemeralHandOverOptions,
} from './ephemeral-hand-over.ts';
import { createReplication, type Replication } from '../replication/replication.ts';
import { createServingRule, type ServingRule } from '../serving-view.ts';

/** Timing of the coordination protocol; see ConsensusOptions for each default. */
export type ClusterTiming = Pick<
  ConsensusOptions,
  'heartbeatIntervalMs' | 'electionTimeoutMs' | 'leaseMs' | 'leaseMarginMs' | 'failureTimeoutMs'
>;

/** Options of a cluster member. */
export interface ClusterMemberOptions {
  nodeId: string;
  /**
   * Where peers and clients reach this node: the URL put into the cluster state and peer handshakes. It may
   * differ from the address the node listens on (a proxy in front of it, see `--advertise-url`).
   */
  url: string;
  /** Local IP address of this node's outgoing peer links. @default chosen by the operating system */
  sourceAddress?: string;
  /** CA certificates (PEM) a wss:// peer's certificate must chain to. @default Node's bundled root CAs */
  peerCa?: Buffer;
  capacityBytes: number;
  /** Nodes to join through. Empty: this node founds a new cluster. */
  seeds: readonly string[];
  /** Partitions of a new cluster (ignored when joining: the cluster's count wins). @default 1024 */
  partitionCount?: number;
  store: PageStore;
  codec: Codec;
  logger: Logger;
  timing?: ClusterTiming;
  /** Secret sent in peer handshakes; peers with a secret configured refuse links without it. */
  clusterSecret?: string;
  /** Liveness, dial and redial timing of the links to other nodes. @default DEFAULT_PEER_LINK_TIMING */
  peerLinks?: PeerLinkTiming;
  /** How long a state change (join, leave, pool) may take before it fails with NO_COORDINATOR. @default 10000 */
  changeTimeoutMs?: number;
  /** How long a primary waits for the other owners of a persistent page. @default 3000 */
  replicationTimeoutMs?: number;
  /** How long a graceful leave waits for its partitions to be copied before it leaves anyway. @default 30000 */
  handOverTimeoutMs?: number;
  /** The budget of handing ephemeral pages over to new primaries. @default DEFAULT_EPHEMERAL_HAND_OVER */
  ephemeralHandOver?: EphemeralHandOverOptions;
  /** Fault injection for tests (see MemnodeOptions.testCorruptOidPrefix). */
  testCorruptOidPrefix?: string;
  /** Pause after the first round of join attempts that all failed; it doubles each round. @default 100 */
  joinRetryMinMs?: number;
  /** Longest pause between two rounds of join attempts. @default 1000 */
  joinRetryMaxMs?: number;
}

/** How joining is going, for a launcher that must tell a slow join from one that cannot succeed. */
export interface JoinStatus {
  /** Join attempts made so far (one per seed tried). */
  attempts: number;
  /** The seed of the last failed attempt and why it failed; null before any failure. */
  lastFailure: { seed: string; error: Error } | null;
  /**
   * Set when a seed refused this node itself (its peer handshake: UNAUTHORIZED for a wrong or missing cluster
   * secret, VERSION_MISMATCH): retrying cannot help, so the join loop has stopped.
   */
  refused: { seed: string; error: TmemError } | null;
}

/** A change as callers propose it; the member adds the change id. */
export type ChangeRequest = StateChange extends infer C
  ? C extends StateChange
    ? Omit<C, 'changeId'>
    : never
  : never;

/** What `describe()` reports. */
export interface MemberDescription {
  stateVersion: number;
  incarnation: number;
  role: 'leader' | 'follower' | 'candidate' | 'joining' | 'leaving';
  leaseHeld: boolean;
  servingPartitions: number;
  fillingPartitions: number;
  lostPartitions: number;
  copiedPages: number;
  replicationBacklog: number;
  /** Persistent pools asking for more copies than there are ready members (their puts are refused). */
  underReplicated: number;
  /** The first MAX_LISTED_UNDER_REPLICATED of them. */
  underReplicatedPools: { pool: number; replication: number; readyMembers: number }[];
  /** Ephemeral hand-over counters (see NodeStats). */
  handOffSent: number;
  handOffDropped: number;
  handOffStored: number;
  handOffSkipped: number;
}

/** This node as a member of the cluster. */
export interface ClusterMember {
  readonly nodeId: string;
  /** The incarnation currently running (a new one after this node was removed and rejoined). */
  incarnation(): number;
  /** The latest committed state this node knows, or null while it is still joining. */
  committed(): ClusterState | null;
  leaderId(): string | null;
  /**
   * The id of the cluster this process serves or has served (kept through a rejoin), or undefined while it
   * has never been a member. It never changes within one process: only a restart (empty) joins another.
   */
  clusterId(): string | undefined;
  /**
   * The serving rule of page ops of both pool kinds: the view of the current states (pools, partition masks,
   * membership) and the one check each op gets. Replication's `checkLease` goes through it too.
   */
  readonly serving: ServingRule;
  /** Gets a change committed (forwarding to the coordinator as needed) within the change timeout. */
  propose(change: ChangeRequest): Promise<ChangeResult>;
  /**
   * Sends another member the request `build(id)` over this node's peer link to it and resolves with its reply of
   * type `expect` (an error reply rejects); CONNECTION_LOST when the member's address is unknown.
   */
  callMember<K extends NodeFrame['t']>(
    memberId: string,
    build: (id: number) => ClientFrame,
    expect: K,
    timeoutMs: number,
  ): Promise<Extract<NodeFrame, { t: K }>>;
  /** Answers a `propose` frame from another node; `forwarded` ones are not relayed again. */
  handleProposeFrame(change: unknown, forwarded: boolean): Promise<Omit<ChangeResultFrame, 'id'>>;
  /** Records where a peer that connected to us listens (from its handshake). */
  notePeerAddress(id: string, url: string): void;
  /** Feeds a coordination message from another node (validated here). */
  /** A consensus message from the authenticated peer `senderId`; one claiming another sender is dropped. */
  receivePeerMessage(message: unknown, senderId: string): void;
  /**
   * This member's coordination facts for statistics and `tmem status`. With `owner`, underReplicated and
   * underReplicatedPools count only that identity's pools (its 'identity'-scoped stats).
   */
  describe(owner?: string): MemberDescription;
  /** How the join of this process is going (all zero and null for a founder). */
  joinStatus(): JoinStatus;
  /** The accepted (possibly not yet committed) state. */
  accepted(): ClusterState | null;
  /** Persistent pools: replication, copies and the reads and writes that need them. */
  readonly replication: Replication;
  /** Ephemeral pools: the hand-over of pages to new primaries, and the gates of partitions waiting for them. */
  readonly handOver: EphemeralHandOver;
  /** Shared pools: who shares each one, as the node's latest applied state says (sharers.ts). */
  readonly sharers: Pick<Sharers, 'has'>;
  /** Calls `listener` with every newly committed state; returns the unsubscribe function. */
  onCommitted(listener: (state: ClusterState, leaderId: string | null) => void): () => void;
  /**
   * Leaves gracefully: stops serving, gets its own removal committed (partitions move), then resolves with
   * whether it did (false: it was alone, already leaving or closed, or the removal did not commit).
   */
  leave(): Promise<boolean>;
  close(): void;
}

/**
 * Refusals of this node's handshake, and a seed whose TLS certificate this node does not trust: no retry
 * changes them, only restarting it (or the seed) with other settings.
 */
const FATAL_JOIN_CODES = new Set<string>([
  ErrorCode.Unauthorized,
  ErrorCode.VersionMismatch,
  ErrorCode.CertificateRejected,
]);

const now = () => performance.now();
const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Starts this node's cluster membership: founds a cluster or joins one through `seeds`. */
export function createClusterMember(options: ClusterMemberOptions): ClusterMember {
  const { nodeId, store, logger } = options;
  const log = logger.child({ component: 'cluster' });
  const changeTimeoutMs = options.changeTimeoutMs ?? 10_000;
  const links: PeerLinks = createPeerLinks({
    selfId: nodeId,
    selfUrl: options.url,
    ...(options.clusterSecret === undefined ? {} : { secret: options.clusterSecret }),
    ...(options.sourceAddress === undefined ? {} : { localAddress: options.sourceAddress }),
    ...(options.peerCa === undefined ? {} : { ca: options.peerCa }),
    codec: options.codec,
    logger,
    ...(options.peerLinks === undefined ? {} : { timing: options.peerLinks }),
    clusterId: () => servedClusterId,
  });
  const committedListeners = new Set<(state: ClusterState, leaderId: string | null) => void>();
  const changeWaiters = new Map<string, { resolve(r: ChangeResult): void; reject(e: Error): void }>();
  /** Member id -> URL, from every state seen; consensus names peers by id only. */
  const addresses = new Map<string, string>();
  let closed = false;
  let leaving = false;
  let timer: NodeJS.Timeout | null = null;
  // Incarnations grow across restarts (wall clock at start) and across rejoins of one process (+1).
  let incarnation = Date.now();
  /** The cluster this process serves; set by founding or by the first committed state that lists it. */
  let servedClusterId: string | undefined;
  let consensus: Consensus = startConsensus(options.seeds.length === 0);
  /** Decides which pages go when (see page-retention.ts); one instance per incarnation. */
  let retention: PageRetention = createPageRetention({
    selfId: nodeId,
    incarnation,
    committedVersion: consensus.committed?.version ?? 0,
  });
  /** Pools this member created in the store (from states), so destroyed ones can be found. */
  const poolsInStore = new Set<number>();
  const sharers = createSharers();
  // The one serving rule (serving-view.ts): its view follows the consensus core's states (a new core after a
  // rejoin included), so nothing here has to invalidate it.
  const serving: ServingRule = createServingRule({
    nodeId,
    incarnation: () => incarnation,
    committed: () => consensus.committed,
    accepted: () => consensus.accepted,
    hasLease: (t) => consensus.hasLease(t),
    leaving: () => leaving,
    now,
  });
  /** The committed state handled last: what replication compares the next one with. */
  let lastCommitted: ClusterState | null = null;
  /**
   * The newest state accepted or committed before the one being handled: what the hand-over compares an accepted
   * state with. Not the committed state alone: a commit may be learned after the next proposal was accepted,
   * and the store already follows every accepted state (page retention drops at each accept).
   */
  let lastApplied: ClusterState | null = null;
  const noteApplied = (state: ClusterState) => {
    if (lastApplied === null || state.version >= lastApplied.version) lastApplied = state;
  };
  const replication: Replication = createReplication({
    store,
    logger,
    ...(options.replicationTimeoutMs === undefined
      ? {}
      : { replicationTimeoutMs: options.replicationTimeoutMs }),
    ...(options.testCorruptOidPrefix === undefined
      ? {}
      : { testCorruptOidPrefix: options.testCorruptOidPrefix }),
    cluster: {
      nodeId,
      incarnation: () => incarnation,
      committed: () => consensus.committed,
      accepted: () => consensus.accepted,
      checkLease: (stateVersion) => serving.checkLease(stateVersion),
      servingView: () => serving.view(),
      call: callMember,
      setPhase,
    },
  });

  /** A request to another member, by id (PeerLinks.call); CONNECTION_LOST when its address is unknown. */
  function callMember<K extends NodeFrame['t']>(
    memberId: string,
    build: (id: number) => ClientFrame,
    expect: K,
    timeoutMs: number,
  ): Promise<Extract<NodeFrame, { t: K }>> {
    const url = addresses.get(memberId);
    if (url === undefined) {
      return Promise.reject(new TmemError(ErrorCode.ConnectionLost, `no address for member ${memberId}`));
    }
    return links.call(url, build, expect, timeoutMs);
  }

  /** Gets this member's phase committed (`ifVersion`: only if the state is still at that version). */
  async function setPhase(phase: 'ready' | 'leaving', ifVersion?: number): Promise<void> {
    const result = await propose({
      type: 'setPhase',
      id: nodeId,
      incarnation,
      phase,
      ...(ifVersion === undefined ? {} : { ifVersion }),
    });
    if (!result.ok) throw new TmemError(ErrorCode.NoCoordinator, `phase change refused: ${result.error}`);
  }

  /** 0: no ephemeral hand-over, the leave is today's (the node does not become `leaving` for it). */
  const ephemeralBudgetMs = options.ephemeralHandOver?.timeoutMs ?? DEFAULT_EPHEMERAL_HAND_OVER.timeoutMs;
  const handOver: EphemeralHandOver = createEphemeralHandOver({
    selfId: nodeId,
    incarnation,
    store,
    logger,
    ...(options.ephemeralHandOver === undefined ? {} : { options: options.ephemeralHandOver }),
    call: (memberId, build, timeoutMs) => callMember(memberId, build, 'handedOff', timeoutMs),
  });

  function selfInfo(): MemberInfo {
    return { id: nodeId, url: options.url, incarnation, capacityBytes: options.capacityBytes };
  }

  function startConsensus(bootstrap: boolean): Consensus {
    const self = selfInfo();
    const initialState: ClusterState | undefined = bootstrap
      ? {
          version: 1,
          term: 0,
          members: [self],
          pools: [],
          nextPoolId: 1,
          // Drawn once, like the cluster id: it keeps every later pool id unguessable (pool-ids.ts).
          poolIdKey: newPoolIdKey(),
          partitionCount: options.partitionCount ?? 1024,
          clusterId: randomUUID(),
        }
      : undefined;
    if (initialState !== undefined) servedClusterId = initialState.clusterId;
    return createConsensus({
      self: { id: nodeId, incarnation },
      ...(initialState ? { initialState } : {}),
      random: Math.random,
      ...options.timing,
    });
  }

  function learnAddresses(state: ClusterState | null): void {
    for (const member of state?.members ?? []) addresses.set(member.id, member.url);
  }

  // ---- applying states to the store

  /**
   * Applies a page-retention decision to the store, synchronously: a drop for an ACCEPTED state must be done
   * before the ack goes out, so an old owner never keeps pages a new owner may overwrite; if the partition
   * comes back later, gets miss instead of returning stale data (get-get coherency through flapping).
   */
  function applyDrop(drop: PageDrop | null): void {
    if (drop === null) return;
    if (drop.type === 'all') {
      const dropped = store.removePages(() => true);
      log.warn({ reason: drop.reason, dropped }, 'dropped every page');
      return;
    }
    const { owned } = drop;
    // Persistent pages have their own rule (replication): a node keeps the copies it is an owner of.
    const dropped = store.removePages(
      (pool, hash) => pool.kind === 'ephemeral' && owned[hash % owned.length] === 0,
    );
    if (dropped > 0) log.info({ version: drop.version, dropped }, 'dropped pages of partitions moved away');
  }

  /** Creates pools the state has and the store lacks; destroys pools the state no longer has. */
  function syncPools(state: ClusterState, destroy: boolean): void {
    const wanted = new Set<number>();
    for (const pool of state.pools) {
      wanted.add(pool.id);
      if (store.getPool(pool.id) === undefined) {
        store.createPool({
          id: pool.id,
          kind: pool.kind,
          pageSize: pool.pageSize,
          owner: pool.owner,
          ...(pool.compression === undefined ? {} : { compression: pool.compression }),
          ...(pool.shared === undefined ? {} : { shared: true }),
        });
        poolsInStore.add(pool.id);
      }
    }
    // A sharer that left takes the objects it put to last with it, on every node, as each applies the state
    // (an accepted one too, before its ack: by commit no member still holds them).
    for (const { pool, identity } of sharers.update(state)) {
      if (store.getPool(pool)?.shared !== true) continue;
      const flushed = store.flushObjectsPutBy(pool, identity);
      log.info({ pool, identity, flushed }, 'sharer left; flushed the objects it put to last');
    }
    if (!destroy) return;
    for (const id of poolsInStore) {
      if (wanted.has(id)) continue;
      store.destroyPool(id);
      poolsInStore.delete(id);
    }
  }

  // ---- driving the core

  function handle(output: ConsensusOutput): void {
    switch (output.type) {
      case 'send': {
        const url = addresses.get(output.to);
        if (url === undefined) log.debug({ to: output.to, type: output.message.type }, 'no address; dropped');
        else links.send(url, output.message);
        return;
      }
      case 'accepted':
        syncPools(output.state, false);
        // The copies for the hand-over are taken before the drop, from the same store contents. After a lapse
        // they are current only if the state they follow was committed (not a proposal that may have lost):
        // then the gap rule at this state's commit decides, and a wipe there discards them.
        handOver.onAccepted(
          lastApplied,
          output.state,
          !retention.leaseLapsed || (lastApplied !== null && lastApplied === lastCommitted),
        );
        noteApplied(output.state);
        applyDrop(retention.onAccepted(output.state));
        return;
      case 'committed': {
        if (servedClusterId === undefined && isMember(output.state, nodeId, incarnation)) {
          servedClusterId = output.state.clusterId;
          log.info({ clusterId: servedClusterId }, 'serving cluster');
        }
        // Everything goes when the lease had lapsed and a committed state may have gone by unseen; else the
        // pages of partitions not owned (normally nothing: the same state was accepted first).
        const drop = retention.onCommitted(output.state);
        applyDrop(drop);
        if (drop?.type === 'all') handOver.wiped();
        syncPools(output.state, true);
        handOver.onCommitted(output.state);
        // After a wipe the previous state says nothing about what the store holds.
        replication.committed(drop?.type === 'all' ? null : lastCommitted, output.state);
        lastCommitted = output.state;
        // After a wipe nothing accepted before says what the store holds either.
        if (drop?.type === 'all') lastApplied = null;
        noteApplied(output.state);
        links.retain(new Set([...output.state.members.map((m) => m.url), ...options.seeds]));
        log.info({ version: output.state.version, members: output.state.members.length }, 'committed');
        for (const listener of committedListeners) listener(output.state, consensus.leaderId);
        return;
      }
      case 'changeDone':
        changeWaiters.get(output.changeId)?.resolve(output.result);
        changeWaiters.delete(output.changeId);
        return;
      case 'changeFailed':
        changeWaiters.get(output.changeId)?.reject(new TmemError(ErrorCode.NoCoordinator, output.reason));
        changeWaiters.delete(output.changeId);
        return;
      case 'leaseLost':
        // Not serving from now on (the serving rule checks the lease). Whether the pages are still current is
        // decided by the next committed state; dropping here would wipe most caches at every leader failover.
        log.info('lease lapsed; not serving until it is renewed');
        retention.onLeaseLost();
        return;
      case 'removed':
        if (leaving || closed) return;
        applyDrop(retention.onRemoved());
        incarnation = Math.max(Date.now(), incarnation + 1);
        log.warn({ incarnation }, 'rejoining as a new incarnation');
        consensus = startConsensus(false);
        retention = createPageRetention({ selfId: nodeId, incarnation });
        handOver.reset(incarnation);
        lastCommitted = null;
        lastApplied = null;
        replication.reset();
        void joinLoop();
        return;
      case 'roleChanged':
        log.info({ role: output.role, term: output.term, leaderId: output.leaderId }, 'role changed');
        return;
    }
  }

  function run(outputs: ConsensusOutput[]): void {
    // Learn every address first (here only): a proposal that adds a member is sent to it before the output
    // that carries the state naming its URL is handled.
    for (const output of outputs) {
      if (output.type === 'accepted' || output.type === 'committed') learnAddresses(output.state);
    }
    for (const output of leaseLossFirst(outputs)) handle(output);
    schedule();
  }

  function schedule(): void {
    if (closed) return;
    if (timer !== null) clearTimeout(timer);
    const wait = Math.min(Math.max(consensus.nextTickAt() - now(), 0), 1000);
    timer = setTimeout(() => {
      timer = null;
      run(consensus.tick(now()));
    }, wait);
  }

  // ---- changes

  function waitForChange(changeId: string, timeoutMs: number): Promise<ChangeResult> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        changeWaiters.delete(changeId);
        reject(new TmemError(ErrorCode.NoCoordinator, 'change not committed in time'));
      }, timeoutMs);
      changeWaiters.set(changeId, {
        resolve: (r) => (clearTimeout(t), resolve(r)),
        reject: (e) => (clearTimeout(t), reject(e)),
      });
    });
  }

  /** Proposes at the local core, or relays to the coordinator (once), until the deadline. */
  async function commitChange(change: StateChange, relay: boolean, deadline: number): Promise<ChangeResult> {
    let lastError: unknown;
    if (change.type === 'addMember') addresses.set(change.member.id, change.member.url);
    while (!closed && now() < deadline) {
      const remaining = deadline - now();
      const attempt = consensus.propose(change, now());
      try {
        if (attempt.ok) {
          const result = waitForChange(change.changeId, remaining);
          run(attempt.outputs);
          return await result;
        }
        const leaderUrl = attempt.leaderId === null ? undefined : addresses.get(attempt.leaderId);
        if (relay && leaderUrl !== undefined && attempt.leaderId !== nodeId) {
          const reply = await links.propose(leaderUrl, change, remaining, true);
          if (reply.ok) {
            return {
              ok: true,
              ...(reply.poolId === undefined ? {} : { poolId: reply.poolId }),
              ...(reply.version === undefined ? {} : { version: reply.version }),
            };
          }
          if (reply.error !== undefined && reply.error !== ErrorCode.NoCoordinator) {
            return { ok: false, error: reply.error as Extract<ChangeResult, { ok: false }>['error'] };
          }
        } else if (!relay) {
          throw new TmemError(ErrorCode.NoCoordinator, 'not the coordinator');
        }
      } catch (error) {
        lastError = error;
        if (!relay) throw error;
      }
      await delay(Math.min(50, Math.max(1, deadline - now())));
    }
    throw new TmemError(ErrorCode.NoCoordinator, 'no coordinator committed the change in time; retry', {
      cause: lastError,
    });
  }

  function propose(request: ChangeRequest): Promise<ChangeResult> {
    const change = StateChange.parse({ ...request, changeId: `${nodeId}:${randomUUID()}` });
    return commitChange(change, true, now() + changeTimeoutMs);
  }

  // ---- joining

  function joinCandidates(): string[] {
    const known = [...addresses.entries()].filter(([id]) => id !== nodeId).map(([, url]) => url);
    return [...new Set([...options.seeds, ...known])].filter((url) => url !== options.url);
  }

  const joinStatus: JoinStatus = { attempts: 0, lastFailure: null, refused: null };

  function joinFailed(seed: string, error: Error): void {
    joinStatus.lastFailure = { seed, error };
    if (error instanceof TmemError && FATAL_JOIN_CODES.has(error.code)) {
      joinStatus.refused = { seed, error };
      log.error({ seed, code: error.code, err: error.message }, 'seed refused this node; not retrying');
      return;
    }
    log.warn({ seed, attempt: joinStatus.attempts, err: error.message }, 'join attempt failed; retrying');
  }

  /** Asks seeds (then any member it knows) to add this incarnation, until it is in a committed state. */
  async function joinLoop(): Promise<void> {
    const joining = consensus;
    let backoffMs = options.joinRetryMinMs ?? 100;
    while (!closed && consensus === joining && !isMember(consensus.committed, nodeId, incarnation)) {
      for (const url of joinCandidates()) {
        if (closed || consensus !== joining) return;
        joinStatus.attempts++;
        try {
          const reply = await links.propose(
            url,
            {
              type: 'addMember',
              changeId: `${nodeId}:${incarnation}:join`,
              // A joiner owns no persistent partition until it has copied the ones it will own.
              member: { ...selfInfo(), phase: 'filling' },
            },
            3000,
            false,
          );
          if (reply.ok || reply.error === 'member-exists') {
            log.info({ via: url, incarnation }, 'join committed');
            return;
          }
          if (reply.error === 'replace-first') await removeOlderSelf(url);
          else
            joinFailed(
              url,
              new TmemError(ErrorCode.NoCoordinator, `the seed could not commit the join (${reply.error})`),
            );
        } catch (error) {
          joinFailed(url, error as Error);
          if (joinStatus.refused !== null) return;
        }
      }
      await delay(backoffMs);
      backoffMs = Math.min(backoffMs * 2, options.joinRetryMaxMs ?? 1000);
    }
  }

  /** A previous incarnation of this id (a crashed process) is still a member: remove it first. */
  async function removeOlderSelf(url: string): Promise<void> {
    const { state } = await links.getState(url, 3000);
    const old = state.members.find((m) => m.id === nodeId);
    if (old === undefined || old.incarnation >= incarnation) return;
    log.info({ old: old.incarnation }, 'removing the previous incarnation of this node');
    await links.propose(
      url,
      {
        type: 'removeMember',
        changeId: `${nodeId}:${old.incarnation}:replace`,
        id: nodeId,
        incarnation: old.incarnation,
      },
      3000,
      false,
    );
  }

  if (options.seeds.length === 0) {
    // The founder's first state comes with its core, not as an output: the gates must know it, or they would
    // take the founder's next state for a joiner's first and wait for pages from members that never had them.
    if (consensus.committed !== null) handOver.onCommitted(consensus.committed);
    learnAddresses(consensus.committed);
    log.info({ incarnation }, 'founded a new cluster');
  } else {
    void joinLoop();
  }
  schedule();

  return {
    nodeId,
    incarnation: () => incarnation,
    committed: () => consensus.committed,
    leaderId: () => consensus.leaderId,
    clusterId: () => servedClusterId,
    serving,
    propose,
    callMember,
    accepted: () => consensus.accepted,
    replication,
    handOver,
    sharers,
    async handleProposeFrame(raw, forwarded) {
      const parsed = StateChange.safeParse(raw);
      if (!parsed.success) return { t: 'changeResult', ok: false, error: ErrorCode.InvalidFrame };
      try {
        const result = await commitChange(parsed.data, !forwarded, now() + changeTimeoutMs);
        return result.ok
          ? {
              t: 'changeResult',
              ok: true,
              ...(result.poolId === undefined ? {} : { poolId: result.poolId }),
              ...(result.version === undefined ? {} : { version: result.version }),
            }
          : { t: 'changeResult', ok: false, error: result.error };
      } catch {
        return { t: 'changeResult', ok: false, error: ErrorCode.NoCoordinator };
      }
    },
    notePeerAddress(id, url) {
      if (id !== nodeId && !addresses.has(id)) addresses.set(id, url);
    },
    receivePeerMessage(raw, senderId) {
      if (closed) return;
      const parsed = ConsensusMessage.safeParse(raw);
      if (!parsed.success) {
        log.warn({ issues: parsed.error.issues.slice(0, 3) }, 'invalid coordination message dropped');
        return;
      }
      // A message speaks only for the member whose connection carried it: no peer can vote, ack or lead
      // in another member's name.
      if (parsed.data.from !== senderId) {
        log.warn(
          { from: parsed.data.from, senderId },
          "coordination message in another member's name dropped",
        );
        return;
      }
      // The handshake already keeps peers of other clusters out; a state of another cluster is never taken.
      const carried = 'state' in parsed.data ? parsed.data.state : undefined;
      if (carried !== undefined && servedClusterId !== undefined && carried.clusterId !== servedClusterId) {
        log.warn(
          { from: parsed.data.from, clusterId: carried.clusterId, served: servedClusterId },
          'state of another cluster dropped',
        );
        return;
      }
      run(consensus.receive(parsed.data.from, parsed.data, now()));
    },
    joinStatus: () => joinStatus,
    describe(owner) {
      const committed = consensus.committed;
      const joined = committed !== null && isMember(committed, nodeId, incarnation);
      const t = now();
      const all = committed === null ? [] : underReplicatedPools(committed);
      const short = owner === undefined ? all : all.filter((p) => p.owner === owner);
      const readyMembers = committed === null ? 0 : readyMemberCount(committed);
      return {
        stateVersion: committed?.version ?? 0,
        incarnation,
        role: leaving ? 'leaving' : joined ? consensus.role : 'joining',
        leaseHeld: consensus.hasLease(t),
        servingPartitions: consensus.servingPartitions(t).length,
        ...replication.describe(),
        underReplicated: short.length,
        underReplicatedPools: short
          .slice(0, MAX_LISTED_UNDER_REPLICATED)
          .map((p) => ({ pool: p.id, replication: p.replication, readyMembers })),
        ...handOver.counters(),
      };
    },
    onCommitted(listener) {
      committedListeners.add(listener);
      return () => committedListeners.delete(listener);
    },
    async leave() {
      if (leaving || closed) return false;
      const committed = consensus.committed;
      if (committed === null || committed.members.length <= 1) {
        leaving = true;
        return false;
      }
      log.info('leaving the cluster');
      // Persistent copies first: the node keeps serving (ephemeral pages, copies) while its successors copy.
      try {
        await replication.handOver(now() + (options.handOverTimeoutMs ?? 30_000));
      } catch (error) {
        log.warn({ err: (error as Error).message }, 'hand-over failed; leaving anyway');
      }
      // Ephemeral pages: the phase `leaving` tells the new primaries that this member hands its pages over
      // (hand-off-gates.ts), so they wait for them; without it they would serve its partitions empty at once.
      const state = consensus.committed;
      const me = state?.members.find((m) => m.id === nodeId && m.incarnation === incarnation);
      if (
        ephemeralBudgetMs > 0 &&
        state?.pools.some((p) => p.kind === 'ephemeral') === true &&
        me !== undefined &&
        me.phase !== 'leaving'
      ) {
        try {
          await setPhase('leaving');
        } catch (error) {
          log.warn(
            { err: (error as Error).message },
            'could not become leaving; ephemeral pages will be dropped',
          );
        }
      }
      // From here on this node serves nothing, so the pages it copies when it accepts its removal are the
      // last values of their handles.
      leaving = true;
      let left = false;
      try {
        const result = await commitChange(
          StateChange.parse({
            type: 'removeMember',
            changeId: `${nodeId}:${incarnation}:leave`,
            id: nodeId,
            incarnation,
          }),
          true,
          now() + changeTimeoutMs,
        );
        left = result.ok;
        log.info({ ok: result.ok }, 'left the cluster');
      } catch (error) {
        log.warn({ err: (error as Error).message }, 'could not get the leave committed; exiting anyway');
      }
      if (left) {
        // This node may never learn the commit itself (it is no longer a member): push on the answer.
        handOver.pushAll();
        await handOver.drained(now() + ephemeralBudgetMs + 1000);
      }
      return left;
    },
    close() {
      closed = true;
      if (timer !== null) clearTimeout(timer);
      handOver.close();
      for (const waiter of changeWaiters.values())
        waiter.reject(new TmemError(ErrorCode.ShuttingDown, 'closing'));
      changeWaiters.clear();
      replication.close();
      links.close();
    },
  };
}
