import {
  ChecksumError,
  ErrorCode,
  checksumMatches,
  TmemError,
  UnauthorizedError,
  UnknownPoolError,
  SHARED_POOL_OWNER_PREFIX,
  errorToWire,
  poolHeldBy,
  type NewPool,
  partitionHash,
  MAX_LISTED_IDENTITIES,
  byChargedBytes,
  type IdentityUse,
  type ClientFrame,
  type ClusterState,
  type NodeFrame,
  type NodeStats,
  type StatsScope,
  type PageOp,
  type PageReply,
} from '@tmem/protocol';
import type { ClusterMember } from './cluster/cluster-member.ts';
import type { EphemeralHandOver } from './cluster/ephemeral-hand-over.ts';
import type { PageStore, PoolSpec } from './page-store.ts';
import type { PageArena } from './page-arena.ts';
import { Verdict, verdictWire } from './serving-view.ts';
import { newPoolIdKey } from './cluster/pool-ids.ts';
import { collectBatch } from './batch-replies.ts';
import type { OpMetrics } from './op-metrics.ts';
import { changeError } from './change-errors.ts';
import type { SessionLiveness } from './session-liveness.ts';

/** What a request needs to know about its connection and node. */
export interface RequestContext {
  nodeId: string;
  /** The identity from the connection's handshake; it owns the private pools it creates. */
  identity: string;
  /** True for another memory node (it may send coordination frames). */
  isPeer: boolean;
  /**
   * Whose counters `stats` answers with: 'node' for peers, admin identities and every client of an open node;
   * 'identity' (the identity's own) for every other client.
   */
  statsScope: StatsScope;
  store: PageStore;
  cluster: ClusterMember;
  /** Copies a persistent pool keeps when the client does not say. */
  defaultReplication: number;
  /** Most pools one identity may have (ConnectionLimits.maxPoolsPerIdentity). */
  maxPoolsPerIdentity: number;
  /** Most pools the cluster may hold: ConnectionLimits.maxPools, lowered to what the node's frames carry. */
  maxPools: number;
  /** The node's op counters (op-metrics.ts): every page op answered here is counted, whatever the outcome. */
  metrics: OpMetrics;
  /** The client session from the connection's hello: the pools it creates belong to it. */
  session: string | undefined;
  /** The node's connected sessions, which the coordinator's sweep asks about (sessionsQuery). */
  sessions: SessionLiveness;
  /** True when this connection's identity may join the shared pool of `uuid` (shared-pool-access.ts). */
  mayJoinSharedPool(uuid: string): boolean;
}

/** The identities charged most in `store`, at most MAX_LISTED_IDENTITIES: what the node's admins see of each. */
function identitiesOf(store: PageStore): IdentityUse[] {
  const uses = store.owners().map((identity): IdentityUse => {
    const o = store.ownerStats(identity);
    return {
      identity,
      pools: o.pools,
      pages: o.ephemeralPages + o.persistentPages,
      usedBytes: o.usedBytes,
      recordBytes: o.recordBytes,
      evictions: o.evictions,
      refusedPuts: o.refusedPuts,
    };
  });
  return uses.sort(byChargedBytes).slice(0, MAX_LISTED_IDENTITIES);
}

/** An owner that never holds pools: its counters are all zero. */
const EMPTY_OWNER = '';

/**
 * The stats a connection may see (issue 9, finding 9). The node scope counts everything. The identity scope
 * holds the identity's own page-store counters, the node's capacity and its partition-level facts (version,
 * role, lease, serving, filling and lost partitions, shared by every identity), its own under-replicated pools,
 * and leaves out copiedPages and replicationBacklog, which count every identity's pages.
 */
export function statsFor(ctx: RequestContext): NodeStats {
  if (ctx.statsScope === 'node') {
    return {
      nodeId: ctx.nodeId,
      scope: 'node',
      ...ctx.store.stats(),
      ...ctx.cluster.describe(),
      identities: identitiesOf(ctx.store),
    };
  }
  // An allow-list, so a field added to describe() stays out of this scope until someone decides it may go in.
  const member = ctx.cluster.describe(ctx.identity);
  // A shared pool's accounting name is no identity's: one named so sees no counters (it can hold no pools).
  const own = ctx.identity.startsWith(SHARED_POOL_OWNER_PREFIX) ? EMPTY_OWNER : ctx.identity;
  return {
    nodeId: ctx.nodeId,
    scope: 'identity',
    capacityBytes: ctx.store.stats().capacityBytes,
    ...ctx.store.ownerStats(own),
    stateVersion: member.stateVersion,
    incarnation: member.incarnation,
    role: member.role,
    leaseHeld: member.leaseHeld,
    servingPartitions: member.servingPartitions,
    fillingPartitions: member.fillingPartitions,
    lostPartitions: member.lostPartitions,
    underReplicated: member.underReplicated,
    underReplicatedPools: member.underReplicatedPools,
  };
}

/**
 * Looks a pool up for an identity. A pool owned by someone else is reported exactly like a pool that does not
 * exist, so a client can never learn of another identity's pools (the contract's isolation rule).
 */
function ownedPool(ctx: RequestContext, poolId: number): PoolSpec {
  const pool = ctx.store.getPool(poolId);
  if (pool === undefined || !holds(ctx, pool)) throw unknownPool(poolId);
  return pool;
}

/** True when the connection's identity may use the pool: its owner, or for a shared pool one of its sharers. */
function holds(ctx: RequestContext, pool: PoolSpec): boolean {
  return pool.shared === true ? ctx.cluster.sharers.has(pool.id, ctx.identity) : pool.owner === ctx.identity;
}

function unknownPool(poolId: number): UnknownPoolError {
  return new UnknownPoolError(`pool ${poolId} does not exist`, { details: { pool: poolId } });
}

/** An error reply for one op. Built only when there is an error; the same shape for every code. */
function errorReply(id: number, error: unknown): PageReply {
  const wire = errorToWire(error);
  return { t: 'error', id, code: wire.code, message: wire.message, details: wire.details };
}

/**
 * Scratch meta for ephemeral puts: the store reads it during the call and keeps nothing but the putter's name
 * (a string), so one object serves.
 */
const putMeta: { sum?: number; putter?: string } = {};

/**
 * A page op of a persistent pool: replicated (see replication/replication.ts), whose serving check
 * (`cluster.checkLease`, then its partition masks) is this op's one check. Never rejects.
 */
function persistentOp(ctx: RequestContext, op: PageOp, stateVersion: number | undefined): Promise<PageReply> {
  const replication = ctx.cluster.replication;
  let reply: Promise<PageReply>;
  try {
    switch (op.t) {
      case 'put':
        reply = replication.put(op, stateVersion);
        break;
      case 'get':
        reply = replication.get(op, stateVersion);
        break;
      case 'flushPage':
        reply = replication.flushPage(op, stateVersion);
        break;
      case 'flushObject':
        reply = replication.flushObject(op, stateVersion);
        break;
    }
  } catch (error) {
    return Promise.resolve(errorReply(op.id, error));
  }
  return reply.catch((error: unknown) => errorReply(op.id, error));
}

/**
 * An ephemeral page op this node serves: one copy, so it completes here and now. A put records `identity` as
 * the object's last putter (a shared pool's departures go by it); a hit's page comes from `arena` when given.
 * Throws on bad input.
 */
function ephemeralOp(
  store: PageStore,
  handOver: EphemeralHandOver,
  op: PageOp,
  identity: string,
  arena?: PageArena,
): PageReply {
  switch (op.t) {
    case 'put': {
      if (!checksumMatches(op.page, op.sum)) {
        throw new ChecksumError('the page does not match its checksum; it was corrupted on the way');
      }
      putMeta.sum = op.sum;
      // In a shared pool the putter becomes the object's last putter (its departure flushes the object).
      putMeta.putter = identity;
      const result = store.put(op.pool, op.oid, op.index, op.page, putMeta);
      return result.status === 'accepted'
        ? { t: 'accepted', id: op.id }
        : { t: 'refused', id: op.id, reason: result.reason };
    }
    case 'get': {
      const stored = store.read(op.pool, op.oid, op.index, arena);
      if (stored === null) return { t: 'miss', id: op.id };
      return stored.sum === undefined
        ? { t: 'hit', id: op.id, page: stored.page }
        : { t: 'hit', id: op.id, page: stored.page, sum: stored.sum };
    }
    case 'flushPage':
      store.flushPage(op.pool, op.oid, op.index);
      return { t: 'ok', id: op.id };
    case 'flushObject':
      store.flushObject(op.pool, op.oid);
      // Copies waiting to be handed over, and pages of it handed over later, must not bring it back.
      handOver.onFlushObject(op.pool, op.oid);
      return { t: 'ok', id: op.id };
  }
}

/** The refusal of an op on a partition that waits for its handed-over pages (clients retry, as for a move). */
function gatedReply(id: number, version: number): PageReply {
  return {
    t: 'error',
    id,
    code: ErrorCode.NotServing,
    message: 'node is taking this partition over; retry',
    details: { version },
  };
}

/**
 * Applies one page op, if this node may serve it (serving-view.ts: the request's state version is the
 * committed one, the node holds a lease, and it is the primary of the page's partition in both its committed
 * and accepted states, or for a replica read of a persistent pool an owner). Each op gets exactly one serving
 * check and one partition hash. Ephemeral ops complete synchronously and return the reply itself (no
 * promise); persistent ones return a promise that settles when the other copies answered. Never throws or
 * rejects: failures become error replies for that op alone. With `arena`, a synchronous reply's page is in
 * it (page-arena.ts): the caller encodes that reply before it resets the arena.
 */
export function handlePageOp(
  ctx: RequestContext,
  op: PageOp,
  stateVersion: number | undefined,
  /** When the op started, for its latency; the ops of one batch share their batch's (one clock read). */
  startMs = performance.now(),
  arena?: PageArena,
): PageReply | Promise<PageReply> {
  const reply = answerPageOp(ctx, op, stateVersion, arena);
  if (reply instanceof Promise) {
    return reply.then((settled) => {
      ctx.metrics.record(op, settled, startMs);
      return settled;
    });
  }
  ctx.metrics.record(op, reply, startMs);
  return reply;
}

function answerPageOp(
  ctx: RequestContext,
  op: PageOp,
  stateVersion: number | undefined,
  arena: PageArena | undefined,
): PageReply | Promise<PageReply> {
  const spec = ctx.store.getPool(op.pool);
  const owned = spec !== undefined && holds(ctx, spec);
  if (owned && spec.kind === 'persistent') return persistentOp(ctx, op, stateVersion);
  // A node behind the client's state may not know the pool yet: that is STALE_STATE (refresh, retry), not
  // UNKNOWN_POOL, so the rule runs before the pool is judged. flushObject reaches every member (an object
  // spans many partitions): version and lease only.
  const serving = ctx.cluster.serving;
  const view = serving.view();
  const partition =
    owned && op.t !== 'flushObject' ? partitionHash(op.pool, op.oid, op.index) % view.partitionCount : -1;
  const verdict = serving.verdict(view, stateVersion, view.ephemeralPrimary, partition);
  if (verdict !== Verdict.Serve) {
    const wire = verdictWire(verdict, view.version);
    return { t: 'error', id: op.id, code: wire.code, message: wire.message, details: wire.details };
  }
  const handOver = ctx.cluster.handOver;
  if (partition >= 0 && handOver.gated(partition)) return gatedReply(op.id, view.version);
  if (!owned) return errorReply(op.id, unknownPool(op.pool));
  try {
    return ephemeralOp(ctx.store, handOver, op, ctx.identity, arena);
  } catch (error) {
    return errorReply(op.id, error);
  }
}

/**
 * The state as a connection may see it: peers see everything; a client sees only its own pools, so it can
 * never learn of another identity's pools (the contract's isolation rule), and neither the pool-id key (which
 * would let it undo the permutation of ids) nor `nextPoolId` (which counts every pool ever created).
 */
export function visibleState(state: ClusterState, identity: string, isPeer: boolean): ClusterState {
  if (isPeer) return state;
  // A shared pool shows its sharers as this identity alone: who else shares it is none of a client's business.
  const pools = state.pools
    .filter((pool) => poolHeldBy(pool, identity))
    .map((pool) => (pool.sharers === undefined ? pool : { ...pool, sharers: [identity] }));
  const shown: ClusterState = { ...state, pools };
  delete shown.poolIdKey;
  delete shown.nextPoolId;
  return shown;
}

/**
 * `newPool` with `shared`: join (or create) the shared pool of that UUID. Ephemeral only; an identity the node
 * does not authorise for the UUID is UNAUTHORIZED, and nothing else is ever made in its place.
 */
async function joinSharedPool(ctx: RequestContext, frame: NewPool, shared: string): Promise<NodeFrame> {
  if (frame.kind !== 'ephemeral') {
    throw new TmemError(
      ErrorCode.BadArgument,
      'only ephemeral pools can be shared; drop `shared` or the kind',
      {
        details: { reason: 'shared-persistent', kind: frame.kind },
      },
    );
  }
  if (!ctx.mayJoinSharedPool(shared)) {
    throw new UnauthorizedError(
      'this identity is not authorised to join that shared pool; ask the operator (tmem node --shared-pools)',
      { details: { shared: shared } },
    );
  }
  const result = await ctx.cluster.propose({
    type: 'joinSharedPool',
    shared: shared,
    identity: ctx.identity,
    pageSize: frame.pageSize,
    ...(frame.compression === undefined ? {} : { compression: frame.compression }),
    maxPoolsOfOwner: ctx.maxPoolsPerIdentity,
    maxPools: ctx.maxPools,
    poolIdKey: newPoolIdKey(),
  });
  if (!result.ok || result.poolId === undefined) throw changeError(result.ok ? 'no-pool-id' : result.error);
  const clusterId = ctx.cluster.clusterId();
  return {
    t: 'pool',
    id: frame.id,
    pool: result.poolId,
    kind: 'ephemeral',
    pageSize: frame.pageSize,
    ...(frame.compression === undefined ? {} : { compression: frame.compression }),
    shared: shared,
    ...(clusterId === undefined ? {} : { clusterId }),
    ...(result.version === undefined ? {} : { version: result.version }),
  };
}

function requirePeer(ctx: RequestContext, frame: ClientFrame): void {
  if (!ctx.isPeer) {
    throw new TmemError(ErrorCode.InvalidFrame, `${frame.t} frames come from memory nodes only`);
  }
}

async function answer(ctx: RequestContext, frame: ClientFrame): Promise<NodeFrame | undefined> {
  switch (frame.t) {
    case 'hello':
    case 'peerAuth':
      throw new TmemError(ErrorCode.InvalidFrame, 'handshake already done on this connection');
    case 'newPool': {
      if (frame.shared !== undefined) return joinSharedPool(ctx, frame, frame.shared);
      // The accounting names of shared pools are no identity's: one named so would share their counters.
      if (ctx.identity.startsWith(SHARED_POOL_OWNER_PREFIX)) {
        throw new TmemError(
          ErrorCode.BadArgument,
          `identities beginning "${SHARED_POOL_OWNER_PREFIX}" are reserved for shared pools; use another identity`,
          { details: { identity: ctx.identity } },
        );
      }
      const replication = frame.kind === 'ephemeral' ? 1 : (frame.replication ?? ctx.defaultReplication);
      const result = await ctx.cluster.propose({
        type: 'createPool',
        kind: frame.kind,
        pageSize: frame.pageSize,
        owner: ctx.identity,
        replication,
        ...(frame.compression === undefined ? {} : { compression: frame.compression }),
        maxPoolsOfOwner: ctx.maxPoolsPerIdentity,
        maxPools: ctx.maxPools,
        poolIdKey: newPoolIdKey(),
        ...(ctx.session === undefined ? {} : { session: ctx.session }),
      });
      if (!result.ok || result.poolId === undefined)
        throw changeError(result.ok ? 'no-pool-id' : result.error);
      const clusterId = ctx.cluster.clusterId();
      return {
        t: 'pool',
        id: frame.id,
        pool: result.poolId,
        kind: frame.kind,
        pageSize: frame.pageSize,
        ...(frame.compression === undefined ? {} : { compression: frame.compression }),
        ...(clusterId === undefined ? {} : { clusterId }),
        ...(result.version === undefined ? {} : { version: result.version }),
      };
    }
    case 'destroyPool': {
      const pool = ownedPool(ctx, frame.pool);
      if (pool.shared === true) {
        // Destroying one's handle on a shared pool is leaving it; the pool goes with its last sharer.
        const left = await ctx.cluster.propose({
          type: 'leaveSharedPool',
          poolId: frame.pool,
          identity: ctx.identity,
        });
        if (!left.ok && left.error !== 'unknown-pool') throw changeError(left.error);
        return { t: 'ok', id: frame.id };
      }
      const result = await ctx.cluster.propose({ type: 'destroyPool', poolId: frame.pool });
      if (!result.ok && result.error !== 'unknown-pool') throw changeError(result.error);
      return { t: 'ok', id: frame.id };
    }
    case 'endSession': {
      // Only the identity's own sessions: the owner is the connection's, whatever session it names.
      const result = await ctx.cluster.propose({
        type: 'endSession',
        owner: ctx.identity,
        session: frame.session,
      });
      if (!result.ok && result.error !== 'unknown-session') throw changeError(result.error);
      return { t: 'ok', id: frame.id };
    }
    case 'sessionsQuery':
      requirePeer(ctx, frame);
      return {
        t: 'sessionsLive',
        id: frame.id,
        live: frame.sessions.map((key) => ctx.sessions.isLive(key.owner, key.session)),
      };
    case 'stats':
      return { t: 'stats', id: frame.id, stats: statsFor(ctx) };
    case 'getState': {
      const state = ctx.cluster.committed();
      if (state === null) throw new TmemError(ErrorCode.NotServing, 'node is joining the cluster');
      return {
        t: 'state',
        id: frame.id,
        state: visibleState(state, ctx.identity, ctx.isPeer),
        leaderId: ctx.cluster.leaderId(),
      };
    }
    case 'peer':
      requirePeer(ctx, frame);
      ctx.cluster.receivePeerMessage(frame.message, ctx.identity);
      return undefined;
    case 'propose': {
      requirePeer(ctx, frame);
      const result = await ctx.cluster.handleProposeFrame(frame.change, frame.forwarded ?? false);
      return { ...result, id: frame.id };
    }
    case 'batch':
      // Sessions answer batches in parts themselves (batch-replies.ts); this is the one-frame answer.
      return collectBatch(frame, (op, sv) => handlePageOp(ctx, op, sv));
    case 'replicate':
      requirePeer(ctx, frame);
      return ctx.cluster.replication.onReplicate(frame);
    case 'fetch':
      requirePeer(ctx, frame);
      return ctx.cluster.replication.onFetch(frame, ctx.identity);
    case 'peerGet':
      requirePeer(ctx, frame);
      return ctx.cluster.replication.onPeerGet(frame);
    case 'handOff':
      requirePeer(ctx, frame);
      return ctx.cluster.handOver.receive(frame, ctx.identity);
    default:
      return handlePageOp(ctx, frame, undefined);
  }
}

/**
 * Answers one decoded frame from a connection that completed its handshake; undefined for one-way frames.
 * The handshake itself is the session's business, so `hello` here is a protocol error. Never rejects.
 */
export async function handleFrame(ctx: RequestContext, frame: ClientFrame): Promise<NodeFrame | undefined> {
  try {
    return await answer(ctx, frame);
  } catch (error) {
    return errorReply(frame.id, error);
  }
}
