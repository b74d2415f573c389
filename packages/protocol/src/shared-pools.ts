// Shared pools (the contract's "shared pools, ephemeral only"): an ephemeral pool joined by a 128-bit UUID
// instead of created privately. The names and the one rule of who holds a pool live here, so the node's
// ownership check, its view of the state for clients and the state machine's pool limits cannot disagree.
import { z } from 'zod';
import { MAX_IDENTITY_LENGTH } from './constants.ts';

/**
 * A shared pool's name on the wire: a UUID in its canonical form, lowercase (`createPool` lowercases what the
 * caller gives). One spelling per UUID, so two sharers can never name one pool two ways.
 */
export const SharedPoolUuid = z
  .string()
  .regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, {
    message: 'a shared pool is named by a UUID: 32 hex digits as 8-4-4-4-12',
  });
/** A shared pool's UUID, canonical and lowercase. */
export type SharedPoolUuid = z.infer<typeof SharedPoolUuid>;

/**
 * Most identities that may share one pool at a time. Each sharer is named in the cluster state, which travels
 * whole in every commit; the cluster-wide bound counts sharers too (memnode's state-bound.ts).
 */
export const MAX_SHARERS_PER_POOL = 64;

/** One sharer as the cluster state names it: a client identity. */
export const SharerIdentity = z.string().min(1).max(MAX_IDENTITY_LENGTH);

/** The prefix of the accounting owner of every shared pool (sharedPoolOwner). */
export const SHARED_POOL_OWNER_PREFIX = 'shared:';

/**
 * The owner a shared pool is recorded and accounted under: not any sharer, because sharers come and go and the
 * pool's pages are none of theirs alone. A node charges the pool's pages to this name (its own LRU list, quota
 * and dedup scope), so one sharer's private pools never share slots with the pool and no sharer's own counters
 * include it.
 */
export function sharedPoolOwner(uuid: string): string {
  return SHARED_POOL_OWNER_PREFIX + uuid;
}

/** What a pool holds that decides who may use it: PoolInfo's fields, or a node's view of them. */
export interface PoolHolders {
  owner: string;
  shared?: string | undefined;
  sharers?: readonly string[] | undefined;
}

/**
 * True when `identity` may use the pool: a private pool's owner, a shared pool's current sharers. Nobody else,
 * not even an identity that happens to be named like a shared pool's accounting owner.
 */
export function poolHeldBy(pool: PoolHolders, identity: string): boolean {
  if (pool.shared !== undefined) return pool.sharers?.includes(identity) === true;
  return pool.owner === identity;
}
