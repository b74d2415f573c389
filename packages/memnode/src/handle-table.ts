/**
 * An open-addressing hash table from (object number, page index) to a record number, stored in one Int32Array.
 *
 * Why not a Map: a Map entry costs tens of bytes and a u32 index above 2^30 is a boxed heap number, while a slot
 * here is 4 bytes (8 to 11 per entry at the load factors kept). The table stores only record numbers; the keys
 * live in the caller's record arrays and are read back through `objectOf` / `indexOf`, so nothing is stored
 * twice. Linear probing with backward-shift deletion: no tombstones, so lookups never slow down with churn.
 */

/** No record: what `get` and `remove` return on a miss. */
export const NO_RECORD = -1;

const MIN_CAPACITY = 16;

/** Where the table reads a record's key. */
export interface HandleTableOptions {
  /** The object number (int32) of a record in the table. */
  objectOf: (record: number) => number;
  /** The page index (u32) of a record in the table. */
  indexOf: (record: number) => number;
}

/** (object, index) -> record. Keys must be unique: inserting a key twice is a bug and throws. */
export interface HandleTable {
  /** Records in the table. */
  readonly size: number;
  /** Slots allocated (for memory accounting and tests). */
  readonly capacity: number;
  /** The record stored under (object, index), or NO_RECORD. */
  get(object: number, index: number): number;
  /**
   * Adds `record`, whose key (read through the options) must not be in the table yet. Throws RangeError, changing
   * nothing, if growing the table fails.
   */
  insert(record: number): void;
  /** Removes the record stored under (object, index); returns it, or NO_RECORD if there was none. */
  remove(object: number, index: number): number;
  /**
   * Stores `record` where `from` is stored: the caller moved a record to a new number and `record` reads back
   * the same key. O(1), never resizes. Throws if `from` is not in the table under that key.
   */
  renumber(from: number, record: number): void;
}

/** Mixes (object, index) into 32 well-spread bits (murmur3's finaliser over a golden-ratio combination). */
function hashKey(object: number, index: number): number {
  let h = Math.imul(object, 0x9e3779b1) ^ index;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Creates an empty table. */
export function createHandleTable(options: HandleTableOptions): HandleTable {
  const { objectOf, indexOf } = options;
  let capacity = MIN_CAPACITY;
  let slots = new Int32Array(capacity).fill(NO_RECORD);
  let mask = capacity - 1;
  let size = 0;

  function homeOf(record: number): number {
    return hashKey(objectOf(record), indexOf(record)) & mask;
  }

  function find(object: number, index: number): number {
    for (let i = hashKey(object, index) & mask; ; i = (i + 1) & mask) {
      const record = slots[i] as number;
      if (record === NO_RECORD) return -1;
      if (objectOf(record) === object && indexOf(record) === index) return i;
    }
  }

  function place(record: number): void {
    let i = homeOf(record);
    while (slots[i] !== NO_RECORD) i = (i + 1) & mask;
    slots[i] = record;
  }

  /** Rehashes into `newCapacity` slots; if that allocation fails (RangeError), the table is unchanged. */
  function resize(newCapacity: number): void {
    const fresh = new Int32Array(newCapacity).fill(NO_RECORD);
    const old = slots;
    slots = fresh;
    capacity = newCapacity;
    mask = capacity - 1;
    for (const record of old) if (record !== NO_RECORD) place(record);
  }

  return {
    get size() {
      return size;
    },
    get capacity() {
      return capacity;
    },

    get(object, index) {
      const i = find(object, index);
      return i < 0 ? NO_RECORD : (slots[i] as number);
    },

    insert(record) {
      if (record < 0 || !Number.isInteger(record)) throw new RangeError(`bad record number ${record}`);
      if (find(objectOf(record), indexOf(record)) >= 0) {
        throw new Error(`handle (${objectOf(record)}, ${indexOf(record)}) is already in the table`);
      }
      // Grow at 3/4 full: linear probing degrades quickly beyond that.
      if ((size + 1) * 4 > capacity * 3) resize(capacity * 2);
      place(record);
      size++;
    },

    renumber(from, record) {
      const i = find(objectOf(record), indexOf(record));
      if (i < 0 || slots[i] !== from) throw new Error(`record ${from} is not in the table under that key`);
      slots[i] = record;
    },

    remove(object, index) {
      let hole = find(object, index);
      if (hole < 0) return NO_RECORD;
      const removed = slots[hole] as number;
      // Backward-shift deletion: pull later entries of the probe run into the hole unless that would move one
      // in front of its home slot, so every remaining entry stays reachable from its home without tombstones.
      for (let j = (hole + 1) & mask; ; j = (j + 1) & mask) {
        const record = slots[j] as number;
        if (record === NO_RECORD) break;
        const home = homeOf(record);
        const homeInRange = hole <= j ? hole < home && home <= j : hole < home || home <= j;
        if (!homeInRange) {
          slots[hole] = record;
          hole = j;
        }
      }
      slots[hole] = NO_RECORD;
      size--;
      // Shrink at 1/8 full (to 1/4 after halving): memory returns after a mass flush, without thrashing.
      if (capacity > MIN_CAPACITY && size * 8 < capacity) {
        try {
          resize(capacity / 2);
        } catch (error) {
          // Shrinking only saves memory: if even the smaller array cannot be had, keep the current one.
          if (!(error instanceof RangeError)) throw error;
        }
      }
      return removed;
    },
  };
}
