// The primary's writes of persistent pages (docs/architecture.md, "Writes"): stamp a version, store the page
// here, forward it to every other target through the replica streams, and answer `accepted` only when every
// target holds it. A write that cannot reach every target in time is refused, and the handle is flushed
// everywhere with a newer version, so no copy keeps the page or an older one (put-put-get coherency). A write
// whose partition the cluster took from this node while it travelled is in doubt (TIMEOUT). A pool
// that asks for more copies than there are ready members is refused before anything is stored.
import {
  ChecksumError,
  ErrorCode,
  TmemError,
  checksumMatches,
  hasAllReplicas,
  partitionOf,
  persistentTableFor,
  replicaTargets,
  sameMember,
  type ClusterState,
  type FlushObject,
  type FlushPage,
  type MemberRef,
  type PageReply,
  type PoolInfo,
  type Put,
  type ReplicaEntry,
} from '@tmem/protocol';
import { FILLING, NOT_OWNER } from './completeness.ts';
import {
  delay,
  handleKey,
  notServing,
  now,
  otherTargets,
  poolInfo,
  type ReplicationContext,
} from './replication-context.ts';

/**
 * The worst outcome of delivering one write to its targets. 'in-doubt': a target left the state while the
 * write travelled, and this node no longer owns the partition to hand the write on (see `replicateToAll`).
 */
export type WriteOutcome = 'ok' | 'full' | 'corrupt' | 'timeout' | 'in-doubt';

/** The primary's side of persistent writes. */
export interface PrimaryWrites {
  put(op: Put, stateVersion: number | undefined): Promise<PageReply>;
  flushPage(op: FlushPage, stateVersion: number | undefined): Promise<PageReply>;
  flushObject(op: FlushObject, stateVersion: number | undefined): Promise<PageReply>;
}

/** Creates the primary's writes over the shared state. */
export function createPrimaryWrites(ctx: ReplicationContext): PrimaryWrites {
  const { store, cluster, log, replicas, streams } = ctx;

  function stillTarget(target: MemberRef, pool: number, partition: number): boolean {
    const state = cluster.committed();
    const info = poolInfo(state, pool);
    if (state === null || info === undefined) return false;
    return replicaTargets(state, info.replication, partition).some((t) => sameMember(t, target));
  }

  /**
   * Delivers `entry` to `target` until it holds it, it is no longer an owner of the partition, or the deadline
   * passes. Resolves 'ok' (held), 'left' (no longer a target), 'full', 'corrupt' or 'timeout'.
   */
  async function replicateTo(
    target: MemberRef,
    entry: ReplicaEntry,
    partition: number,
    deadline: number,
  ): Promise<WriteOutcome | 'left'> {
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
      if (result === 'ok') return 'ok';
      if (result === 'gone') return 'left';
      if (result === 'full' || result === 'corrupt' || result === 'timeout') return result;
      // 'not-owner' / 'unknown-pool': the target's state and ours differ; one of them catches up.
      if (!stillTarget(target, entry.pool, partition)) return 'left';
      await delay(Math.min(50, Math.max(0, deadline - now())));
    }
  }

  /**
   * Sends `entry`, which `writer` (this node's incarnation when it stored it) holds, to every other owner; the
   * worst outcome of them. A target that left the state meanwhile is not waited for: its replacement copies
   * the partition from its owners. That makes the write safe only while this node is one of them, in the
   * same incarnation and under a lease: a primary removed while the write travelled (cut off, rejoining
   * empty) may be the only node that ever held it, so the write is 'in-doubt', never accepted or done.
   */
  async function replicateToAll(
    targets: readonly MemberRef[],
    entry: ReplicaEntry,
    partition: number,
    deadline: number,
    writer: MemberRef,
  ): Promise<WriteOutcome> {
    const results = await Promise.all(targets.map((t) => replicateTo(t, entry, partition, deadline)));
    for (const worst of ['full', 'corrupt', 'timeout'] as const) if (results.includes(worst)) return worst;
    if (results.includes('left') && !ownsStill(writer, entry.pool, partition)) return 'in-doubt';
    return 'ok';
  }

  /** True while `writer` is this node's incarnation, holds a lease and is an owner of the partition. */
  function ownsStill(writer: MemberRef, pool: number, partition: number): boolean {
    if (!sameMember(ctx.self, writer)) return false;
    try {
      cluster.checkLease(undefined);
    } catch {
      return false;
    }
    return stillTarget(writer, pool, partition);
  }

  /** The answer to a write that may or may not be held: the client must not send it again. */
  function inDoubt(message: string, details: Record<string, number>): TmemError {
    return new TmemError(ErrorCode.Timeout, message, { details });
  }

  /** The in-doubt answer of a flush that did not reach every owner ('timeout' or 'in-doubt'). */
  function flushInDoubt(outcome: WriteOutcome, details: Record<string, number>): TmemError {
    return inDoubt(
      outcome === 'in-doubt'
        ? 'the cluster took the partition from this node while the flush travelled; it may not reach every owner'
        : 'not every owner confirmed the flush in time; it will reach them',
      details,
    );
  }

  /** Flushes one handle here and on every other owner, with a new version; waits until `deadline`. */
  async function flushEverywhere(
    state: ClusterState,
    pool: PoolInfo,
    oid: Uint8Array,
    index: number,
    partition: number,
    deadline: number,
  ): Promise<WriteOutcome> {
    const tombstone: ReplicaEntry = {
      pool: pool.id,
      oid,
      index,
      version: ctx.clock.stamp(partition, state.version),
    };
    const writer = ctx.self;
    replicas.apply(tombstone);
    return replicateToAll(otherTargets(ctx, state, pool, partition), tombstone, partition, deadline, writer);
  }

  /**
   * Runs the writes of one handle here one after another, and lets gets of the handle wait for them: a
   * refused write flushes the handle with a version stamped when it gives up, which must not remove a later
   * write that is already under way; and a reader must not see a page that may still be refused.
   */
  function writing<T>(pool: number, oid: Uint8Array, index: number, write: () => Promise<T>): Promise<T> {
    const key = handleKey(pool, oid, index);
    const previous = ctx.inFlight.get(key) ?? Promise.resolve();
    const done = previous.then(write);
    const settled = done.then(
      () => undefined,
      () => undefined,
    );
    ctx.inFlight.set(key, settled);
    void settled.then(() => {
      if (ctx.inFlight.get(key) === settled) ctx.inFlight.delete(key);
    });
    return done;
  }

  /**
   * Refuses a put to a pool that asks for more copies than there are ready members (reason 'replicas'): the
   * table would give it fewer owners than R, and an accepted page must have R copies. An older page at the
   * handle goes first, everywhere, so the refusal leaves nothing older readable (put-put-get coherency). This
   * node is a ready primary, so it holds every accepted page of the partition: no copy here (and none dropped
   * as corrupt) means no copy anywhere, and a refused put of a new handle costs no round trip.
   */
  async function refuseShort(
    op: Put,
    state: ClusterState,
    pool: PoolInfo,
    partition: number,
    deadline: number,
  ): Promise<PageReply> {
    const held =
      store.peek(op.pool, op.oid, op.index) !== null ||
      ctx.unrepaired.has(handleKey(op.pool, op.oid, op.index));
    if (held) {
      store.flushPage(op.pool, op.oid, op.index);
      ctx.unrepaired.delete(handleKey(op.pool, op.oid, op.index));
      await flushEverywhere(state, pool, op.oid, op.index, partition, deadline);
    }
    return { t: 'refused', id: op.id, reason: 'replicas' };
  }

  async function putNow(op: Put, stateVersion: number | undefined): Promise<PageReply> {
    const { state, pool, partition } = ctx.serving(op.pool, op.oid, op.index, stateVersion, 'primary');
    if (!checksumMatches(op.page, op.sum)) {
      throw new ChecksumError('the page does not match its checksum; it was corrupted on the way', {
        details: { pool: op.pool },
      });
    }
    const deadline = now() + ctx.replicationTimeoutMs;
    if (!hasAllReplicas(state, pool.replication)) return refuseShort(op, state, pool, partition, deadline);
    const version = ctx.clock.stamp(partition, state.version);
    const writer = ctx.self;
    // A drop of this node's copies (a wipe, an unseen state) while the write travels takes the page stored
    // here; the copy then made from the others may predate this write (see below).
    const epoch = ctx.copyEpoch;
    const local = store.put(
      op.pool,
      op.oid,
      op.index,
      op.page,
      op.sum === undefined ? { version } : { version, sum: op.sum },
    );
    ctx.unrepaired.delete(handleKey(op.pool, op.oid, op.index));
    ctx.maybeCorrupt(op.pool, op.oid, op.index);
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
    const outcome = await replicateToAll(
      otherTargets(ctx, state, pool, partition),
      entry,
      partition,
      deadline,
      writer,
    );
    if (outcome === 'in-doubt') {
      throw inDoubt(
        'the cluster took the partition from this node while the put travelled; it may not be held',
        { pool: op.pool, partition },
      );
    }
    if (outcome === 'ok') {
      // The copy made after a drop may have been taken from a replica before this write reached it, and
      // would then miss it or hold an older page: store it again (newest wins), while this node still owns
      // the partition, before a get of the handle may run (gets wait for the writes under way).
      if (ctx.copyEpoch !== epoch && ctx.completeness.of(op.pool, partition) !== NOT_OWNER) {
        // No room for it here: a hole in this copy, which reads fill from the others.
        if (replicas.apply(entry) === 'full') ctx.unrepaired.add(handleKey(op.pool, op.oid, op.index));
      }
      return { t: 'accepted', id: op.id };
    }
    log.info({ pool: op.pool, partition, outcome }, 'put refused: not every owner holds it');
    // Refused: no copy may keep this page or an older one. The flush keeps going in the background.
    void flushEverywhere(
      cluster.committed() ?? state,
      pool,
      op.oid,
      op.index,
      partition,
      now() + ctx.replicationTimeoutMs,
    );
    return { t: 'refused', id: op.id, reason: outcome === 'full' ? 'full' : 'replicas' };
  }

  async function flushPageNow(op: FlushPage, stateVersion: number | undefined): Promise<PageReply> {
    const { state, pool, partition } = ctx.serving(op.pool, op.oid, op.index, stateVersion, 'primary');
    store.flushPage(op.pool, op.oid, op.index);
    const outcome = await flushEverywhere(
      state,
      pool,
      op.oid,
      op.index,
      partition,
      now() + ctx.replicationTimeoutMs,
    );
    if (outcome === 'timeout' || outcome === 'in-doubt') {
      throw flushInDoubt(outcome, { pool: op.pool, partition });
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
    const primaryOf = cluster.servingView().persistentMask(pool.replication, 'primary');
    // Every partition this node is primary of in the committed state must be flushed here: while one is
    // moving (the accepted state disagrees) nobody may flush it, so the client retries.
    const table = persistentTableFor(state, pool.replication);
    for (let p = 0; p < state.partitionCount; p++) {
      if (primaryOf[p] !== 1 && sameMember(table.primary(p), ctx.self)) {
        throw notServing('partitions are moving; retry the flush', state.version);
      }
    }
    // A partition this node is still copying may have pages of the object only on the other copies, which
    // this flush would not reach: it waits until the copy is made (the client retries).
    for (const partition of ctx.completeness.partitionsIn(FILLING).get(op.pool) ?? []) {
      if (primaryOf[partition] === 1)
        throw notServing('a partition is being copied; retry the flush', state.version);
    }
    const deadline = now() + ctx.replicationTimeoutMs;
    const pending: Array<Promise<WriteOutcome>> = [];
    for (const index of store.objectIndexes(op.pool, op.oid)) {
      const partition = partitionOf(op.pool, op.oid, index, state.partitionCount);
      if (primaryOf[partition] !== 1) continue;
      store.flushPage(op.pool, op.oid, index);
      pending.push(flushEverywhere(state, pool, op.oid, index, partition, deadline));
    }
    const outcomes = await Promise.all(pending);
    const worst = outcomes.find((o) => o === 'in-doubt') ?? outcomes.find((o) => o === 'timeout');
    if (worst !== undefined) throw flushInDoubt(worst, { pool: op.pool });
    return { t: 'ok', id: op.id };
  }

  return {
    put: (op, stateVersion) => writing(op.pool, op.oid, op.index, () => putNow(op, stateVersion)),
    flushPage: (op, stateVersion) => writing(op.pool, op.oid, op.index, () => flushPageNow(op, stateVersion)),
    flushObject,
  };
}
