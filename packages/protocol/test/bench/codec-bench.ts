// Micro-benchmark of the frame codec and the page checksum: µs per frame and per op for the data frames.
// Run: npx tsx packages/protocol/test/bench/codec-bench.ts [--quick]
// Not a test (vitest never picks it up): numbers depend on the machine; the results quoted in
// docs/architecture.md come from this script on the 2-core CI-class machine.
import { Packr } from 'msgpackr';
import { crc32c } from '@node-rs/crc32';
import { ClientFrame, NodeFrame, createCodec } from '../../src/index.ts';
import type { Codec, PageOp, PageReply, ReplicaEntry } from '../../src/index.ts';

const quick = process.argv.includes('--quick');
const budgetMs = quick ? 150 : 600;

function page(seed: number): Uint8Array {
  const b = new Uint8Array(4096);
  for (let i = 0; i < b.length; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}
const oid = new TextEncoder().encode('/var/lib/app/data-file-0001');

function puts(n: number): PageOp[] {
  return Array.from({ length: n }, (_, i) => ({
    t: 'put' as const,
    id: 1000 + i,
    pool: 3,
    oid,
    index: i,
    page: page(i),
    sum: 0x9abcdef0,
  }));
}
function gets(n: number): PageOp[] {
  return Array.from({ length: n }, (_, i) => ({ t: 'get' as const, id: 5000 + i, pool: 3, oid, index: i }));
}
function accepted(n: number): PageReply[] {
  return Array.from({ length: n }, (_, i) => ({ t: 'accepted' as const, id: 1000 + i }));
}
function hits(n: number): PageReply[] {
  return Array.from({ length: n }, (_, i) => ({
    t: 'hit' as const,
    id: 5000 + i,
    page: page(i),
    sum: 0x12345678,
  }));
}

function entries(n: number, pageBytes: number): ReplicaEntry[] {
  return Array.from({ length: n }, (_, i) => ({
    pool: 3,
    oid,
    index: i,
    version: 12 * 2 ** 21 + i,
    page: pageBytes === 4096 ? page(i) : new Uint8Array(pageBytes).fill(i & 0xff),
    sum: 0x9abcdef0,
  }));
}

interface Case {
  name: string;
  ops: number;
  side: 'client' | 'node';
  frame: ClientFrame | NodeFrame;
}
const cases: Case[] = [
  { name: 'put', ops: 1, side: 'client', frame: puts(1)[0]! },
  { name: 'get', ops: 1, side: 'client', frame: gets(1)[0]! },
  { name: 'batch 32 put', ops: 32, side: 'client', frame: { t: 'batch', id: 7, ops: puts(32), sv: 12 } },
  { name: 'batch 256 put', ops: 256, side: 'client', frame: { t: 'batch', id: 7, ops: puts(256), sv: 12 } },
  { name: 'batch 256 get', ops: 256, side: 'client', frame: { t: 'batch', id: 7, ops: gets(256), sv: 12 } },
  { name: 'accepted', ops: 1, side: 'node', frame: { t: 'accepted', id: 1000 } },
  { name: 'hit', ops: 1, side: 'node', frame: hits(1)[0]! },
  {
    name: 'batch 256 accepted',
    ops: 256,
    side: 'node',
    frame: { t: 'batch', id: 7, replies: accepted(256) },
  },
  { name: 'batch 256 hit', ops: 256, side: 'node', frame: { t: 'batch', id: 7, replies: hits(256) } },
  {
    name: 'replicate 32 × 4 KiB',
    ops: 32,
    side: 'client',
    frame: { t: 'replicate', id: 7, sv: 12, entries: entries(32, 4096) },
  },
  {
    name: 'replicate 256 × 4 KiB',
    ops: 256,
    side: 'client',
    frame: { t: 'replicate', id: 7, sv: 12, entries: entries(256, 4096) },
  },
  {
    name: 'replicated 256',
    ops: 256,
    side: 'node',
    frame: { t: 'replicated', id: 7, results: Array.from({ length: 256 }, () => 'ok' as const) },
  },
  {
    name: 'fetched 256 KiB (64 × 4 KiB)',
    ops: 64,
    side: 'node',
    frame: { t: 'fetched', id: 7, complete: true, entries: entries(64, 4096), cursor: 64 },
  },
];

let sink = 0;
/** µs per call of `fn`, best of 3 runs of about budgetMs/3 each (the machine is shared, so take the quietest). */
function time(fn: () => unknown): number {
  for (let i = 0; i < 50; i++) fn();
  let best = Infinity;
  for (let round = 0; round < 3; round++) {
    let n = 0;
    const start = process.hrtime.bigint();
    const deadline = start + BigInt(Math.round((budgetMs / 3) * 1e6));
    let now = start;
    while (now < deadline) {
      for (let i = 0; i < 20; i++) if (fn() !== undefined) sink++;
      n += 20;
      now = process.hrtime.bigint();
    }
    best = Math.min(best, Number(now - start) / 1e3 / n);
  }
  return best;
}

const packr = new Packr({ useRecords: false, int64AsType: 'number', mapsAsObjects: true });
const reference: Codec = createCodec({ fastPath: false });
const fast: Codec = createCodec();

const fmt = (us: number, ops: number): string => `${us.toFixed(2)} (${(us / ops).toFixed(3)})`;
const rows: string[][] = [];
for (const c of cases) {
  const data = reference.encode(c.frame);
  const decodeWith = (codec: Codec) =>
    c.side === 'client' ? () => codec.decodeClientFrame(data) : () => codec.decodeNodeFrame(data);
  const unpacked: unknown = packr.unpack(data);
  const schema = c.side === 'client' ? ClientFrame : NodeFrame;
  rows.push([
    c.name,
    String(data.length),
    fmt(
      time(() => packr.unpack(data)),
      c.ops,
    ),
    fmt(
      time(() => schema.parse(unpacked)),
      c.ops,
    ),
    fmt(time(decodeWith(reference)), c.ops),
    fmt(time(decodeWith(fast)), c.ops),
    fmt(
      time(() => packr.pack(c.frame)),
      c.ops,
    ),
    fmt(
      time(() => reference.encode(c.frame)),
      c.ops,
    ),
    fmt(
      time(() => fast.encode(c.frame)),
      c.ops,
    ),
  ]);
}
console.log('µs per frame (µs per op)\n');
console.log(
  '| frame | bytes | msgpackr unpack | zod parse | decode (reference) | decode (fast) | msgpackr pack | encode (reference) | encode (fast) |',
);
console.log('|---|--:|--:|--:|--:|--:|--:|--:|--:|');
for (const r of rows) console.log(`| ${r.join(' | ')} |`);

const p = page(1);
const native = time(() => crc32c(p));
// The pure-JS crc-32 (SheetJS) the codec used before, for comparison while it is still installed.
let pureJs: { buf(data: Uint8Array): number } | undefined;
try {
  // A specifier in a variable: the type checker does not resolve it, so the bench survives its removal.
  const specifier = 'crc-32/crc32c.js';
  pureJs = ((await import(specifier)) as { default: typeof pureJs }).default;
} catch {
  pureJs = undefined;
}
const js = pureJs === undefined ? undefined : time(() => pureJs.buf(p));
console.log(
  `\nCRC-32C of a 4 KiB page: @node-rs/crc32 ${native.toFixed(2)} µs` +
    (js === undefined ? '' : `, crc-32 (pure JS) ${js.toFixed(2)} µs`),
);
if (sink === 42) console.log('');
