// `npx tsx bench/codecs.ts`: the compression libraries side by side on 4 KiB pages, to choose the one the page
// store uses. Per library and page kind: compress and decompress µs per page (median of 5 passes over 1,024
// pages each) and the ratio (page bytes / compressed bytes, summed). Every round trip is checked byte-exact.
// lz4js and the zlib/brotli rows are baselines, not dependencies of the node.
import {
  constants,
  brotliCompressSync,
  brotliDecompressSync,
  deflateRawSync,
  inflateRawSync,
} from 'node:zlib';
import { compressSync, uncompressSync } from 'lz4-napi';
// @ts-expect-error lz4js ships no types; it is only measured here.
import * as lz4js from 'lz4js';
import { PAGE_CONTENTS, pagesOf } from './page-contents.ts';

const PAGE = 4096;
const COUNT = 1024;
const PASSES = 5;

interface Codec {
  name: string;
  compress(page: Uint8Array): Uint8Array;
  decompress(packed: Uint8Array): Uint8Array;
}

interface Lz4js {
  compressBlock(src: Uint8Array, dst: Uint8Array, s: number, n: number, hash: Uint32Array): number;
  decompressBlock(src: Uint8Array, dst: Uint8Array, s: number, n: number, d: number): number;
}
const lz4jsBlock = lz4js as unknown as Lz4js;

const codecs: Codec[] = [
  {
    name: 'lz4-napi (block)',
    compress: (page) => compressSync(page as Buffer),
    decompress: (packed) => uncompressSync(packed),
  },
  {
    name: 'lz4js (block, pure JS)',
    compress(page) {
      const out = new Uint8Array(PAGE + PAGE / 255 + 16);
      const n = lz4jsBlock.compressBlock(page, out, 0, page.length, new Uint32Array(1 << 16));
      // 0 means "did not compress": stored raw, as the page store would.
      return n === 0 ? page : out.subarray(0, n);
    },
    decompress(packed) {
      if (packed.length === PAGE) return packed;
      const out = new Uint8Array(PAGE);
      lz4jsBlock.decompressBlock(packed, out, 0, packed.length, 0);
      return out;
    },
  },
  {
    name: 'zlib deflateRaw level 1',
    compress: (page) => deflateRawSync(page, { level: 1 }),
    decompress: (packed) => inflateRawSync(packed),
  },
  {
    name: 'brotli quality 1',
    compress: (page) =>
      brotliCompressSync(page, {
        params: { [constants.BROTLI_PARAM_QUALITY]: 1, [constants.BROTLI_PARAM_SIZE_HINT]: PAGE },
      }),
    decompress: (packed) => brotliDecompressSync(packed),
  },
];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1] as number;
}

console.log(`Node ${process.version}, ${COUNT} pages of ${PAGE} B, median of ${PASSES} passes\n`);
console.log('| library | pages | compress µs/page | decompress µs/page | ratio |');
console.log('| --- | --- | ---: | ---: | ---: |');
for (const codec of codecs) {
  for (const content of PAGE_CONTENTS.filter((c) => c !== 'zero' && c !== 'dup' && c !== 'unique')) {
    const pages = pagesOf(content, COUNT, PAGE);
    const c: number[] = [];
    const d: number[] = [];
    let packedBytes = 0;
    for (let pass = 0; pass < PASSES; pass++) {
      let t = performance.now();
      const packed = pages.map((p) => codec.compress(p));
      c.push(((performance.now() - t) * 1000) / COUNT);
      t = performance.now();
      const back = packed.map((p) => codec.decompress(p));
      d.push(((performance.now() - t) * 1000) / COUNT);
      packedBytes = packed.reduce((sum, p) => sum + p.length, 0);
      back.forEach((b, i) => {
        if (Buffer.compare(b, pages[i]!) !== 0) throw new Error(`${codec.name}: round trip differs`);
      });
    }
    const ratio = (COUNT * PAGE) / packedBytes;
    console.log(
      `| ${codec.name} | ${content} | ${median(c).toFixed(1)} | ${median(d).toFixed(1)} | ${ratio.toFixed(2)} |`,
    );
  }
}
