import {
  ChecksumError,
  ErrorCode,
  checksumMatches,
  TmemError,
  UnknownPoolError,
  errorToWire,
  partitionOf,
  type ClientFrame,
  type ClusterState,
  type NodeFrame,
  type PageOp,
  type PageReply,
} from '@tmem/protocol';
import type { ClusterMember } from './cluster/cluster-member.ts';
import type { PageStore, PoolSpec } from './page-store.ts';

/** What a request needs to know about its connection and node. */
export interface RequestContext {
  nodeId: string;
  /** The identity from the connection's handshake; it owns the private pools it creates. */
  identity: string;
  /** True for another memory node (it may send coordination frames). */
  isPeer: boolean;
  store: PageStore;
  cluster: ClusterMember;
  /** Copies a persistent pool keeps when the client does not say. */
  defaultReplication: number;
}

/**
 * Looks a pool up for an identity. A pool owned by someone else is reported exactly like a pool that does not
 * exist, so a client can never learn of another identity's pools (the contract's isolation rule).
 */
function ownedPool(ctx: RequestContext, poolId: number): PoolSpec {
  const pool = ctx.store.getPool(poolId);
  if (pool === undefined || pool.owner !== ctx.identity) {
    throw new UnknownPoolError(`pool ${poolId} does not exist`, { details: { pool: poolId } });
  }
  return pool;
}

function errorReply(id: number, error: unknown): PageReply & { t: 'error' } {
  return { t: 'error', id, ...errorToWire(error) };
}

/** A page op of a persistent pool: replicated (see replication/replication.ts). Never rejects. */
async function handlePersistentOp(
  ctx: RequestContext,
  op: PageOp,
  stateVersion: number | undefined,
): Promise<PageReply> {
  const replication = ctx.cluster.replication;
  try {
    switch (op.t) {
      case 'put':
        return await replication.put(op, stateVersion);
      case 'get':
        return await replication.get(op, stateVersion);
      case 'flushPage':
        return await replication.flushPage(op, stateVersion);
      case 'flushObject':
        return await replication.flushObject(op, stateVersion);
    }
  } catch (error) {
    return errorReply(op.id, error);
  }
}

/**
 * Applies one page op, if this node may serve it: the request's state version must be this node's and the
 * node must be the primary of the page's partition (or, for a replica read of a persistent pool, an owner),
 * holding a lease. Ephemeral ops complete synchronously; persistent ones wait for the other copies. Never
 * throws or rejects: failures become error replies for that op alone.
 */
export function handlePageOp(
  ctx: RequestContext,
  op: PageOp,
  stateVersion: number | undefined,
): PageReply | Promise<PageReply> {
  try {
    // A node behind the client's state may not know the pool yet: that is STALE_STATE (refresh, retry), not
    // UNKNOWN_POOL, so the version and the lease are checked before the pool, once per op. An ephemeral page op
    // also needs this node to be its partition's primary (one check covers both); flushObject reaches every
    // member (an object spans many partitions), and persistent ops are checked by replication.
    const spec = ctx.store.getPool(op.pool);
    const ephemeral = spec?.owner === ctx.identity && spec.kind === 'ephemeral';
    const partitionCount = ctx.cluster.committed()?.partitionCount ?? 1;
    const partition =
      ephemeral && op.t !== 'flushObject' ? partitionOf(op.pool, op.oid, op.index, partitionCount) : null;
    ctx.cluster.checkServing(stateVersion, partition);
    const pool = ownedPool(ctx, op.pool);
    if (pool.kind === 'persistent') return handlePersistentOp(ctx, op, stateVersion);
    switch (op.t) {
      case 'put': {
        if (!checksumMatches(op.page, op.sum)) {
          throw new ChecksumError('the page does not match its checksum; it was corrupted on the way');
        }
        const result = ctx.store.put(
          op.pool,
          op.oid,
          op.index,
          op.page,
          op.sum === undefined ? {} : { sum: op.sum },
        );
        return result.status === 'accepted'
          ? { t: 'accepted', id: op.id }
          : { t: 'refused', id: op.id, reason: result.reason };
      }
      case 'get': {
        const stored = ctx.store.read(op.pool, op.oid, op.index);
        if (stored === null) return { t: 'miss', id: op.id };
        return {
          t: 'hit',
          id: op.id,
          page: stored.page,
          ...(stored.sum === undefined ? {} : { sum: stored.sum }),
        };
      }
      case 'flushPage':
        ctx.store.flushPage(op.pool, op.oid, op.index);
        return { t: 'ok', id: op.id };
      case 'flushObject':
        ctx.store.flushObject(op.pool, op.oid);
        return { t: 'ok', id: op.id };
    }
  } catch (error) {
    return errorReply(op.id, error);
  }
}

function changeError(error: string): TmemError {
  switch (error) {
    case 'unknown-pool':
      return new UnknownPoolError('pool does not exist');
    case 'bad-page-size':
      return new TmemError(ErrorCode.BadPageSize, 'page size must be a power of two from 512 to 65536');
    case 'bad-replication':
      return new TmemError(
        ErrorCode.BadArgument,
        'replication must be 1 for ephemeral pools, 1..16 otherwise',
      );
    default:
      return new TmemError(ErrorCode.NoCoordinator, `change refused: ${error}`);
  }
}

/**
 * The state as a connection may see it: peers see everything; a client sees only its own pools, so it can
 * never learn of another identity's pools (the contract's isolation rule).
 */
export function visibleState(state: ClusterState, identity: string, isPeer: boolean): ClusterState {
  return isPeer ? state : { ...state, pools: state.pools.filter((pool) => pool.owner === identity) };
}

function requirePeer(ctx: RequestContext, frame: ClientFrame): void {
  if (!ctx.isPeer) {
    throw new TmemError(ErrorCode.InvalidFrame, `${frame.t} frames come from memory nodes only`);
  }
}

async function answer(ctx: RequestContext, frame: ClientFrame): Promise<NodeFrame | undefined> {
  switch (frame.t) {
    case 'hello':
      throw new TmemError(ErrorCode.InvalidFrame, 'handshake already done on this connection');
    case 'newPool': {
      const replication = frame.kind === 'ephemeral' ? 1 : (frame.replication ?? ctx.defaultReplication);
      const result = await ctx.cluster.propose({
        type: 'createPool',
        kind: frame.kind,
        pageSize: frame.pageSize,
        owner: ctx.identity,
        replication,
      });
      if (!result.ok || result.poolId === undefined)
        throw changeError(result.ok ? 'no-pool-id' : result.error);
      return { t: 'pool', id: frame.id, pool: result.poolId, kind: frame.kind, pageSize: frame.pageSize };
    }
    case 'destroyPool': {
      ownedPool(ctx, frame.pool);
      const result = await ctx.cluster.propose({ type: 'destroyPool', poolId: frame.pool });
      if (!result.ok && result.error !== 'unknown-pool') throw changeError(result.error);
      return { t: 'ok', id: frame.id };
    }
    case 'stats':
      return {
        t: 'stats',
        id: frame.id,
        stats: { nodeId: ctx.nodeId, ...ctx.store.stats(), ...ctx.cluster.describe() },
      };
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
      ctx.cluster.receivePeerMessage(frame.message);
      return undefined;
    case 'propose': {
      requirePeer(ctx, frame);
      const result = await ctx.cluster.handleProposeFrame(frame.change, frame.forwarded ?? false);
      return { ...result, id: frame.id };
    }
    case 'batch': {
      // Ephemeral ops are answered at once; persistent ones wait for their copies, concurrently.
      const replies = frame.ops.map((op) => Promise.resolve(handlePageOp(ctx, op, frame.sv)));
      return { t: 'batch', id: frame.id, replies: await Promise.all(replies) };
    }
    case 'replicate':
      requirePeer(ctx, frame);
      return ctx.cluster.replication.onReplicate(frame);
    case 'fetch':
      requirePeer(ctx, frame);
      return ctx.cluster.replication.onFetch(frame, ctx.identity);
    case 'peerGet':
      requirePeer(ctx, frame);
      return ctx.cluster.replication.onPeerGet(frame);
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
