// A big array with preswap: an array of doubles larger than this process's memory budget. Pages beyond the
// budget are swapped out through createPreswap to a persistent pool with R=2 (or to a local swap file when the
// pool refuses them), and swapped back in when touched. It fills the array, optionally SIGKILLs a node half
// way, then reads every element back and checks it.
//
//   npm run cluster                     (in another terminal; its ready line lists the nodes' pids)
//   npm run example:big-array -- [--mib 128] [--budget-mib 16] [--kill <node pid>] [--seeds ws://...]
//
// With --kill, the node dies while pages are being swapped out to it. With two copies of every accepted page,
// nothing is lost: the check at the end reads every element from the surviving copies. The last line is a
// JSON summary, for scripts.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DataLostError, connect, createPreswap, type Preswap } from '@tmem/client';
import { msSince, positiveInteger, seedsFrom } from './example-options.ts';

const PAGE_BYTES = 4096;
const PER_PAGE = PAGE_BYTES / Float64Array.BYTES_PER_ELEMENT;
/** Pages evicted together when the budget is full. */
const EVICT_BATCH = 32;
/** Pages swapped in together on a miss: the missed one and those after it (swap read-ahead). */
const READ_AHEAD = 16;

/**
 * Float64 elements in pages of 4 KiB: at most `budgetPages` live in this process (a Map in least recently
 * used order), the rest in the preswap. Code walks it page by page, as it would walk any paged store: one
 * await per page, then plain array access. A page evicted unchanged since it was swapped in is dropped.
 */
class SwappedArray {
  private readonly resident = new Map<number, ResidentPage>();

  constructor(
    private readonly swap: Preswap,
    readonly pages: number,
    private readonly budgetPages: number,
  ) {}

  /** Page `slot`'s elements, to read. */
  async read(slot: number): Promise<Float64Array> {
    return (await this.page(slot)).values;
  }

  /** Page `slot`'s elements, to change: the page is swapped out again when evicted. */
  async write(slot: number): Promise<Float64Array> {
    const page = await this.page(slot);
    page.dirty = true;
    return page.values;
  }

  get residentPages(): number {
    return this.resident.size;
  }

  /** Page `slot`, swapped in with up to READ_AHEAD - 1 pages after it (side by side) if it is not resident. */
  private async page(slot: number): Promise<ResidentPage> {
    const hit = this.resident.get(slot);
    if (hit !== undefined) {
      this.resident.delete(slot); // to the most recently used end
      this.resident.set(slot, hit);
      return hit;
    }
    const ahead: number[] = [];
    for (let next = slot + 1; next < Math.min(this.pages, slot + READ_AHEAD); next++) {
      if (!this.resident.has(next) && this.swap.where(next) !== 'empty') ahead.push(next);
    }
    const load = async (s: number): Promise<ResidentPage> => ({
      values:
        this.swap.where(s) === 'empty'
          ? new Float64Array(PER_PAGE)
          : new Float64Array((await this.swap.swapIn(s)).slice().buffer),
      dirty: false,
    });
    const [page, ...read] = await Promise.all([slot, ...ahead].map(load));
    while (this.resident.size + 1 + ahead.length > this.budgetPages) await this.evictOldest();
    ahead.forEach((s, k) => this.resident.set(s, read[k] as ResidentPage));
    this.resident.set(slot, page as ResidentPage);
    return page as ResidentPage;
  }

  /**
   * Evicts the least recently used pages, up to EVICT_BATCH at once: their swap-outs run side by side, as a
   * kernel writes back many pages at once, so a round trip is paid per batch rather than per page.
   */
  private async evictOldest(): Promise<void> {
    const victims: [number, ResidentPage][] = [];
    for (const entry of this.resident) {
      victims.push(entry);
      if (victims.length === EVICT_BATCH) break;
    }
    for (const [slot] of victims) this.resident.delete(slot);
    await Promise.all(
      victims.map(async ([slot, page]) => {
        if (page.dirty) await this.swap.swapOut(slot, new Uint8Array(page.values.buffer));
      }),
    );
  }
}

interface ResidentPage {
  readonly values: Float64Array;
  dirty: boolean;
}

/** The value element `index` is set to: exact in a double, and different for every index. */
const valueAt = (index: number): number => index * 1.5 + 0.25;

const { values } = parseArgs({
  options: {
    mib: { type: 'string' },
    'budget-mib': { type: 'string' },
    kill: { type: 'string' },
    seeds: { type: 'string' },
  },
});
const mib = positiveInteger('mib', values.mib, 128);
const budgetMib = positiveInteger('budget-mib', values['budget-mib'], 16);
const killPid = values.kill === undefined ? undefined : positiveInteger('kill', values.kill, 0);
const pages = (mib * 1024 * 1024) / PAGE_BYTES;
const length = pages * PER_PAGE;

const dir = await mkdtemp(join(tmpdir(), 'tmem-big-array-'));
const client = await connect({ seeds: seedsFrom(values.seeds) });
try {
  const swap = await createPreswap(client, {
    swapFile: join(dir, 'array.swap'),
    slots: pages,
    replication: 2,
  });
  const array = new SwappedArray(swap, pages, budgetMib * ((1024 * 1024) / PAGE_BYTES));
  let killedAt: number | undefined;

  const fillStart = performance.now();
  for (let slot = 0; slot < pages; slot++) {
    if (killPid !== undefined && killedAt === undefined && slot === Math.floor(pages / 2)) {
      process.kill(killPid, 'SIGKILL');
      killedAt = slot;
      console.log(`killed node pid ${killPid} with SIGKILL at page ${slot} of ${pages}`);
    }
    const values = await array.write(slot);
    for (let k = 0; k < PER_PAGE; k++) values[k] = valueAt(slot * PER_PAGE + k);
  }
  const fillMs = msSince(fillStart);
  const afterFill = swap.stats();

  let wrong = 0;
  let lost = 0;
  const checkStart = performance.now();
  for (let slot = 0; slot < pages; slot++) {
    try {
      const values = await array.read(slot);
      for (let k = 0; k < PER_PAGE; k++) if (values[k] !== valueAt(slot * PER_PAGE + k)) wrong++;
    } catch (error) {
      if (!(error instanceof DataLostError)) throw error;
      lost += PER_PAGE;
    }
  }
  const checkMs = msSince(checkStart);
  const stats = swap.stats();
  await swap.close();

  console.log(
    `array of ${length} doubles (${mib} MiB, ${pages} pages) in a budget of ${budgetMib} MiB ` +
      `(${array.residentPages} pages resident)`,
  );
  console.log(
    `after the fill: ${afterFill.inTmem} pages in tmem, ${afterFill.onDisk} on disk ` +
      `(${afterFill.refused} refused by tmem), in ${fillMs} ms`,
  );
  console.log(`check of every element in ${checkMs} ms: ${wrong} wrong, ${lost} lost`);
  console.log(
    JSON.stringify({
      example: 'big-array',
      length,
      pages,
      afterFill,
      stats,
      fillMs,
      checkMs,
      killedAt,
      wrong,
      lost,
    }),
  );
  if (wrong > 0 || lost > 0) process.exitCode = 1;
} finally {
  await client.close();
  await rm(dir, { recursive: true, force: true });
}
