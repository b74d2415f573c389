// A msgpack reader for the narrow subset the fast frame path decodes (see fast-frames.ts). It never decides
// that bytes are invalid: whatever it does not recognise (ext types, floats, nil where a value is expected, a
// read past the end, ...) throws `unsupported`, and the codec hands the whole frame to msgpackr + zod, which
// then accepts or rejects it with the reference error code. So the reader only has to be right about what it
// accepts, and it can stay small.

/**
 * Thrown (one shared instance, no stack captured per throw) when the bytes leave the subset this reader
 * handles. Never escapes the codec: it means "ask the reference path".
 */
export const unsupported = new Error('outside the fast path: decode with the reference path');

/** Read position in a frame. `end` is exclusive; nothing at or after it is ever read. */
export interface Cursor {
  data: Uint8Array;
  pos: number;
  end: number;
}

/** A cursor over all of `data`. */
export function cursor(data: Uint8Array): Cursor {
  return { data, pos: 0, end: data.length };
}

function byte(c: Cursor): number {
  if (c.pos >= c.end) throw unsupported;
  return c.data[c.pos++]!;
}

/** Big-endian unsigned integer of `n` (1, 2 or 4) bytes. */
function be(c: Cursor, n: number): number {
  const p = c.pos;
  if (c.end - p < n) throw unsupported;
  const d = c.data;
  c.pos = p + n;
  if (n === 1) return d[p]!;
  if (n === 2) return (d[p]! << 8) | d[p + 1]!;
  return ((d[p]! << 24) | (d[p + 1]! << 16) | (d[p + 2]! << 8) | d[p + 3]!) >>> 0;
}

/** Moves past `n` bytes that must all be present (a declared length is checked before anything uses it). */
function skip(c: Cursor, n: number): void {
  if (c.end - c.pos < n) throw unsupported;
  c.pos += n;
}

/** Entry count of a map (fixmap, map16, map32). msgpackr writes objects as map16, so all widths occur. */
export function readMapLength(c: Cursor): number {
  const b = byte(c);
  if ((b & 0xf0) === 0x80) return b & 0x0f;
  if (b === 0xde) return be(c, 2);
  if (b === 0xdf) return be(c, 4);
  throw unsupported;
}

/** Element count of an array (fixarray, array16, array32). */
export function readArrayLength(c: Cursor): number {
  const b = byte(c);
  if ((b & 0xf0) === 0x90) return b & 0x0f;
  if (b === 0xdc) return be(c, 2);
  if (b === 0xdd) return be(c, 4);
  throw unsupported;
}

/**
 * An integer from 0 to U32_MAX in any msgpack integer width, signed or unsigned, as msgpackr reads it with
 * `int64AsType: 'number'`. Negative values, larger values and floats are left to the reference path.
 */
export function readU32(c: Cursor): number {
  const b = byte(c);
  if (b < 0x80) return b;
  let v: number;
  switch (b) {
    case 0xcc:
      return be(c, 1);
    case 0xcd:
      return be(c, 2);
    case 0xce:
      return be(c, 4);
    case 0xcf:
    case 0xd3:
      // 64-bit: in range only when the high word is zero (for int64 that also means non-negative).
      if (be(c, 4) !== 0) throw unsupported;
      return be(c, 4);
    case 0xd0:
      v = be(c, 1);
      if (v & 0x80) throw unsupported;
      return v;
    case 0xd1:
      v = be(c, 2);
      if (v & 0x8000) throw unsupported;
      return v;
    case 0xd2:
      v = be(c, 4);
      if (v > 0x7fffffff) throw unsupported;
      return v;
    default:
      throw unsupported;
  }
}

// Big-endian float64 through an 8-byte scratch, so no DataView is made per value.
const f64Bytes = new Uint8Array(8);
const f64View = new DataView(f64Bytes.buffer);

/**
 * A non-negative safe integer (0..2^53-1), as msgpackr reads it: any integer width, or a float64 holding an
 * integer (msgpackr writes integers beyond 32 bits as float64). The 64-bit widths are exact in that range;
 * larger values, negatives, fractions and float32 are left to the reference path.
 */
export function readSafeUint(c: Cursor): number {
  if (c.pos >= c.end) throw unsupported;
  const b = c.data[c.pos]!;
  if (b === 0xcf || b === 0xd3) {
    c.pos++;
    const hi = be(c, 4);
    if (hi > 0x1fffff) throw unsupported;
    return hi * 0x100000000 + be(c, 4);
  }
  if (b === 0xcb) {
    c.pos++;
    const p = c.pos;
    skip(c, 8);
    for (let i = 0; i < 8; i++) f64Bytes[i] = c.data[p + i]!;
    const v = f64View.getFloat64(0);
    // -0 is a safe integer too; callers that need a minimum of 1 reject it by that bound.
    if (!Number.isSafeInteger(v) || v < 0) throw unsupported;
    return v;
  }
  return readU32(c);
}

/** true or false; nil and everything else is left to the reference path. */
export function readBool(c: Cursor): boolean {
  const b = byte(c);
  if (b === 0xc3) return true;
  if (b === 0xc2) return false;
  throw unsupported;
}

/** A bin value (bin8/16/32) as a view into the frame, like msgpackr's `subarray` (zero-copy, same type). */
export function readBin(c: Cursor): Uint8Array {
  const b = byte(c);
  let n: number;
  if (b === 0xc4) n = be(c, 1);
  else if (b === 0xc5) n = be(c, 2);
  else if (b === 0xc6) n = be(c, 4);
  else throw unsupported;
  const start = c.pos;
  skip(c, n);
  return c.data.subarray(start, start + n);
}

/** Byte length of a str value (fixstr, str8/16/32); the cursor is left at its first byte, which are present. */
export function readStrLength(c: Cursor): number {
  const b = byte(c);
  let n: number;
  if ((b & 0xe0) === 0xa0) n = b & 0x1f;
  else if (b === 0xd9) n = be(c, 1);
  else if (b === 0xda) n = be(c, 2);
  else if (b === 0xdb) n = be(c, 4);
  else throw unsupported;
  if (c.end - c.pos < n) throw unsupported;
  return n;
}

/** Names looked up by their UTF-8 bytes: index by byte length, then a few candidates to compare. */
export type NameTable = readonly (readonly { bytes: Uint8Array; value: number }[] | undefined)[];

/** Builds a NameTable from names and the value each one reads as. */
export function nameTable(entries: readonly (readonly [name: string, value: number])[]): NameTable {
  const table: { bytes: Uint8Array; value: number }[][] = [];
  const utf8 = new TextEncoder();
  for (const [name, value] of entries) {
    const bytes = utf8.encode(name);
    (table[bytes.length] ??= []).push({ bytes, value });
  }
  return table;
}

/**
 * Reads a str and returns the index of the name it spells in `table`, or -1 for any other ASCII string (which
 * has then been read). Compares bytes, so no string is built for keys and type names.
 *
 * A string that is not ASCII is left to the reference path: msgpackr decodes such map keys through a
 * process-wide key cache that a failed decode can leave holding `undefined` for them (msgpackr 1.12.1 files the
 * cache entry before decoding the key, and native string extraction may then throw on a later, truncated
 * string), so how msgpackr reads frames with such keys depends on what it read before. Deferring them keeps the
 * fast path out of that.
 */
export function readName(c: Cursor, table: NameTable): number {
  const n = readStrLength(c);
  const start = c.pos;
  c.pos = start + n;
  const d = c.data;
  const candidates = table[n];
  if (candidates !== undefined) {
    outer: for (const { bytes, value } of candidates) {
      for (let i = 0; i < n; i++) if (d[start + i] !== bytes[i]) continue outer;
      return value;
    }
  }
  for (let i = start; i < start + n; i++) if (d[i]! >= 0x80) throw unsupported;
  return -1;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * A str value as a string. Invalid UTF-8 is left to the reference path, because msgpackr's lenient decoding
 * of it is its own; on valid UTF-8 every decoder agrees.
 */
export function readString(c: Cursor): string {
  const n = readStrLength(c);
  const start = c.pos;
  c.pos = start + n;
  try {
    return strictUtf8.decode(c.data.subarray(start, start + n));
  } catch {
    throw unsupported;
  }
}

/**
 * Skips one msgpack value without recursion (a counter of values still to skip), so attacker-chosen nesting
 * costs no stack, and every declared length is checked against the bytes present before the cursor moves:
 * the cost is linear in the bytes read. With `scalarsOnly`, maps and arrays are refused. Ext types (which
 * include msgpackr's records, whose definitions change how later bytes decode), the never-used byte 0xc1 and
 * strings that are not ASCII (whose decoding differs between msgpackr's JS and native readers when the UTF-8
 * is invalid) are refused too. Returns the offset where the value started.
 */
export function skipValue(c: Cursor, scalarsOnly: boolean): number {
  const start = c.pos;
  let pending = 1;
  while (pending > 0) {
    pending--;
    const b = byte(c);
    if (b < 0x80 || b >= 0xe0 || b === 0xc0 || b === 0xc2 || b === 0xc3) continue;
    if (b < 0x90 || b === 0xde || b === 0xdf) {
      if (scalarsOnly) throw unsupported;
      const n = b < 0x90 ? b & 0x0f : be(c, b === 0xde ? 2 : 4);
      pending += 2 * n;
      continue;
    }
    if (b < 0xa0 || b === 0xdc || b === 0xdd) {
      if (scalarsOnly) throw unsupported;
      pending += b < 0xa0 ? b & 0x0f : be(c, b === 0xdc ? 2 : 4);
      continue;
    }
    if (b < 0xc0 || b === 0xd9 || b === 0xda || b === 0xdb) {
      c.pos--;
      const n = readStrLength(c);
      const d = c.data;
      for (let i = c.pos, e = c.pos + n; i < e; i++) if (d[i]! >= 0x80) throw unsupported;
      c.pos += n;
      continue;
    }
    switch (b) {
      case 0xc4:
        skip(c, be(c, 1));
        break;
      case 0xc5:
        skip(c, be(c, 2));
        break;
      case 0xc6:
        skip(c, be(c, 4));
        break;
      case 0xcc:
      case 0xd0:
        skip(c, 1);
        break;
      case 0xcd:
      case 0xd1:
        skip(c, 2);
        break;
      case 0xca:
      case 0xce:
      case 0xd2:
        skip(c, 4);
        break;
      case 0xcb:
      case 0xcf:
      case 0xd3:
        skip(c, 8);
        break;
      default:
        throw unsupported;
    }
  }
  return start;
}
