// What dedup costs a put in the page store itself, without the network: µs per put and metadata bytes per
// page for unique pages and duplicate-heavy pages (page-contents.ts `dup`), with and without the dedup option,
// and with the put's checksum given (as the node does: the client's CRC-32C, checked on arrival) or not (the
// store computes it). In-process and single-threaded, so it isolates the store's share of a put; the end-to-end
// cost is `npx tsx bench/run.ts --systems tmem-1,tmem-1-dedup --cases put-8x32-dup,get-8x32-dup`.
//
//   npx tsx bench/dedup-store.ts [--pages 16384] [--rounds 5]
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { pageChecksum } from '@tmem/protocol';
import { createPageStore, type PageStore } from '../packages/memnode/src/page-store.ts';
import { pagesOf } from './page-contents.ts';

const { values } = parseArgs({
  options: { pages: { type: 'string', default: '16384' }, rounds: { type: 'string', default: '5' } },
});
const count = Number(values.pages);
const rounds = Number(values.rounds);
const PAGE = 4096;

const unique = Array.from({ length: count }, () => new Uint8Array(randomBytes(PAGE)));
const dup = pagesOf('dup', count, PAGE);
const sums = new Map<Uint8Array, number>();
for (const p of [...unique, ...dup]) sums.set(p, pageChecksum(p));

interface Row {
  pages: string;
  dedup: boolean;
  sum: boolean;
  putUs: number;
  getUs: number;
  usedBytes: number;
  metadataBytesPerPage: number;
}

interface Config {
  name: string;
  pages: readonly Uint8Array[];
  dedup: boolean;
  sum: boolean;
}

const configs: Config[] = [];
for (const [name, pages] of [
  ['unique', unique],
  ['dup', dup],
] as const) {
  configs.push({ name, pages, dedup: false, sum: true });
  configs.push({ name, pages, dedup: true, sum: true });
  configs.push({ name, pages, dedup: true, sum: false });
}

const OID = Uint8Array.of(1, 2, 3, 4);

function putAll(store: PageStore, config: Config): number {
  const t = performance.now();
  for (let i = 0; i < config.pages.length; i++) {
    const page = config.pages[i] as Uint8Array;
    store.put(1, OID, i, page, config.sum ? { sum: sums.get(page) as number } : undefined);
  }
  return ((performance.now() - t) * 1000) / config.pages.length;
}

// One store per configuration, filled once unmeasured: the measured rounds overwrite every handle (a put that
// replaces a page, the steady state of a cache), so fresh slab memory's page faults stay out of the numbers.
// Rounds are interleaved across configurations, so they share the machine's noise.
const stores = configs.map((config) => {
  const store = createPageStore({ capacityBytes: 2 * count * PAGE, dedup: config.dedup });
  store.createPool({ id: 1, kind: 'ephemeral', pageSize: PAGE, owner: 'bench' });
  const empty = store.memory().metadataBytes;
  putAll(store, config);
  return { store, empty, puts: [] as number[] };
});
for (let round = 0; round < rounds; round++) {
  configs.forEach((config, i) => stores[i]!.puts.push(putAll(stores[i]!.store, config)));
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1] as number;
const rows: Row[] = configs.map((config, i) => {
  const { store, empty, puts } = stores[i]!;
  const usedBytes = store.stats().usedBytes;
  const metadataBytesPerPage = (store.memory().metadataBytes - empty) / count;
  // Exclusive gets, once: each removes its page (and frees a shared slot with its last page).
  const t = performance.now();
  for (let k = 0; k < count; k++) store.get(1, OID, k);
  const getUs = ((performance.now() - t) * 1000) / count;
  return {
    pages: config.name,
    dedup: config.dedup,
    sum: config.sum,
    putUs: median(puts),
    getUs,
    usedBytes,
    metadataBytesPerPage,
  };
});

console.log(
  `${count} pages of 4 KiB, puts: median of ${rounds} overwrite rounds; gets: one pass; Node ${process.version}`,
);
console.log(
  '| pages | dedup | sum given | put µs | get µs | charged MiB | page bytes ÷ charged | metadata B/page |',
);
console.log('| --- | --- | --- | --: | --: | --: | --: | --: |');
for (const r of rows) {
  console.log(
    `| ${r.pages} | ${r.dedup ? 'on' : 'off'} | ${r.sum ? 'yes' : 'no'} | ${r.putUs.toFixed(2)} | ` +
      `${r.getUs.toFixed(2)} | ${(r.usedBytes / 2 ** 20).toFixed(1)} | ${((count * PAGE) / r.usedBytes).toFixed(2)} | ` +
      `${r.metadataBytesPerPage.toFixed(1)} |`,
  );
}
