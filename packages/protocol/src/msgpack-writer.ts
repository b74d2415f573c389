// A msgpack writer for the fast frame path (see fast-frames.ts): the frame's size is computed first, then it is
// written into one buffer of exactly that size, each page copied once. msgpackr instead grows its buffer while
// packing, which copies a 1 MiB batch of pages several times over. Everything written is plain msgpack with
// the smallest width of each value, so any msgpack implementation reads it.

/** Write position in a buffer allocated to the frame's exact size. */
export interface Writer {
  data: Buffer;
  pos: number;
}

/** Bytes an array header with `n` elements takes (maps written here have at most 15 entries: one byte). */
export function arrayHeaderSize(n: number): number {
  return n < 16 ? 1 : n < 0x10000 ? 3 : 5;
}

/** Bytes the integer `v` (0..U32_MAX) takes. */
export function uintSize(v: number): number {
  return v < 0x80 ? 1 : v < 0x100 ? 2 : v < 0x10000 ? 3 : 5;
}

/** Bytes a bin of `n` bytes takes, header included. */
export function binSize(n: number): number {
  return n + (n < 0x100 ? 2 : n < 0x10000 ? 3 : 5);
}

/** Bytes a str of `n` UTF-8 bytes takes, header included. */
export function strSize(n: number): number {
  return n + (n < 32 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : 5);
}

function u16(w: Writer, v: number): void {
  w.data[w.pos++] = v >>> 8;
  w.data[w.pos++] = v & 0xff;
}
function u32(w: Writer, v: number): void {
  w.data.writeUInt32BE(v, w.pos);
  w.pos += 4;
}

/** Writes a map header (fixmap, map16 or map32). */
export function writeMapHeader(w: Writer, n: number): void {
  if (n < 16) w.data[w.pos++] = 0x80 | n;
  else if (n < 0x10000) {
    w.data[w.pos++] = 0xde;
    u16(w, n);
  } else {
    w.data[w.pos++] = 0xdf;
    u32(w, n);
  }
}

/** Writes an array header (fixarray, array16 or array32). */
export function writeArrayHeader(w: Writer, n: number): void {
  if (n < 16) w.data[w.pos++] = 0x90 | n;
  else if (n < 0x10000) {
    w.data[w.pos++] = 0xdc;
    u16(w, n);
  } else {
    w.data[w.pos++] = 0xdd;
    u32(w, n);
  }
}

/** Writes an unsigned integer 0..U32_MAX in its smallest width. */
export function writeUint(w: Writer, v: number): void {
  if (v < 0x80) w.data[w.pos++] = v;
  else if (v < 0x100) {
    w.data[w.pos++] = 0xcc;
    w.data[w.pos++] = v;
  } else if (v < 0x10000) {
    w.data[w.pos++] = 0xcd;
    u16(w, v);
  } else {
    w.data[w.pos++] = 0xce;
    u32(w, v);
  }
}

/**
 * Bytes a non-negative safe integer takes: its integer width up to U32_MAX, a float64 (9 bytes) beyond, as
 * msgpackr writes it, so the receiver reads the same value either way.
 */
export function safeUintSize(v: number): number {
  return v <= 0xffffffff ? uintSize(v) : 9;
}

/** Writes a non-negative safe integer (see safeUintSize). */
export function writeSafeUint(w: Writer, v: number): void {
  if (v <= 0xffffffff) return writeUint(w, v);
  w.data[w.pos++] = 0xcb;
  w.data.writeDoubleBE(v, w.pos);
  w.pos += 8;
}

/** Writes true or false. */
export function writeBool(w: Writer, v: boolean): void {
  w.data[w.pos++] = v ? 0xc3 : 0xc2;
}

/** Writes a bin: its header, then one copy of the bytes. */
export function writeBin(w: Writer, bytes: Uint8Array): void {
  const n = bytes.length;
  if (n < 0x100) {
    w.data[w.pos++] = 0xc4;
    w.data[w.pos++] = n;
  } else if (n < 0x10000) {
    w.data[w.pos++] = 0xc5;
    u16(w, n);
  } else {
    w.data[w.pos++] = 0xc6;
    u32(w, n);
  }
  w.data.set(bytes, w.pos);
  w.pos += n;
}

/** Writes bytes that are already msgpack (a precomputed key, or a value packed by msgpackr). */
export function writeRaw(w: Writer, bytes: Uint8Array): void {
  w.data.set(bytes, w.pos);
  w.pos += bytes.length;
}

/** True when every char of `s` is ASCII, so its UTF-8 bytes are its char codes. */
export function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) >= 0x80) return false;
  return true;
}

/** Writes an ASCII string (checked with isAscii) as a str. */
export function writeAscii(w: Writer, s: string): void {
  const n = s.length;
  if (n < 32) w.data[w.pos++] = 0xa0 | n;
  else if (n < 0x100) {
    w.data[w.pos++] = 0xd9;
    w.data[w.pos++] = n;
  } else if (n < 0x10000) {
    w.data[w.pos++] = 0xda;
    u16(w, n);
  } else {
    w.data[w.pos++] = 0xdb;
    u32(w, n);
  }
  w.pos += w.data.write(s, w.pos, n, 'latin1');
}

/** A string's msgpack encoding (str header and UTF-8 bytes) made once, for keys and type names. */
export function packedName(s: string): Uint8Array {
  if (!isAscii(s) || s.length >= 32) throw new Error(`name ${s} must be short ASCII`);
  return Uint8Array.from([0xa0 | s.length, ...Array.from(s, (ch) => ch.charCodeAt(0))]);
}
