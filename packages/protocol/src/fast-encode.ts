// The fast encoder of data frames (the same set as fast-decode.ts). Two passes over the frame: the first checks
// that every field has the type the writer expects and adds up the exact size, the second writes into one buffer
// of that size, copying each page once. One function per frame type with named property reads: a table-driven
// version (field names looked up by string) was no faster than msgpackr on small ops.
//
// A frame it does not recognise (another type, a field of an unexpected type or out of u32 range) is left to
// msgpackr, so what reaches the wire does not depend on the path beyond the choice of msgpack widths. One
// difference: a field set to `undefined` is left out, where msgpackr writes an ext value that decodes to
// undefined; the schemas treat both as absent.
import { U32_MAX } from './constants.ts';
import {
  arrayHeaderSize,
  binSize,
  isAscii,
  packedName,
  strSize,
  uintSize,
  writeArrayHeader,
  writeAscii,
  writeBin,
  writeBool,
  writeMapHeader,
  writeRaw,
  writeUint,
} from './msgpack-writer.ts';
import type { Writer } from './msgpack-writer.ts';

/** Packs a value with msgpackr (for free-form `details` and non-ASCII strings), as the reference would. */
export type ValuePacker = (value: unknown) => Uint8Array;

/** Encodes data frames; returns undefined for any frame it leaves to msgpackr. */
export type FastEncoder = (frame: unknown) => Buffer | undefined;

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

/** The size of a value the writer does not handle: so negative that any frame size summed with it stays so. */
const BAD = -(2 ** 50);

/** Size of a u32 value, or BAD. */
function u32(v: unknown): number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= U32_MAX ? uintSize(v) : BAD;
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

  function measureFrame(f: Obj): number {
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

  return (frame) => {
    if (typeof frame !== 'object' || frame === null) return undefined;
    packed = [];
    next = 0;
    const size = measureFrame(frame as Obj);
    if (size < 0) {
      packed = [];
      return undefined;
    }
    // allocUnsafe: every byte is written below. Small frames come from Node's shared pool, large ones are
    // allocated on their own.
    const w: Writer = { data: Buffer.allocUnsafe(size), pos: 0 };
    writeFrame(w, frame as Obj);
    packed = [];
    return w.data;
  };
}
