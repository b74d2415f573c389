import { z } from 'zod';
import {
  MAX_BATCH_OPS,
  MAX_IDENTITY_LENGTH,
  MAX_OID_BYTES,
  MAX_PAGE_SIZE,
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

/** First frame on every connection: protocol version and the client identity that owns private pools. */
export const Hello = z.object({
  t: z.literal('hello'),
  id: requestId,
  protocol: u32,
  identity: z.string().min(1).max(MAX_IDENTITY_LENGTH),
});
export type Hello = z.infer<typeof Hello>;

/** Creates a pool owned by the connection's identity. */
export const NewPool = z.object({
  t: z.literal('newPool'),
  id: requestId,
  kind: PoolKind,
  pageSize: u32.refine(isValidPageSize, {
    message: 'page size must be a power of two from 512 to 65536',
  }),
});
export type NewPool = z.infer<typeof NewPool>;

/** Destroys a pool and every page in it. */
export const DestroyPool = z.object({ t: z.literal('destroyPool'), id: requestId, pool: u32 });
export type DestroyPool = z.infer<typeof DestroyPool>;

/** Stores a page. Answered accepted or refused. */
export const Put = z.object({
  t: z.literal('put'),
  id: requestId,
  pool: u32,
  oid,
  index: u32,
  page,
});
export type Put = z.infer<typeof Put>;

/** Reads a page. Answered hit (with the page) or miss. */
export const Get = z.object({ t: z.literal('get'), id: requestId, pool: u32, oid, index: u32 });
export type Get = z.infer<typeof Get>;

/** Removes one page; ok even when nothing was there. */
export const FlushPage = z.object({
  t: z.literal('flushPage'),
  id: requestId,
  pool: u32,
  oid,
  index: u32,
});
export type FlushPage = z.infer<typeof FlushPage>;

/** Removes every page of an object; ok even when nothing was there. */
export const FlushObject = z.object({
  t: z.literal('flushObject'),
  id: requestId,
  pool: u32,
  oid,
});
export type FlushObject = z.infer<typeof FlushObject>;

/** Asks for the node's statistics. */
export const StatsRequest = z.object({ t: z.literal('stats'), id: requestId });
export type StatsRequest = z.infer<typeof StatsRequest>;

/** The page ops a batch may carry. */
export const PageOp = z.discriminatedUnion('t', [Put, Get, FlushPage, FlushObject]);
export type PageOp = z.infer<typeof PageOp>;

/** Many page ops for one node in one frame; each op keeps its own request id. */
export const Batch = z.object({
  t: z.literal('batch'),
  id: requestId,
  ops: z.array(PageOp).min(1).max(MAX_BATCH_OPS),
});
export type Batch = z.infer<typeof Batch>;

/** Every frame a client may send to a node. */
export const ClientFrame = z.discriminatedUnion('t', [
  Hello,
  NewPool,
  DestroyPool,
  Put,
  Get,
  FlushPage,
  FlushObject,
  StatsRequest,
  Batch,
]);
export type ClientFrame = z.infer<typeof ClientFrame>;

// ---- replies ----

/** Handshake accepted. */
export const Welcome = z.object({
  t: z.literal('welcome'),
  id: requestId,
  protocol: u32,
  nodeId: z.string(),
});
export type Welcome = z.infer<typeof Welcome>;

/** Done, with nothing to return (flushes, destroy). */
export const Ok = z.object({ t: z.literal('ok'), id: requestId });
export type Ok = z.infer<typeof Ok>;

/** A pool was created. */
export const PoolCreated = z.object({
  t: z.literal('pool'),
  id: requestId,
  pool: u32,
  kind: PoolKind,
  pageSize: u32,
});
export type PoolCreated = z.infer<typeof PoolCreated>;

/** The put was accepted: a later get returns it (persistent) or may (ephemeral). */
export const Accepted = z.object({ t: z.literal('accepted'), id: requestId });
export type Accepted = z.infer<typeof Accepted>;

/** Why a put was refused. */
export const RefuseReason = z.enum(['full', 'frozen', 'capped', 'replicas']);
export type RefuseReason = z.infer<typeof RefuseReason>;

/** The put was refused; any older page at the handle is gone too (put-put-get coherency). */
export const Refused = z.object({ t: z.literal('refused'), id: requestId, reason: RefuseReason });
export type Refused = z.infer<typeof Refused>;

/** The page was found. */
export const Hit = z.object({ t: z.literal('hit'), id: requestId, page: bytes });
export type Hit = z.infer<typeof Hit>;

/** Nothing at the handle: a normal answer, not an error. */
export const Miss = z.object({ t: z.literal('miss'), id: requestId });
export type Miss = z.infer<typeof Miss>;

const counter = z.number().int().min(0);

/** Counters and gauges of one node, as the contract lists them. */
export const NodeStats = z.object({
  nodeId: z.string(),
  capacityBytes: counter,
  usedBytes: counter,
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
});
export type NodeStats = z.infer<typeof NodeStats>;

/** Statistics reply. */
export const StatsReply = z.object({ t: z.literal('stats'), id: requestId, stats: NodeStats });
export type StatsReply = z.infer<typeof StatsReply>;

/** An error, with a stable code the client maps to a typed class. */
export const ErrorReply = z.object({
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

/** Reply to a batch frame. */
export const BatchReply = z.object({
  t: z.literal('batch'),
  id: requestId,
  replies: z.array(PageReply).max(MAX_BATCH_OPS),
});
export type BatchReply = z.infer<typeof BatchReply>;

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
]);
export type NodeFrame = z.infer<typeof NodeFrame>;
