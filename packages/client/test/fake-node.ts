import { once } from 'node:events';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import {
  ErrorCode,
  PROTOCOL_VERSION,
  createCodec,
  oidKey,
  type Batch,
  type ClientFrame,
  type Hello,
  type NodeFrame,
  type NodeStats,
  type PageOp,
  type PageReply,
} from '@tmem/protocol';

/** A frame the fake received, with its encoded size and the socket it came on. */
export interface ReceivedFrame {
  frame: ClientFrame;
  bytes: number;
  socket: WebSocket;
}

/** Hooks that change how the fake answers; each falls back to the default behaviour when it returns undefined. */
export interface FakeNodeOptions {
  /** @default 'fake-node' */
  nodeId?: string;
  /** Answers the hello. An error reply also closes the socket, as a real node does. */
  onHello?: (hello: Hello) => NodeFrame | undefined;
  /** Answers a whole frame after the handshake, batch frames included. */
  onFrame?: (frame: ClientFrame) => NodeFrame | undefined;
  /** Answers one page op, inside a batch or alone. */
  onPageOp?: (op: PageOp) => PageReply | undefined;
}

/**
 * An in-process memory node that speaks the wire protocol with an in-memory page map, records every frame
 * it receives, and can hold replies back, drop connections or send raw bytes: enough to drive the client
 * through batching, backpressure, timeouts and failures without a real node.
 */
export interface FakeNode {
  readonly url: string;
  readonly nodeId: string;
  /** Every frame received, handshakes included, in arrival order across connections. */
  readonly received: readonly ReceivedFrame[];
  /** Open sockets. */
  readonly sockets: ReadonlySet<WebSocket>;
  /** Connections accepted so far. */
  readonly connections: number;
  /** While true, replies are kept back until releaseHeld(). */
  hold: boolean;
  /** Replies kept back. */
  readonly held: number;
  /** Most frames any one connection had unanswered at once (held replies count as unanswered). */
  readonly maxOutstanding: number;
  /** Sends every held reply, in order. */
  releaseHeld(): void;
  /** The batch frames received, in order. */
  batches(): Batch[];
  /** Sends raw bytes (binary) or a string (a text frame) on every open socket. */
  sendRaw(data: Uint8Array | string): void;
  /** Sends a frame on every open socket, as if it answered something. */
  send(frame: NodeFrame): void;
  /** Cuts every connection at the TCP level, forgetting held replies; the server keeps listening. */
  dropConnections(): void;
  /**
   * Resolves once every frame each client sent before this call has arrived: a ping's pong travels behind
   * them on the same ordered stream.
   */
  barrier(): Promise<void>;
  /** Cuts every connection and stops listening; idempotent. */
  close(): Promise<void>;
}

interface StoredPool {
  kind: string;
  pageSize: number;
  objects: Map<string, Map<number, Uint8Array<ArrayBuffer>>>;
}

function zeroStats(nodeId: string): NodeStats {
  return {
    nodeId,
    capacityBytes: 0,
    usedBytes: 0,
    pools: 0,
    ephemeralPages: 0,
    persistentPages: 0,
    puts: 0,
    acceptedPuts: 0,
    refusedPuts: 0,
    duplicatePuts: 0,
    gets: 0,
    hits: 0,
    misses: 0,
    flushes: 0,
    evictions: 0,
  };
}

/** Starts a fake node on 127.0.0.1, port 0. */
export async function startFakeNode(options: FakeNodeOptions = {}): Promise<FakeNode> {
  const nodeId = options.nodeId ?? 'fake-node';
  const codec = createCodec();
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;

  const received: ReceivedFrame[] = [];
  const sockets = new Set<WebSocket>();
  const outstanding = new Map<WebSocket, number>();
  const heldReplies: Array<{ socket: WebSocket; frame: NodeFrame }> = [];
  const pools = new Map<number, StoredPool>();
  let nextPool = 1;
  let connections = 0;
  let maxOutstanding = 0;
  let closed: Promise<void> | undefined;

  function error(id: number, code: string, message = code): NodeFrame & PageReply {
    return { t: 'error', id, code, message };
  }

  function answerPageOp(op: PageOp): PageReply {
    const custom = options.onPageOp?.(op);
    if (custom !== undefined) return custom;
    const pool = pools.get(op.pool);
    if (pool === undefined) return error(op.id, ErrorCode.UnknownPool);
    const key = oidKey(op.oid);
    switch (op.t) {
      case 'put': {
        const object = pool.objects.get(key) ?? new Map<number, Uint8Array<ArrayBuffer>>();
        // Copied: the decoded page is a view into the received frame.
        object.set(op.index, new Uint8Array(op.page));
        pool.objects.set(key, object);
        return { t: 'accepted', id: op.id };
      }
      case 'get': {
        const page = pool.objects.get(key)?.get(op.index);
        return page === undefined ? { t: 'miss', id: op.id } : { t: 'hit', id: op.id, page };
      }
      case 'flushPage':
        pool.objects.get(key)?.delete(op.index);
        return { t: 'ok', id: op.id };
      case 'flushObject':
        pool.objects.delete(key);
        return { t: 'ok', id: op.id };
    }
  }

  function answer(frame: ClientFrame): NodeFrame {
    const custom = options.onFrame?.(frame);
    if (custom !== undefined) return custom;
    switch (frame.t) {
      case 'hello':
        return error(frame.id, ErrorCode.InvalidFrame, 'handshake already done');
      case 'newPool': {
        const pool = nextPool++;
        pools.set(pool, { kind: frame.kind, pageSize: frame.pageSize, objects: new Map() });
        return { t: 'pool', id: frame.id, pool, kind: frame.kind, pageSize: frame.pageSize };
      }
      case 'destroyPool':
        if (!pools.delete(frame.pool)) return error(frame.id, ErrorCode.UnknownPool);
        return { t: 'ok', id: frame.id };
      case 'stats':
        return { t: 'stats', id: frame.id, stats: zeroStats(nodeId) };
      case 'batch':
        return { t: 'batch', id: frame.id, replies: frame.ops.map(answerPageOp) };
      case 'getState':
      case 'peer':
      case 'propose':
        return error(frame.id, ErrorCode.InvalidFrame, `${frame.t} is not served by the fake node`);
      default:
        return answerPageOp(frame);
    }
  }

  function reply(socket: WebSocket, frame: NodeFrame): void {
    outstanding.set(socket, (outstanding.get(socket) ?? 1) - 1);
    if (socket.readyState === socket.OPEN) socket.send(codec.encode(frame));
  }

  server.on('connection', (socket: WebSocket) => {
    connections++;
    sockets.add(socket);
    outstanding.set(socket, 0);
    let greeted = false;
    socket.on('close', () => {
      sockets.delete(socket);
      outstanding.delete(socket);
    });
    socket.on('error', () => undefined);
    socket.on('message', (data: Buffer) => {
      // A frame the client under test cannot encode properly is a bug: let it throw out of the test.
      const frame = codec.decodeClientFrame(data);
      received.push({ frame, bytes: data.length, socket });
      if (!greeted) {
        greeted = true;
        if (frame.t !== 'hello') throw new Error(`client sent ${frame.t} before hello`);
        const welcome = options.onHello?.(frame) ?? {
          t: 'welcome',
          id: frame.id,
          protocol: PROTOCOL_VERSION,
          nodeId,
        };
        socket.send(codec.encode(welcome));
        if (welcome.t === 'error') socket.close(1002);
        return;
      }
      const count = (outstanding.get(socket) ?? 0) + 1;
      outstanding.set(socket, count);
      maxOutstanding = Math.max(maxOutstanding, count);
      const frameReply = answer(frame);
      if (fake.hold) heldReplies.push({ socket, frame: frameReply });
      else reply(socket, frameReply);
    });
  });

  const fake: FakeNode = {
    url: `ws://127.0.0.1:${port}`,
    nodeId,
    received,
    sockets,
    get connections() {
      return connections;
    },
    hold: false,
    get held() {
      return heldReplies.length;
    },
    get maxOutstanding() {
      return maxOutstanding;
    },
    releaseHeld() {
      for (const { socket, frame } of heldReplies.splice(0)) reply(socket, frame);
    },
    batches() {
      return received.flatMap(({ frame }) => (frame.t === 'batch' ? [frame] : []));
    },
    sendRaw(data) {
      for (const socket of sockets) socket.send(data, { binary: typeof data !== 'string' });
    },
    send(frame) {
      for (const socket of sockets) socket.send(codec.encode(frame));
    },
    dropConnections() {
      heldReplies.length = 0;
      for (const socket of sockets) socket.terminate();
    },
    async barrier() {
      await Promise.all(
        [...sockets]
          .filter((socket) => socket.readyState === socket.OPEN)
          .map(async (socket) => {
            const pong = once(socket, 'pong');
            socket.ping();
            await pong;
          }),
      );
    },
    close() {
      closed ??= new Promise<void>((resolve, reject) => {
        fake.dropConnections();
        server.close((err) => (err ? reject(err) : resolve()));
      });
      return closed;
    },
  };
  return fake;
}

/** A TCP server that accepts connections and never says a word: a node stuck before its handshake. */
export interface SilentServer {
  readonly url: string;
  close(): Promise<void>;
}

/** Starts a SilentServer on 127.0.0.1, port 0. */
export async function startSilentServer(): Promise<SilentServer> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  let closed: Promise<void> | undefined;
  return {
    url: `ws://127.0.0.1:${port}`,
    close() {
      closed ??= new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      });
      return closed;
    },
  };
}

/** A ws:// URL where nothing listens: a port that was just freed. */
export async function deadUrl(): Promise<string> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `ws://127.0.0.1:${port}`;
}
