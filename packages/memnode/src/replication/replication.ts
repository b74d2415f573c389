// Persistent pools across the cluster (docs/architecture.md, "Replication"): the primary of a partition
// stamps every write with a version, stores it and forwards it to every other owner (ready and filling), and
// answers `accepted` only when they all hold it; gets are served by the primary, or by another ready owner when
// the client cannot reach the primary. Owners that gained a partition copy it from a complete owner in the
// background (newest version wins, flushes are tombstones), a joiner becomes `ready` once it has copied all
// its partitions, and a leaving node waits until its successors hold complete copies. A partition with no
// complete copy left anywhere is lost: its gets answer DATA_LOST, never a miss.
import {
  ChecksumError,
  DataLostError,
  ErrorCode,
  TmemError,
  checksumMatches,
  partitionOf,
  persistentTableFor,
  replicaTargets,
  sameMember,
  type ClientFrame,
  type ClusterState,
  type Fetch,
  type Fetched,
  type FlushObject,
  type FlushPage,
  type Get,
  type MemberInfo,
  type MemberRef,
  type NodeFrame,
  type PageReply,
  type PeerGet,
  type PeerGot,
  type PoolInfo,
  type Put,
  type ReplicaEntry,
  type Replicate,
  type Replicated,
} from '@tmem/protocol';
import type { Logger } from '../logger.ts';
import type { PageStore } from '../page-store.ts';
import { COMPLETE, FILLING, LOST, NOT_OWNER, createCompleteness, type Completeness } from './completeness.ts';
import { createReplicaStore, type ReplicaStore } from './replica-store.ts';
import { createReplicaStreams, type ReplicaStreams } from './replica-streams.ts';
import { createVersionClock, type VersionClock } from './version-clock.ts';

/** What replication needs of the node's cluster membership. */
export interface ReplicationCluster {
  readonly nodeId: string;
  incarnation(): number;
  committed(): ClusterState | null;
  accepted(): ClusterState | null;
  /**
   * Throws STALE_STATE unless `stateVersion` (when given) is the committed one, NOT_SERVING unless this node is
   * a member holding a lease.
   */
  checkLease(stateVersion: number | undefined): void;
  /** A request to another member, by id. */
  call<K extends NodeFrame['t']>(
    memberId: string,
    build: (id: number) => ClientFrame,
    expect: K,
    timeoutMs: number,
  ): Promise<Extract<NodeFrame, { t: K }>>;
  /** Gets this member's phase committed; with `ifVersion`, only onto that state version. */
  setPhase(phase: 'ready' | 'leaving', ifVersion?: number): Promise<void>;
}

/** Options of the replication of one node. */
export interface ReplicationOptions {
  store: PageStore;
  cluster: ReplicationCluster;
  logger: Logger;
  /**
   * How long a primary waits for the other owners to hold a write before it refuses the put (and flushes the
   * page everywhere). Longer than failure detection, so a dead owner is replaced rather than refusing.
   * @default 3000
   */
  replicationTimeoutMs?: number;
  /** How long tombstones are kept. @default 60000 */
  tombstoneTtlMs?: number;
  /** Time to wait for an answer from another node. @default 2000 */
  peerTimeoutMs?: number;
  /** Fault injection for tests (see MemnodeOptions.testCorruptOidPrefix). */
  testCorruptOidPrefix?: string;
}

/** Copy progress, for statistics and `tmem status`. */
export interface ReplicationDescription {
  /** Persistent partitions this node owns and is still copying. */
  fillingPartitions: number;
  /** Persistent partitions whose every copy was lost. */
  lostPartitions: number;
  /** Pages copied into this node by fills since it started. */
  copiedPages: number;
  /** Replicated entries waiting to reach other owners. */
  replicationBacklog: number;
}

/** The persistent-pool replication of one node. */
export interface Replication {
  /** True when `pool` is a persistent pool of the committed state. */
  isPersistent(pool: number): boolean;
  put(op: Put, stateVersion: number | undefined): Promise<PageReply>;
  get(op: Get, stateVersion: number | undefined): Promise<PageReply>;
  flushPage(op: FlushPage, stateVersion: number | undefined): Promise<PageReply>;
  flushObject(op: FlushObject, stateVersion: number | undefined): Promise<PageReply>;
  /** Answers a peer's Replicate frame. */
  onReplicate(frame: Replicate): Promise<Replicated>;
  /** Answers a peer's Fetch frame; `requester` tells the copy sessions of different peers apart. */
  onFetch(frame: Fetch, requester: string): Promise<Fetched>;
  /** Answers a peer's PeerGet frame. */
  onPeerGet(frame: PeerGet): Promise<PeerGot>;
  /** A newly committed state; `previous` null when the states before are unknown or the store was wiped. */
  committed(previous: ClusterState | null, state: ClusterState): void;
  /** The node became a new incarnation with an empty store. */
  reset(): void;
  /** Before a graceful leave: become `leaving` and wait until the other owners hold complete copies. */
  handOver(deadline: number): Promise<void>;
  describe(): ReplicationDescription;
  close(): void;
}

const now = () => performance.now();
const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** Bytes of page data per fetched chunk: small enough not to hold up the heartbeats on the same link. */
const FETCH_CHUNK_BYTES = 256 * 1024;
const FETCH_CHUNK_ENTRIES = 512;
/** A copy session nobody continued for this long is forgotten. */
const FETCH_SESSION_TTL_MS = 30_000;

interface FetchSession {
  entries: ReplicaEntry[];
  handles: Array<{ pool: number; oid: Uint8Array; index: number }>;
  touched: number;
}

function notServing(message: string, version: number): TmemError {
  return new TmemError(ErrorCode.NotServing, message, { details: { version } });
}

/** Creates the replication of one node. */
export function createReplication(options: ReplicationOptions): Replication {
  const { store, cluster } = options;
  const log = options.logger.child({ component: 'replication' });
  const replicationTimeoutMs = options.replicationTimeoutMs ?? 3000;
  const peerTimeoutMs = options.peerTimeoutMs ?? 2000;
  let partitionCount = cluster.committed()?.partitionCount ?? 1024;
  let self: MemberRef = { id: cluster.nodeId, incarnation: cluster.incarnation() };
  let completeness: Completeness = createCompleteness(self);
  let clock: VersionClock = createVersionClock(partitionCount);
  const replicas: ReplicaStore = createReplicaStore({
    store,
    tombstoneTtlMs: options.tombstoneTtlMs ?? 60_000,
    partitionCount: () => partitionCount,
  });
  const streams: ReplicaStreams = createReplicaStreams({
    logger: options.logger,
    transport: {
      async send(target, entries) {
        const state = cluster.committed();
        const reply = await cluster.call(
          target,
          (id) => ({ t: 'replicate', id, sv: state?.version ?? 0, entries }),
          'replicated',
          peerTimeoutMs,
        );
        return reply.results;
      },
      isMember: (target) => cluster.committed()?.members.some((m) => m.id === target) ?? false,
    },
  });
  const fetchSessions = new Map<string, FetchSession>();
  /** Writes of persistent handles this node is running as primary, by handle: gets wait for them. */
  const inFlight = new Map<string, Promise<void>>();
  /** Handles whose copy here was dropped as corrupt and not yet replaced: a miss here says nothing. */
  const unrepaired = new Set<string>();
  const handleKey = (pool: number, oid: Uint8Array, index: number): string =>
    `${pool}:${index}:${Buffer.from(oid.buffer, oid.byteOffset, oid.length).toString('latin1')}`;
  const corruptPrefix =
    options.testCorruptOidPrefix === undefined
      ? undefined
      : Buffer.from(options.testCorruptOidPrefix, 'latin1');

  /** The fault injection of the tests: spoils this node's copy of a matching page, keeping its checksum. */
  function maybeCorrupt(pool: number, oid: Uint8Array, index: number): void {
    if (corruptPrefix === undefined || oid.length < corruptPrefix.length) return;
    if (!Buffer.from(oid.buffer, oid.byteOffset, corruptPrefix.length).equals(corruptPrefix)) return;
    const stored = store.peek(pool, oid, index);
    if (stored === null) return;
    const spoiled = stored.page;
    spoiled[spoiled.length >>> 1] = ((spoiled[spoiled.length >>> 1] as number) ^ 0x5a) & 0xff;
    store.put(pool, oid, index, spoiled, {
      version: stored.version,
      ...(stored.sum === undefined ? {} : { sum: stored.sum }),
    });
  }
  const versionWaiters = new Set<{ version: number; resolve(): void }>();
  let copiedPages = 0;
  /** Bumped whenever pages of owned partitions go (wipe, drop, new incarnation): copies under way restart. */
  let copyEpoch = 0;
  /** Pools of the states seen, so the tombstones of destroyed ones can be forgotten. */
  const poolsSeen = new Set<number>();
  let filling = false;
  let proposingReady = false;
  let closed = false;
  const sweeper = setInterval(() => {
    replicas.sweep();
    const cutoff = now() - FETCH_SESSION_TTL_MS;
    for (const [key, session] of fetchSessions) if (session.touched < cutoff) fetchSessions.delete(key);
  }, 5000);
  sweeper.unref();

  // ---- serving

  const maskCache = new Map<string, Uint8Array>();
  let maskCommitted: ClusterState | null = null;
  let maskAccepted: ClusterState | null = null;

  /**
   * Partitions of pools with `replicas` copies this node serves as `role`: primary (puts, flushes, gets) or any
   * ready owner (gets the client sends to a replica). Both in the committed state and in the accepted one,
   * so a node that accepted a state moving the partition away stops before the new owner starts.
   */
  function servedMask(replicas: number, role: 'primary' | 'owner'): Uint8Array {
    const committed = cluster.committed();
    const accepted = cluster.accepted();
    if (committed !== maskCommitted || accepted !== maskAccepted) {
      maskCache.clear();
      maskCommitted = committed;
      maskAccepted = accepted;
    }
    const key = `${role}:${replicas}`;
    let mask = maskCache.get(key);
    if (mask !== undefined) return mask;
    mask = new Uint8Array(committed?.partitionCount ?? 0);
    if (committed !== null && accepted !== null && accepted.version - committed.version <= 1) {
      const a = persistentTableFor(committed, replicas);
      const b = persistentTableFor(accepted, replicas);
      const holds = (owners: readonly MemberRef[]): boolean =>
        role === 'primary' ? sameMember(owners[0], self) : owners.some((o) => sameMember(o, self));
      for (let p = 0; p < mask.length; p++) mask[p] = holds(a.owners(p)) && holds(b.owners(p)) ? 1 : 0;
    }
    maskCache.set(key, mask);
    return mask;
  }

  function poolInfo(state: ClusterState | null, poolId: number): PoolInfo | undefined {
    return state?.pools.find((p) => p.id === poolId);
  }

  interface Serving {
    state: ClusterState;
    pool: PoolInfo;
    partition: number;
  }

  function serving(
    poolId: number,
    oid: Uint8Array,
    index: number,
    stateVersion: number | undefined,
    role: 'primary' | 'owner',
  ): Serving {
    cluster.checkLease(stateVersion);
    const state = cluster.committed() as ClusterState;
    const pool = poolInfo(state, poolId);
    if (pool === undefined || pool.kind !== 'persistent') {
      throw new TmemError(ErrorCode.UnknownPool, `pool ${poolId} does not exist`, {
        details: { pool: poolId },
      });
    }
    const partition = partitionOf(poolId, oid, index, state.partitionCount);
    if (servedMask(pool.replication, role)[partition] !== 1) {
      throw notServing(`node is not the ${role} of partition ${partition} now`, state.version);
    }
    return { state, pool, partition };
  }

  /** Every other member a write of `partition` must reach. */
  function otherTargets(state: ClusterState, pool: PoolInfo, partition: number): MemberRef[] {
    return replicaTargets(state, pool.replication, partition).filter((t) => !sameMember(t, self));
  }

  function stillTarget(target: MemberRef, pool: number, partition: number): boolean {
    const state = cluster.committed();
    const info = poolInfo(state, pool);
    if (state === null || info === undefined) return false;
    return replicaTargets(state, info.replication, partition).some((t) => sameMember(t, target));
  }

  /**
   * Delivers `entry` to `target` until it holds it, it is no longer an owner of the partition, or the deadline
   * passes. Resolves 'ok' (held or no longer needed), 'full', 'corrupt' or 'timeout'.
   */
  async function replicateTo(
    target: MemberRef,
    entry: ReplicaEntry,
    partition: number,
    deadline: number,
  ): Promise<'ok' | 'full' | 'corrupt' | 'timeout'> {
    for (;;) {
      const remaining = deadline - now();
      if (remaining <= 0) return 'timeout';
      let timer: NodeJS.Timeout | undefined;
      const result = await Promise.race([
        streams.deliver(target.id, entry),
        new Promise<'timeout'>((resolve) => {
          timer = setTimeout(() => resolve('timeout'), remaining);
        }),
      ]);
      clearTimeout(timer);
      if (result === 'ok' || result === 'gone') return 'ok';
      if (result === 'full' || result === 'corrupt' || result === 'timeout') return result;
      // 'not-owner' / 'unknown-pool': the target's state and ours differ; one of them catches up.
      if (!stillTarget(target, entry.pool, partition)) return 'ok';
      await delay(Math.min(50, Math.max(0, deadline - now())));
    }
  }

  /** Sends `entry` to every other owner; the worst outcome of them. */
  async function replicateToAll(
    targets: readonly MemberRef[],
    entry: ReplicaEntry,
    partition: number,
    deadline: number,
  ): Promise<'ok' | 'full' | 'corrupt' | 'timeout'> {
    const results = await Promise.all(targets.map((t) => replicateTo(t, entry, partition, deadline)));
    for (const worst of ['full', 'corrupt', 'timeout'] as const) if (results.includes(worst)) return worst;
    return 'ok';
  }

  /** Flushes one handle here and on every other owner, with a new version; waits until `deadline`. */
  async function flushEverywhere(
    state: ClusterState,
    pool: PoolInfo,
    oid: Uint8Array,
    index: number,
    partition: number,
    deadline: number,
  ): Promise<'ok' | 'full' | 'corrupt' | 'timeout'> {
    const tombstone: ReplicaEntry = {
      pool: pool.id,
      oid,
      index,
      version: clock.stamp(partition, state.version),
    };
    replicas.apply(tombstone);
    return replicateToAll(otherTargets(state, pool, partition), tombstone, partition, deadline);
  }

  // ---- reads that need the other copies

  /**
   * The newest entry any other member holds for a handle, when this node cannot answer alone (its copy is
   * incomplete, lost or corrupt). A miss is authoritative only from a complete copy; with no complete copy
   * anywhere and every member answering, the page is lost.
   */
  async function readFromOthers(
    state: ClusterState,
    pool: PoolInfo,
    oid: Uint8Array,
    index: number,
  ): Promise<{ entry: ReplicaEntry | undefined; authoritative: boolean; lost: boolean }> {
    const others = state.members.filter((m) => !sameMember(m, self));
    const replies = await Promise.allSettled(
      others.map((m) =>
        cluster.call(
          m.id,
          (id) => ({ t: 'peerGet', id, sv: state.version, pool: pool.id, oid, index }),
          'peerGot',
          peerTimeoutMs,
        ),
      ),
    );
    let entry: ReplicaEntry | undefined;
    let authoritative = false;
    let answered = 0;
    for (const reply of replies) {
      if (reply.status !== 'fulfilled') continue;
      answered++;
      const got = reply.value;
      if (got.complete) authoritative = true;
      const candidate = got.entry;
      if (candidate === undefined) continue;
      if (candidate.page !== undefined && !checksumMatches(candidate.page, candidate.sum)) continue;
      if (entry === undefined || candidate.version > entry.version) entry = candidate;
    }
    // Lost only when every member answered and none holds a complete copy; a silent one might.
    const everyone = answered === others.length;
    const lost = !authoritative && everyone;
    // Without a complete copy among the answers, a silent member may hold a newer flush of what the others
    // hold: their newest entry is not the answer (the caller answers NOT_SERVING and the client retries).
    if (!authoritative && !everyone) return { entry: undefined, authoritative, lost };
    return { entry, authoritative, lost };
  }

  /**
   * Replaces this node's corrupt copy of a handle with the newest good one another member holds; the new entry,
   * or undefined when no other member has a good copy (the corrupt one is dropped either way).
   */
  async function repairCorrupt(
    state: ClusterState,
    poolId: number,
    oid: Uint8Array,
    index: number,
  ): Promise<{ entry: ReplicaEntry | undefined; lost: boolean }> {
    log.warn({ pool: poolId }, 'corrupt copy dropped; repairing it from another copy');
    store.discard(poolId, oid, index);
    const pool = poolInfo(state, poolId);
    if (pool === undefined) return { entry: undefined, lost: false };
    const key = handleKey(poolId, oid, index);
    unrepaired.add(key);
    const found = await readFromOthers(state, pool, oid, index);
    if (found.entry !== undefined || found.authoritative) unrepaired.delete(key);
    if (found.entry?.page !== undefined) replicas.apply(found.entry);
    return { entry: found.entry, lost: found.lost };
  }

  /**
   * Runs the writes of one handle here one after another, and lets gets of the handle wait for them: a
   * refused write flushes the handle with a version stamped when it gives up, which must not remove a later
   * write that is already under way; and a reader must not see a page that may still be refused.
   */
  function writing<T>(pool: number, oid: Uint8Array, index: number, write: () => Promise<T>): Promise<T> {
    const key = handleKey(pool, oid, index);
    const previous = inFlight.get(key) ?? Promise.resolve();
    const done = previous.then(write);
    const settled = done.then(
      () => undefined,
      () => undefined,
    );
    inFlight.set(key, settled);
    void settled.then(() => {
      if (inFlight.get(key) === settled) inFlight.delete(key);
    });
    return done;
  }

  async function get(op: Get, stateVersion: number | undefined): Promise<PageReply> {
    // Until no write of the handle is under way here (a new one may start while the get waits).
    for (
      let pending = inFlight.get(handleKey(op.pool, op.oid, op.index));
      pending !== undefined;
      pending = inFlight.get(handleKey(op.pool, op.oid, op.index))
    ) {
      await pending;
    }
    const { state, pool, partition } = serving(
      op.pool,
      op.oid,
      op.index,
      stateVersion,
      op.replica ? 'owner' : 'primary',
    );
    let stored = store.read(op.pool, op.oid, op.index);
    const key = handleKey(op.pool, op.oid, op.index);
    if (stored !== null && !checksumMatches(stored.page, stored.sum)) {
      log.warn({ pool: op.pool, partition }, 'corrupt copy dropped; reading another');
      store.discard(op.pool, op.oid, op.index);
      unrepaired.add(key);
      stored = null;
    }
    if (stored !== null) {
      return {
        t: 'hit',
        id: op.id,
        page: stored.page,
        ...(stored.sum === undefined ? {} : { sum: stored.sum }),
      };
    }
    const copy = completeness.of(op.pool, partition);
    // A copy dropped as corrupt is a hole in an otherwise complete copy: only the others can fill it.
    const corrupt = unrepaired.has(key);
    if (copy === COMPLETE && !corrupt) return { t: 'miss', id: op.id };
    const found = await readFromOthers(state, pool, op.oid, op.index);
    if (found.entry !== undefined || found.authoritative) unrepaired.delete(key);
    if (found.entry?.page !== undefined) {
      // Repair this copy with what the others hold (newest wins: a flush this node knows of since is not
      // undone, and then the answer is a miss).
      const applied = replicas.apply(found.entry);
      if (applied === 'ok') clock.observe(partition, found.entry.version);
      // No room here for the repair: the page the others hold is still the answer.
      const newest = applied === 'full' ? found.entry : replicas.newest(op.pool, op.oid, op.index);
      if (newest?.page === undefined) return { t: 'miss', id: op.id };
      return {
        t: 'hit',
        id: op.id,
        page: newest.page,
        ...(newest.sum === undefined ? {} : { sum: newest.sum }),
      };
    }
    if (found.entry !== undefined || found.authoritative) return { t: 'miss', id: op.id };
    if (found.lost) {
      if (copy === FILLING && !op.replica) completeness.set(op.pool, partition, LOST);
      throw new DataLostError(
        corrupt
          ? 'the only copy of this page was corrupt; it cannot be read'
          : `every copy of partition ${partition} of pool ${op.pool} was lost; the page cannot be read`,
        { details: { pool: op.pool, partition } },
      );
    }
    throw notServing('the owners of this page cannot be reached now', state.version);
  }

  function put(op: Put, stateVersion: number | undefined): Promise<PageReply> {
    return writing(op.pool, op.oid, op.index, () => putNow(op, stateVersion));
  }

  async function putNow(op: Put, stateVersion: number | undefined): Promise<PageReply> {
    const { state, pool, partition } = serving(op.pool, op.oid, op.index, stateVersion, 'primary');
    if (!checksumMatches(op.page, op.sum)) {
      throw new ChecksumError('the page does not match its checksum; it was corrupted on the way', {
        details: { pool: op.pool },
      });
    }
    const deadline = now() + replicationTimeoutMs;
    const version = clock.stamp(partition, state.version);
    const local = store.put(
      op.pool,
      op.oid,
      op.index,
      op.page,
      op.sum === undefined ? { version } : { version, sum: op.sum },
    );
    unrepaired.delete(handleKey(op.pool, op.oid, op.index));
    maybeCorrupt(op.pool, op.oid, op.index);
    if (local.status === 'refused') {
      // The older page is gone here (put-put-get coherency); it must go from the other copies too.
      await flushEverywhere(state, pool, op.oid, op.index, partition, deadline);
      return { t: 'refused', id: op.id, reason: local.reason };
    }
    const entry: ReplicaEntry = {
      pool: op.pool,
      oid: op.oid,
      index: op.index,
      version,
      page: op.page,
      ...(op.sum === undefined ? {} : { sum: op.sum }),
    };
    const outcome = await replicateToAll(otherTargets(state, pool, partition), entry, partition, deadline);
    if (outcome === 'ok') return { t: 'accepted', id: op.id };
    log.info({ pool: op.pool, partition, outcome }, 'put refused: not every owner holds it');
    // Refused: no copy may keep this page or an older one. The flush keeps going in the background.
    void flushEverywhere(
      cluster.committed() ?? state,
      pool,
      op.oid,
      op.index,
      partition,
      now() + replicationTimeoutMs,
    );
    return { t: 'refused', id: op.id, reason: outcome === 'full' ? 'full' : 'replicas' };
  }

  function flushPage(op: FlushPage, stateVersion: number | undefined): Promise<PageReply> {
    return writing(op.pool, op.oid, op.index, () => flushPageNow(op, stateVersion));
  }

  async function flushPageNow(op: FlushPage, stateVersion: number | undefined): Promise<PageReply> {
    const { state, pool, partition } = serving(op.pool, op.oid, op.index, stateVersion, 'primary');
    store.flushPage(op.pool, op.oid, op.index);
    const outcome = await flushEverywhere(
      state,
      pool,
      op.oid,
      op.index,
      partition,
      now() + replicationTimeoutMs,
    );
    if (outcome === 'timeout') {
      throw new TmemError(
        ErrorCode.Timeout,
        'not every owner confirmed the flush in time; it will reach them',
        {
          details: { pool: op.pool, partition },
        },
      );
    }
    return { t: 'ok', id: op.id };
  }

  /**
   * Flushes the object's pages in the partitions this node is primary of (every member gets the op and does
   * the same for its own) with page tombstones for the pages it holds; refused while it is primary of a
   * partition it is still copying (the other copies may hold pages of the object it does not know of).
   */
  async function flushObject(op: FlushObject, stateVersion: number | undefined): Promise<PageReply> {
    cluster.checkLease(stateVersion);
    const state = cluster.committed() as ClusterState;
    const pool = poolInfo(state, op.pool);
    if (pool === undefined || pool.kind !== 'persistent') {
      throw new TmemError(ErrorCode.UnknownPool, `pool ${op.pool} does not exist`, {
        details: { pool: op.pool },
      });
    }
    const primaryOf = servedMask(pool.replication, 'primary');
    // Every partition this node is primary of in the committed state must be flushed here: while one is
    // moving (the accepted state disagrees) nobody may flush it, so the client retries.
    const table = persistentTableFor(state, pool.replication);
    for (let p = 0; p < state.partitionCount; p++) {
      if (primaryOf[p] !== 1 && sameMember(table.primary(p), self)) {
        throw notServing('partitions are moving; retry the flush', state.version);
      }
    }
    // A partition this node is still copying may have pages of the object only on the other copies, which
    // this flush would not reach: it waits until the copy is made (the client retries).
    for (const partition of completeness.partitionsIn(FILLING).get(op.pool) ?? []) {
      if (primaryOf[partition] === 1)
        throw notServing('a partition is being copied; retry the flush', state.version);
    }
    const deadline = now() + replicationTimeoutMs;
    const pending: Array<Promise<'ok' | 'full' | 'corrupt' | 'timeout'>> = [];
    for (const index of store.objectIndexes(op.pool, op.oid)) {
      const partition = partitionOf(op.pool, op.oid, index, state.partitionCount);
      if (primaryOf[partition] !== 1) continue;
      store.flushPage(op.pool, op.oid, index);
      pending.push(flushEverywhere(state, pool, op.oid, index, partition, deadline));
    }
    const outcomes = await Promise.all(pending);
    if (outcomes.includes('timeout')) {
      throw new TmemError(
        ErrorCode.Timeout,
        'not every owner confirmed the flush in time; it will reach them',
        {
          details: { pool: op.pool },
        },
      );
    }
    return { t: 'ok', id: op.id };
  }

  // ---- answering peers

  async function waitForVersion(version: number, timeoutMs: number): Promise<void> {
    if ((cluster.committed()?.version ?? 0) >= version) return;
    await new Promise<void>((resolve) => {
      const waiter = { version, resolve: () => (clearTimeout(timer), resolve()) };
      const timer = setTimeout(() => {
        versionWaiters.delete(waiter);
        resolve();
      }, timeoutMs);
      versionWaiters.add(waiter);
    });
  }

  async function onReplicate(frame: Replicate): Promise<Replicated> {
    await waitForVersion(frame.sv, peerTimeoutMs / 2);
    const state = cluster.committed();
    const results = frame.entries.map((entry) => {
      if (state === null) return 'not-owner' as const;
      const pool = poolInfo(state, entry.pool);
      if (pool === undefined || pool.kind !== 'persistent') return 'unknown-pool' as const;
      if (entry.index === undefined) return 'ok' as const;
      const partition = partitionOf(entry.pool, entry.oid, entry.index, state.partitionCount);
      if (completeness.of(entry.pool, partition) === NOT_OWNER) return 'not-owner' as const;
      clock.observe(partition, entry.version);
      const result = replicas.apply(entry);
      if (entry.page !== undefined) maybeCorrupt(entry.pool, entry.oid, entry.index);
      return result;
    });
    return { t: 'replicated', id: frame.id, results };
  }

  async function onFetch(frame: Fetch, requester: string): Promise<Fetched> {
    await waitForVersion(frame.sv, peerTimeoutMs / 2);
    const state = cluster.committed();
    const lost = frame.partitions.filter((p) => completeness.of(frame.pool, p) === LOST);
    const complete = frame.partitions.every((p) => {
      const copy = completeness.of(frame.pool, p);
      return copy === COMPLETE || copy === LOST;
    });
    if (state === null || state.version < frame.sv) {
      // Behind the requester: not an answer about the copy (it must not count towards "no copy anywhere").
      throw new TmemError(ErrorCode.StaleState, 'this node is behind the requester; ask again', {
        details: { version: state?.version ?? 0 },
      });
    }
    if (!complete) {
      return {
        t: 'fetched',
        id: frame.id,
        complete: false,
        entries: [],
        ...(lost.length > 0 ? { lost } : {}),
      };
    }
    const key = `${requester}|${frame.pool}|${frame.partitions.join(',')}`;
    let session = frame.cursor === undefined ? undefined : fetchSessions.get(key);
    if (session === undefined && frame.cursor !== undefined) {
      // The session expired: the cursor means nothing in a new snapshot; the requester starts over.
      throw new TmemError(ErrorCode.NotServing, 'copy session expired; start again', {
        details: { version: state.version },
      });
    }
    if (session === undefined) {
      const wanted = new Set(frame.partitions);
      session = {
        entries: replicas.tombstonesIn(frame.pool, wanted),
        handles: store.handlesWhere(
          (pool, hash) => pool.id === frame.pool && wanted.has(hash % state.partitionCount),
        ),
        touched: now(),
      };
      fetchSessions.set(key, session);
    }
    session.touched = now();
    const total = session.entries.length + session.handles.length;
    let at = frame.cursor ?? 0;
    const entries: ReplicaEntry[] = [];
    let bytes = 0;
    while (at < total && entries.length < FETCH_CHUNK_ENTRIES && bytes < FETCH_CHUNK_BYTES) {
      const i = at++;
      if (i < session.entries.length) {
        entries.push(session.entries[i] as ReplicaEntry);
        continue;
      }
      const handle = session.handles[i - session.entries.length] as {
        pool: number;
        oid: Uint8Array;
        index: number;
      };
      let entry = replicas.newest(handle.pool, handle.oid, handle.index);
      if (entry?.page !== undefined && !checksumMatches(entry.page, entry.sum)) {
        const repaired = await repairCorrupt(state, handle.pool, handle.oid, handle.index);
        entry = repaired.entry;
        if (entry === undefined && repaired.lost) {
          // No good copy anywhere: the page is lost, and a miss must never say otherwise.
          const p = partitionOf(handle.pool, handle.oid, handle.index, state.partitionCount);
          completeness.set(handle.pool, p, LOST);
          if (!lost.includes(p)) lost.push(p);
        } else if (entry === undefined) {
          // Somebody did not answer: this copy session cannot be trusted to be complete; the filler retries.
          throw new TmemError(ErrorCode.NotServing, 'a corrupt copy could not be repaired yet; retry', {
            details: { version: state.version },
          });
        }
      }
      if (entry === undefined) continue;
      bytes += entry.page?.length ?? 0;
      entries.push(entry);
    }
    if (at >= total) fetchSessions.delete(key);
    return {
      t: 'fetched',
      id: frame.id,
      complete: true,
      entries,
      ...(lost.length > 0 ? { lost } : {}),
      ...(at < total ? { cursor: at } : {}),
    };
  }

  async function onPeerGet(frame: PeerGet): Promise<PeerGot> {
    await waitForVersion(frame.sv, peerTimeoutMs / 2);
    const state = cluster.committed();
    if (state === null || state.version < frame.sv) {
      // Behind the asker: this copy may miss a flush the asker's state already went through.
      throw new TmemError(ErrorCode.StaleState, 'this node is behind the asker; ask again', {
        details: { version: state?.version ?? 0 },
      });
    }
    const partition = partitionOf(
      frame.pool,
      frame.oid,
      frame.index,
      state?.partitionCount ?? partitionCount,
    );
    const copy = completeness.of(frame.pool, partition);
    const key = handleKey(frame.pool, frame.oid, frame.index);
    let entry = replicas.newest(frame.pool, frame.oid, frame.index);
    if (entry?.page !== undefined && !checksumMatches(entry.page, entry.sum)) {
      // Dropped as corrupt: a hole in this copy until it is repaired, so no miss from here is authoritative.
      store.discard(frame.pool, frame.oid, frame.index);
      unrepaired.add(key);
      entry = undefined;
    }
    return {
      t: 'peerGot',
      id: frame.id,
      complete: copy === COMPLETE && !unrepaired.has(key),
      ...(copy === LOST ? { lost: true } : {}),
      ...(entry === undefined ? {} : { entry }),
    };
  }

  // ---- filling

  /** Copies (pool, partitions) from `source`; true when it had complete copies and everything was applied. */
  async function fetchFrom(
    source: MemberInfo,
    pool: number,
    partitions: number[],
    sv: number,
  ): Promise<boolean> {
    let cursor: number | undefined;
    // A wipe, a drop or a new incarnation while copying removes pages this copy already brought in: then
    // the copy is not complete, whatever the source says.
    const epoch = copyEpoch;
    for (;;) {
      if (closed || epoch !== copyEpoch) return false;
      const reply = await cluster.call(
        source.id,
        (id) => ({ t: 'fetch', id, sv, pool, partitions, ...(cursor === undefined ? {} : { cursor }) }),
        'fetched',
        peerTimeoutMs * 2,
      );
      if (!reply.complete) return false;
      const state = cluster.committed();
      for (const entry of reply.entries) {
        const partition = partitionOf(
          entry.pool,
          entry.oid,
          entry.index ?? 0,
          state?.partitionCount ?? partitionCount,
        );
        if (completeness.of(pool, partition) !== FILLING) continue;
        clock.observe(partition, entry.version);
        const result = replicas.apply(entry);
        if (result === 'ok' && entry.page !== undefined) {
          copiedPages++;
          maybeCorrupt(entry.pool, entry.oid, entry.index as number);
        }
        if (result === 'full') {
          throw new TmemError(ErrorCode.NotServing, 'no room for a copied page; the copy stays incomplete', {
            details: { pool, partition },
          });
        }
      }
      for (const p of reply.lost ?? [])
        if (completeness.of(pool, p) === FILLING) completeness.set(pool, p, LOST);
      if (reply.cursor === undefined) break;
      cursor = reply.cursor;
    }
    if (epoch !== copyEpoch) return false;
    for (const p of partitions) if (completeness.of(pool, p) === FILLING) completeness.set(pool, p, COMPLETE);
    return true;
  }

  /**
   * Where to copy a partition from: its primary when that is another node (every write the primary stored
   * before it learned of this node is in its store, every later one is forwarded here), else any other member
   * with a complete copy (this node is the primary: nobody else is writing).
   */
  function sourcesFor(state: ClusterState, pool: PoolInfo, partition: number): MemberInfo[] {
    const primary = persistentTableFor(state, pool.replication).primary(partition);
    const byRef = (ref: MemberRef | undefined) => state.members.find((m) => sameMember(m, ref));
    if (primary !== undefined && !sameMember(primary, self)) {
      const member = byRef(primary);
      return member === undefined ? [] : [member];
    }
    // The other owners first (they received every write), then the rest, leaving members last: a leaving
    // member receives no writes any more, so its copy is only the source of last resort (the hand-over of a
    // partition that had one copy).
    const owners = replicaTargets(state, pool.replication, partition);
    const rank = (m: MemberInfo): number =>
      owners.some((o) => sameMember(o, m)) ? 0 : m.phase === 'leaving' ? 2 : 1;
    return state.members.filter((m) => !sameMember(m, self)).sort((a, b) => rank(a) - rank(b));
  }

  async function fillOnce(): Promise<boolean> {
    const state = cluster.committed();
    if (state === null) return false;
    let progress = false;
    for (const [poolId, partitions] of completeness.partitionsIn(FILLING)) {
      const pool = poolInfo(state, poolId);
      if (pool === undefined) continue;
      // Partitions with the same single source (their primary) go in one copy session.
      const bySource = new Map<string, number[]>();
      const searching: number[] = [];
      for (const p of partitions) {
        const sources = sourcesFor(state, pool, p);
        const primary = persistentTableFor(state, pool.replication).primary(p);
        if (sources.length === 1 && !sameMember(primary, self)) {
          const id = (sources[0] as MemberInfo).id;
          bySource.set(id, [...(bySource.get(id) ?? []), p]);
        } else {
          searching.push(p);
        }
      }
      for (const [sourceId, parts] of bySource) {
        const source = state.members.find((m) => m.id === sourceId) as MemberInfo;
        try {
          if (await fetchFrom(source, poolId, parts, state.version)) progress = true;
        } catch (error) {
          log.debug({ source: sourceId, err: (error as Error).message }, 'copy failed; retrying');
        }
      }
      for (const p of searching) {
        let answered = 0;
        const sources = sourcesFor(state, pool, p);
        for (const source of sources) {
          try {
            if (await fetchFrom(source, poolId, [p], state.version)) {
              progress = true;
              break;
            }
            answered++;
          } catch (error) {
            log.debug({ source: source.id, err: (error as Error).message }, 'copy failed; trying another');
          }
        }
        if (answered === sources.length && completeness.of(poolId, p) === FILLING) {
          // Every other member answered and none has a complete copy: the partition is lost.
          log.error({ pool: poolId, partition: p }, 'every copy of a persistent partition was lost');
          completeness.set(poolId, p, LOST);
          progress = true;
        }
      }
    }
    return progress;
  }

  async function fillLoop(): Promise<void> {
    if (filling) return;
    filling = true;
    try {
      while (!closed && completeness.counts().filling > 0) {
        const progress = await fillOnce();
        if (!progress) await delay(100);
      }
    } finally {
      filling = false;
    }
    maybeReady();
  }

  /** A filling member whose copies are all made asks to become ready. */
  function maybeReady(): void {
    const state = cluster.committed();
    const me = state?.members.find((m) => sameMember(m, self));
    if (closed || proposingReady || me?.phase !== 'filling' || completeness.counts().filling > 0) return;
    proposingReady = true;
    cluster
      .setPhase('ready', (state as ClusterState).version)
      .then(() => log.info('copies made; ready'))
      .catch((error: unknown) =>
        log.warn({ err: (error as Error).message }, 'could not become ready; retrying'),
      )
      .finally(() => {
        proposingReady = false;
        if (!closed && cluster.committed()?.members.find((m) => sameMember(m, self))?.phase === 'filling') {
          setTimeout(maybeReady, 200).unref();
        }
      });
  }

  // ---- leaving

  async function handOver(deadline: number): Promise<void> {
    let state = cluster.committed();
    if (state === null || state.members.length <= 1) return;
    if (!state.pools.some((p) => p.kind === 'persistent')) return;
    const me = state.members.find((m) => sameMember(m, self));
    if (me?.phase !== 'leaving') await cluster.setPhase('leaving');
    state = cluster.committed();
    if (state === null) return;
    const since = state.version;
    const others = state.members.filter((m) => !sameMember(m, self));
    const pending = new Set(others.map((m) => m.id));
    while (pending.size > 0 && now() < deadline && !closed) {
      await Promise.all(
        [...pending].map(async (id) => {
          try {
            const { stats } = await cluster.call(
              id,
              (rid) => ({ t: 'stats', id: rid }),
              'stats',
              peerTimeoutMs,
            );
            if ((stats.stateVersion ?? 0) >= since && (stats.fillingPartitions ?? 0) === 0)
              pending.delete(id);
          } catch {
            // Unreachable: asked again, unless it leaves the cluster meanwhile.
            if (!cluster.committed()?.members.some((m) => m.id === id)) pending.delete(id);
          }
        }),
      );
      if (pending.size > 0) await delay(100);
    }
    if (pending.size > 0) log.warn({ waiting: [...pending] }, 'leaving before every copy was confirmed');
    else log.info('every partition handed over');
  }

  return {
    isPersistent(pool) {
      return poolInfo(cluster.committed(), pool)?.kind === 'persistent';
    },
    put,
    get,
    flushPage,
    flushObject,
    onReplicate,
    onFetch,
    onPeerGet,
    committed(previous, state) {
      if (state.partitionCount !== partitionCount) {
        partitionCount = state.partitionCount;
        clock = createVersionClock(partitionCount);
      }
      if (previous === null) {
        completeness.wipe();
        copyEpoch++;
      }
      const transition = completeness.applyState(previous, state);
      if (transition.dropped.size > 0) copyEpoch++;
      for (const [pool, partitions] of transition.dropped) {
        const gone = new Set(partitions);
        store.removePages((spec, hash) => spec.id === pool && gone.has(hash % partitionCount));
      }
      const live = new Set(state.pools.map((p) => p.id));
      for (const id of poolsSeen) {
        if (live.has(id)) continue;
        replicas.dropPool(id);
        poolsSeen.delete(id);
      }
      for (const id of live) poolsSeen.add(id);
      for (const waiter of versionWaiters) {
        if (state.version >= waiter.version) {
          versionWaiters.delete(waiter);
          waiter.resolve();
        }
      }
      if (completeness.counts().filling > 0) void fillLoop();
      else maybeReady();
    },
    reset() {
      self = { id: cluster.nodeId, incarnation: cluster.incarnation() };
      completeness = createCompleteness(self);
      copyEpoch++;
      fetchSessions.clear();
    },
    handOver,
    describe() {
      const counts = completeness.counts();
      return {
        fillingPartitions: counts.filling,
        lostPartitions: counts.lost,
        copiedPages,
        replicationBacklog: streams.backlog,
      };
    },
    close() {
      closed = true;
      clearInterval(sweeper);
      streams.close();
      for (const waiter of versionWaiters) waiter.resolve();
      versionWaiters.clear();
    },
  };
}
