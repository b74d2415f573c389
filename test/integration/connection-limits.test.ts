import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import WebSocket from 'ws';
import { encode } from 'msgpackr';
import { connect } from '@tmem/client';
import { ErrorCode, PROTOCOL_VERSION, TmemError, createCodec, type NodeFrame } from '@tmem/protocol';
import { closeAllRawPeers, killAllNodes, openRawPeer, startNode, waitFor } from '../harness/index.ts';

// Issue 9, findings 4–6: every connection a node grants is bounded in number, time and buffered memory.

afterEach(() => closeAllRawPeers());
afterAll(() => killAllNodes());

/** Resident memory of a process, from /proc. */
function rssBytes(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(match?.[1]) * 1024;
}

/** Opens a connection and says hello; true once welcomed, false when the node closes it first. */
async function helloAccepted(url: string, identity: string): Promise<boolean> {
  const peer = await openRawPeer(url);
  peer.sendFrame({ t: 'hello', id: 1, protocol: PROTOCOL_VERSION, identity });
  await waitFor(() => peer.received.length > 0 || peer.closed !== undefined, { what: 'welcome or close' });
  return (
    peer.received[0] !== undefined && !(peer.received[0] instanceof Error) && peer.received[0].t === 'welcome'
  );
}

function tcpClosed(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect(port, '127.0.0.1');
    socket.on('error', reject);
    socket.on('close', () => resolve());
  });
}

describe('handshake limits', () => {
  it('a connection that sends no hello within the deadline is closed (1008); one that did stays', async () => {
    const node = await startNode({ args: ['--replication', '1', '--handshake-timeout-ms', '800'] });
    const silent = await openRawPeer(node.url);
    const greeted = await openRawPeer(node.url, 'greeted');
    expect((await silent.waitClosed()).code).toBe(1008);
    // The deadline has passed for the greeted one too: it is still open and answers.
    expect(greeted.closed).toBeUndefined();
    expect(await greeted.request({ t: 'stats', id: 2 })).toMatchObject({ t: 'stats' });
  });

  it('a TCP socket that never upgrades is closed by the node', async () => {
    const node = await startNode({ args: ['--replication', '1', '--handshake-timeout-ms', '800'] });
    await tcpClosed(Number(new URL(node.url).port));
  });

  it('a frame over maxHelloBytes before the hello is cut unread (1009); after it, large frames are fine', async () => {
    const node = await startNode({ args: ['--replication', '1', '--max-hello-bytes', '2KiB'] });
    const early = await openRawPeer(node.url);
    early.sendBytes(encode({ t: 'hello', id: 1, protocol: PROTOCOL_VERSION, identity: 'x'.repeat(3000) }));
    expect((await early.waitClosed()).code).toBe(1009);
    const late = await openRawPeer(node.url, 'late');
    const page = new Uint8Array(16 * 1024);
    const reply = await late.request({
      t: 'put',
      id: 3,
      pool: 999,
      oid: new Uint8Array([1]),
      index: 0,
      page,
    });
    expect(reply).toMatchObject({ t: 'error', code: ErrorCode.UnknownPool });
  });
});

describe('decode budget on the wire', () => {
  it('a depth bomb or a map of 200,000 keys gets FRAME_TOO_COMPLEX and the node serves on', async () => {
    const node = await startNode({ args: ['--replication', '1'] });
    const bystander = await connect({ seeds: [node.url], identity: 'bystander' });
    const pool = await bystander.createPool({ kind: 'ephemeral' });
    const bomb = new Uint8Array(4000).fill(0x91);
    bomb[bomb.length - 1] = 0xc0;
    const before = await openRawPeer(node.url);
    before.sendBytes(bomb);
    expect(await before.next()).toMatchObject({ t: 'error', code: ErrorCode.FrameTooComplex });

    const after = await openRawPeer(node.url, 'mapper');
    const keys = Object.fromEntries(Array.from({ length: 200_000 }, (_, i) => [`k${i}`, 0]));
    const { Packr } = await import('msgpackr');
    after.sendBytes(new Packr({ variableMapSize: true }).pack({ t: 'get', id: 4, ...keys }));
    expect(await after.next()).toMatchObject({ t: 'error', code: ErrorCode.FrameTooComplex });
    // The connection is still usable, and so is the node.
    expect(await after.request({ t: 'stats', id: 5 })).toMatchObject({ t: 'stats' });
    expect(await pool.put('o', 0, new Uint8Array(4096).fill(7))).toBe(true);
    await bystander.close();
  });
});

describe('connection counts', () => {
  it('past maxConnections a new connection is closed with 1013; a freed slot admits the next', async () => {
    const node = await startNode({ args: ['--replication', '1', '--max-connections', '4'] });
    const held = await Promise.all([1, 2, 3, 4].map((i) => openRawPeer(node.url, `held-${i}`)));
    const extra = await openRawPeer(node.url);
    const closed = await extra.waitClosed();
    expect(closed.code).toBe(1013);
    expect(closed.reason).toContain(ErrorCode.LimitExceeded);
    held[0]!.close();
    await waitFor(() => helloAccepted(node.url, 'next'), { what: 'the freed slot' });
  });

  it('past maxConnectionsPerIdentity a hello gets LIMIT_EXCEEDED; other identities are not affected', async () => {
    const node = await startNode({ args: ['--replication', '1', '--max-connections-per-identity', '3'] });
    const greedy = await Promise.all([1, 2, 3].map(() => openRawPeer(node.url, 'greedy')));
    const fourth = await openRawPeer(node.url);
    const reply = await fourth.request({ t: 'hello', id: 1, protocol: PROTOCOL_VERSION, identity: 'greedy' });
    expect(reply).toMatchObject({ t: 'error', code: ErrorCode.LimitExceeded });
    expect((await fourth.waitClosed()).code).toBe(1008);
    expect(await helloAccepted(node.url, 'modest')).toBe(true);
    greedy[0]!.close();
    await waitFor(() => helloAccepted(node.url, 'greedy'), { what: 'a freed slot of identity greedy' });
  });
});

describe('pools per identity', () => {
  it('past maxPoolsPerIdentity createPool is LIMIT_EXCEEDED; other identities and freed slots are fine', async () => {
    const node = await startNode({ args: ['--replication', '1', '--max-pools-per-identity', '3'] });
    const greedy = await connect({ seeds: [node.url], identity: 'greedy' });
    const pools = [];
    for (let i = 0; i < 3; i++) pools.push(await greedy.createPool({ kind: 'ephemeral' }));
    const refused = await greedy.createPool({ kind: 'ephemeral' }).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(TmemError);
    expect((refused as TmemError).code).toBe(ErrorCode.LimitExceeded);
    const other = await connect({ seeds: [node.url], identity: 'other' });
    await other.createPool({ kind: 'ephemeral' });
    await pools[0]!.destroy();
    await greedy.createPool({ kind: 'ephemeral' });
    await other.close();
    await greedy.close();
  });
});

describe('idle timeout', () => {
  it('closes a silent connection (1000 idle) and keeps one that pings', async () => {
    const node = await startNode({ args: ['--replication', '1', '--idle-timeout-ms', '600'] });
    const pinger = new WebSocket(node.url, { perMessageDeflate: false });
    await new Promise((resolve) => pinger.once('open', resolve));
    const pings = setInterval(() => pinger.ping(), 150);
    let pingerClosed = false;
    pinger.on('close', () => (pingerClosed = true));
    try {
      const silent = await openRawPeer(node.url, 'silent');
      const closed = await silent.waitClosed();
      expect(closed).toEqual({ code: 1000, reason: 'idle' });
      // The silent one had up to two sweeps; the pinger has lived through at least as long.
      expect(pingerClosed).toBe(false);
    } finally {
      clearInterval(pings);
      pinger.terminate();
    }
  });
});

describe('replies buffered for a reader that never reads', () => {
  it('the node stops reading that socket instead of buffering, serves others, and loses nothing', async () => {
    const node = await startNode({
      capacity: '64MiB',
      args: ['--replication', '1', '--max-buffered-reply-bytes', '1MiB'],
    });
    const owner = await connect({ seeds: [node.url], identity: 'hog' });
    const pool = await owner.createPool({ kind: 'persistent', pageSize: 65536 });
    const page = new Uint8Array(65536).fill(3);
    for (let i = 0; i < 32; i++) expect(await pool.put('big', i, page)).toBe(true);

    const codec = createCodec();
    const hog = new WebSocket(node.url, { perMessageDeflate: false });
    const replies: NodeFrame[] = [];
    hog.on('message', (data: Buffer) => replies.push(codec.decodeNodeFrame(data)));
    await new Promise((resolve) => hog.once('open', resolve));
    hog.send(codec.encode({ t: 'hello', id: 1, protocol: PROTOCOL_VERSION, identity: 'hog' }));
    await waitFor(() => replies.length === 1, { what: 'welcome' });
    const tcp = (hog as unknown as { _socket: { pause(): void; resume(): void } })._socket;
    tcp.pause();

    const rssBefore = rssBytes(node.pid);
    // 64 batches of 32 gets of 64 KiB pages: 128 MiB of replies that nobody reads.
    const batches = 64;
    for (let b = 0; b < batches; b++) {
      const ops = Array.from({ length: 32 }, (_, i) => ({
        t: 'get' as const,
        id: i + 1,
        pool: pool.id,
        oid: new TextEncoder().encode('big'),
        index: i,
      }));
      hog.send(codec.encode({ t: 'batch', id: 100 + b, ops }));
    }
    // While the hog is stalled, another client is served at once.
    const other = await connect({ seeds: [node.url], identity: 'other' });
    const otherPool = await other.createPool({ kind: 'ephemeral' });
    expect(await otherPool.put('o', 0, new Uint8Array(4096))).toBe(true);
    const rssDuring = rssBytes(node.pid);
    expect(rssDuring - rssBefore).toBeLessThan(48 * 1024 * 1024);

    tcp.resume();
    await waitFor(() => replies.filter((r) => r.t === 'batch' && r.more !== true).length === batches, {
      what: 'every batch answered once the hog reads again',
      timeoutMs: 30_000,
    });
    const hits = replies.flatMap((r) => (r.t === 'batch' ? r.replies : [])).filter((r) => r.t === 'hit');
    expect(hits).toHaveLength(batches * 32);
    hog.terminate();
    await other.close();
    await owner.close();
  });
});
