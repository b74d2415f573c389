/**
 * The deduplication index of one page store: shared slots ("entries") of identical ephemeral pages, each with
 * a reference count, found by (scope, content hash).
 *
 * Why this shape: like the rest of the store, nothing here is one JS object per page. An entry is a number
 * into a struct of typed arrays (slot ref, reference count, scope, hash, stored length: 18 bytes) and the
 * index is an open-addressing table of entry numbers (handle-table.ts keyed by (scope, hash): 5 to 11 bytes
 * per entry), not a Map, whose entries cost tens of bytes and box hashes above 2^30.
 *
 * The index finds candidates only: a content hash (CRC-32C) is not collision-resistant, so the page store
 * compares the bytes of a candidate before it shares its slot. Keys are unique: a page whose hash finds an
 * entry of other contents is stored unshared (the caller's job), so one key never names two entries.
 *
 * The module knows nothing of slabs, charges or records: the page store owns the slot an entry names (the
 * slab's owner of that slot is `DEDUP_OWNER_BASE + entry`, see page-store.ts) and frees it when `release`
 * reports that the last reference went.
 */
import { Buffer } from 'node:buffer';
import { createHandleTable, NO_RECORD } from './handle-table.ts';
import { grown } from './typed-arrays.ts';

/** No entry: what `find` and `findIdentical` return on a miss. */
export const NO_ENTRY = NO_RECORD;

/** What `findIdentical` returns when the hash found an entry of other contents. */
export const COLLIDED = -2;

/**
 * Entry numbers stay below this (2^30), so that `DEDUP_OWNER_BASE + entry` is a valid slab owner (int32) that
 * can never be a record number: a store with dedup keeps its records below 2^30 too (its capacity is at most
 * MAX_DEDUP_CAPACITY_BYTES, see page-store.ts).
 */
export const MAX_DEDUP_ENTRIES = 2 ** 30;

const INITIAL_ENTRIES = 1024;

/** The shared slots of one store. Not re-entrant; every method is O(1) (amortised for `add`). */
export interface PageDedup {
  /** Live entries (distinct shared slots). */
  readonly size: number;
  /**
   * The scope of pools of this owner, page size and compression (made on first use; never removed: one small
   * number per kind of pool). Only pages of one scope share slots: one identity, one stored form.
   */
  scopeOf(owner: string, pageSize: number, compression: string | undefined): number;
  /** The entry indexed under (scope, hash), or NO_ENTRY. */
  find(scope: number, hash: number): number;
  /**
   * The entry under (scope, hash) whose slot holds exactly `stored` (stored length `storedLength`, 0 for a raw
   * page), read through `slots.view(slot, length)` (the slab class of `stored`); NO_ENTRY if there is none, COLLIDED if the hash found an
   * entry of other contents (then the caller stores the page unshared: the index keeps the entry it found).
   */
  findIdentical(
    scope: number,
    hash: number,
    stored: Uint8Array,
    storedLength: number,
    slots: SlotBytes,
  ): number;
  /**
   * A new entry with one reference, indexed under (scope, hash), which must be free (`find` missed). `stored`
   * is the length of the stored form in its slot (0: the raw page). Its slot is set with `setSlot` once
   * allocated. Throws RangeError, changing nothing, if memory runs out or MAX_DEDUP_ENTRIES are live.
   */
  add(scope: number, hash: number, stored: number): number;
  /** One more reference to a live entry; returns the new count. */
  retain(entry: number): number;
  /**
   * One reference less; returns how many are left. At 0 the entry leaves the index and its number is free:
   * read its slot before, and free the slot after.
   */
  release(entry: number): number;
  /** References held on a live entry. */
  refsOf(entry: number): number;
  /** The slot ref of a live entry. */
  slotOf(entry: number): number;
  /** The stored length of a live entry (0: a raw page). */
  storedOf(entry: number): number;
  /** Records where an entry's slot lives (after allocation, or when compaction moved it). */
  setSlot(entry: number, slot: number): void;
  /** Bytes of the arrays and the index, at their allocated sizes. */
  memoryBytes(): number;
}

/** Where `findIdentical` reads a slot's bytes: a slab class (slab-allocator.ts). */
export interface SlotBytes {
  /** The first `length` bytes of slot `slot`, valid until the class next changes. */
  view(slot: number, length: number): Uint8Array;
}

/** Creates an empty index. */
export function createPageDedup(): PageDedup {
  let capacity = INITIAL_ENTRIES;
  let highWater = 0;
  let freeEntry = NO_ENTRY; // free list linked through eRefs
  let live = 0;
  let eSlot = new Uint32Array(capacity);
  /** Reference count of a live entry; the next free entry of a free one. */
  let eRefs = new Int32Array(capacity);
  let eScope = new Int32Array(capacity);
  let eHash = new Uint32Array(capacity);
  /** Stored length (compressed pages are below 64 KiB: only lengths that save a size class are kept). */
  let eStored = new Uint16Array(capacity);

  const scopes = new Map<string, number>();
  const index = createHandleTable({
    objectOf: (entry) => eScope[entry] as number,
    indexOf: (entry) => eHash[entry] as number,
  });

  function newEntry(): number {
    if (freeEntry !== NO_ENTRY) {
      const entry = freeEntry;
      freeEntry = eRefs[entry] as number;
      return entry;
    }
    if (highWater === MAX_DEDUP_ENTRIES) throw new RangeError('the dedup index is full');
    if (highWater === capacity) {
      const n = capacity * 2;
      // Every array before any assignment: a failed allocation leaves the index as it was.
      const next = [
        grown(eSlot, n),
        grown(eRefs, n),
        grown(eScope, n),
        grown(eHash, n),
        grown(eStored, n),
      ] as const;
      [eSlot, eRefs, eScope, eHash, eStored] = next;
      capacity = n;
    }
    return highWater++;
  }

  function freeNumber(entry: number): void {
    eRefs[entry] = freeEntry;
    freeEntry = entry;
  }

  return {
    get size() {
      return live;
    },

    scopeOf(owner, pageSize, compression) {
      const key = `${owner}\0${pageSize}\0${compression ?? ''}`;
      let scope = scopes.get(key);
      if (scope === undefined) {
        scope = scopes.size;
        scopes.set(key, scope);
      }
      return scope;
    },

    find(scope, hash) {
      return index.get(scope, hash >>> 0);
    },

    findIdentical(scope, hash, stored, storedLength, slots) {
      const entry = index.get(scope, hash >>> 0);
      if (entry === NO_ENTRY) return NO_ENTRY;
      // One scope has one page size and codec, so equal stored forms mean equal pages (decompression is a
      // function); the hash (CRC-32C) is not collision-resistant, so the bytes decide.
      if (
        eStored[entry] === storedLength &&
        Buffer.compare(slots.view(eSlot[entry] as number, stored.length), stored) === 0
      ) {
        return entry;
      }
      return COLLIDED;
    },

    add(scope, hash, stored) {
      const entry = newEntry();
      eScope[entry] = scope;
      eHash[entry] = hash >>> 0;
      eStored[entry] = stored;
      eSlot[entry] = 0;
      try {
        index.insert(entry);
      } catch (error) {
        freeNumber(entry);
        throw error;
      }
      eRefs[entry] = 1;
      live++;
      return entry;
    },

    retain(entry) {
      const refs = (eRefs[entry] as number) + 1;
      eRefs[entry] = refs;
      return refs;
    },

    release(entry) {
      const refs = (eRefs[entry] as number) - 1;
      if (refs > 0) {
        eRefs[entry] = refs;
        return refs;
      }
      index.remove(eScope[entry] as number, eHash[entry] as number);
      freeNumber(entry);
      live--;
      return 0;
    },

    refsOf(entry) {
      return eRefs[entry] as number;
    },

    slotOf(entry) {
      return eSlot[entry] as number;
    },

    storedOf(entry) {
      return eStored[entry] as number;
    },

    setSlot(entry, slot) {
      eSlot[entry] = slot;
    },

    memoryBytes() {
      let bytes = index.capacity * Int32Array.BYTES_PER_ELEMENT;
      for (const a of [eSlot, eRefs, eScope, eHash, eStored]) bytes += a.byteLength;
      return bytes;
    },
  };
}
