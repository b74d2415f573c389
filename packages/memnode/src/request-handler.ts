import {
  ErrorCode,
  TmemError,
  UnknownPoolError,
  errorToWire,
  type ClientFrame,
  type NodeFrame,
  type PageOp,
  type PageReply,
} from '@tmem/protocol';
import type { PageStore, PoolSpec } from './page-store.ts';

/** What a request needs to know about its connection and node. */
export interface RequestContext {
  nodeId: string;
  /** The identity from the connection's handshake; it owns the private pools it creates. */
  identity: string;
  store: PageStore;
  /** Allocates a node-wide unique pool id. */
  nextPoolId(): number;
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

/** Applies one page op to the store. Never throws: failures become error replies for that op alone. */
export function handlePageOp(ctx: RequestContext, op: PageOp): PageReply {
  try {
    ownedPool(ctx, op.pool);
    switch (op.t) {
      case 'put': {
        const result = ctx.store.put(op.pool, op.oid, op.index, op.page);
        return result.status === 'accepted'
          ? { t: 'accepted', id: op.id }
          : { t: 'refused', id: op.id, reason: result.reason };
      }
      case 'get': {
        const page = ctx.store.get(op.pool, op.oid, op.index);
        return page === null ? { t: 'miss', id: op.id } : { t: 'hit', id: op.id, page };
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

/**
 * Answers one decoded frame from a client that completed its handshake. The handshake itself is the
 * session's business, so `hello` here is a protocol error.
 */
export function handleFrame(ctx: RequestContext, frame: ClientFrame): NodeFrame {
  try {
    switch (frame.t) {
      case 'hello':
        throw new TmemError(ErrorCode.InvalidFrame, 'handshake already done on this connection');
      case 'newPool': {
        const pool = ctx.nextPoolId();
        ctx.store.createPool({ id: pool, kind: frame.kind, pageSize: frame.pageSize, owner: ctx.identity });
        return { t: 'pool', id: frame.id, pool, kind: frame.kind, pageSize: frame.pageSize };
      }
      case 'destroyPool':
        ownedPool(ctx, frame.pool);
        ctx.store.destroyPool(frame.pool);
        return { t: 'ok', id: frame.id };
      case 'stats':
        return { t: 'stats', id: frame.id, stats: { nodeId: ctx.nodeId, ...ctx.store.stats() } };
      case 'batch':
        return { t: 'batch', id: frame.id, replies: frame.ops.map((op) => handlePageOp(ctx, op)) };
      case 'getState':
      case 'peer':
      case 'propose':
        throw new TmemError(ErrorCode.InvalidFrame, `${frame.t} is handled by the cluster layer`);
      default:
        return handlePageOp(ctx, frame);
    }
  } catch (error) {
    return errorReply(frame.id, error);
  }
}
