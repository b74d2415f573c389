// The fast encoder of data frames and node-to-node page frames (the same set as fast-decode.ts). Two passes over the frame: the first checks
// that every field has the type the writer expects and adds up the exact size, the second writes into one buffer
// of that size, copying each page once. One function per frame type with named property reads: a table-driven
// version (field names looked up by string) was no faster than msgpackr on small ops.
//
// A frame it does not recognise (another type, a field of an unexpected type or out of u32 range) is left to
// msgpackr, so what reaches the wire does not depend on the path beyond the choice of msgpack widths. One
// difference: a field set to `undefined` is left out, where msgpackr writes an ext value that decodes to
// undefined; the schemas treat both as absent. And only the keys of the frame's type are written: a key the
// types do not allow is dropped here, where msgpackr would send it and the strict schemas refuse the frame.
import { U32_MAX } from './constants.ts';
import {
  arrayHeaderSize,
  binSize,
  isAscii,
  packedName,
  safeUintSize,
  strSize,
  uintSize,
  writeArrayHeader,
  writeAscii,
  writeBin,
  writeBool,
  writeMapHeader,
  writeRaw,
  writeSafeUint,
  writeUint,
} from './msgpack-writer.ts';
import type { Writer } from './msgpack-writer.ts';
import type { FrameBuffers } from './frame-buffers.ts';

/** Packs a value with msgpackr (for free-form `details` and non-ASCII strings), as the reference would. */
export type ValuePacker = (value: unknown) => Uint8Array;

/** Encodes data frames; returns undefined for any frame it leaves to msgpackr. */
export type FastEncoder = (frame: unknown, buffers?: FrameBuffers) => Buffer | undefined;

/** A frame or op as the encoder sees it: any object, its fields checked one by one. */
type Obj = Record<string, unknown>;

/** `t` key and value, then the `id` key: how every map written here starts. */
const prefix = (t: string): Uint8Array =>
  Uint8Array.from([...packedName('t'), ...packedName(t), ...packedName('id')]);
const P_PUT = prefix('put');
const P_GET = prefix('get');
const P_FLUSH_PAGE = prefix('flushPage');
const P_FLUSH_OBJECT = prefix('flushObject');
const P_BATCH = prefix('batch');
const P_ACCEPTED = prefix('accepted');
const P_OK = prefix('ok');
const P_MISS = prefix('miss');
const P_REFUSED = prefix('refused');
const P_HIT = prefix('hit');
const P_ERROR = prefix('error');
const P_REPLICATE = prefix('replicate');
const P_FETCH = prefix('fetch');
const P_PEER_GET = prefix('peerGet');
const P_REPLICATED = prefix('replicated');
const P_FETCHED = prefix('fetched');
const P_PEER_GOT = prefix('peerGot');
const K_POOL = packedName('pool');
const K_OID = packedName('oid');
const K_INDEX = packedName('index');
const K_PAGE = packedName('page');
const K_SUM = packedName('sum');
const K_REPLICA = packedName('replica');
const K_OPS = packedName('ops');
const K_SV = packedName('sv');
const K_REPLIES = packedName('replies');
const K_MORE = packedName('more');
const K_REASON = packedName('reason');
const K_CODE = packedName('code');
const K_MESSAGE = packedName('message');
const K_DETAILS = packedName('details');
const K_VERSION = packedName('version');
const K_ENTRIES = packedName('entries');
const K_ENTRY = packedName('entry');
const K_PARTITIONS = packedName('partitions');
const K_CURSOR = packedName('cursor');
const K_RESULTS = packedName('results');
const K_COMPLETE = packedName('complete');
const K_LOST = packedName('lost');
/** The replica results, packed once: a replicated frame is mostly these. */
const RESULTS = new Map(
  ['ok', 'full', 'unknown-pool', 'not-owner', 'corrupt'].map((r) => [r as unknown, packedName(r)]),
);

/** The size of a value the writer does not handle: so negative that any frame size summed with it stays so. */
const BAD = -(2 ** 50);

/** Size of a u32 value, or BAD. */
function u32(v: unknown): number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= U32_MAX ? uintSize(v) : BAD;
}
/** Size of a non-negative safe integer (a version), or BAD. */
function safeUint(v: unknown): number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? safeUintSize(v) : BAD;
}
/** Size of a list of u32, or BAD. */
function u32List(v: unknown): number {
  if (!Array.isArray(v)) return BAD;
  let size = arrayHeaderSize(v.length);
  for (const x of v) size += u32(x);
  return size;
}
function bin(v: unknown): number {
  return v instanceof Uint8Array ? binSize(v.length) : BAD;
}
function bool(v: unknown): number {
  return typeof v === 'boolean' ? 1 : BAD;
}
/** Size of an optional field with key `key`: 0 when absent. */
function opt(v: unknown, key: Uint8Array, size: (v: unknown) => number): number {
  return v === undefined ? 0 : key.length + size(v);
}

/** Creates the fast encoder; `pack` packs the few values it does not write itself. */
export function createFastEncoder(pack: ValuePacker): FastEncoder {
  // Values packed by msgpackr during the size pass, consumed in the same order by the write pass.
  let packed: Uint8Array[] = [];
  let next = 0;

  function str(v: unknown): number {
    if (typeof v !== 'string') return BAD;
    if (isAscii(v)) return strSize(v.length);
    const bytes = pack(v);
    packed.push(bytes);
    return bytes.length;
  }
  function any(v: unknown): number {
    const bytes = pack(v);
    packed.push(bytes);
    return bytes.length;
  }
  function writeStr(w: Writer, v: string): void {
    if (isAscii(v)) writeAscii(w, v);
    else writeRaw(w, packed[next++]!);
  }

  /** Size of a page op, negative when it is not one the writer handles. */
  function measureOp(op: Obj): number {
    const handle = u32(op.id) + K_POOL.length + u32(op.pool) + K_OID.length + bin(op.oid);
    switch (op.t) {
      case 'put':
        return (
          1 +
          P_PUT.length +
          handle +
          K_INDEX.length +
          u32(op.index) +
          K_PAGE.length +
          bin(op.page) +
          opt(op.sum, K_SUM, u32)
        );
      case 'get':
        return 1 + P_GET.length + handle + K_INDEX.length + u32(op.index) + opt(op.replica, K_REPLICA, bool);
      case 'flushPage':
        return 1 + P_FLUSH_PAGE.length + handle + K_INDEX.length + u32(op.index);
      case 'flushObject':
        return 1 + P_FLUSH_OBJECT.length + handle;
      default:
        return -1;
    }
  }

  function writeOp(w: Writer, op: Obj): void {
    const t = op.t;
    const p = t === 'put' ? P_PUT : t === 'get' ? P_GET : t === 'flushPage' ? P_FLUSH_PAGE : P_FLUSH_OBJECT;
    const optional = t === 'put' ? op.sum : t === 'get' ? op.replica : undefined;
    const entries = (t === 'flushObject' ? 4 : 5) + (t === 'put' ? 1 : 0) + (optional === undefined ? 0 : 1);
    writeMapHeader(w, entries);
    writeRaw(w, p);
    writeUint(w, op.id as number);
    writeRaw(w, K_POOL);
    writeUint(w, op.pool as number);
    writeRaw(w, K_OID);
    writeBin(w, op.oid as Uint8Array);
    if (t === 'flushObject') return;
    writeRaw(w, K_INDEX);
    writeUint(w, op.index as number);
    if (t === 'put') {
      writeRaw(w, K_PAGE);
      writeBin(w, op.page as Uint8Array);
      if (optional !== undefined) {
        writeRaw(w, K_SUM);
        writeUint(w, optional as number);
      }
    } else if (t === 'get' && optional !== undefined) {
      writeRaw(w, K_REPLICA);
      writeBool(w, optional as boolean);
    }
  }

  /** Size of a page reply, negative when it is not one the writer handles. */
  function measureReply(r: Obj): number {
    const id = u32(r.id);
    switch (r.t) {
      case 'accepted':
      case 'ok':
      case 'miss':
        return 1 + P_OK.length + (r.t === 'ok' ? 0 : r.t === 'miss' ? 2 : 6) + id;
      case 'refused':
        return 1 + P_REFUSED.length + id + K_REASON.length + str(r.reason);
      case 'hit':
        return 1 + P_HIT.length + id + K_PAGE.length + bin(r.page) + opt(r.sum, K_SUM, u32);
      case 'error':
        return (
          1 +
          P_ERROR.length +
          id +
          K_CODE.length +
          str(r.code) +
          K_MESSAGE.length +
          str(r.message) +
          opt(r.details, K_DETAILS, any)
        );
      default:
        return -1;
    }
  }

  function writeReply(w: Writer, r: Obj): void {
    switch (r.t) {
      case 'accepted':
      case 'ok':
      case 'miss':
        writeMapHeader(w, 2);
        writeRaw(w, r.t === 'ok' ? P_OK : r.t === 'miss' ? P_MISS : P_ACCEPTED);
        writeUint(w, r.id as number);
        return;
      case 'refused':
        writeMapHeader(w, 3);
        writeRaw(w, P_REFUSED);
        writeUint(w, r.id as number);
        writeRaw(w, K_REASON);
        writeStr(w, r.reason as string);
        return;
      case 'hit':
        writeMapHeader(w, r.sum === undefined ? 3 : 4);
        writeRaw(w, P_HIT);
        writeUint(w, r.id as number);
        writeRaw(w, K_PAGE);
        writeBin(w, r.page as Uint8Array);
        if (r.sum !== undefined) {
          writeRaw(w, K_SUM);
          writeUint(w, r.sum as number);
        }
        return;
      default:
        writeMapHeader(w, r.details === undefined ? 4 : 5);
        writeRaw(w, P_ERROR);
        writeUint(w, r.id as number);
        writeRaw(w, K_CODE);
        writeStr(w, r.code as string);
        writeRaw(w, K_MESSAGE);
        writeStr(w, r.message as string);
        if (r.details !== undefined) {
          writeRaw(w, K_DETAILS);
          writeRaw(w, packed[next++]!);
        }
    }
  }

  /** Size of the elements of a list, negative when one of them is not an object the writer handles. */
  function measureList(list: unknown, measure: (o: Obj) => number): number {
    if (!Array.isArray(list)) return BAD;
    let size = arrayHeaderSize(list.length);
    for (const element of list) {
      if (typeof element !== 'object' || element === null) return BAD;
      const n = measure(element as Obj);
      if (n < 0) return BAD;
      size += n;
    }
    return size;
  }

  function measureEntry(e: Obj): number {
    return (
      1 +
      K_POOL.length +
      u32(e.pool) +
      K_OID.length +
      bin(e.oid) +
      opt(e.index, K_INDEX, u32) +
      K_VERSION.length +
      safeUint(e.version) +
      opt(e.page, K_PAGE, bin) +
      opt(e.sum, K_SUM, u32)
    );
  }
  function measureEntryValue(e: unknown): number {
    return typeof e === 'object' && e !== null ? measureEntry(e as Obj) : BAD;
  }

  function writeEntry(w: Writer, e: Obj): void {
    const { index, page, sum } = e;
    writeMapHeader(
      w,
      3 + (index === undefined ? 0 : 1) + (page === undefined ? 0 : 1) + (sum === undefined ? 0 : 1),
    );
    writeRaw(w, K_POOL);
    writeUint(w, e.pool as number);
    writeRaw(w, K_OID);
    writeBin(w, e.oid as Uint8Array);
    if (index !== undefined) {
      writeRaw(w, K_INDEX);
      writeUint(w, index as number);
    }
    writeRaw(w, K_VERSION);
    writeSafeUint(w, e.version as number);
    if (page !== undefined) {
      writeRaw(w, K_PAGE);
      writeBin(w, page as Uint8Array);
    }
    if (sum !== undefined) {
      writeRaw(w, K_SUM);
      writeUint(w, sum as number);
    }
  }

  function writeU32List(w: Writer, list: number[]): void {
    writeArrayHeader(w, list.length);
    for (const v of list) writeUint(w, v);
  }

  /** Size of a node-to-node page frame, -1 for any other type. */
  function measurePeerFrame(f: Obj): number {
    const id = u32(f.id);
    switch (f.t) {
      case 'replicate':
        return (
          1 +
          P_REPLICATE.length +
          id +
          K_SV.length +
          u32(f.sv) +
          K_ENTRIES.length +
          measureList(f.entries, measureEntry)
        );
      case 'fetch':
        return (
          1 +
          P_FETCH.length +
          id +
          K_SV.length +
          u32(f.sv) +
          K_POOL.length +
          u32(f.pool) +
          K_PARTITIONS.length +
          u32List(f.partitions) +
          opt(f.cursor, K_CURSOR, u32)
        );
      case 'peerGet':
        return (
          1 +
          P_PEER_GET.length +
          id +
          K_SV.length +
          u32(f.sv) +
          K_POOL.length +
          u32(f.pool) +
          K_OID.length +
          bin(f.oid) +
          K_INDEX.length +
          u32(f.index)
        );
      case 'replicated': {
        if (!Array.isArray(f.results)) return BAD;
        let size = 1 + P_REPLICATED.length + id + K_RESULTS.length + arrayHeaderSize(f.results.length);
        for (const r of f.results as unknown[]) size += RESULTS.get(r)?.length ?? str(r);
        return size;
      }
      case 'fetched':
        return (
          1 +
          P_FETCHED.length +
          id +
          K_COMPLETE.length +
          bool(f.complete) +
          K_ENTRIES.length +
          measureList(f.entries, measureEntry) +
          opt(f.lost, K_LOST, u32List) +
          opt(f.cursor, K_CURSOR, u32)
        );
      case 'peerGot':
        return (
          1 +
          P_PEER_GOT.length +
          id +
          K_COMPLETE.length +
          bool(f.complete) +
          opt(f.lost, K_LOST, bool) +
          opt(f.entry, K_ENTRY, measureEntryValue)
        );
      default:
        return -1;
    }
  }

  /** Writes a frame measurePeerFrame accepted; false for any other type. */
  function writePeerFrame(w: Writer, f: Obj): boolean {
    switch (f.t) {
      case 'replicate': {
        writeMapHeader(w, 4);
        writeRaw(w, P_REPLICATE);
        writeUint(w, f.id as number);
        writeRaw(w, K_SV);
        writeUint(w, f.sv as number);
        writeRaw(w, K_ENTRIES);
        const entries = f.entries as Obj[];
        writeArrayHeader(w, entries.length);
        for (const e of entries) writeEntry(w, e);
        return true;
      }
      case 'fetch':
        writeMapHeader(w, f.cursor === undefined ? 5 : 6);
        writeRaw(w, P_FETCH);
        writeUint(w, f.id as number);
        writeRaw(w, K_SV);
        writeUint(w, f.sv as number);
        writeRaw(w, K_POOL);
        writeUint(w, f.pool as number);
        writeRaw(w, K_PARTITIONS);
        writeU32List(w, f.partitions as number[]);
        if (f.cursor !== undefined) {
          writeRaw(w, K_CURSOR);
          writeUint(w, f.cursor as number);
        }
        return true;
      case 'peerGet':
        writeMapHeader(w, 6);
        writeRaw(w, P_PEER_GET);
        writeUint(w, f.id as number);
        writeRaw(w, K_SV);
        writeUint(w, f.sv as number);
        writeRaw(w, K_POOL);
        writeUint(w, f.pool as number);
        writeRaw(w, K_OID);
        writeBin(w, f.oid as Uint8Array);
        writeRaw(w, K_INDEX);
        writeUint(w, f.index as number);
        return true;
      case 'replicated': {
        writeMapHeader(w, 3);
        writeRaw(w, P_REPLICATED);
        writeUint(w, f.id as number);
        writeRaw(w, K_RESULTS);
        const list = f.results as string[];
        writeArrayHeader(w, list.length);
        for (const r of list) {
          const packedResult = RESULTS.get(r);
          if (packedResult !== undefined) writeRaw(w, packedResult);
          else writeStr(w, r);
        }
        return true;
      }
      case 'fetched': {
        writeMapHeader(w, 4 + (f.lost === undefined ? 0 : 1) + (f.cursor === undefined ? 0 : 1));
        writeRaw(w, P_FETCHED);
        writeUint(w, f.id as number);
        writeRaw(w, K_COMPLETE);
        writeBool(w, f.complete as boolean);
        writeRaw(w, K_ENTRIES);
        const entries = f.entries as Obj[];
        writeArrayHeader(w, entries.length);
        for (const e of entries) writeEntry(w, e);
        if (f.lost !== undefined) {
          writeRaw(w, K_LOST);
          writeU32List(w, f.lost as number[]);
        }
        if (f.cursor !== undefined) {
          writeRaw(w, K_CURSOR);
          writeUint(w, f.cursor as number);
        }
        return true;
      }
      case 'peerGot':
        writeMapHeader(w, 3 + (f.lost === undefined ? 0 : 1) + (f.entry === undefined ? 0 : 1));
        writeRaw(w, P_PEER_GOT);
        writeUint(w, f.id as number);
        writeRaw(w, K_COMPLETE);
        writeBool(w, f.complete as boolean);
        if (f.lost !== undefined) {
          writeRaw(w, K_LOST);
          writeBool(w, f.lost as boolean);
        }
        if (f.entry !== undefined) {
          writeRaw(w, K_ENTRY);
          writeEntry(w, f.entry as Obj);
        }
        return true;
      default:
        return false;
    }
  }

  function measureFrame(f: Obj): number {
    const peer = measurePeerFrame(f);
    if (peer !== -1) return peer;
    if (f.t !== 'batch') {
      const n = measureOp(f);
      return n >= 0 ? n : measureReply(f);
    }
    if (f.ops !== undefined) {
      if (f.replies !== undefined) return -1;
      return (
        1 + P_BATCH.length + u32(f.id) + K_OPS.length + measureList(f.ops, measureOp) + opt(f.sv, K_SV, u32)
      );
    }
    return (
      1 +
      P_BATCH.length +
      u32(f.id) +
      K_REPLIES.length +
      measureList(f.replies, measureReply) +
      opt(f.more, K_MORE, bool)
    );
  }

  function writeFrame(w: Writer, f: Obj): void {
    if (writePeerFrame(w, f)) return;
    const t = f.t;
    if (t === 'put' || t === 'get' || t === 'flushPage' || t === 'flushObject') return writeOp(w, f);
    if (t !== 'batch') return writeReply(w, f);
    const ops = f.ops !== undefined;
    const optional = ops ? f.sv : f.more;
    writeMapHeader(w, optional === undefined ? 3 : 4);
    writeRaw(w, P_BATCH);
    writeUint(w, f.id as number);
    const list = (ops ? f.ops : f.replies) as Obj[];
    writeRaw(w, ops ? K_OPS : K_REPLIES);
    writeArrayHeader(w, list.length);
    if (ops) for (const op of list) writeOp(w, op);
    else for (const r of list) writeReply(w, r);
    if (optional !== undefined) {
      writeRaw(w, ops ? K_SV : K_MORE);
      if (ops) writeUint(w, optional as number);
      else writeBool(w, optional as boolean);
    }
  }

  return (frame, buffers) => {
    if (typeof frame !== 'object' || frame === null) return undefined;
    packed = [];
    next = 0;
    const size = measureFrame(frame as Obj);
    if (size < 0) {
      packed = [];
      return undefined;
    }
    // Unsafe (uninitialised): every byte is written below. Small frames come from Node's shared pool, large
    // ones from `buffers` when given (frame-buffers.ts), else are allocated on their own.
    const w: Writer = { data: buffers?.acquire(size) ?? Buffer.allocUnsafe(size), pos: 0 };
    writeFrame(w, frame as Obj);
    packed = [];
    return w.data;
  };
}
