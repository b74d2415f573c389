// The replicated cluster state: what every member agrees on and what clients route by.
//
// Invariants every ClusterState keeps (checked by the schema on the wire, kept by applyChange):
// - `members` is sorted by id and ids are unique (one incarnation per id at a time);
// - `version` grows by exactly 1 per applied change, `term` is the coordinator term that proposed it;
// - pool ids are unique u32s other than 0, never reused (so a stale request for a destroyed pool can never hit a
//   newer pool with the same id): the n-th pool created gets id = permutation(poolIdKey, n) with n counted by
//   `nextPoolId`, a keyed bijection (memnode's pool-ids.ts), so an id says nothing of how many pools exist;
// - `poolIdKey` and `nextPoolId` are present in every state a member holds and absent in the state a client
//   sees (the node strips them: the key would let a client undo the permutation, the counter tells the count).
import { z } from 'zod';
import { COMPRESSIONS, MAX_REPLICATION, U32_MAX, isValidPageSize } from './constants.ts';
import { MAX_SHARERS_PER_POOL, SharedPoolUuid, SharerIdentity } from './shared-pools.ts';

const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

/** One member of the cluster: a memory-node process, identified by id AND incarnation. */
export const MemberInfo = z.strictObject({
  /** Stable name of the node (survives restarts). */
  id: z.string().min(1).max(128),
  /** Where peers and clients reach it (ws:// or wss://). */
  url: z.string().max(2048),
  /**
   * Bumped on every process start (e.g. wall-clock ms at start): a restarted process is a new member whose
   * votes, acks and pages have nothing to do with its previous life.
   */
  incarnation: count,
  /** Bytes of page data the node offers; weights its share of partitions. */
  capacityBytes: count,
  /**
   * Persistent placement: a member that joined is `filling` (it receives new writes and copies the persistent
   * partitions it will own) until it reports them copied and becomes `ready`; a member handing its partitions
   * over before it leaves is `leaving`. Only ready members own persistent partitions. Absent means ready.
   */
  phase: z.enum(['filling', 'ready', 'leaving']).optional(),
});
/** One member of the cluster. */
export type MemberInfo = z.infer<typeof MemberInfo>;

/**
 * A client session: 16 random bytes as 32 lowercase hex digits, drawn by the client at connect and kept across
 * its reconnects. Pools created in a session are destroyed cluster-wide when it ends (the client closes, or it
 * stays disconnected for the nodes' session grace period).
 */
export const SessionId = z.string().regex(/^[0-9a-f]{32}$/);
/** A client session id. */
export type SessionId = z.infer<typeof SessionId>;

/** One pool, cluster-wide: the same id means the same pool on every node. */
export const PoolInfo = z.strictObject({
  /** A u32 on the wire; 0 is never a pool id. Unordered: see poolIdKey. */
  id: z.number().int().min(1).max(U32_MAX),
  kind: z.enum(['ephemeral', 'persistent']),
  pageSize: count.refine(isValidPageSize, { message: 'page size must be a power of two from 512 to 65536' }),
  /** Client identity that created the pool. */
  owner: z.string().min(1).max(256),
  /** Copies kept of each page (1 for ephemeral pools). */
  replication: z.number().int().min(1).max(MAX_REPLICATION),
  /** How every owner stores the pool's pages (absent: as written); replicas compress what they receive. */
  compression: z.enum(COMPRESSIONS).optional(),
  /**
   * The client session that created the pool: the pool goes when that session ends. Absent for pools created
   * without a session (older clients, raw frames), which live until destroyed.
   */
  session: SessionId.optional(),
  /**
   * A shared pool's UUID (ephemeral pools only; absent: a private pool). Its `owner` is then
   * sharedPoolOwner(uuid), the name its pages are accounted under, and only its `sharers` may use it.
   */
  shared: SharedPoolUuid.optional(),
  /** The identities that joined the shared pool and have not left, in join order; present iff `shared`. */
  sharers: z.array(SharerIdentity).min(1).max(MAX_SHARERS_PER_POOL).optional(),
});
/** One pool, cluster-wide. */
export type PoolInfo = z.infer<typeof PoolInfo>;

/** The key of the pool-id permutation: 16 random bytes as 32 lowercase hex digits. */
export const PoolIdKey = z.string().regex(/^[0-9a-f]{32}$/);

/**
 * The whole replicated state. Small on purpose: it travels whole in every proposal, so the pools in it are
 * bounded cluster-wide (a node's `maxPools`, memnode's state-bound.ts) whatever clients do.
 */
export const ClusterState = z
  .strictObject({
    /**
     * The cluster's identity, drawn at random by the founding node and kept by every later state. Versions and
     * pool ids are numbered afresh in a new cluster, so they only mean something together with this id: a node never
     * joins, and a client never keeps using pools of, a cluster with another id. Absent only in states built
     * by hand (tests) or by nodes that predate it.
     */
    clusterId: z.string().min(1).max(128).optional(),
    /** Strictly increasing by 1 per committed change; requests carry it so nobody acts on an old table. */
    version: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
    /** Coordinator term that proposed this state; (term, version) identifies a state uniquely. */
    term: count,
    /** Sorted by id, ids unique. */
    members: z.array(MemberInfo).max(1024),
    pools: z.array(PoolInfo),
    /**
     * How many pools were ever created, plus 1: the input of the next pool's id. Never decreases, so ids are
     * never reused. Absent in a client's view only (it tells how many pools exist).
     */
    nextPoolId: count.optional(),
    /**
     * Key of the permutation that turns `nextPoolId` into pool ids (128 bits, hex), drawn at random by the
     * founding node like clusterId and kept by every later state. Absent in a client's view only.
     */
    poolIdKey: PoolIdKey.optional(),
    /** Fixed when the cluster is created. */
    partitionCount: z
      .number()
      .int()
      .min(1)
      .max(1 << 20),
  })
  .refine((s) => s.members.every((m, i) => i === 0 || (s.members[i - 1] as MemberInfo).id < m.id), {
    message: 'members must be sorted by id without duplicates',
  })
  .refine((s) => new Set(s.pools.map((p) => p.id)).size === s.pools.length, {
    message: 'pool ids must be unique',
  })
  .refine((s) => s.pools.every((p) => (p.shared === undefined) === (p.sharers === undefined)), {
    message: 'a pool has sharers exactly when it is shared',
  });
/** The whole replicated state. Treat values as immutable: applyChange returns new objects. */
export type ClusterState = z.infer<typeof ClusterState>;
