// Reads of persistent pages (docs/architecture.md, "Reads"): the primary (or, for `replica: true`, any ready
// owner) answers from its store once no write of the handle is under way here. A copy that cannot answer alone
// (incomplete, lost, or with a hole where a corrupt page was dropped) asks every other member (`peerGet`) and
// trusts the answers only when a complete copy is among them, or every member answered; a page found repairs
// this copy. It never guesses a miss: without a trustworthy answer it is NOT_SERVING, with no copy anywhere
// DATA_LOST.
import {
  DataLostError,
  checksumMatches,
  sameMember,
  type ClusterState,
  type Get,
  type PageReply,
  type PoolInfo,
  type ReplicaEntry,
} from '@tmem/protocol';
import { COMPLETE, FILLING, LOST } from './completeness.ts';
import { handleKey, notServing, poolInfo, type ReplicationContext } from './replication-context.ts';

/** What the other members hold of one handle. */
export interface OthersAnswer {
  /** The newest good entry (page or tombstone) among the answers, when they can be trusted. */
  entry: ReplicaEntry | undefined;
  /** A complete copy was among the answers: a miss is a miss. */
  authoritative: boolean;
  /** Every member answered and none has a complete copy. */
  lost: boolean;
}

/** Reads, and the repair of corrupt copies they find. */
export interface Reads {
  get(op: Get, stateVersion: number | undefined): Promise<PageReply>;
  /**
   * Replaces this node's corrupt copy of a handle with the newest good one another member holds; the new entry,
   * or undefined when no other member has a good copy (the corrupt one is dropped either way).
   */
  repairCorrupt(
    state: ClusterState,
    poolId: number,
    oid: Uint8Array,
    index: number,
  ): Promise<{ entry: ReplicaEntry | undefined; lost: boolean }>;
}

/** Creates the reads over the shared state. */
export function createReads(ctx: ReplicationContext): Reads {
  const { store, cluster, log, replicas } = ctx;

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
  ): Promise<OthersAnswer> {
    const others = state.members.filter((m) => !sameMember(m, ctx.self));
    const replies = await Promise.allSettled(
      others.map((m) =>
        cluster.call(
          m.id,
          (id) => ({ t: 'peerGet', id, sv: state.version, pool: pool.id, oid, index }),
          'peerGot',
          ctx.peerTimeoutMs,
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
    ctx.unrepaired.add(key);
    const found = await readFromOthers(state, pool, oid, index);
    if (found.entry !== undefined || found.authoritative) ctx.unrepaired.delete(key);
    if (found.entry?.page !== undefined) replicas.apply(found.entry);
    return { entry: found.entry, lost: found.lost };
  }

  async function get(op: Get, stateVersion: number | undefined): Promise<PageReply> {
    const key = handleKey(op.pool, op.oid, op.index);
    // Until no write of the handle is under way here (a new one may start while the get waits).
    for (let pending = ctx.inFlight.get(key); pending !== undefined; pending = ctx.inFlight.get(key)) {
      await pending;
    }
    const { state, pool, partition } = ctx.serving(
      op.pool,
      op.oid,
      op.index,
      stateVersion,
      op.replica ? 'owner' : 'primary',
    );
    let stored = store.read(op.pool, op.oid, op.index);
    if (stored !== null && !checksumMatches(stored.page, stored.sum)) {
      log.warn({ pool: op.pool, partition }, 'corrupt copy dropped; reading another');
      store.discard(op.pool, op.oid, op.index);
      ctx.unrepaired.add(key);
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
    const copy = ctx.completeness.of(op.pool, partition);
    // A copy dropped as corrupt is a hole in an otherwise complete copy: only the others can fill it.
    const corrupt = ctx.unrepaired.has(key);
    if (copy === COMPLETE && !corrupt) return { t: 'miss', id: op.id };
    const found = await readFromOthers(state, pool, op.oid, op.index);
    if (found.entry !== undefined || found.authoritative) ctx.unrepaired.delete(key);
    if (found.entry?.page !== undefined) {
      // Repair this copy with what the others hold (newest wins: a flush this node knows of since is not
      // undone, and then the answer is a miss).
      const applied = replicas.apply(found.entry);
      if (applied === 'ok') ctx.clock.observe(partition, found.entry.version);
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
      if (copy === FILLING && !op.replica) ctx.completeness.set(op.pool, partition, LOST);
      throw new DataLostError(
        corrupt
          ? 'the only copy of this page was corrupt; it cannot be read'
          : `every copy of partition ${partition} of pool ${op.pool} was lost; the page cannot be read`,
        { details: { pool: op.pool, partition } },
      );
    }
    throw notServing('the owners of this page cannot be reached now', state.version);
  }

  return { get, repairCorrupt };
}
