/** Version of the wire protocol; a handshake with any other version is rejected with VERSION_MISMATCH. */
export const PROTOCOL_VERSION = 1;

/** Smallest page size a pool may have, in bytes. */
export const MIN_PAGE_SIZE = 512;
/** Largest page size a pool may have, in bytes. */
export const MAX_PAGE_SIZE = 64 * 1024;
/** Page size of a pool created without one, in bytes. */
export const DEFAULT_PAGE_SIZE = 4096;

/**
 * Longest object id accepted, in bytes. The contract asks for at least 64 (a file handle must fit);
 * 256 leaves room for long paths hashed by the caller.
 */
export const MAX_OID_BYTES = 256;
/** Longest client identity accepted in the handshake, in characters. */
export const MAX_IDENTITY_LENGTH = 128;

/**
 * Largest frame a peer may send by default, in bytes: a full batch of 4 KiB pages fits; batches of larger pages
 * are split by bytes as well as by op count.
 */
export const DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024;
/** Most ops one batch frame may carry. */
export const MAX_BATCH_OPS = 1024;

/** Most copies a persistent pool may keep of each page. */
export const MAX_REPLICATION = 16;

/**
 * Compression a pool may ask for (`createPool({ compression })`); a pool without it stores pages as written.
 * One value for now: lz4, fast enough to sit on every put and get (see docs/architecture.md, the dependency
 * table). A new value is a new codec in memnode's page-compression.ts.
 */
export const COMPRESSIONS = ['lz4'] as const;
/** One of COMPRESSIONS. */
export type Compression = (typeof COMPRESSIONS)[number];

/** True when `value` names a compression the cluster knows. */
export function isCompression(value: unknown): value is Compression {
  return (COMPRESSIONS as readonly unknown[]).includes(value);
}

/** Largest value of an unsigned 32-bit number: page indexes, pool ids and request ids are u32. */
export const U32_MAX = 0xffffffff;

/** True when `size` is a power of two between MIN_PAGE_SIZE and MAX_PAGE_SIZE. */
export function isValidPageSize(size: number): boolean {
  return (
    Number.isInteger(size) && size >= MIN_PAGE_SIZE && size <= MAX_PAGE_SIZE && (size & (size - 1)) === 0
  );
}

/**
 * Versions of persistent pages: a primary serving state version `sv` stamps at least `sv * VERSION_EPOCH`,
 * then counts up per partition, so a primary of a later state stamps above any earlier primary (up to 2^21
 * writes per partition per state version) and versions stay safe integers for 2^32 state versions.
 */
export const VERSION_EPOCH = 2 ** 21;
