import { MAX_OID_BYTES, U32_MAX } from './constants.ts';
import { ErrorCode, TmemError } from './errors.ts';

/** The address of one page: a pool, an opaque object id and a u32 index within the object. */
export interface PageHandle {
  pool: number;
  oid: Uint8Array;
  index: number;
}

/** What applications pass as an object id: bytes, or a string taken as its UTF-8 bytes. */
export type ObjectId = string | Uint8Array;

const utf8 = new TextEncoder();

/**
 * Normalises an object id to bytes and checks its length (1..MAX_OID_BYTES).
 * Throws BAD_ARGUMENT so a bad id never reaches the wire.
 */
export function toOidBytes(oid: ObjectId): Uint8Array {
  const bytes = typeof oid === 'string' ? utf8.encode(oid) : oid;
  if (!(bytes instanceof Uint8Array)) {
    throw new TmemError(ErrorCode.BadArgument, 'object id must be a string or a Uint8Array');
  }
  if (bytes.length === 0 || bytes.length > MAX_OID_BYTES) {
    throw new TmemError(
      ErrorCode.BadArgument,
      `object id must be 1 to ${MAX_OID_BYTES} bytes, got ${bytes.length}`,
      { details: { length: bytes.length, max: MAX_OID_BYTES } },
    );
  }
  return bytes;
}

/** True when `n` is an integer that fits in an unsigned 32-bit number. */
export function isU32(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= U32_MAX;
}

/** Throws BAD_ARGUMENT unless `index` is a u32. */
export function checkIndex(index: number): number {
  if (!isU32(index)) {
    throw new TmemError(ErrorCode.BadArgument, `page index must be an integer 0..${U32_MAX}`, {
      details: { index },
    });
  }
  return index;
}

/**
 * A stable map key for (oid) within a pool: the oid's bytes as latin1, so any byte string round-trips
 * and distinct oids never collide.
 */
export function oidKey(oid: Uint8Array): string {
  let key = '';
  for (let i = 0; i < oid.length; i += 4096) {
    key += String.fromCharCode.apply(null, Array.from(oid.subarray(i, i + 4096)));
  }
  return key;
}

/** Inverse of oidKey. */
export function oidFromKey(key: string): Uint8Array {
  const bytes = new Uint8Array(key.length);
  for (let i = 0; i < key.length; i++) bytes[i] = key.charCodeAt(i);
  return bytes;
}

// MurmurHash3 (x86, 32-bit) written incrementally, so hashing a handle allocates nothing.
const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

function mixBlock(h: number, k: number): number {
  k = Math.imul(k, C1);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, C2);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

function finalMix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** MurmurHash3 x86_32 of `bytes` (same result as the reference implementation). */
export function murmur3(bytes: Uint8Array, seed = 0): number {
  let h = seed | 0;
  const blocks = bytes.length & ~3;
  for (let i = 0; i < blocks; i += 4) {
    const k =
      (bytes[i] as number) |
      ((bytes[i + 1] as number) << 8) |
      ((bytes[i + 2] as number) << 16) |
      ((bytes[i + 3] as number) << 24);
    h = mixBlock(h, k);
  }
  const rest = bytes.length & 3;
  if (rest > 0) {
    let tail = 0;
    for (let i = rest - 1; i >= 0; i--) tail = (tail << 8) | (bytes[blocks + i] as number);
    tail = Math.imul(tail, C1);
    tail = (tail << 15) | (tail >>> 17);
    tail = Math.imul(tail, C2);
    h ^= tail;
  }
  h ^= bytes.length;
  return finalMix(h);
}

/**
 * How many consecutive indexes share a stripe, as a shift: 2^4 = 16 pages. A stripe stays on one node so
 * read-ahead of neighbouring pages is one round trip, while a large object (a swap area) spreads over the ring.
 */
export const STRIPE_SHIFT = 4;

/**
 * The partition hash of a page: MurmurHash3 over (pool, oid, index >> STRIPE_SHIFT). Fast, allocation-free
 * and well mixed; the ring maps `hash % partitionCount` to owners.
 */
export function partitionHash(pool: number, oid: Uint8Array, index: number): number {
  const stripe = Math.floor(index / 2 ** STRIPE_SHIFT);
  let h = mixBlock(0x7a3d, pool | 0);
  const blocks = oid.length & ~3;
  for (let i = 0; i < blocks; i += 4) {
    h = mixBlock(
      h,
      (oid[i] as number) |
        ((oid[i + 1] as number) << 8) |
        ((oid[i + 2] as number) << 16) |
        ((oid[i + 3] as number) << 24),
    );
  }
  let tail = oid.length;
  for (let i = blocks; i < oid.length; i++) tail = (tail << 8) | (oid[i] as number);
  h = mixBlock(h, tail);
  h = mixBlock(h, stripe | 0);
  h ^= oid.length + 12;
  return finalMix(h);
}

/** The partition (0..count-1) of a page. */
export function partitionOf(pool: number, oid: Uint8Array, index: number, partitionCount: number): number {
  return partitionHash(pool, oid, index) % partitionCount;
}
