// The fast encoder of data frames (the same set as fast-decode.ts). Two passes over the frame: the first checks
// that every field has the type the writer expects and adds up the exact size, the second writes into one buffer
// of that size, copying each page once. A frame it does not recognise (another type, a field of an unexpected
// type or out of u32 range) is left to msgpackr, so what reaches the wire never depends on which path packed it
// beyond the choice of msgpack widths; `undefined` fields are left out, where msgpackr writes them as an ext
// value that decodes to undefined, which the schemas treat as absent.
import { U32_MAX } from './constants.ts';
import {
  arrayHeaderSize,
  binSize,
  isAscii,
  mapHeaderSize,
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

const U32 = 0,
  BIN = 1,
  BOOL = 2,
  STR = 3,
  ANY = 4,
  OPS = 5,
  REPLIES = 6;

interface Field {
  name: string;
  /** The key, already packed as a fixstr. */
  key: Uint8Array;
  kind: number;
  optional: boolean;
}

/** How one frame type is written: its packed `t` and its other fields in schema order. */
interface Shape {
  t: Uint8Array;
  fields: readonly Field[];
}

const field = (name: string, kind: number, optional = false): Field => ({
  name,
  key: packedName(name),
  kind,
  optional,
});
const T_KEY = packedName('t');
const shape = (t: string, ...fields: Field[]): Shape => ({ t: packedName(t), fields });

const id = field('id', U32);
const pool = field('pool', U32);
const oid = field('oid', BIN);
const index = field('index', U32);
const sum = field('sum', U32, true);

const opShapes = new Map<unknown, Shape>([
  ['put', shape('put', id, pool, oid, index, field('page', BIN), sum)],
  ['get', shape('get', id, pool, oid, index, field('replica', BOOL, true))],
  ['flushPage', shape('flushPage', id, pool, oid, index)],
  ['flushObject', shape('flushObject', id, pool, oid)],
]);
const replyShapes = new Map<unknown, Shape>([
  ['accepted', shape('accepted', id)],
  ['ok', shape('ok', id)],
  ['miss', shape('miss', id)],
  ['refused', shape('refused', id, field('reason', STR))],
  ['hit', shape('hit', id, field('page', BIN), sum)],
  ['error', shape('error', id, field('code', STR), field('message', STR), field('details', ANY, true))],
]);
const batchShape = shape('batch', id, field('ops', OPS), field('sv', U32, true));
const batchReplyShape = shape('batch', id, field('replies', REPLIES), field('more', BOOL, true));

/** Packs a value with msgpackr (for free-form `details` and non-ASCII strings), as the reference would. */
export type ValuePacker = (value: unknown) => Uint8Array;

/** Encodes data frames; returns undefined for any frame it leaves to msgpackr. */
export type FastEncoder = (frame: unknown) => Buffer | undefined;

/** Creates the fast encoder; `pack` packs the few values it does not write itself. */
export function createFastEncoder(pack: ValuePacker): FastEncoder {
  // Values packed by msgpackr during the size pass, consumed in the same order by the write pass.
  let packed: Uint8Array[] = [];
  let next = 0;

  function shapeOf(frame: Record<string, unknown>, top: boolean, replies: boolean): Shape | undefined {
    const t = frame.t;
    if (t === 'batch') {
      if (!top) return undefined;
      if (frame.ops !== undefined) return frame.replies === undefined ? batchShape : undefined;
      return batchReplyShape;
    }
    return top ? (opShapes.get(t) ?? replyShapes.get(t)) : (replies ? replyShapes : opShapes).get(t);
  }

  /** Size of the map for `frame`, or -1 when a field is not what the writer handles. */
  function measure(frame: unknown, top: boolean, replies: boolean): number {
    if (typeof frame !== 'object' || frame === null) return -1;
    const obj = frame as Record<string, unknown>;
    const s = shapeOf(obj, top, replies);
    if (s === undefined) return -1;
    let entries = 1;
    let size = T_KEY.length + s.t.length;
    for (const f of s.fields) {
      const v = obj[f.name];
      if (v === undefined) {
        if (f.optional) continue;
        return -1;
      }
      let n: number;
      switch (f.kind) {
        case U32:
          if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > U32_MAX) return -1;
          n = uintSize(v);
          break;
        case BIN:
          if (!(v instanceof Uint8Array)) return -1;
          n = binSize(v.length);
          break;
        case BOOL:
          if (typeof v !== 'boolean') return -1;
          n = 1;
          break;
        case STR:
          if (typeof v !== 'string') return -1;
          n = isAscii(v) ? strSize(v.length) : keep(pack(v));
          break;
        case ANY:
          n = keep(pack(v));
          break;
        default: {
          if (!Array.isArray(v)) return -1;
          n = arrayHeaderSize(v.length);
          for (const element of v) {
            const m = measure(element, false, f.kind === REPLIES);
            if (m < 0) return -1;
            n += m;
          }
        }
      }
      entries++;
      size += f.key.length + n;
    }
    return size + mapHeaderSize(entries);
  }

  function keep(bytes: Uint8Array): number {
    packed.push(bytes);
    return bytes.length;
  }

  /** Writes what measure() measured; the frame was checked there, so nothing here can fail. */
  function write(w: Writer, frame: unknown, top: boolean, replies: boolean): void {
    const obj = frame as Record<string, unknown>;
    const s = shapeOf(obj, top, replies)!;
    let entries = 1;
    for (const f of s.fields) if (obj[f.name] !== undefined) entries++;
    writeMapHeader(w, entries);
    writeRaw(w, T_KEY);
    writeRaw(w, s.t);
    for (const f of s.fields) {
      const v = obj[f.name];
      if (v === undefined) continue;
      writeRaw(w, f.key);
      switch (f.kind) {
        case U32:
          writeUint(w, v as number);
          break;
        case BIN:
          writeBin(w, v as Uint8Array);
          break;
        case BOOL:
          writeBool(w, v as boolean);
          break;
        case STR:
          if (isAscii(v as string)) writeAscii(w, v as string);
          else writeRaw(w, packed[next++]!);
          break;
        case ANY:
          writeRaw(w, packed[next++]!);
          break;
        default: {
          const list = v as unknown[];
          writeArrayHeader(w, list.length);
          for (const element of list) write(w, element, false, f.kind === REPLIES);
        }
      }
    }
  }

  return (frame) => {
    packed = [];
    next = 0;
    const size = measure(frame, true, false);
    if (size < 0) return undefined;
    // allocUnsafe: every byte is written below. Small frames come from Node's shared pool, large ones are
    // allocated on their own.
    const w: Writer = { data: Buffer.allocUnsafe(size), pos: 0 };
    write(w, frame, true, false);
    packed = [];
    return w.data;
  };
}
