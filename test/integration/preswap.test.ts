import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DataLostError, connect, createPreswap, type TmemClient } from '@tmem/client';
import { killAllNodes, startCluster, startNode, waitForMembers } from '../harness/index.ts';

// The preswap against real nodes: pages go to a persistent pool, to the swap file when the pool refuses them,
// come back from wherever they are, survive a node crash with R=2 and report a loss as DataLostError.

const PAGE = 4096;
let dir: string;
const clients: TmemClient[] = [];

async function client(urls: readonly string[]): Promise<TmemClient> {
  const c = await connect({ seeds: [...urls], timeoutMs: 15_000 });
  clients.push(c);
  return c;
}

/** A page that names its slot and its version, never same-filled. */
function pageOf(slot: number, version: number): Uint8Array {
  const page = new Uint8Array(PAGE);
  for (let i = 0; i < PAGE; i++) page[i] = (slot * 7 + version * 131 + i) & 0xff;
  return page;
}

const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(b);

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tmem-preswap-'));
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await killAllNodes();
  await rm(dir, { recursive: true, force: true });
});

describe('preswap', () => {
  it('a refused put falls back to the swap file, and every page reads back from where it is', async () => {
    // 1 MiB of capacity holds fewer than the 400 pages swapped out: the rest must go to the disk.
    const node = await startNode({ capacity: '1MiB', args: ['--replication', '1'] });
    const swap = await createPreswap(await client([node.url]), { swapFile: join(dir, 'swap'), slots: 400 });
    const places = [];
    for (let slot = 0; slot < 400; slot++) places.push(await swap.swapOut(slot, pageOf(slot, 1)));
    const stats = swap.stats();
    expect(stats.inTmem).toBeGreaterThan(0);
    expect(stats.onDisk).toBeGreaterThan(0);
    expect(stats.inTmem + stats.onDisk).toBe(400);
    expect(stats.refused).toBe(stats.onDisk);
    expect(places.filter((p) => p === 'disk').length).toBe(stats.onDisk);
    for (let slot = 0; slot < 400; slot++) {
      expect(swap.where(slot)).toBe(places[slot]);
      expect(same(await swap.swapIn(slot), pageOf(slot, 1))).toBe(true);
    }
    await swap.close();
  });

  it('keeps every page through the crash of a node with R=2', async () => {
    const nodes = await startCluster({ size: 3 });
    const swap = await createPreswap(await client(nodes.map((n) => n.url)), {
      swapFile: join(dir, 'swap'),
      slots: 500,
      replication: 2,
    });
    for (let slot = 0; slot < 500; slot++) expect(await swap.swapOut(slot, pageOf(slot, 1))).toBe('tmem');
    await nodes[1]!.kill();
    await waitForMembers([nodes[0]!, nodes[2]!]);
    const pages = await Promise.all(Array.from({ length: 500 }, (_, slot) => swap.swapIn(slot)));
    expect(pages.filter((page, slot) => !same(page, pageOf(slot, 1))).length).toBe(0);
  });

  it('raises DataLostError naming the slot when every copy is gone, never zeros', async () => {
    const nodes = await startCluster({ size: 2 });
    const swap = await createPreswap(await client(nodes.map((n) => n.url)), {
      swapFile: join(dir, 'swap'),
      slots: 800,
      replication: 1,
    });
    for (let slot = 0; slot < 800; slot++) await swap.swapOut(slot, pageOf(slot, 1));
    await nodes[1]!.kill();
    await waitForMembers([nodes[0]!]);
    const outcomes = await Promise.all(
      Array.from({ length: 800 }, (_, slot) =>
        swap.swapIn(slot).then(
          (page) => (same(page, pageOf(slot, 1)) ? 'good' : 'bad data'),
          (error: unknown) =>
            error instanceof DataLostError &&
            error.details.slot === slot &&
            error.message.includes(`slot ${slot}`)
              ? 'lost'
              : `error ${String(error)}`,
        ),
      ),
    );
    // 50 stripes of 16 pages over two members: some of each were on the killed node.
    expect(outcomes.filter((o) => o !== 'good' && o !== 'lost')).toEqual([]);
    expect(outcomes.filter((o) => o === 'lost').length).toBeGreaterThan(0);
    expect(outcomes.filter((o) => o === 'good').length).toBeGreaterThan(0);
  });

  it('behaves like an in-memory array of pages, through tmem and disk alike', async () => {
    const node = await startNode({ capacity: '256KiB', args: ['--replication', '1'] });
    const c = await client([node.url]);
    // 300 slots against about 60 pages of room: slots move between tmem and the disk as the model runs.
    const slots = 300;
    const swap = await createPreswap(c, { swapFile: join(dir, 'swap'), slots });
    const model: (number | undefined)[] = [];
    const slot = fc.nat(slots - 1);
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            {
              weight: 4,
              arbitrary: fc.record({
                t: fc.constant('out' as const),
                slot,
                version: fc.integer({ min: 1, max: 1000 }),
              }),
            },
            { weight: 4, arbitrary: fc.record({ t: fc.constant('in' as const), slot }) },
            // Invalidations make room in tmem, so a page on the disk may move back to tmem and the other way.
            { weight: 3, arbitrary: fc.record({ t: fc.constant('invalidate' as const), slot }) },
            { weight: 1, arbitrary: fc.record({ t: fc.constant('invalidateAll' as const) }) },
            // Bulk swap-outs fill tmem, so later ones are refused and go to the disk.
            {
              weight: 1,
              arbitrary: fc.record({
                t: fc.constant('fill' as const),
                from: slot,
                version: fc.integer({ min: 1, max: 1000 }),
              }),
            },
          ),
          { minLength: 1, maxLength: 60 },
        ),
        async (commands) => {
          await swap.invalidateAll();
          model.length = 0;
          for (const command of commands) {
            if (command.t === 'out') {
              await swap.swapOut(command.slot, pageOf(command.slot, command.version));
              model[command.slot] = command.version;
            } else if (command.t === 'fill') {
              const end = Math.min(slots, command.from + 40);
              for (let s = command.from; s < end; s++) {
                await swap.swapOut(s, pageOf(s, command.version));
                model[s] = command.version;
              }
            } else if (command.t === 'in') {
              const version = model[command.slot];
              if (version === undefined) {
                await expect(swap.swapIn(command.slot)).rejects.toMatchObject({ code: 'BAD_ARGUMENT' });
              } else {
                expect(same(await swap.swapIn(command.slot), pageOf(command.slot, version))).toBe(true);
              }
            } else if (command.t === 'invalidate') {
              await swap.invalidate(command.slot);
              model[command.slot] = undefined;
            } else {
              await swap.invalidateAll();
              model.length = 0;
            }
            const stats = swap.stats();
            expect(stats.inTmem + stats.onDisk).toBe(model.filter((v) => v !== undefined).length);
          }
        },
      ),
      { numRuns: 40 },
    );
    // tmem was used; whether this run's sizes also filled the node varies (the refused path has its own test).
    expect(swap.stats().swapOuts - swap.stats().refused).toBeGreaterThan(0);
  });

  it('refuses a second op on a slot while one is in flight, and a slot out of range', async () => {
    const node = await startNode({ args: ['--replication', '1'] });
    const swap = await createPreswap(await client([node.url]), { swapFile: join(dir, 'swap'), slots: 4 });
    const first = swap.swapOut(1, pageOf(1, 1));
    await expect(swap.swapOut(1, pageOf(1, 2))).rejects.toMatchObject({ code: 'BAD_ARGUMENT' });
    expect(await first).toBe('tmem');
    expect(same(await swap.swapIn(1), pageOf(1, 1))).toBe(true);
    await expect(swap.swapIn(4)).rejects.toMatchObject({ code: 'BAD_ARGUMENT' });
    await expect(swap.swapOut(0, new Uint8Array(100))).rejects.toMatchObject({ code: 'BAD_PAGE_SIZE' });
  });
});
