// The cases of the side-by-side run. Each get case reads the keys its put case wrote in the same round, so
// every get is a hit (tmem's ephemeral gets are exclusive: a key read once is gone, so a get case can never
// run longer than its put case wrote).
import type { PageContent } from './page-contents.ts';
import { BATCH_OPS } from './systems.ts';

/** One case: an op, how many calls are outstanding and how many ops each call carries. */
export interface Case {
  readonly id: string;
  readonly label: string;
  readonly op: 'put' | 'get';
  readonly workers: number;
  readonly opsPerCall: number;
  /** Through the system's batch API (skipped for a system without one). */
  readonly batched: boolean;
  /** Ops in flight, the x axis of the chart. */
  readonly inFlight: number;
  /** Which key range the case uses: a put and its get share one. */
  readonly region: number;
  /** What the pages hold: random (nothing can shrink them) unless the case is about compression. */
  readonly content: PageContent;
}

/** Keys per region: far more than any round writes, within tmem's u32 page index. */
export const REGION_KEYS = 1 << 22;

/** Every case, in the order a round runs them for each system (each put right before its get). */
export const CASES: readonly Case[] = [
  {
    id: 'put-1',
    label: 'put, 1 in flight',
    op: 'put',
    workers: 1,
    opsPerCall: 1,
    batched: false,
    inFlight: 1,
    region: 0,
    content: 'random',
  },
  {
    id: 'get-1',
    label: 'get, 1 in flight',
    op: 'get',
    workers: 1,
    opsPerCall: 1,
    batched: false,
    inFlight: 1,
    region: 0,
    content: 'random',
  },
  {
    id: 'put-64',
    label: 'put, 64 in flight',
    op: 'put',
    workers: 64,
    opsPerCall: 1,
    batched: false,
    inFlight: 64,
    region: 1,
    content: 'random',
  },
  {
    id: 'get-64',
    label: 'get, 64 in flight',
    op: 'get',
    workers: 64,
    opsPerCall: 1,
    batched: false,
    inFlight: 64,
    region: 1,
    content: 'random',
  },
  {
    id: 'put-8x32',
    label: 'put, 8 × 32 batched',
    op: 'put',
    workers: 8,
    opsPerCall: BATCH_OPS,
    batched: true,
    inFlight: 8 * BATCH_OPS,
    region: 2,
    content: 'random',
  },
  {
    id: 'get-8x32',
    label: 'get, 8 × 32 batched',
    op: 'get',
    workers: 8,
    opsPerCall: BATCH_OPS,
    batched: true,
    inFlight: 8 * BATCH_OPS,
    region: 2,
    content: 'random',
  },
  {
    id: 'put-256',
    label: 'put, 256 single calls in flight',
    op: 'put',
    workers: 8 * BATCH_OPS,
    opsPerCall: 1,
    batched: false,
    inFlight: 8 * BATCH_OPS,
    region: 3,
    content: 'random',
  },
  {
    id: 'get-256',
    label: 'get, 256 single calls in flight',
    op: 'get',
    workers: 8 * BATCH_OPS,
    opsPerCall: 1,
    batched: false,
    inFlight: 8 * BATCH_OPS,
    region: 3,
    content: 'random',
  },
  // Compression (issue 11): the batched case again with pages that compress (text) and pages kept as metadata
  // only (zero); the random rows above are the incompressible case. Run on tmem-1 and tmem-1-lz4 side by side.
  // Dedup (issue 11): the same with duplicate-heavy pages (page-contents.ts), on tmem-1 and tmem-1-dedup.
  // Unique pages are the case where dedup finds nothing to share and only costs.
  ...(['text', 'zero', 'dup', 'unique'] as const).flatMap((content, i): Case[] =>
    (['put', 'get'] as const).map((op) => ({
      id: `${op}-8x32-${content}`,
      label: `${op}, 8 × 32 batched, ${content} pages`,
      op,
      workers: 8,
      opsPerCall: BATCH_OPS,
      batched: true,
      inFlight: 8 * BATCH_OPS,
      region: 4 + i,
      content,
    })),
  ),
];
