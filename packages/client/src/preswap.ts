// Preswap: a paged store for data larger than the application's memory budget (Linux's frontswap).
//
// Swapping a slot out puts its page to a persistent pool; when the cluster refuses the put (full, or fewer
// ready members than the pool's replication), the page goes to a local swap file instead. One byte per slot
// records which of the two holds it, so swapping in reads from exactly one place and a page moved from one to
// the other leaves no copy behind that a later read could see: a page bound for the disk first has its tmem
// copy flushed, and a disk copy needs no erasing because the slot map no longer points at it.
import { open, type FileHandle } from 'node:fs/promises';
import { DataLostError, ErrorCode, TmemError } from '@tmem/protocol';
import type { TmemClient } from './client.ts';
import { pageBytes, type PageData, type Pool } from './pool.ts';

/** Options of `createPreswap`. */
export interface PreswapOptions {
  /** The local swap file, created (or truncated) by `createPreswap` and sized for `slots` pages. */
  swapFile: string;
  /** Pages the swap area holds; slots are 0..slots-1. */
  slots: number;
  /** Bytes per page. @default 4096 */
  pageSize?: number;
  /** A persistent pool to use; when absent one is created (and destroyed by `close`). */
  pool?: Pool;
  /** Copies of each page in the pool created when `pool` is absent. @default the cluster's */
  replication?: number;
}

/** Where a slot's page is. */
export type SlotPlace = 'empty' | 'tmem' | 'disk';

/** Slot counts and op counts. */
export interface PreswapStats {
  inTmem: number;
  onDisk: number;
  swapOuts: number;
  /** Swap-outs tmem refused, which went to the swap file. */
  refused: number;
  swapIns: number;
}

/** A swap area in tmem with a local file behind it. Ops on one slot must not overlap; ops on different slots may. */
export interface Preswap {
  readonly pool: Pool;
  readonly slots: number;
  readonly pageSize: number;
  /** Stores `page` in `slot`, replacing what it held; resolves where it went. */
  swapOut(slot: number, page: PageData): Promise<'tmem' | 'disk'>;
  /**
   * The page last swapped out to `slot`. Rejects with DataLostError naming the slot when the cluster lost
   * every copy, and with BAD_ARGUMENT for an empty slot: never wrong data and never zeros.
   */
  swapIn(slot: number): Promise<Uint8Array>;
  /** Empties `slot`. */
  invalidate(slot: number): Promise<void>;
  /** Empties every slot. */
  invalidateAll(): Promise<void>;
  where(slot: number): SlotPlace;
  stats(): PreswapStats;
  /** Closes the swap file; destroys the pool if the preswap created it. */
  close(): Promise<void>;
}

const EMPTY = 0;
const IN_TMEM = 1;
const ON_DISK = 2;
const PLACES: readonly SlotPlace[] = ['empty', 'tmem', 'disk'];
/** The object every slot's page is stored under; the slot is its index. */
const OID = 'preswap';

/** Creates a preswap area over `options.pool`, or over a new persistent pool of `client`. */
export async function createPreswap(client: TmemClient, options: PreswapOptions): Promise<Preswap> {
  const slots = options.slots;
  if (!Number.isInteger(slots) || slots < 1 || slots > 2 ** 32) {
    throw new RangeError(`slots must be an integer from 1 to 2^32, got ${slots}`);
  }
  const ownPool = options.pool === undefined;
  const pool =
    options.pool ??
    (await client.createPool({
      kind: 'persistent',
      pageSize: options.pageSize ?? 4096,
      ...(options.replication === undefined ? {} : { replication: options.replication }),
    }));
  if (pool.kind !== 'persistent') throw new TypeError('a preswap needs a persistent pool');
  const pageSize = pool.pageSize;
  const file: FileHandle = await open(options.swapFile, 'w+');
  await file.truncate(slots * pageSize);

  const place = new Uint8Array(slots);
  const busy = new Uint8Array(slots);
  const stats = { swapOuts: 0, refused: 0, swapIns: 0 };
  let counts = [slots, 0, 0];

  function setPlace(slot: number, next: number): void {
    (counts[place[slot] as number] as number)--;
    (counts[next] as number)++;
    place[slot] = next;
  }

  /** Runs `op` on `slot`, refusing a second op on the same slot while one runs. */
  async function exclusive<T>(slot: number, op: () => Promise<T>): Promise<T> {
    if (!Number.isInteger(slot) || slot < 0 || slot >= slots) {
      throw new TmemError(
        ErrorCode.BadArgument,
        `slot must be an integer from 0 to ${slots - 1}, got ${slot}`,
      );
    }
    if (busy[slot] === 1) {
      throw new TmemError(ErrorCode.BadArgument, `slot ${slot} already has an op in flight`);
    }
    busy[slot] = 1;
    try {
      return await op();
    } finally {
      busy[slot] = 0;
    }
  }

  async function toDisk(slot: number, page: Uint8Array): Promise<'disk'> {
    await file.write(page, 0, pageSize, slot * pageSize);
    setPlace(slot, ON_DISK);
    return 'disk';
  }

  return {
    pool,
    slots,
    pageSize,
    swapOut: (slot, page) =>
      exclusive(slot, async () => {
        stats.swapOuts++;
        const bytes = pageBytes(page);
        if (bytes?.length !== pageSize) {
          throw new TmemError(
            ErrorCode.BadPageSize,
            `a page must be ${pageSize} bytes, got ${bytes?.length}`,
          );
        }
        let accepted: boolean;
        try {
          accepted = await pool.put(OID, slot, bytes);
        } catch (error) {
          // In doubt: the put may have landed. Flush it, so no tmem copy outlives the disk copy; if even that
          // fails the slot is emptied, so a swap-in says so instead of returning either page.
          accepted = await pool.flushPage(OID, slot).then(
            () => false,
            () => {
              setPlace(slot, EMPTY);
              throw error;
            },
          );
        }
        if (accepted) {
          setPlace(slot, IN_TMEM);
          return 'tmem';
        }
        stats.refused++;
        // A refused put leaves nothing at the handle (the contract), so the old tmem copy is gone already.
        return toDisk(slot, bytes);
      }),
    swapIn: (slot) =>
      exclusive(slot, async () => {
        stats.swapIns++;
        const where = place[slot];
        if (where === ON_DISK) {
          const page = new Uint8Array(pageSize);
          await file.read(page, 0, pageSize, slot * pageSize);
          return page;
        }
        if (where === EMPTY) throw new TmemError(ErrorCode.BadArgument, `slot ${slot} is empty`);
        let page: Uint8Array | null;
        try {
          page = await pool.get(OID, slot);
        } catch (error) {
          if (error instanceof DataLostError) {
            throw new DataLostError(`preswap slot ${slot}: every tmem copy of its page was lost`, {
              cause: error,
              details: { slot },
            });
          }
          throw error;
        }
        if (page === null) {
          // An accepted persistent page never misses; if one does, say so rather than invent its contents.
          throw new DataLostError(`preswap slot ${slot}: tmem no longer has its page`, { details: { slot } });
        }
        return page;
      }),
    invalidate: (slot) =>
      exclusive(slot, async () => {
        if (place[slot] === IN_TMEM) await pool.flushPage(OID, slot);
        setPlace(slot, EMPTY);
      }),
    async invalidateAll() {
      if (busy.includes(1)) throw new TmemError(ErrorCode.BadArgument, 'a slot has an op in flight');
      await pool.flushObject(OID);
      place.fill(EMPTY);
      counts = [slots, 0, 0];
    },
    where(slot) {
      return PLACES[place[slot] ?? EMPTY] as SlotPlace;
    },
    stats: () => ({ inTmem: counts[IN_TMEM] as number, onDisk: counts[ON_DISK] as number, ...stats }),
    async close() {
      await file.close();
      if (ownPool) await pool.destroy();
    },
  };
}
