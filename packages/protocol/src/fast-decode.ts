// The fast decoder of data frames: put, get, flushPage, flushObject and batch from clients; accepted, refused,
// hit, miss, ok, error and batch from nodes; and the page frames between nodes, replicate, peerGet and fetch
// with their answers replicated, peerGot and fetched. It reads the msgpack bytes straight into the objects zod would
// produce, checking every field as the schemas in frames.ts do, without building msgpackr's intermediate
// objects or running zod.
//
// It only ever accepts. Whenever a frame is not one it recognises as valid (another frame type, a field out of
// range, an encoding outside the reader's subset, trailing bytes...), it returns undefined and the codec decodes
// the frame with msgpackr + zod, the reference, which then accepts it or rejects it with the reference error
// code. So the two paths can never decide differently, as long as this file accepts nothing the schemas reject
// and builds what they build; the differential fuzz test in test/fast-path.test.ts holds it to that.
import { MAX_BATCH_OPS, MAX_OID_BYTES, MAX_PAGE_SIZE } from './constants.ts';
import type {
  ClientFrame,
  ErrorReply,
  NodeFrame,
  PageOp,
  PageReply,
  RefuseReason,
  ReplicaEntry,
  ReplicaResult,
} from './frames.ts';
import {
  cursor,
  nameTable,
  readArrayLength,
  readBin,
  readBool,
  readMapLength,
  readName,
  readSafeUint,
  readString,
  readU32,
  skipValue,
  unsupported,
} from './msgpack-reader.ts';
import type { Cursor } from './msgpack-reader.ts';

// Keys, as bit positions in a mask of the keys a map has shown (a repeated key is left to the reference path,
// where the last one wins).
const K_T = 0,
  K_ID = 1,
  K_POOL = 2,
  K_OID = 3,
  K_INDEX = 4,
  K_PAGE = 5,
  K_SUM = 6,
  K_REPLICA = 7,
  K_OPS = 8,
  K_SV = 9,
  K_REPLIES = 10,
  K_MORE = 11,
  K_REASON = 12,
  K_CODE = 13,
  K_MESSAGE = 14,
  K_DETAILS = 15,
  K_ENTRIES = 16,
  K_ENTRY = 17,
  K_COMPLETE = 18,
  K_LOST = 19,
  K_PARTITIONS = 20,
  K_CURSOR = 21,
  K_RESULTS = 22;
const bit = (k: number): number => 1 << k;

// Keys of the schemas on each side. The schemas are strict (an unknown key rejects the frame), so a key outside
// these tables, or outside the frame type's own keys (`has`), sends the frame to the reference path to be refused.
const clientKeys = nameTable([
  ['t', K_T],
  ['id', K_ID],
  ['pool', K_POOL],
  ['oid', K_OID],
  ['index', K_INDEX],
  ['page', K_PAGE],
  ['sum', K_SUM],
  ['replica', K_REPLICA],
  ['ops', K_OPS],
  ['sv', K_SV],
  ['entries', K_ENTRIES],
  ['partitions', K_PARTITIONS],
  ['cursor', K_CURSOR],
]);
const nodeKeys = nameTable([
  ['t', K_T],
  ['id', K_ID],
  ['page', K_PAGE],
  ['sum', K_SUM],
  ['reason', K_REASON],
  ['code', K_CODE],
  ['message', K_MESSAGE],
  ['details', K_DETAILS],
  ['replies', K_REPLIES],
  ['more', K_MORE],
  ['results', K_RESULTS],
  ['complete', K_COMPLETE],
  ['entries', K_ENTRIES],
  ['lost', K_LOST],
  ['cursor', K_CURSOR],
  ['entry', K_ENTRY],
]);

const PUT = 0,
  GET = 1,
  FLUSH_PAGE = 2,
  FLUSH_OBJECT = 3,
  BATCH = 4,
  ACCEPTED = 5,
  REFUSED = 6,
  HIT = 7,
  MISS = 8,
  OK = 9,
  ERROR = 10,
  REPLICATE = 11,
  FETCH = 12,
  PEER_GET = 13,
  REPLICATED = 14,
  FETCHED = 15,
  PEER_GOT = 16;
const clientTypes = nameTable([
  ['put', PUT],
  ['get', GET],
  ['flushPage', FLUSH_PAGE],
  ['flushObject', FLUSH_OBJECT],
  ['batch', BATCH],
  ['replicate', REPLICATE],
  ['fetch', FETCH],
  ['peerGet', PEER_GET],
]);
const nodeTypes = nameTable([
  ['accepted', ACCEPTED],
  ['refused', REFUSED],
  ['hit', HIT],
  ['miss', MISS],
  ['ok', OK],
  ['error', ERROR],
  ['batch', BATCH],
  ['replicated', REPLICATED],
  ['fetched', FETCHED],
  ['peerGot', PEER_GOT],
]);
const reasons: readonly RefuseReason[] = ['full', 'frozen', 'capped', 'replicas'];
const reasonNames = nameTable(reasons.map((r, i) => [r, i]));
const results: readonly ReplicaResult[] = ['ok', 'full', 'unknown-pool', 'not-owner', 'corrupt'];
const resultNames = nameTable(results.map((r, i) => [r, i]));

// Keys of a ReplicaEntry, in a mask of their own.
const E_POOL = 0,
  E_OID = 1,
  E_INDEX = 2,
  E_VERSION = 3,
  E_PAGE = 4,
  E_SUM = 5;
const entryKeys = nameTable([
  ['pool', E_POOL],
  ['oid', E_OID],
  ['index', E_INDEX],
  ['version', E_VERSION],
  ['page', E_PAGE],
  ['sum', E_SUM],
]);
const REQ_ENTRY = bit(E_POOL) | bit(E_OID) | bit(E_VERSION);
/** Most partitions one fetch may name (the schema's bound). */
const MAX_FETCH_PARTITIONS = 1 << 20;

// Keys each frame type requires (optional ones are added to the result only when present).
const REQ_ID = bit(K_T) | bit(K_ID);
const REQ_HANDLE = REQ_ID | bit(K_POOL) | bit(K_OID) | bit(K_INDEX);
const REQ_PUT = REQ_HANDLE | bit(K_PAGE);
const REQ_FLUSH_OBJECT = REQ_ID | bit(K_POOL) | bit(K_OID);
const REQ_BATCH = REQ_ID | bit(K_OPS);
const REQ_BATCH_REPLY = REQ_ID | bit(K_REPLIES);
const REQ_REFUSED = REQ_ID | bit(K_REASON);
const REQ_HIT = REQ_ID | bit(K_PAGE);
const REQ_ERROR = REQ_ID | bit(K_CODE) | bit(K_MESSAGE);
const REQ_REPLICATE = REQ_ID | bit(K_SV) | bit(K_ENTRIES);
const REQ_FETCH = REQ_ID | bit(K_SV) | bit(K_POOL) | bit(K_PARTITIONS);
const REQ_PEER_GET = REQ_HANDLE | bit(K_SV);
const REQ_REPLICATED = REQ_ID | bit(K_RESULTS);
const REQ_FETCHED = REQ_ID | bit(K_COMPLETE) | bit(K_ENTRIES);
const REQ_PEER_GOT = REQ_ID | bit(K_COMPLETE);

/** The fields of one map as read; `seen` says which are present. Values of absent keys are stale. */
interface Fields {
  seen: number;
  t: number;
  id: number;
  pool: number;
  oid: Uint8Array | undefined;
  index: number;
  page: Uint8Array | undefined;
  sum: number;
  replica: boolean;
  sv: number;
  more: boolean;
  reason: number;
  code: string;
  message: string;
  details: ErrorReply['details'];
  ops: PageOp[] | undefined;
  replies: PageReply[] | undefined;
  entries: ReplicaEntry[] | undefined;
  entry: ReplicaEntry | undefined;
  complete: boolean;
  /** `lost` is a flag in peerGot and a list of partitions in fetched: whichever the bytes hold is kept. */
  lost: boolean | number[];
  partitions: number[] | undefined;
  cursor: number;
  results: ReplicaResult[] | undefined;
}

function fields(): Fields {
  return {
    seen: 0,
    t: -1,
    id: 0,
    pool: 0,
    oid: undefined,
    index: 0,
    page: undefined,
    sum: 0,
    replica: false,
    sv: 0,
    more: false,
    reason: 0,
    code: '',
    message: '',
    details: undefined,
    ops: undefined,
    replies: undefined,
    entries: undefined,
    entry: undefined,
    complete: false,
    lost: false,
    partitions: undefined,
    cursor: 0,
    results: undefined,
  };
}

/**
 * Decodes `details` of an error reply, which may hold anything: the reference decoder (msgpackr + the schema's
 * record check) runs on just that value's bytes. Throws `unsupported` when it does not accept them.
 */
export type DetailsDecoder = (bytes: Uint8Array) => ErrorReply['details'];

/** A fast decoder: each function returns the decoded frame, or undefined to say "use the reference path". */
export interface FastDecoder {
  decodeClientFrame(data: Uint8Array): ClientFrame | undefined;
  decodeNodeFrame(data: Uint8Array): NodeFrame | undefined;
}

/** Creates the fast decoder; `decodeDetails` reads the free-form details of error replies. */
export function createFastDecoder(decodeDetails: DetailsDecoder): FastDecoder {
  // One scratch record for the maps inside a batch (ops or replies are read one after another, never nested).
  const inner = fields();

  /** Reads one map into `f`. Only the top level may hold `ops` or `replies`: nothing nests deeper. */
  function readFields(c: Cursor, f: Fields, keys: typeof clientKeys, top: boolean, client: boolean): void {
    const n = readMapLength(c);
    let seen = 0;
    for (let i = 0; i < n; i++) {
      const k = readName(c, keys);
      if (k < 0) throw unsupported;
      if (seen & bit(k)) throw unsupported;
      seen |= bit(k);
      switch (k) {
        case K_T:
          f.t = readName(c, client ? clientTypes : nodeTypes);
          if (f.t < 0) throw unsupported;
          break;
        case K_ID:
          f.id = readU32(c);
          break;
        case K_POOL:
          f.pool = readU32(c);
          break;
        case K_OID:
          f.oid = readBin(c);
          break;
        case K_INDEX:
          f.index = readU32(c);
          break;
        case K_PAGE:
          f.page = readBin(c);
          break;
        case K_SUM:
          f.sum = readU32(c);
          break;
        case K_REPLICA:
          f.replica = readBool(c);
          break;
        case K_SV:
          f.sv = readU32(c);
          break;
        case K_MORE:
          f.more = readBool(c);
          break;
        case K_REASON:
          f.reason = readName(c, reasonNames);
          if (f.reason < 0) throw unsupported;
          break;
        case K_CODE:
          f.code = readString(c);
          break;
        case K_MESSAGE:
          f.message = readString(c);
          break;
        case K_DETAILS: {
          const start = skipValue(c, false);
          f.details = decodeDetails(c.data.subarray(start, c.pos));
          break;
        }
        case K_OPS:
          if (!top) throw unsupported;
          f.ops = readOps(c);
          break;
        case K_REPLIES:
          if (!top) throw unsupported;
          f.replies = readReplies(c);
          break;
        case K_COMPLETE:
          f.complete = readBool(c);
          break;
        case K_CURSOR:
          f.cursor = readU32(c);
          break;
        case K_LOST: {
          const b = c.pos < c.end ? c.data[c.pos] : undefined;
          if (b === 0xc2 || b === 0xc3) f.lost = readBool(c);
          else if (top) f.lost = readList(c, 0, Infinity, readU32);
          else throw unsupported;
          break;
        }
        // The lists of the node-to-node frames never occur inside a batch (and nothing nests there).
        case K_ENTRIES:
          if (!top) throw unsupported;
          // A replicate carries 1..MAX_BATCH_OPS entries, a fetched chunk any number (bounded by the frame).
          f.entries = client ? readList(c, 1, MAX_BATCH_OPS, readEntry) : readList(c, 0, Infinity, readEntry);
          break;
        case K_ENTRY:
          if (!top) throw unsupported;
          f.entry = readEntry(c);
          break;
        case K_PARTITIONS:
          if (!top) throw unsupported;
          f.partitions = readList(c, 1, MAX_FETCH_PARTITIONS, readU32);
          break;
        case K_RESULTS:
          if (!top) throw unsupported;
          f.results = readResults(c);
          break;
      }
    }
    f.seen = seen;
  }

  function readOps(c: Cursor): PageOp[] {
    const n = readArrayLength(c);
    // Checked before the loop: a declared count never sizes anything, and each op reads at least one byte.
    if (n < 1 || n > MAX_BATCH_OPS) throw unsupported;
    const ops: PageOp[] = [];
    for (let i = 0; i < n; i++) {
      readFields(c, inner, clientKeys, false, true);
      ops.push(buildOp(inner));
    }
    return ops;
  }

  function readReplies(c: Cursor): PageReply[] {
    const n = readArrayLength(c);
    if (n > MAX_BATCH_OPS) throw unsupported;
    const replies: PageReply[] = [];
    for (let i = 0; i < n; i++) {
      readFields(c, inner, nodeKeys, false, false);
      replies.push(buildReply(inner));
    }
    return replies;
  }

  function readResults(c: Cursor): ReplicaResult[] {
    const n = readArrayLength(c);
    if (n > MAX_BATCH_OPS) throw unsupported;
    const list: ReplicaResult[] = [];
    for (let i = 0; i < n; i++) {
      const r = readName(c, resultNames);
      if (r < 0) throw unsupported;
      list.push(results[r]!);
    }
    return list;
  }

  /** Releases the views the scratch record holds, so it keeps no frame alive after the decode. */
  function clearInner(): void {
    inner.oid = inner.page = inner.details = undefined;
  }

  return {
    decodeClientFrame(data) {
      const c = cursor(data);
      try {
        const f = fields();
        readFields(c, f, clientKeys, true, true);
        if (c.pos !== c.end) return undefined;
        if (f.t >= REPLICATE) return buildPeerRequest(f);
        if (f.t !== BATCH) return buildOp(f);
        has(f, REQ_BATCH, bit(K_SV));
        const ops = f.ops!;
        return f.seen & bit(K_SV) ? { t: 'batch', id: f.id, ops, sv: f.sv } : { t: 'batch', id: f.id, ops };
      } catch {
        // `unsupported`, or anything unforeseen: the reference path decides, so it is never a different answer.
        return undefined;
      } finally {
        clearInner();
      }
    },
    decodeNodeFrame(data) {
      const c = cursor(data);
      try {
        const f = fields();
        readFields(c, f, nodeKeys, true, false);
        if (c.pos !== c.end) return undefined;
        if (f.t >= REPLICATED) return buildPeerReply(f);
        if (f.t !== BATCH) return buildReply(f);
        has(f, REQ_BATCH_REPLY, bit(K_MORE));
        const replies = f.replies!;
        return f.seen & bit(K_MORE)
          ? { t: 'batch', id: f.id, replies, more: f.more }
          : { t: 'batch', id: f.id, replies };
      } catch {
        return undefined;
      } finally {
        clearInner();
      }
    },
  };
}

/** The frame type's keys, as its strict schema has them: every required one, and no others but `optional`. */
function has(f: Fields, required: number, optional = 0): void {
  if ((f.seen & required) !== required || (f.seen & ~(required | optional)) !== 0) throw unsupported;
}

/** The oid rule of the schemas: 1..MAX_OID_BYTES bytes. */
function checkedOid(f: Fields): Uint8Array {
  const oid = f.oid!;
  if (oid.length < 1 || oid.length > MAX_OID_BYTES) throw unsupported;
  return oid;
}

/** The page op zod builds from these fields (keys in schema order, optional ones only when present). */
function buildOp(f: Fields): PageOp {
  const s = f.seen;
  if (!(s & bit(K_T))) throw unsupported;
  switch (f.t) {
    case PUT: {
      has(f, REQ_PUT, bit(K_SUM));
      const oid = checkedOid(f);
      const page = f.page!;
      if (page.length > MAX_PAGE_SIZE) throw unsupported;
      return s & bit(K_SUM)
        ? { t: 'put', id: f.id, pool: f.pool, oid, index: f.index, page, sum: f.sum }
        : { t: 'put', id: f.id, pool: f.pool, oid, index: f.index, page };
    }
    case GET: {
      has(f, REQ_HANDLE, bit(K_REPLICA));
      const oid = checkedOid(f);
      return s & bit(K_REPLICA)
        ? { t: 'get', id: f.id, pool: f.pool, oid, index: f.index, replica: f.replica }
        : { t: 'get', id: f.id, pool: f.pool, oid, index: f.index };
    }
    case FLUSH_PAGE:
      has(f, REQ_HANDLE);
      return { t: 'flushPage', id: f.id, pool: f.pool, oid: checkedOid(f), index: f.index };
    case FLUSH_OBJECT:
      has(f, REQ_FLUSH_OBJECT);
      return { t: 'flushObject', id: f.id, pool: f.pool, oid: checkedOid(f) };
    default:
      // A batch inside a batch is not a page op.
      throw unsupported;
  }
}

/** The page reply zod builds from these fields. */
function buildReply(f: Fields): PageReply {
  const s = f.seen;
  if (!(s & bit(K_T))) throw unsupported;
  switch (f.t) {
    case ACCEPTED:
      has(f, REQ_ID);
      return { t: 'accepted', id: f.id };
    case OK:
      has(f, REQ_ID);
      return { t: 'ok', id: f.id };
    case MISS:
      has(f, REQ_ID);
      return { t: 'miss', id: f.id };
    case REFUSED:
      has(f, REQ_REFUSED);
      return { t: 'refused', id: f.id, reason: reasons[f.reason]! };
    case HIT:
      // A hit's page has no bound of its own in the schema (the frame size bounds it).
      has(f, REQ_HIT, bit(K_SUM));
      return s & bit(K_SUM)
        ? { t: 'hit', id: f.id, page: f.page!, sum: f.sum }
        : { t: 'hit', id: f.id, page: f.page! };
    case ERROR:
      has(f, REQ_ERROR, bit(K_DETAILS));
      return s & bit(K_DETAILS)
        ? { t: 'error', id: f.id, code: f.code, message: f.message, details: f.details }
        : { t: 'error', id: f.id, code: f.code, message: f.message };
    default:
      throw unsupported;
  }
}

/**
 * A list of min..max elements read by `readItem` (partitions, replica entries). The count is checked before
 * the loop and never sizes anything: each element reads at least one byte, so the cost is bounded by the frame.
 */
function readList<T>(c: Cursor, min: number, max: number, readItem: (c: Cursor) => T): T[] {
  const n = readArrayLength(c);
  if (n < min || n > max) throw unsupported;
  const list: T[] = [];
  for (let i = 0; i < n; i++) list.push(readItem(c));
  return list;
}

/** One ReplicaEntry as zod builds it: keys in schema order, optional ones only when present, no others. */
function readEntry(c: Cursor): ReplicaEntry {
  const n = readMapLength(c);
  let seen = 0;
  let pool = 0,
    index = 0,
    version = 0,
    sum = 0;
  let oid: Uint8Array | undefined, page: Uint8Array | undefined;
  for (let i = 0; i < n; i++) {
    const k = readName(c, entryKeys);
    if (k < 0) throw unsupported;
    if (seen & bit(k)) throw unsupported;
    seen |= bit(k);
    switch (k) {
      case E_POOL:
        pool = readU32(c);
        break;
      case E_OID:
        oid = readBin(c);
        break;
      case E_INDEX:
        index = readU32(c);
        break;
      case E_VERSION:
        version = readSafeUint(c);
        break;
      case E_PAGE:
        page = readBin(c);
        break;
      case E_SUM:
        sum = readU32(c);
        break;
    }
  }
  if ((seen & REQ_ENTRY) !== REQ_ENTRY) throw unsupported;
  if (oid!.length < 1 || oid!.length > MAX_OID_BYTES || version < 1) throw unsupported;
  const entry: ReplicaEntry =
    seen & bit(E_INDEX) ? { pool, oid: oid!, index, version } : { pool, oid: oid!, version };
  if (page !== undefined) {
    if (page.length > MAX_PAGE_SIZE) throw unsupported;
    entry.page = page;
  }
  if (seen & bit(E_SUM)) entry.sum = sum;
  return entry;
}

/** The node-to-node request zod builds from these fields. */
function buildPeerRequest(f: Fields): ClientFrame {
  switch (f.t) {
    case REPLICATE:
      has(f, REQ_REPLICATE);
      return { t: 'replicate', id: f.id, sv: f.sv, entries: f.entries! };
    case FETCH:
      has(f, REQ_FETCH, bit(K_CURSOR));
      return f.seen & bit(K_CURSOR)
        ? { t: 'fetch', id: f.id, sv: f.sv, pool: f.pool, partitions: f.partitions!, cursor: f.cursor }
        : { t: 'fetch', id: f.id, sv: f.sv, pool: f.pool, partitions: f.partitions! };
    case PEER_GET:
      has(f, REQ_PEER_GET);
      return { t: 'peerGet', id: f.id, sv: f.sv, pool: f.pool, oid: checkedOid(f), index: f.index };
    default:
      throw unsupported;
  }
}

/** The node-to-node answer zod builds from these fields. */
function buildPeerReply(f: Fields): NodeFrame {
  const s = f.seen;
  switch (f.t) {
    case REPLICATED:
      has(f, REQ_REPLICATED);
      return { t: 'replicated', id: f.id, results: f.results! };
    case FETCHED: {
      has(f, REQ_FETCHED, bit(K_LOST) | bit(K_CURSOR));
      const frame: NodeFrame = { t: 'fetched', id: f.id, complete: f.complete, entries: f.entries! };
      if (s & bit(K_LOST)) {
        if (!Array.isArray(f.lost)) throw unsupported;
        frame.lost = f.lost;
      }
      if (s & bit(K_CURSOR)) frame.cursor = f.cursor;
      return frame;
    }
    case PEER_GOT: {
      has(f, REQ_PEER_GOT, bit(K_LOST) | bit(K_ENTRY));
      const frame: NodeFrame = { t: 'peerGot', id: f.id, complete: f.complete };
      if (s & bit(K_LOST)) {
        if (typeof f.lost !== 'boolean') throw unsupported;
        frame.lost = f.lost;
      }
      if (s & bit(K_ENTRY)) frame.entry = f.entry;
      return frame;
    }
    default:
      throw unsupported;
  }
}
