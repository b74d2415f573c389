// The memory case: what a node holds in RSS for the pages it stores, next to redis-server, and what an empty
// node already holds. Each runs on a fresh process, so nothing from the throughput rounds is counted.
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { connect } from '@tmem/client';
import { startNode } from '../test/harness/index.ts';
import { startRedis } from './anchors.ts';
import { rssBytes } from './proc.ts';
import type { MemoryResult } from './report.ts';
import { BATCH_OPS, NODE_READY_TIMEOUT_MS, PAGE_SIZE } from './systems.ts';

/** Runs `fill(firstKey)` over `pages` keys, 8 batches of BATCH_OPS at a time. */
async function fillInBatches(pages: number, fill: (firstKey: number) => Promise<void>): Promise<void> {
  let next = 0;
  async function worker(): Promise<void> {
    while (next < pages) {
      const key = next;
      next += BATCH_OPS;
      await fill(key);
    }
  }
  await Promise.all(Array.from({ length: 8 }, worker));
}

/** Reads RSS once the process had a moment to settle (freed buffers returned, lazy pages touched). */
async function settledRss(pid: number): Promise<number> {
  await sleep(500);
  return rssBytes(pid);
}

/**
 * Fills `payloadBytes` of 4 KiB pages (from `pages`, cycled) into a tmem node with an ephemeral pool of a
 * little more capacity and into a fresh redis-server, and measures both RSS, plus an empty node's RSS.
 */
export async function measureMemory(payloadBytes: number, pages: readonly Buffer[]): Promise<MemoryResult> {
  const count = Math.floor(payloadBytes / PAGE_SIZE);
  const emptyNodeCapacity = '3GiB';
  const empty = await startNode({
    capacity: emptyNodeCapacity,
    env: { TMEM_LOG_LEVEL: 'warn' },
    readyTimeoutMs: NODE_READY_TIMEOUT_MS,
  });
  const emptyNodeRssBytes = await settledRss(empty.pid);
  await empty.stop();

  // 10% above the payload: room for every page, with the slab and metadata overhead on top.
  const capacityMiB = Math.ceil((payloadBytes * 1.1) / (1024 * 1024));
  const node = await startNode({
    capacity: `${capacityMiB}MiB`,
    env: { TMEM_LOG_LEVEL: 'warn' },
    readyTimeoutMs: NODE_READY_TIMEOUT_MS,
  });
  const client = await connect({ seeds: [node.url], timeoutMs: 60_000 });
  let refused = 0;
  let tmemRssBytes: number;
  try {
    const pool = await client.createPool({ kind: 'ephemeral', pageSize: PAGE_SIZE });
    await fillInBatches(count, async (key) => {
      const entries = Array.from({ length: Math.min(BATCH_OPS, count - key) }, (_, i) => ({
        oid: 'memory',
        index: key + i,
        page: pages[(key + i) % pages.length]!,
      }));
      refused += (await pool.putMany(entries)).filter((accepted) => !accepted).length;
    });
    tmemRssBytes = await settledRss(node.pid);
  } finally {
    await client.close();
    await node.stop();
  }
  if (refused > 0) throw new Error(`memory fill: tmem refused ${refused} of ${count} pages`);

  const redis = await startRedis();
  const redisClient = new Redis({ host: '127.0.0.1', port: redis.port });
  let redisRssBytes: number;
  try {
    await fillInBatches(count, async (key) => {
      const pipeline = redisClient.pipeline();
      for (let i = key; i < Math.min(key + BATCH_OPS, count); i++)
        pipeline.set(`m:${i}`, pages[i % pages.length]!);
      await pipeline.exec();
    });
    redisRssBytes = await settledRss(redis.pid);
  } finally {
    await redisClient.quit();
    await redis.stop();
  }
  return {
    payloadBytes: count * PAGE_SIZE,
    emptyNodeRssBytes,
    emptyNodeCapacity,
    tmemRssBytes,
    redisRssBytes,
  };
}
