import { connect as connectTcp, createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { ClientFrame, NodeFrame, NodeStats } from '@tmem/protocol';
import {
  closeAllFaultProxies,
  closeAllRawPeers,
  killAllNodes,
  openRawPeer,
  startFaultProxy,
  startNode,
  waitFor,
  type FaultProxy,
  type RawPeer,
} from '../harness/index.ts';

// The fault proxy is the groundwork of every failure test, so it is tested on its own first: with plain
// sockets where exact bytes matter, and with a real node and a raw WebSocket peer where protocol behaviour does.
// (A full client would learn the members' direct URLs from the cluster state and route around the proxy.)

const echoServers = new Set<Server>();
const tcpClients = new Set<Socket>();

afterEach(async () => {
  closeAllRawPeers();
  for (const socket of tcpClients) socket.destroy();
  tcpClients.clear();
  await closeAllFaultProxies();
  await Promise.all([...echoServers].map((s) => new Promise((resolve) => s.close(resolve))));
  echoServers.clear();
  await killAllNodes();
});

/** A TCP server that writes back whatever it reads, on 127.0.0.1 port 0. */
async function startEchoServer(): Promise<{ host: string; port: number }> {
  const server = createServer((socket) => {
    socket.on('error', () => undefined);
    socket.pipe(socket);
  });
  echoServers.add(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('echo server has no port');
  return { host: '127.0.0.1', port: address.port };
}

/** A plain TCP client of the proxy, from `localAddress` if given, that collects everything it reads. */
async function openTcp(
  proxy: FaultProxy,
  localAddress?: string,
): Promise<{ socket: Socket; received: () => Buffer }> {
  const socket = connectTcp({
    host: '127.0.0.1',
    port: proxy.port,
    ...(localAddress === undefined ? {} : { localAddress }),
  });
  tcpClients.add(socket);
  socket.setNoDelay(true);
  socket.on('error', () => undefined);
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return { socket, received: () => Buffer.concat(chunks) };
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

let requestId = 100;

/** A request through a raw peer; the reply must be of kind `t`. */
async function ask<T extends NodeFrame['t']>(
  peer: RawPeer,
  frame: ClientFrame,
  t: T,
): Promise<Extract<NodeFrame, { t: T }>> {
  const reply = await peer.request(frame);
  if (reply.t !== t) throw new Error(`expected ${t}, got ${JSON.stringify(reply)}`);
  return reply as Extract<NodeFrame, { t: T }>;
}

async function nodeStats(peer: RawPeer): Promise<NodeStats> {
  return (await ask(peer, { t: 'stats', id: ++requestId }, 'stats')).stats;
}

/** Creates an ephemeral pool for the peer's identity, retrying while the fresh node is not serving yet. */
async function createPool(peer: RawPeer): Promise<number> {
  const created = await waitFor(
    async () => {
      const reply = await peer.request({ t: 'newPool', id: ++requestId, kind: 'ephemeral', pageSize: 4096 });
      return reply.t === 'pool' ? reply : undefined;
    },
    { what: 'a pool', intervalMs: 100 },
  );
  return created.pool;
}

const OID = new Uint8Array([7]);

/** Whether a reply with this id ever arrived. */
function answered(peer: RawPeer, id: number): boolean {
  return peer.received.some((frame) => !(frame instanceof Error) && frame.id === id);
}

/** A node, a proxy in front of it, and a raw peer connected through the proxy. */
async function nodeBehindProxy(identity = 'alice'): Promise<{
  nodeUrl: string;
  proxy: FaultProxy;
  peer: RawPeer;
}> {
  const node = await startNode({ capacity: '8MiB' });
  const proxy = await startFaultProxy({ target: node.url });
  const peer = await openRawPeer(proxy.url, identity);
  return { nodeUrl: node.url, proxy, peer };
}

describe('pass-through', () => {
  it('carries bytes both ways unchanged, a large burst included', async () => {
    const proxy = await startFaultProxy({ target: await startEchoServer() });
    const client = await openTcp(proxy);
    // Several MiB exercise backpressure in both directions.
    const sent = Buffer.alloc(4 * 1024 * 1024, 0).map((_, i) => (i * 7) & 0xff);
    client.socket.write(sent);
    await waitFor(() => client.received().length >= sent.length, { what: 'the echo' });
    expect(client.received().equals(sent)).toBe(true);
    expect(proxy.stats()).toMatchObject({
      connections: 1,
      accepted: 1,
      bytesToTarget: sent.length,
      bytesFromTarget: sent.length,
      dropped: 0,
    });
  });

  it('lets a WebSocket peer talk to a real node', async () => {
    const { proxy, peer } = await nodeBehindProxy();
    const stats = await nodeStats(peer);
    expect(stats.nodeId).toBeTruthy();
    expect(proxy.stats().bytesToTarget).toBeGreaterThan(0);
    expect(proxy.stats().bytesFromTarget).toBeGreaterThan(0);
  });

  it('propagates a half-close after the data before it', async () => {
    const proxy = await startFaultProxy({ target: await startEchoServer() });
    const client = await openTcp(proxy);
    const ended = new Promise<void>((resolve) => client.socket.once('end', resolve));
    client.socket.end('last words');
    await ended;
    expect(client.received().toString()).toBe('last words');
    await waitFor(() => proxy.stats().connections === 0, { what: 'the connection to be gone' });
  });
});

describe('delay', () => {
  it('adds at least the delay each way', async () => {
    const { proxy, peer } = await nodeBehindProxy();
    const delayMs = 150;
    proxy.setFault('both', { kind: 'delay', ms: delayMs });
    const started = performance.now();
    await nodeStats(peer);
    // Only a lower bound: a loaded machine may add any amount on top.
    expect(performance.now() - started).toBeGreaterThanOrEqual(2 * delayMs);
  });

  it('keeps byte order under jitter and when the delay changes mid-stream', async () => {
    const proxy = await startFaultProxy({ target: await startEchoServer() });
    const client = await openTcp(proxy);
    // Jitter far above the base delay: without FIFO delivery, later chunks would overtake earlier ones.
    proxy.setFault('both', { kind: 'delay', ms: 1, jitterMs: 40, seed: 7 });
    let sent = '';
    for (let i = 0; i < 200; i++) {
      // The delay shrinks to nothing halfway: the fast chunks must still queue behind the slow ones.
      if (i === 100) proxy.setFault('both', { kind: 'none' });
      const message = `<${i}>`;
      sent += message;
      client.socket.write(message);
      await nextTurn();
    }
    await waitFor(() => client.received().length >= sent.length, { what: 'the echo' });
    expect(client.received().toString()).toBe(sent);
  });
});

describe('blackhole', () => {
  it('from the target: requests reach the node, replies never arrive', async () => {
    const { nodeUrl, proxy, peer } = await nodeBehindProxy();
    const observer = await openRawPeer(nodeUrl, 'observer');
    const pool = await createPool(peer);
    // A first get proves the node serves the pool, so the blackholed ones below are counted.
    await ask(peer, { t: 'get', id: ++requestId, pool, oid: OID, index: 0 }, 'miss');
    const getsBefore = (await nodeStats(observer)).gets;

    proxy.setFault('fromTarget', { kind: 'blackhole' });
    const droppedBefore = proxy.stats().dropped;
    const lostIds = [++requestId, ++requestId];
    for (const id of lostIds) peer.sendFrame({ t: 'get', id, pool, oid: OID, index: 0 });
    await waitFor(async () => (await nodeStats(observer)).gets >= getsBefore + lostIds.length, {
      what: 'the node to count the gets',
    });
    await waitFor(() => proxy.stats().dropped > droppedBefore, { what: 'the proxy to swallow a reply' });
    expect(lostIds.some((id) => answered(peer, id))).toBe(false);
    expect(peer.closed).toBeUndefined();

    // Lifting the blackhole resets the connection that lost bytes instead of handing it a broken stream.
    proxy.setFault('fromTarget', { kind: 'none' });
    expect((await peer.waitClosed()).code).toBe(1006);
    expect(lostIds.some((id) => answered(peer, id))).toBe(false);
    const fresh = await openRawPeer(proxy.url, 'alice');
    expect((await nodeStats(fresh)).gets).toBeGreaterThanOrEqual(getsBefore + lostIds.length);
  });

  it('to the target: requests vanish while pushes from the node still arrive', async () => {
    const { nodeUrl, proxy, peer } = await nodeBehindProxy();
    await waitFor(
      async () => (await peer.request({ t: 'getState', id: ++requestId, subscribe: true })).t === 'state',
      { what: 'a subscription', intervalMs: 100 },
    );

    proxy.setFault('toTarget', { kind: 'blackhole' });
    const droppedBefore = proxy.stats().dropped;
    const lostId = ++requestId;
    peer.sendFrame({ t: 'stats', id: lostId });
    await waitFor(() => proxy.stats().dropped > droppedBefore, { what: 'the proxy to swallow the request' });

    // The same identity over a direct connection creates a pool: the node pushes the new state to the
    // subscriber behind the proxy, which still hears it.
    const direct = await openRawPeer(nodeUrl, 'alice');
    const pool = await createPool(direct);
    await waitFor(
      () =>
        peer.received.some(
          (frame) =>
            !(frame instanceof Error) &&
            frame.t === 'state' &&
            frame.id === 0 &&
            frame.state.pools.some((p) => p.id === pool),
        ),
      { what: 'the pushed state' },
    );
    expect(answered(peer, lostId)).toBe(false);
    expect(peer.closed).toBeUndefined();
  });

  it('swallows the handshake of new connections', async () => {
    const proxy = await startFaultProxy({ target: await startEchoServer() });
    proxy.setFault('toTarget', { kind: 'blackhole' });
    const client = await openTcp(proxy);
    client.socket.write('anyone there?');
    await waitFor(() => proxy.stats().dropped > 0, { what: 'the proxy to swallow the bytes' });
    expect(client.received().length).toBe(0);
    expect(proxy.stats().bytesToTarget).toBe(0);
  });
});

describe('cut and refuse', () => {
  it('cut() closes every open connection', async () => {
    const { proxy, peer } = await nodeBehindProxy();
    const other = await openRawPeer(proxy.url, 'bob');
    proxy.cut();
    expect((await peer.waitClosed()).code).toBe(1006);
    expect((await other.waitClosed()).code).toBe(1006);
    await waitFor(() => proxy.stats().connections === 0, { what: 'no open connection' });
    expect(proxy.stats().cuts).toBe(2);
    // New connections are unaffected.
    await nodeStats(await openRawPeer(proxy.url, 'carol'));
  });

  it('refuse(true) makes new connections fail and leaves open ones alone', async () => {
    const { proxy, peer } = await nodeBehindProxy();
    proxy.refuse(true);
    await expect(openRawPeer(proxy.url, 'bob')).rejects.toThrow();
    expect(proxy.stats().refused).toBe(1);
    await nodeStats(peer);
    proxy.refuse(false);
    await nodeStats(await openRawPeer(proxy.url, 'bob'));
  });

  it('a target that is down resets the connection', async () => {
    const node = await startNode({ capacity: '8MiB' });
    const proxy = await startFaultProxy({ target: node.url });
    await node.kill();
    await expect(openRawPeer(proxy.url, 'alice')).rejects.toThrow();
  });
});

describe('drop', () => {
  it('with probability 1 cuts open connections at their next chunk, and new ones at their first', async () => {
    const { proxy, peer } = await nodeBehindProxy();
    proxy.setFault('fromTarget', { kind: 'drop', probability: 1 });
    peer.sendFrame({ t: 'stats', id: ++requestId });
    expect((await peer.waitClosed()).code).toBe(1006);
    expect(proxy.stats()).toMatchObject({ dropped: 1, cuts: 1 });

    proxy.setFault('both', { kind: 'drop', probability: 1 });
    await expect(openRawPeer(proxy.url, 'bob')).rejects.toThrow();
    await waitFor(() => proxy.stats().connections === 0, { what: 'no open connection' });
  });

  it('draws the same drops for the same seed', async () => {
    const target = await startEchoServer();
    /** Ping-pongs one byte at a time (one chunk each) until a drop cuts the connection; returns the count. */
    const survivedRoundTrips = async (seed: number): Promise<number> => {
      const proxy = await startFaultProxy({ target });
      proxy.setFault('toTarget', { kind: 'drop', probability: 0.2, seed });
      const client = await openTcp(proxy);
      const closed = new Promise<void>((resolve) => client.socket.once('close', () => resolve()));
      let echoed = 0;
      client.socket.on('data', () => {
        echoed++;
        if (!client.socket.destroyed) client.socket.write('x');
      });
      client.socket.write('x');
      await closed;
      return echoed;
    };
    const first = await survivedRoundTrips(42);
    // Seed 42 lets a few round trips through before its first drop, so the comparison means something.
    expect(first).toBeGreaterThan(0);
    expect(await survivedRoundTrips(42)).toBe(first);
  });
});

describe('faults by source address', () => {
  // Every address in 127.0.0.0/8 is loopback on Linux, so each test client can have its own.
  const A = '127.0.0.2';
  const B = '127.0.0.3';

  /** Writes `text` and waits until the echo of all of it came back. */
  async function echoes(client: Awaited<ReturnType<typeof openTcp>>, text: string): Promise<void> {
    const before = client.received().length;
    client.socket.write(text);
    await waitFor(() => client.received().length >= before + text.length, { what: `the echo of ${text}` });
  }

  it('a fault set for one source leaves the others alone, and lifting it resets only its connections', async () => {
    const proxy = await startFaultProxy({ target: await startEchoServer() });
    const a = await openTcp(proxy, A);
    const b = await openTcp(proxy, B);
    proxy.setFault('toTarget', { kind: 'blackhole' }, { from: A });
    a.socket.write('lost');
    await echoes(b, 'fine');
    await waitFor(() => proxy.stats().dropped > 0, { what: 'the proxy to swallow the bytes from A' });
    expect(a.received().length).toBe(0);

    const aClosed = new Promise<void>((resolve) => a.socket.once('close', () => resolve()));
    proxy.clearFaults({ from: A });
    await aClosed;
    expect(b.socket.destroyed).toBe(false);
    await echoes(b, 'still fine');
    await echoes(await openTcp(proxy, A), 'back');
  });

  it("a source's own fault overrides the default, in its direction only", async () => {
    const proxy = await startFaultProxy({ target: await startEchoServer() });
    proxy.setFault('both', { kind: 'blackhole' });
    proxy.setFault('both', { kind: 'none' }, { from: B });
    const a = await openTcp(proxy, A);
    const b = await openTcp(proxy, B);
    a.socket.write('lost');
    await echoes(b, 'through');
    expect(a.received().length).toBe(0);

    // Only the reply direction cut for B: its bytes reach the echo server, the echo never comes back.
    proxy.setFault('fromTarget', { kind: 'blackhole' }, { from: B });
    const sentBefore = proxy.stats().bytesToTarget;
    b.socket.write('one way');
    await waitFor(() => proxy.stats().bytesToTarget >= sentBefore + 'one way'.length, {
      what: 'the bytes to reach the target',
    });
    await waitFor(() => proxy.stats().dropped > 0, { what: 'the echo to be swallowed' });
    expect(b.received().toString()).toBe('through');

    // clearFaults() with no scope drops every fault: a fresh connection from A goes through.
    proxy.clearFaults();
    await echoes(await openTcp(proxy, A), 'healed');
  });

  it('cut({ from }) resets only the connections from that source', async () => {
    const proxy = await startFaultProxy({ target: await startEchoServer() });
    const a = await openTcp(proxy, A);
    const b = await openTcp(proxy, B);
    const aClosed = new Promise<void>((resolve) => a.socket.once('close', () => resolve()));
    proxy.cut({ from: A });
    await aClosed;
    await echoes(b, 'untouched');
    expect(proxy.stats().cuts).toBe(1);
    await waitFor(() => proxy.stats().sources[A] === undefined, { what: "A's connection to be gone" });
    expect(proxy.stats().sources).toEqual({ [B]: 1 });
  });

  it('counts delayed chunks as queued until they are written', async () => {
    const proxy = await startFaultProxy({ target: await startEchoServer() });
    const a = await openTcp(proxy, A);
    proxy.setFault('toTarget', { kind: 'delay', ms: 300 }, { from: A });
    a.socket.write('slow');
    await waitFor(() => proxy.stats().queued > 0, { what: 'a queued chunk' });
    await waitFor(() => a.received().toString() === 'slow', { what: 'the delayed echo' });
    expect(proxy.stats().queued).toBe(0);
  });
});

describe('retarget', () => {
  it('a proxy without a target resets connections until it is given one; new connections follow it', async () => {
    const proxy = await startFaultProxy();
    expect(proxy.target).toBeUndefined();
    const early = connectTcp({ host: '127.0.0.1', port: proxy.port });
    tcpClients.add(early);
    early.on('error', () => undefined);
    await new Promise<void>((resolve) => early.once('close', () => resolve()));
    expect(proxy.stats().refused).toBe(1);

    const first = await startEchoServer();
    proxy.retarget(first);
    const a = await openTcp(proxy);
    a.socket.write('one');
    await waitFor(() => a.received().toString() === 'one', { what: 'the first echo' });

    // A node restarted on another port behind the same proxy URL: a WebSocket peer reaches the new one.
    const node = await startNode({ capacity: '8MiB' });
    proxy.retarget(node.url);
    expect(proxy.target?.port).toBe(Number(new URL(node.url).port));
    expect((await nodeStats(await openRawPeer(proxy.url, 'alice'))).nodeId).toBeTruthy();
    // The connection made before keeps its old target.
    a.socket.write('two');
    await waitFor(() => a.received().toString() === 'onetwo', { what: 'the old target to still answer' });
  });
});
