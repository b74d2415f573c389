import { describe, expect, it } from 'vitest';
import type { ReplicaEntry, ReplicaResult } from '@tmem/protocol';
import { silentLogger } from '../../src/logger.ts';
import { createReplicaStreams } from '../../src/replication/replica-streams.ts';

const entry = (version: number): ReplicaEntry => ({ pool: 1, oid: Uint8Array.of(1), index: 0, version });

describe('replica streams', () => {
  it('delivers in order, batching what queued while a frame was in flight', async () => {
    const frames: number[][] = [];
    const streams = createReplicaStreams({
      logger: silentLogger(),
      transport: {
        send: async (_target, entries) => {
          frames.push(entries.map((e) => e.version));
          await new Promise((resolve) => setTimeout(resolve, 5));
          return entries.map((): ReplicaResult => 'ok');
        },
        isMember: () => true,
      },
    });
    const results = await Promise.all([1, 2, 3, 4].map((v) => streams.deliver('b', entry(v))));
    expect(results).toEqual(['ok', 'ok', 'ok', 'ok']);
    expect(frames).toEqual([[1], [2, 3, 4]]);
    expect(streams.backlog).toBe(0);
  });

  it('sends a frame again after a failure, and gives up with "gone" once the target left', async () => {
    let calls = 0;
    let member = true;
    const streams = createReplicaStreams({
      logger: silentLogger(),
      retryDelayMs: 1,
      transport: {
        send: (_target, entries) => {
          calls++;
          if (calls < 3) return Promise.reject(new Error('link down'));
          return Promise.resolve(entries.map((): ReplicaResult => 'full'));
        },
        isMember: () => member,
      },
    });
    expect(await streams.deliver('b', entry(1))).toBe('full');
    expect(calls).toBe(3);
    calls = -1000;
    const pending = streams.deliver('b', entry(2));
    member = false;
    expect(await pending).toBe('gone');
  });

  it('resolves everything queued as gone on close', async () => {
    const streams = createReplicaStreams({
      logger: silentLogger(),
      transport: { send: () => new Promise(() => undefined), isMember: () => true },
    });
    const first = streams.deliver('b', entry(1));
    const second = streams.deliver('b', entry(2));
    streams.close();
    expect(await second).toBe('gone');
    void first;
  });
});
