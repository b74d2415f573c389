import { z } from 'zod';
import { ClusterState, PoolInfo, SessionId } from './cluster-state.ts';
import { SharedPoolUuid } from './shared-pools.ts';
import {
  COMPRESSIONS,
  MAX_BATCH_OPS,
  MAX_IDENTITY_LENGTH,
  MAX_OID_BYTES,
  MAX_PAGE_SIZE,
  MAX_REPLICATION,
  U32_MAX,
  isValidPageSize,
} from './constants.ts';

// Schemas are the types: each `export const X = z...` has a matching `export type X = z.infer<typeof X>`.

const u32 = z.number().int().min(0).max(U32_MAX);
/** Request ids are u32; 0 is reserved for replies to frames whose id could not be read. */
const requestId = u32;
// z.custom rather than z.instanceof: the latter narrows to Uint8Array<ArrayBuffer>, which Buffers are not typed as.
const bytes = z.custom<Uint8Array>((value) => value instanceof Uint8Array, { message: 'expected binary' });
const oid = bytes.refine((b) => b.length >= 1 && b.length <= MAX_OID_BYTES, {
  message: `object id must be 1 to ${MAX_OID_BYTES} bytes`,
});
// Pages are checked against their pool's page size by the store; here only the absolute bound.
const page = bytes.refine((b) => b.length <= MAX_PAGE_SIZE, {
  message: `page must be at most ${MAX_PAGE_SIZE} bytes`,
});

/** Pool kinds: ephemeral pages may vanish, persistent puts may be refused but accepted pages stay. */
export const PoolKind = z.enum(['ephemeral', 'persistent']);
export type PoolKind = z.infer<typeof PoolKind>;

/**
 * First frame on every connection: protocol version and the client identity that owns private pools.
 * Memory nodes talking to each other say `role: 'peer'` and use their node id as identity.
 */
export const Hello = z.strictObject({
  t: z.literal('hello'),
  id: requestId,
  protocol: u32,
  identity: z.string().min(1).max(MAX_IDENTITY_LENGTH),
  role: z.enum(['client', 'peer']).optional(),
  /** A peer's own URL, so the receiver can answer it before any state names it (a joiner's first acks). */
  url: z.string().max(2048).optional(),
  /** A peer's challenge to the node it dials (peer-auth.ts): the node's welcome must prove the secret over it. */
  nonce: z.string().max(64).optional(),
  /** A client's bearer token, required when the node authenticates clients (`tmem token`). */
  token: z.string().max(512).optional(),
  /**
   * The id of the cluster a peer serves (absent for a node that never was a member): a node of another cluster
   * answers CLUSTER_CHANGED, so two clusters never exchange coordination messages or pages.
   */
  clusterId: z.string().min(1).max(128).optional(),
  /**
   * A client's session (SessionId), drawn at connect and sent again on every reconnect: the pools it creates
   * belong to it and go when it ends. Without one, the client's pools never expire.
   */
  session: SessionId.optional(),
});
export type Hello = z.infer<typeof Hello>;

/** A peer's answer to the node's challenge: its proof that it holds the cluster secret (peer-auth.ts). */
export const PeerAuth = z.strictObject({
  t: z.literal('peerAuth'),
  id: requestId,
  proof: z.string().max(128),
});
export type PeerAuth = z.infer<typeof PeerAuth>;

/** Creates a pool owned by the connection's identity. */
export const NewPool = z.strictObject({
  t: z.literal('newPool'),
  id: requestId,
  kind: PoolKind,
  pageSize: u32.refine(isValidPageSize, {
    message: 'page size must be a power of two from 512 to 65536',
  }),
  /** Copies of each page a persistent pool keeps; ephemeral pools keep one. Default: the cluster's. */
  replication: z.number().int().min(1).max(MAX_REPLICATION).optional(),
  /** How the nodes store the pool's pages (absent: as written). An unknown value is INVALID_FRAME. */
  compression: z.enum(COMPRESSIONS).optional(),
  /**
   * Join the shared pool of this UUID instead, creating it if no sharer holds it (ephemeral only: a persistent
   * one is BAD_ARGUMENT). An identity the node does not authorise for it gets UNAUTHORIZED, never a private pool.
   */
  shared: SharedPoolUuid.optional(),
});
export type NewPool = z.infer<typeof NewPool>;

/**
 * Ends a session of the connection's identity: every pool it created is destroyed cluster-wide. Ok also when
 * the session has no pools (ended already, or never created one).
 */
export const EndSession = z.strictObject({ t: z.literal('endSession'), id: requestId, session: SessionId });
export type EndSession = z.infer<typeof EndSession>;

/** Most sessions one SessionsQuery names. */
export const MAX_QUERIED_SESSIONS = 4096;

/** One session a SessionsQuery asks about: its owner identity and its id. */
export const SessionKey = z.strictObject({
  owner: PoolInfo.shape.owner,
  session: SessionId,
});
export type SessionKey = z.infer<typeof SessionKey>;

/**
 * Node to node: the coordinator asks which of these sessions are live on the receiver (a client of it is
 * connected in the session, or disconnected less than the session grace period ago). Answered SessionsLive.
 */
export const SessionsQuery = z.strictObject({
  t: z.literal('sessionsQuery'),
  id: requestId,
  sessions: z.array(SessionKey).max(MAX_QUERIED_SESSIONS),
});
export type SessionsQuery = z.infer<typeof SessionsQuery>;

/** Destroys a pool and every page in it. */
export const DestroyPool = z.strictObject({ t: z.literal('destroyPool'), id: requestId, pool: u32 });
export type DestroyPool = z.infer<typeof DestroyPool>;

/**
 * Stores a page. Answered accepted or refused. `sum` is the CRC-32C of the page computed by the client: the
 * node refuses a page that does not match it (CHECKSUM_MISMATCH), keeps it with the page, checks it on every
 * copy and returns it with every hit, so corruption anywhere on the way is detected end to end.
 */
export const Put = z.strictObject({
  t: z.literal('put'),
  id: requestId,
  pool: u32,
  oid,
  index: u32,
  page,
  sum: u32.optional(),
});
export type Put = z.infer<typeof Put>;

/**
 * Reads a page. Answered hit (with the page) or miss. A persistent get goes to the partition's primary;
 * `replica` marks a read the client sends to another owner because the primary is unreachable.
 */
export const Get = z.strictObject({
  t: z.literal('get'),
  id: requestId,
  pool: u32,
  oid,
  index: u32,
  replica: z.boolean().optional(),
});
export type Get = z.infer<typeof Get>;

/** Removes one page; ok even when nothing was there. */
export const FlushPage = z.strictObject({
  t: z.literal('flushPage'),
  id: requestId,
  pool: u32,
  oid,
  index: u32,
});
export type FlushPage = z.infer<typeof FlushPage>;

/** Removes every page of an object; ok even when nothing was there. */
export const FlushObject = z.strictObject({
  t: z.literal('flushObject'),
  id: requestId,
  pool: u32,
  oid,
});
export type FlushObject = z.infer<typeof FlushObject>;

/** Asks for the node's statistics. */
export const StatsRequest = z.strictObject({ t: z.literal('stats'), id: requestId });
export type StatsRequest = z.infer<typeof StatsRequest>;

/** The page ops a batch may carry. */
export const PageOp = z.discriminatedUnion('t', [Put, Get, FlushPage, FlushObject]);
export type PageOp = z.infer<typeof PageOp>;

/**
 * Many page ops for one node in one frame; each op keeps its own request id. `sv` is the cluster-state version
 * the client routed by: a node at another version answers STALE_STATE with its own, so nobody acts on an old
 * partition table.
 */
export const Batch = z.strictObject({
  t: z.literal('batch'),
  id: requestId,
  ops: z.array(PageOp).min(1).max(MAX_BATCH_OPS),
  sv: u32.optional(),
});
export type Batch = z.infer<typeof Batch>;

/** Asks for the cluster state; with `subscribe`, the node also pushes every newly committed state. */
export const GetState = z.strictObject({ t: z.literal('getState'), id: requestId, subscribe: z.boolean() });
export type GetState = z.infer<typeof GetState>;

/**
 * Node to node: one coordination message (vote, proposal, heartbeat...). One-way: its id is 0 and nothing answers; the
 * message itself is validated by the node's consensus schema.
 */
export const PeerMessage = z.strictObject({ t: z.literal('peer'), id: requestId, message: z.unknown() });
export type PeerMessage = z.infer<typeof PeerMessage>;

/**
 * Node to node: asks the receiver to get a cluster-state change committed (a join, a leave, a pool). A node
 * that is not the coordinator forwards it. `change` is validated by the node's state-change schema.
 */
export const ProposeChange = z.strictObject({
  t: z.literal('propose'),
  id: requestId,
  change: z.unknown(),
  /** Set when a node relays the change to the coordinator: the receiver must not relay it again. */
  forwarded: z.boolean().optional(),
});
export type ProposeChange = z.infer<typeof ProposeChange>;

// ---- replication between memory nodes (peers only) ----

/**
 * The version of a persistent page or tombstone, stamped by the partition's primary: larger is newer. A
 * primary stamps at least `stateVersion * 2^21` (see VERSION_EPOCH), so a primary of a later state always
 * stamps above everything an earlier primary stamped.
 */
const version = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER);

/**
 * One replicated change of a persistent pool: a page (`page` + `sum`), a flushed page (`page` absent), or a
 * flushed object (`index` absent). Applied newest-version-wins; a flush leaves a tombstone of its version.
 */
export const ReplicaEntry = z.strictObject({
  pool: u32,
  oid,
  index: u32.optional(),
  version,
  page: page.optional(),
  sum: u32.optional(),
});
export type ReplicaEntry = z.infer<typeof ReplicaEntry>;

/** Primary to owner: apply these entries (in order). `sv` is the sender's state version. */
export const Replicate = z.strictObject({
  t: z.literal('replicate'),
  id: requestId,
  sv: u32,
  entries: z.array(ReplicaEntry).min(1).max(MAX_BATCH_OPS),
});
export type Replicate = z.infer<typeof Replicate>;

/**
 * Filling owner to a complete owner: stream the pages and tombstones of `pool` in `partitions`. The first
 * call has no `cursor`; each answer gives the next one until `done`.
 */
export const Fetch = z.strictObject({
  t: z.literal('fetch'),
  id: requestId,
  sv: u32,
  pool: u32,
  partitions: z
    .array(u32)
    .min(1)
    .max(1 << 20),
  cursor: u32.optional(),
});
export type Fetch = z.infer<typeof Fetch>;

/** Any node to an owner: the newest entry it holds for one handle, and whether its copy is complete. */
export const PeerGet = z.strictObject({
  t: z.literal('peerGet'),
  id: requestId,
  sv: u32,
  pool: u32,
  oid,
  index: u32,
});
export type PeerGet = z.infer<typeof PeerGet>;

// ---- the hand-over of ephemeral pages (peers only) ----

/** One ephemeral page handed over: the old primary's copy, with the checksum its client put it with. */
export const HandOffEntry = z.strictObject({
  pool: u32,
  oid,
  index: u32,
  page,
  sum: u32,
});
export type HandOffEntry = z.infer<typeof HandOffEntry>;

/**
 * Old primary to new primary: the ephemeral pages of partitions that moved from the sender to the receiver in
 * state `transition` (the version in which the sender stopped being their primary). `incarnation` names the
 * sender's incarnation (its id is the authenticated peer's). `done` ends the hand-over of that transition to
 * this receiver: it serves those partitions from then on and takes no more pages for them.
 */
export const HandOff = z.strictObject({
  t: z.literal('handOff'),
  id: requestId,
  transition: u32,
  incarnation: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  entries: z.array(HandOffEntry).max(MAX_BATCH_OPS),
  done: z.boolean().optional(),
});
export type HandOff = z.infer<typeof HandOff>;

/** Every frame a client may send to a node. */
export const ClientFrame = z.discriminatedUnion('t', [
  Hello,
  PeerAuth,
  NewPool,
  DestroyPool,
  Put,
  Get,
  FlushPage,
  FlushObject,
  StatsRequest,
  Batch,
  GetState,
  PeerMessage,
  ProposeChange,
  Replicate,
  Fetch,
  PeerGet,
  HandOff,
  EndSession,
  SessionsQuery,
]);
export type ClientFrame = z.infer<typeof ClientFrame>;

// ---- replies ----

/** Handshake accepted. */
export const Welcome = z.strictObject({
  t: z.literal('welcome'),
  id: requestId,
  protocol: u32,
  nodeId: z.string(),
  /** Largest frame the node accepts; clients cut their batches to fit. */
  maxFrameBytes: u32.optional(),
  /** To a peer: the node's own challenge, which the peer answers with `peerAuth` (peer-auth.ts). */
  nonce: z.string().max(64).optional(),
  /** To a peer: the node's proof that it holds the cluster secret. */
  proof: z.string().max(128).optional(),
  /** The id of the cluster the node serves (absent while it has never been a member). */
  clusterId: z.string().min(1).max(128).optional(),
});
export type Welcome = z.infer<typeof Welcome>;

/** Done, with nothing to return (flushes, destroy). */
export const Ok = z.strictObject({ t: z.literal('ok'), id: requestId });
export type Ok = z.infer<typeof Ok>;

/** A pool was created. */
export const PoolCreated = z.strictObject({
  t: z.literal('pool'),
  id: requestId,
  pool: u32,
  kind: PoolKind,
  pageSize: u32,
  /** The pool's compression, as the cluster state holds it (absent: none). */
  compression: z.enum(COMPRESSIONS).optional(),
  /** The UUID of the shared pool joined (absent: a private pool). */
  shared: SharedPoolUuid.optional(),
  /** The cluster the pool belongs to: its id means nothing in another cluster (ids are numbered afresh). */
  clusterId: z.string().min(1).max(128).optional(),
  /**
   * Version of the cluster state that created the pool: a client whose view is older does not see the pool
   * yet (and refreshes), one whose view is as new or newer and lacks it knows the pool is gone. Pool ids are
   * unordered, so only this tells the two apart. Absent from nodes that predate it.
   */
  version: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER).optional(),
});
export type PoolCreated = z.infer<typeof PoolCreated>;

/** The put was accepted: a later get returns it (persistent) or may (ephemeral). */
export const Accepted = z.strictObject({ t: z.literal('accepted'), id: requestId });
export type Accepted = z.infer<typeof Accepted>;

/** Why a put was refused. */
export const RefuseReason = z.enum(['full', 'frozen', 'capped', 'replicas']);
export type RefuseReason = z.infer<typeof RefuseReason>;

/** The put was refused; any older page at the handle is gone too (put-put-get coherency). */
export const Refused = z.strictObject({ t: z.literal('refused'), id: requestId, reason: RefuseReason });
export type Refused = z.infer<typeof Refused>;

/** The page was found; `sum` is the CRC-32C it was put with (absent for a page put without one). */
export const Hit = z.strictObject({ t: z.literal('hit'), id: requestId, page: bytes, sum: u32.optional() });
export type Hit = z.infer<typeof Hit>;

/** Nothing at the handle: a normal answer, not an error. */
export const Miss = z.strictObject({ t: z.literal('miss'), id: requestId });
export type Miss = z.infer<typeof Miss>;

const counter = z.number().int().min(0);

/** Most under-replicated pools NodeStats names one by one (the count covers all of them). */
export const MAX_LISTED_UNDER_REPLICATED = 64;
/** Most identities NodeStats.identities lists: the ones charged most on the node. */
export const MAX_LISTED_IDENTITIES = 64;

/** What one identity holds on a node, for the node's admins (NodeStats.identities). */
export const IdentityUse = z.strictObject({
  identity: z.string().min(1).max(256),
  pools: counter,
  pages: counter,
  usedBytes: counter,
  recordBytes: counter,
  evictions: counter,
  refusedPuts: counter,
});
export type IdentityUse = z.infer<typeof IdentityUse>;

/** The order identities are listed in: charged most first (usedBytes + recordBytes), then by name. */
export function byChargedBytes(a: IdentityUse, b: IdentityUse): number {
  return b.usedBytes + b.recordBytes - (a.usedBytes + a.recordBytes) || (a.identity < b.identity ? -1 : 1);
}

/**
 * Whose counters a NodeStats holds: 'node' counts every pool, page and op of the node (admin identities,
 * peers, and every client of an open node); 'identity' only those of the identity that asked (every other
 * client), whose cluster fields leave out what counts other identities' pages and pools.
 */
export const StatsScope = z.enum(['identity', 'node']);
export type StatsScope = z.infer<typeof StatsScope>;

/**
 * Counters and gauges of one node, as the contract lists them. In the 'identity' scope the page-store counters
 * (pools, pages, usedBytes, ops, evictions, compression) are the asking identity's own; capacityBytes and the
 * partition-level fields stay the node's; copiedPages and replicationBacklog are left out, and
 * underReplicated(Pools) counts the identity's own pools only.
 */
export const NodeStats = z.strictObject({
  nodeId: z.string(),
  scope: StatsScope,
  capacityBytes: counter,
  usedBytes: counter,
  /**
   * Bytes charged for page and object records beside usedBytes (RECORD_BYTES per page, OBJECT_BYTES plus the
   * oid's length per object): usedBytes + recordBytes never exceeds capacityBytes, nor an identity's quota.
   */
  recordBytes: counter,
  pools: counter,
  ephemeralPages: counter,
  persistentPages: counter,
  puts: counter,
  acceptedPuts: counter,
  refusedPuts: counter,
  duplicatePuts: counter,
  gets: counter,
  hits: counter,
  misses: counter,
  flushes: counter,
  evictions: counter,
  /** Pages held compressed (pages of compressed pools that shrank by at least one size class). */
  compressedPages: counter,
  /** What those pages hold as the application wrote them: pageSize each. */
  compressedPageBytes: counter,
  /** Their compressed length: compressedPageBytes / compressedBytes is the codec's ratio. */
  compressedBytes: counter,
  /**
   * The slot bytes they are charged (and occupy): compressedPageBytes / compressedSlotBytes is the memory
   * saved; compressedSlotBytes - compressedBytes is what the size classes waste.
   */
  compressedSlotBytes: counter,
  /** Puts to compressed pools stored raw because compression would not save a size class. */
  incompressiblePuts: counter,
  /** Compressed copies found undecodable (read as corrupt copies, like a checksum mismatch). */
  corruptCompressedReads: counter,
  /**
   * Shared slots of deduplicated ephemeral pages (a node started with dedup): distinct contents held once,
   * however many pages of one identity hold them.
   */
  dedupSlots: counter,
  /** Pages held that share another page's slot (each shared slot's references beyond the first). */
  dedupedPages: counter,
  /**
   * Capacity those pages save: the slot bytes each would be charged alone, less the PAGE_META_BYTES each is
   * charged as a sharer.
   */
  dedupSavedBytes: counter,
  /** Accepted puts that found their contents already stored and shared that slot. */
  dedupHits: counter,
  /** Puts whose content hash found a slot of other contents (the byte compare failed): stored unshared. */
  dedupCollisions: counter,
  /** Committed cluster-state version the node is at (0 while joining). */
  stateVersion: counter.optional(),
  /** The node's incarnation (a restart or rejoin is a new one). */
  incarnation: counter.optional(),
  /** 'leader' or 'follower' in the coordination protocol, 'joining' before it is a member, 'leaving'. */
  role: z.enum(['leader', 'follower', 'candidate', 'joining', 'leaving']).optional(),
  /** Whether the node holds a lease now (it serves page ops only then). */
  leaseHeld: z.boolean().optional(),
  /** Partitions the node serves as primary right now. */
  servingPartitions: counter.optional(),
  /** Persistent partitions the node owns and is still copying from another owner. */
  fillingPartitions: counter.optional(),
  /** Persistent partitions whose every copy was lost (their gets answer DATA_LOST). */
  lostPartitions: counter.optional(),
  /** Persistent pages copied into this node since it started (fills and repairs). */
  copiedPages: counter.optional(),
  /** Replicated writes waiting to reach other owners. */
  replicationBacklog: counter.optional(),
  /**
   * Persistent pools that ask for more copies than the cluster has ready members: their puts are refused
   * (reason 'replicas') until enough members are ready. The same on every member of one state.
   */
  underReplicated: counter.optional(),
  /** The first MAX_LISTED_UNDER_REPLICATED of those pools, with the copies each asks for and the ready members. */
  underReplicatedPools: z
    .array(z.strictObject({ pool: u32, replication: u32, readyMembers: u32 }))
    .max(MAX_LISTED_UNDER_REPLICATED)
    .optional(),
  /**
   * Node scope only: the MAX_LISTED_IDENTITIES identities charged most on this node (usedBytes + recordBytes,
   * then by name), with what each holds; `tmem status` sums them over the members.
   */
  identities: z.array(IdentityUse).max(MAX_LISTED_IDENTITIES).optional(),
  /** Ephemeral pages this node handed over to new primaries (graceful leave, join) and the receiver stored. */
  handOffSent: counter.optional(),
  /** Ephemeral pages it had copied for a hand-over but dropped (budget of time or bytes, receiver refused). */
  handOffDropped: counter.optional(),
  /** Ephemeral pages handed over to this node and stored here. */
  handOffStored: counter.optional(),
  /** Ephemeral pages handed over to this node and skipped (see HandedOff). */
  handOffSkipped: counter.optional(),
});
export type NodeStats = z.infer<typeof NodeStats>;

/** The page-store counters of NodeStats, all zero: the starting point of every store. */
export function zeroStoreCounters(
  capacityBytes = 0,
): Omit<
  NodeStats,
  | 'nodeId'
  | 'scope'
  | 'stateVersion'
  | 'incarnation'
  | 'role'
  | 'leaseHeld'
  | 'servingPartitions'
  | 'fillingPartitions'
  | 'lostPartitions'
  | 'copiedPages'
  | 'replicationBacklog'
  | 'underReplicated'
  | 'underReplicatedPools'
  | 'handOffSent'
  | 'handOffDropped'
  | 'handOffStored'
  | 'handOffSkipped'
  | 'identities'
> {
  return {
    capacityBytes,
    usedBytes: 0,
    recordBytes: 0,
    pools: 0,
    ephemeralPages: 0,
    persistentPages: 0,
    puts: 0,
    acceptedPuts: 0,
    refusedPuts: 0,
    duplicatePuts: 0,
    gets: 0,
    hits: 0,
    misses: 0,
    flushes: 0,
    evictions: 0,
    compressedPages: 0,
    compressedPageBytes: 0,
    compressedBytes: 0,
    compressedSlotBytes: 0,
    incompressiblePuts: 0,
    corruptCompressedReads: 0,
    dedupSlots: 0,
    dedupedPages: 0,
    dedupSavedBytes: 0,
    dedupHits: 0,
    dedupCollisions: 0,
  };
}

/** Statistics reply. */
export const StatsReply = z.strictObject({ t: z.literal('stats'), id: requestId, stats: NodeStats });
export type StatsReply = z.infer<typeof StatsReply>;

/** An error, with a stable code the client maps to a typed class. */
export const ErrorReply = z.strictObject({
  t: z.literal('error'),
  id: requestId,
  code: z.string(),
  message: z.string(),
  details: z.record(z.string(), z.unknown()).optional(),
});
export type ErrorReply = z.infer<typeof ErrorReply>;

/** Replies to the ops of one batch, in the order of the ops. */
export const PageReply = z.discriminatedUnion('t', [Ok, Accepted, Refused, Hit, Miss, ErrorReply]);
export type PageReply = z.infer<typeof PageReply>;

/**
 * Reply to a batch frame, or one part of it. Each reply names its op by the op's id. A node answers the ops it
 * can answer at once in the first part and the rest (persistent ops waiting for their copies) in later parts as
 * they finish, so no finished op waits for a slow one: every part but the last says `more: true`, and every op
 * of the batch is answered exactly once over its parts.
 */
export const BatchReply = z.strictObject({
  t: z.literal('batch'),
  id: requestId,
  replies: z.array(PageReply).max(MAX_BATCH_OPS),
  more: z.boolean().optional(),
});
export type BatchReply = z.infer<typeof BatchReply>;

/**
 * The cluster state, answering getState (with its id) or pushed to subscribers (id 0). `leaderId` is the
 * coordinator as far as the node knows.
 */
export const StateReply = z.strictObject({
  t: z.literal('state'),
  id: requestId,
  state: ClusterState,
  leaderId: z.string().nullable(),
});
export type StateReply = z.infer<typeof StateReply>;

/** Outcome of a ProposeChange: committed (with a pool id for pool creation) or refused with a reason. */
export const ChangeResult = z.strictObject({
  t: z.literal('changeResult'),
  id: requestId,
  ok: z.boolean(),
  poolId: u32.optional(),
  /** With poolId: the version of the state that created the pool (PoolCreated.version). */
  version: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER).optional(),
  error: z.string().optional(),
});
export type ChangeResult = z.infer<typeof ChangeResult>;

/** How an owner took one ReplicaEntry. */
export const ReplicaResult = z.enum([
  /** Applied, or an equal or newer version was already there: the owner holds this version or newer. */
  'ok',
  /** No room for the page: the primary refuses the put. */
  'full',
  /** The pool does not exist in the owner's state. */
  'unknown-pool',
  /** The owner does not own the partition in its state: the sender's state is behind (or ahead). */
  'not-owner',
  /** The page does not match its checksum. */
  'corrupt',
]);
export type ReplicaResult = z.infer<typeof ReplicaResult>;

/** Answer to Replicate: one result per entry, in order. */
export const Replicated = z.strictObject({
  t: z.literal('replicated'),
  id: requestId,
  results: z.array(ReplicaResult).max(MAX_BATCH_OPS),
});
export type Replicated = z.infer<typeof Replicated>;

/**
 * Answer to Fetch. `complete` is false when the sender does not hold a complete copy of every partition asked
 * for (then `entries` is empty: ask another owner); `lost` lists partitions whose every copy was lost.
 */
export const Fetched = z.strictObject({
  t: z.literal('fetched'),
  id: requestId,
  complete: z.boolean(),
  entries: z.array(ReplicaEntry),
  lost: z.array(u32).optional(),
  /** Where the next call starts; absent when this was the last chunk. */
  cursor: u32.optional(),
});
export type Fetched = z.infer<typeof Fetched>;

/**
 * Answer to PeerGet: the newest entry for the handle (a page, or a tombstone), none, and whether the
 * sender's copy of the partition is `complete` (a miss from a complete owner is an authoritative miss) or
 * `lost`.
 */
export const PeerGot = z.strictObject({
  t: z.literal('peerGot'),
  id: requestId,
  complete: z.boolean(),
  lost: z.boolean().optional(),
  entry: ReplicaEntry.optional(),
});
export type PeerGot = z.infer<typeof PeerGot>;

/**
 * Answer to HandOff: pages stored and pages skipped (the receiver no longer waits for this sender's pages of
 * the partition, already holds the handle, saw its object flushed, has no room, or the page is corrupt).
 * `behind`: the receiver has not reached the transition yet, so it took nothing; send again shortly.
 */
export const HandedOff = z.strictObject({
  t: z.literal('handedOff'),
  id: requestId,
  stored: u32,
  skipped: u32,
  behind: z.boolean().optional(),
});
export type HandedOff = z.infer<typeof HandedOff>;

/** Answer to SessionsQuery: for each session asked about, in order, whether it is live on the sender. */
export const SessionsLive = z.strictObject({
  t: z.literal('sessionsLive'),
  id: requestId,
  live: z.array(z.boolean()).max(MAX_QUERIED_SESSIONS),
});
export type SessionsLive = z.infer<typeof SessionsLive>;

/** Every frame a node may send to a client. */
export const NodeFrame = z.discriminatedUnion('t', [
  Welcome,
  Ok,
  PoolCreated,
  Accepted,
  Refused,
  Hit,
  Miss,
  StatsReply,
  ErrorReply,
  BatchReply,
  StateReply,
  ChangeResult,
  Replicated,
  Fetched,
  PeerGot,
  HandedOff,
  SessionsLive,
]);
export type NodeFrame = z.infer<typeof NodeFrame>;
