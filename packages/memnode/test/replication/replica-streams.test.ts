import { describe, expect, it } from 'vitest';
import { MAX_BATCH_OPS, type ReplicaEntry, type ReplicaResult } from '@tmem/protocol';
import { silentLogger } from '../../src/logger.ts';
import { createReplicaStreams } from '../../src/replication/replica-streams.ts';

const entry = (version: number): ReplicaEntry => ({ pool: 1, oid: Uint8Array.of(1), index: 0, version });

describe('replica streams', () => {
  it('coalesces the entries queued in one turn into one frame', async () => {
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
    expect(frames).toEqual([[1, 2, 3, 4]]);
    expect(streams.backlog).toBe(0);
  });

  it('bounds a frame by MAX_BATCH_OPS entries and by bytes of pages', async () => {
    const sizes: number[] = [];
    const streams = createReplicaStreams({
      logger: silentLogger(),
      maxFrameBytes: 3 * 4096,
      transport: {
        send: (_target, entries) => {
          sizes.push(entries.length);
          return Promise.resolve(entries.map((): ReplicaResult => 'ok'));
        },
        isMember: () => true,
      },
    });
    const tombstones = Array.from({ length: MAX_BATCH_OPS + 6 }, (_, i) => entry(i + 1));
    await Promise.all(tombstones.map((e) => streams.deliver('b', e)));
    expect(sizes).toEqual([MAX_BATCH_OPS, 6]);
    sizes.length = 0;
    const page = new Uint8Array(4096);
    await Promise.all([1, 2, 3, 4, 5, 6, 7].map((v) => streams.deliver('b', { ...entry(v), page })));
    expect(sizes).toEqual([3, 3, 1]);
  });

  it('keeps up to maxFramesInFlight frames per target on the wire, and answers each entry of its own frame', async () => {
    let inFlight = 0;
    let most = 0;
    const streams = createReplicaStreams({
      logger: silentLogger(),
      maxFrameBytes: 4096,
      maxFramesInFlight: 3,
      transport: {
        send: async (_target, entries) => {
          inFlight++;
          most = Math.max(most, inFlight);
          await new Promise((resolve) => setTimeout(resolve, 5));
          inFlight--;
          return entries.map((e): ReplicaResult => (e.version % 2 === 0 ? 'full' : 'ok'));
        },
        isMember: () => true,
      },
    });
    const page = new Uint8Array(4096);
    const versions = Array.from({ length: 10 }, (_, i) => i + 1);
    const results = await Promise.all(versions.map((v) => streams.deliver('b', { ...entry(v), page })));
    expect(results).toEqual(versions.map((v) => (v % 2 === 0 ? 'full' : 'ok')));
    expect(most).toBe(3);
    expect(streams.backlog).toBe(0);
  });

  it('after a failure, sends the failed frames again oldest first before anything new', async () => {
    const sent: Array<{ versions: number[]; answer(ok: boolean): void }> = [];
    const streams = createReplicaStreams({
      logger: silentLogger(),
      retryDelayMs: 1,
      maxFrameBytes: 4096,
      transport: {
        send: (_target, entries) =>
          new Promise((resolve, reject) => {
            sent.push({
              versions: entries.map((e) => e.version),
              answer: (ok) =>
                ok ? resolve(entries.map((): ReplicaResult => 'ok')) : reject(new Error('no answer')),
            });
          }),
        isMember: () => true,
      },
    });
    const until = async (condition: () => boolean): Promise<void> => {
      while (!condition()) await new Promise((resolve) => setTimeout(resolve, 1));
    };
    const page = new Uint8Array(4096);
    const first = [1, 2, 3].map((v) => streams.deliver('b', { ...entry(v), page }));
    await until(() => sent.length === 3);
    expect(sent.map((f) => f.versions)).toEqual([[1], [2], [3]]);
    sent[0]?.answer(false);
    // Queued while frame 1 is failing: it must not overtake the resend of frame 1.
    const later = streams.deliver('b', { ...entry(4), page });
    await until(() => sent.length === 4);
    expect(sent[3]?.versions).toEqual([1]);
    sent[1]?.answer(true);
    sent[2]?.answer(true);
    // The stream pumps on setImmediate: a few turns of the event loop give it every chance to send too early.
    for (let turn = 0; turn < 3; turn++) await new Promise((resolve) => setImmediate(resolve));
    expect(sent).toHaveLength(4);
    sent[3]?.answer(true);
    await until(() => sent.length === 5);
    expect(sent[4]?.versions).toEqual([4]);
    sent[4]?.answer(true);
    expect(await Promise.all([...first, later])).toEqual(['ok', 'ok', 'ok', 'ok']);
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
