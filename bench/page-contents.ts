// Page contents the compression benchmarks use: what a page cache or a swap area holds, in three kinds that
// compress very differently, plus the same-filled page tmem keeps as metadata only. Deterministic for a seed,
// so two runs measure the same bytes.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { seededRandom } from '../test/harness/random.ts';

/** What a page holds. */
export type PageContent = 'text' | 'json' | 'random' | 'zero' | 'dup' | 'unique';

/**
 * Every kind, in table order. `unique` pages are random pages that the bench makes unique per key (it writes
 * the key into each page it puts), where the others repeat every 1,024 keys: what a dedup node's index costs
 * when it finds nothing to share.
 */
export const PAGE_CONTENTS: readonly PageContent[] = ['text', 'json', 'random', 'zero', 'dup', 'unique'];

/** Blocks the `dup` pages repeat: DUP_BLOCKS distinct random pages. */
export const DUP_BLOCKS = 16;
/** One `dup` page in DUP_UNIQUE_EVERY is its own (random); the others repeat the shared blocks. */
export const DUP_UNIQUE_EVERY = 8;

// Real prose rather than generated words: this repository's own documentation (markdown, English, tables),
// about what a clean page of a text file looks like.
const PROSE = ['../docs/architecture.md', '../README.md']
  .map((path) => readFileSync(new URL(path, import.meta.url)))
  .reduce((all, b) => Buffer.concat([all, b]));

const NAMES = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi', 'ivan', 'judy'];

/** JSON records of the kind a service keeps: ids, names, timestamps, flags and numbers. */
function jsonBytes(random: () => number, size: number): Buffer {
  let text = '';
  for (let i = 0; text.length < size; i++) {
    text +=
      JSON.stringify({
        id: Math.floor(random() * 1e9),
        user: NAMES[Math.floor(random() * NAMES.length)],
        createdAt: new Date(1.7e12 + Math.floor(random() * 1e10)).toISOString(),
        active: random() < 0.5,
        score: Math.round(random() * 1e4) / 100,
        tags: ['a', 'b', 'c'].slice(0, 1 + Math.floor(random() * 3)),
      }) + '\n';
  }
  return Buffer.from(text.slice(0, size));
}

/** `count` pages of `pageSize` bytes holding `content`; page i of a seed is always the same bytes. */
export function pagesOf(content: PageContent, count: number, pageSize = 4096, seed = 1): Uint8Array[] {
  const random = seededRandom(seed);
  // Duplicate-heavy pages, as many files with equal blocks give (copies of one library, templates, the
  // zero-padded tails of a format): of every DUP_UNIQUE_EVERY pages one is its own and the others are among
  // DUP_BLOCKS shared blocks. Incompressible, so only dedup can make them cheaper.
  const blocks =
    content === 'dup' ? Array.from({ length: DUP_BLOCKS }, () => new Uint8Array(randomBytes(pageSize))) : [];
  return Array.from({ length: count }, (_, i) => {
    switch (content) {
      case 'dup':
        return i % DUP_UNIQUE_EVERY === 0
          ? new Uint8Array(randomBytes(pageSize))
          : (blocks[i % DUP_BLOCKS] as Uint8Array).slice();
      case 'zero':
        return new Uint8Array(pageSize);
      case 'random':
      case 'unique':
        return new Uint8Array(randomBytes(pageSize));
      case 'json':
        return new Uint8Array(jsonBytes(random, pageSize));
      case 'text': {
        // Consecutive windows of the prose, wrapping around: each page is a different part of the text.
        const page = new Uint8Array(pageSize);
        let from = (i * pageSize) % PROSE.length;
        for (let at = 0; at < pageSize;) {
          const n = Math.min(pageSize - at, PROSE.length - from);
          page.set(PROSE.subarray(from, from + n), at);
          at += n;
          from = 0;
        }
        return page;
      }
    }
  });
}
