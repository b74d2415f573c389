import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import {
  ClusterState,
  ErrorCode,
  PROTOCOL_VERSION,
  createCodec,
  oidKey,
  memberKey,
  partitionOf,
  partitionTableFor,
  replicaTargets,
  sameMember,
  tableForPool,
  zeroStoreCounters,
  type Batch,
  type ClientFrame,
  type Hello,
  type MemberInfo,
  type NodeFrame,
  type NodeStats,
  type PageOp,
  type PageReply,
  type PartitionTable,
} from '@tmem/protocol';

/** A frame the fake received, with its encoded size, the socket it came on and the address it came from. */
export interface ReceivedFrame {
  frame: ClientFrame;
  bytes: number;
  socket: WebSocket;
  /** The client's IP address, as the node's socket sees it. */
  remoteAddress: string | undefined;
}

/**
 * The replicated state several fake nodes share, standing in for the coordinator: every change is committed
 * at once (version + 1) and pushed to the nodes' subscribers.
 */
export interface FakeCluster {
  /** The committed state; replaced, never mutated, by commit. */
  readonly state: ClusterState;
  /** The coordinator the nodes report. */
  leaderId: string | null;
  /** While false, committed states are not pushed to subscribers, as if the pushes were lost. */
  pushes: boolean;
  /** Applies `change` to a copy of the state, bumps the version, validates, stores and pushes the result. */
  commit(change?: (draft: ClusterState) => void): ClusterState;
  /** Removes a member, as the coordinator does once its lease surely expired. */
  removeMember(id: string): ClusterState;
  /** Id of the member that is the primary of a page in the current state, by its pool's table. */
  primaryOf(pool: number, oid: Uint8Array | string, index: number): string | undefined;
  /**
   * Ids of the members that own a page in the current state, primary first: for a persistent pool its
   * `replication` ready owners, else the one owner among every member (as tableForPool says).
   */
  ownersOf(pool: number, oid: Uint8Array | string, index: number): string[];
}

/** A change a primary sends to the other owners of a persistent page. */
type ReplicaChange = Extract<PageOp, { t: 'put' | 'flushPage' }>;

/** What the cluster tells each of its nodes. */
interface ClusterNode {
  readonly member: MemberInfo;
  onCommit(state: ClusterState): void;
  /** Applies a change of a persistent page its primary accepted. */
  applyReplica(change: ReplicaChange): void;
}

interface InternalCluster extends FakeCluster {
  join(node: ClusterNode): void;
  /** Hands a persistent change `from` its primary to the other owners it must reach (filling ones too). */
  replicate(from: MemberInfo, change: ReplicaChange): void;
}

/** The table the pages of `pool` are placed by in `state`; the ephemeral one for a pool it does not know. */
function tableOf(state: ClusterState, pool: number): PartitionTable {
  const info = state.pools.find((p) => p.id === pool);
  return info === undefined ? partitionTableFor(state, 1) : tableForPool(state, info);
}

const utf8 = new TextEncoder();
const bytesOf = (oid: Uint8Array | string): Uint8Array => (typeof oid === 'string' ? utf8.encode(oid) : oid);

/** Options of a fake cluster. */
export interface FakeClusterOptions {
  /** @default 1024 */
  partitionCount?: number;
}

/** The state as a real node shows it to a client: without the pool counter (it would tell the pool count). */
function clientView(state: ClusterState): ClusterState {
  const shown = { ...state };
  delete shown.nextPoolId;
  return shown;
}

/** Creates an empty fake cluster (version 1, no members); nodes join it when they start. */
export function createFakeCluster(options: FakeClusterOptions = {}): FakeCluster {
  const nodes = new Map<string, ClusterNode>();
  let state = ClusterState.parse({
    version: 1,
    term: 1,
    members: [],
    pools: [],
    nextPoolId: 1,
    partitionCount: options.partitionCount ?? 1024,
  });
  const cluster: InternalCluster = {
    get state() {
      return state;
    },
    leaderId: null,
    pushes: true,
    commit(change) {
      const draft: ClusterState = {
        ...state,
        members: state.members.map((m) => ({ ...m })),
        pools: state.pools.map((p) => ({ ...p })),
      };
      change?.(draft);
      draft.version = state.version + 1;
      draft.members.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      state = ClusterState.parse(draft);
      for (const node of nodes.values()) node.onCommit(state);
      return state;
    },
    removeMember(id) {
      return cluster.commit((draft) => {
        draft.members = draft.members.filter((m) => m.id !== id);
      });
    },
    primaryOf(pool, oid, index) {
      return cluster.ownersOf(pool, oid, index)[0];
    },
    ownersOf(pool, oid, index) {
      const partition = partitionOf(pool, bytesOf(oid), index, state.partitionCount);
      return tableOf(state, pool)
        .owners(partition)
        .map((m) => m.id);
    },
    join(node) {
      const { member } = node;
      nodes.set(memberKey(member), node);
      cluster.leaderId ??= member.id;
      cluster.commit((draft) => {
        draft.members = draft.members.filter((m) => m.id !== member.id);
        draft.members.push(member);
      });
    },
    replicate(from, change) {
      const info = state.pools.find((p) => p.id === change.pool);
      if (info?.kind !== 'persistent') return;
      const partition = partitionOf(change.pool, change.oid, change.index, state.partitionCount);
      for (const target of replicaTargets(state, info.replication, partition)) {
        if (!sameMember(target, from)) nodes.get(memberKey(target))?.applyReplica(change);
      }
    },
  };
  return cluster;
}

/** Hooks that change how the fake answers; each falls back to the default behaviour when it returns undefined. */
export interface FakeNodeOptions {
  /** Also the node's member id. @default 'fake-node' */
  nodeId?: string;
  /** The cluster the node joins when it starts. @default a cluster of its own, with this node its one member */
  cluster?: FakeCluster;
  /** @default 1 */
  incarnation?: number;
  /** @default 64 MiB */
  capacityBytes?: number;
  /**
   * A frame limit advertised in the welcome and enforced as a real node does: a larger frame is answered
   * FRAME_TOO_LARGE and closes the connection, a reply that would exceed it becomes an error reply.
   * @default none advertised (16 MiB enforced)
   */
  maxFrameBytes?: number;
  /** Answers the hello. An error reply also closes the socket, as a real node does. */
  onHello?: (hello: Hello) => NodeFrame | undefined;
  /** Answers a whole frame after the handshake, batch frames included. */
  onFrame?: (frame: ClientFrame) => NodeFrame | undefined;
  /** Answers one page op, inside a batch or alone, before any serving check. */
  onPageOp?: (op: PageOp) => PageReply | undefined;
  /**
   * Cuts the replies of a batch into parts, sent as one frame each, every part but the last with `more: true`
   * (as a node answers finished ops before slow ones). Each reply must be in exactly one part, unless a test
   * means to break that rule. @default one part
   */
  replyParts?: (replies: PageReply[], batch: Batch) => PageReply[][];
  /**
   * Answer pings with pongs, as every ws server does. false: the sockets stay open and silent to pings, as a
   * node behind a firewall that drops its packets looks to the client. @default true
   */
  autoPong?: boolean;
}

/** One stored page and the checksum it was put with. */
interface StoredPage {
  page: Uint8Array<ArrayBuffer>;
  sum: number | undefined;
}

/**
 * An in-process memory node that speaks the wire protocol with an in-memory page map, records every frame
 * it receives, and can hold replies back, drop connections or send raw bytes: enough to drive the client
 * through batching, backpressure, timeouts and failures without a real node.
 *
 * As a cluster member it follows the serving rule of a real node: it answers getState (subscribing the
 * socket to pushes when asked), answers STALE_STATE (details.version) to batch ops whose `sv` differs from
 * the cluster's version, and NOT_SERVING to puts, gets and page flushes of partitions it is not the primary
 * of by the pool's table (tableForPool: ready members only for persistent pools), except gets marked
 * `replica` of partitions it owns in another place (flushObject is served by every member, each flushing what
 * it holds). It keeps each page's `sum` and returns it with every hit, and, as the primary of a persistent
 * page, copies each put and page flush to the page's other owners at once (replicaTargets).
 */
export interface FakeNode {
  readonly url: string;
  readonly nodeId: string;
  /** The cluster it is a member of. */
  readonly cluster: FakeCluster;
  /** Its member entry. */
  readonly member: MemberInfo;
  /** Every frame received, handshakes included, in arrival order across connections. */
  readonly received: readonly ReceivedFrame[];
  /** Open sockets. */
  readonly sockets: ReadonlySet<WebSocket>;
  /** Connections accepted so far. */
  readonly connections: number;
  /** Sockets subscribed to state pushes. */
  readonly subscribers: number;
  /** While true, replies are kept back until releaseHeld(). State replies and pushes are never held. */
  hold: boolean;
  /** While true, every page op is answered NOT_SERVING, as by a node whose lease lapsed. */
  notServing: boolean;
  /**
   * While true, a batch answered in several parts (replyParts) sends its first part at once and keeps the
   * later parts back until releaseHeld().
   */
  holdLaterParts: boolean;
  /** Replies kept back. */
  readonly held: number;
  /** Most frames any one connection had unanswered at once (held replies count as unanswered). */
  readonly maxOutstanding: number;
  /** How many page ops it answered STALE_STATE and NOT_SERVING. */
  readonly refusals: { readonly stale: number; readonly notServing: number };
  /** Frames it refused for exceeding maxFrameBytes, and replies it could not send within it. */
  readonly oversized: { readonly frames: number; readonly replies: number };
  /** Sends every held reply, in order. */
  releaseHeld(): void;
  /** The batch frames received, in order. */
  batches(): Batch[];
  /** The page the node holds at a handle, if any. */
  page(pool: number, oid: Uint8Array | string, index: number): Uint8Array | undefined;
  /** The checksum the node keeps with the page at a handle; undefined when there is none (or no page). */
  sum(pool: number, oid: Uint8Array | string, index: number): number | undefined;
  /**
   * Flips the bits of the first byte of the page at a handle and keeps its checksum: a copy corrupted in the
   * node's memory. Returns false when there is no page there.
   */
  corrupt(pool: number, oid: Uint8Array | string, index: number): boolean;
  /** Pages the node holds, over all pools. */
  pageCount(): number;
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
  /** Cuts every connection and stops listening (the node dies; it stays in the cluster state); idempotent. */
  close(): Promise<void>;
}

type Objects = Map<string, Map<number, StoredPage>>;

function zeroStats(nodeId: string): NodeStats {
  return { nodeId, scope: 'node', ...zeroStoreCounters() };
}

/** Starts a fake node on 127.0.0.1, port 0, and makes it a member of its cluster. */
export async function startFakeNode(options: FakeNodeOptions = {}): Promise<FakeNode> {
  const nodeId = options.nodeId ?? 'fake-node';
  const cluster = (options.cluster ?? createFakeCluster()) as InternalCluster;
  const codec = createCodec(
    options.maxFrameBytes === undefined ? {} : { maxFrameBytes: options.maxFrameBytes },
  );
  const server = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    perMessageDeflate: false,
    autoPong: options.autoPong ?? true,
  });
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const url = `ws://127.0.0.1:${port}`;
  const member: MemberInfo = {
    id: nodeId,
    url,
    incarnation: options.incarnation ?? 1,
    capacityBytes: options.capacityBytes ?? 64 * 1024 * 1024,
  };

  const received: ReceivedFrame[] = [];
  const sockets = new Set<WebSocket>();
  const subscribed = new Set<WebSocket>();
  const identities = new Map<WebSocket, string>();
  const outstanding = new Map<WebSocket, number>();
  const heldReplies: Array<{ socket: WebSocket; frame: NodeFrame }> = [];
  /** Pages this node holds, by pool id. */
  const pages = new Map<number, Objects>();
  const refusals = { stale: 0, notServing: 0 };
  const oversized = { frames: 0, replies: 0 };
  let connections = 0;
  let maxOutstanding = 0;
  let closed: Promise<void> | undefined;

  function error(id: number, code: string, message = code, details?: Record<string, unknown>) {
    const reply: NodeFrame & PageReply = { t: 'error', id, code, message };
    if (details !== undefined) reply.details = details;
    return reply;
  }

  function poolInfo(id: number) {
    return cluster.state.pools.find((p) => p.id === id);
  }

  /** The serving rule: lease (notServing), then version, then ownership by the pool's table. */
  function refusal(op: PageOp, sv: number | undefined): PageReply | undefined {
    if (fake.notServing) {
      refusals.notServing++;
      return error(op.id, ErrorCode.NotServing, 'no lease');
    }
    const { state } = cluster;
    if (sv !== undefined && sv !== state.version) {
      refusals.stale++;
      return error(op.id, ErrorCode.StaleState, 'routed by another version', { version: state.version });
    }
    if (op.t !== 'flushObject') {
      const partition = partitionOf(op.pool, op.oid, op.index, state.partitionCount);
      const table = tableOf(state, op.pool);
      const serves =
        op.t === 'get' && op.replica === true
          ? table.owners(partition).some((owner) => sameMember(owner, member))
          : sameMember(table.primary(partition), member);
      if (!serves) {
        refusals.notServing++;
        return error(op.id, ErrorCode.NotServing, 'not the primary');
      }
    }
    return undefined;
  }

  function objectsOf(pool: number): Objects {
    let objects = pages.get(pool);
    if (objects === undefined) {
      objects = new Map();
      pages.set(pool, objects);
    }
    return objects;
  }

  /** Stores or removes one page: a put or page flush served here or copied here by its primary. */
  function apply(change: ReplicaChange): void {
    const objects = objectsOf(change.pool);
    const key = oidKey(change.oid);
    if (change.t === 'flushPage') {
      objects.get(key)?.delete(change.index);
      return;
    }
    const object = objects.get(key) ?? new Map<number, StoredPage>();
    // Copied: the decoded page is a view into the received frame.
    object.set(change.index, { page: new Uint8Array(change.page), sum: change.sum });
    objects.set(key, object);
  }

  function stored(pool: number, oid: Uint8Array | string, index: number): StoredPage | undefined {
    return pages
      .get(pool)
      ?.get(oidKey(bytesOf(oid)))
      ?.get(index);
  }

  function answerPageOp(op: PageOp, sv: number | undefined): PageReply {
    const custom = options.onPageOp?.(op) ?? refusal(op, sv);
    if (custom !== undefined) return custom;
    if (poolInfo(op.pool) === undefined) return error(op.id, ErrorCode.UnknownPool);
    switch (op.t) {
      case 'put':
        apply(op);
        cluster.replicate(member, op);
        return { t: 'accepted', id: op.id };
      case 'get': {
        const copy = stored(op.pool, op.oid, op.index);
        if (copy === undefined) return { t: 'miss', id: op.id };
        return copy.sum === undefined
          ? { t: 'hit', id: op.id, page: copy.page }
          : { t: 'hit', id: op.id, page: copy.page, sum: copy.sum };
      }
      case 'flushPage':
        apply(op);
        cluster.replicate(member, op);
        return { t: 'ok', id: op.id };
      case 'flushObject':
        objectsOf(op.pool).delete(oidKey(op.oid));
        return { t: 'ok', id: op.id };
    }
  }

  function answer(frame: ClientFrame, socket: WebSocket): NodeFrame {
    const custom = options.onFrame?.(frame);
    if (custom !== undefined) return custom;
    switch (frame.t) {
      case 'hello':
        return error(frame.id, ErrorCode.InvalidFrame, 'handshake already done');
      case 'newPool': {
        // Committed before the reply, as a real node answers only after the commit.
        // Unordered ids, as a real node gives (an odd multiplier is a bijection of u32 that never gives 0), so no
        // client test can pass by reading an order into them.
        const counter = cluster.state.nextPoolId ?? 1;
        const pool = Math.imul(counter, 0x9e3779b1) >>> 0;
        cluster.commit((draft) => {
          draft.pools.push({
            id: pool,
            kind: frame.kind,
            pageSize: frame.pageSize,
            owner: identities.get(socket) ?? 'unknown',
            replication: frame.kind === 'ephemeral' ? 1 : (frame.replication ?? 1),
            ...(frame.compression === undefined ? {} : { compression: frame.compression }),
          });
          draft.nextPoolId = counter + 1;
        });
        return {
          t: 'pool',
          id: frame.id,
          pool,
          kind: frame.kind,
          pageSize: frame.pageSize,
          version: cluster.state.version,
          ...(frame.compression === undefined ? {} : { compression: frame.compression }),
        };
      }
      case 'destroyPool':
        if (poolInfo(frame.pool) === undefined) return error(frame.id, ErrorCode.UnknownPool);
        cluster.commit((draft) => {
          draft.pools = draft.pools.filter((p) => p.id !== frame.pool);
        });
        return { t: 'ok', id: frame.id };
      case 'endSession':
        // The fake node keeps no sessions: a close's end of its session is answered like a real node's.
        return { t: 'ok', id: frame.id };
      case 'stats':
        return { t: 'stats', id: frame.id, stats: zeroStats(nodeId) };
      case 'batch':
        return { t: 'batch', id: frame.id, replies: frame.ops.map((op) => answerPageOp(op, frame.sv)) };
      case 'getState':
        if (frame.subscribe) subscribed.add(socket);
        return { t: 'state', id: frame.id, state: clientView(cluster.state), leaderId: cluster.leaderId };
      case 'peer':
      case 'peerAuth':
      case 'propose':
      case 'replicate':
      case 'fetch':
      case 'peerGet':
      case 'handOff':
      case 'sessionsQuery':
        return error(frame.id, ErrorCode.InvalidFrame, `${frame.t} is not served by the fake node`);
      default:
        return answerPageOp(frame, undefined);
    }
  }

  /** Encodes a reply; one over the frame limit becomes an error reply, as on a real node. */
  function encodeReply(frame: NodeFrame): Uint8Array {
    try {
      return codec.encode(frame);
    } catch (cause) {
      oversized.replies++;
      return codec.encode(error(frame.id, ErrorCode.FrameTooLarge, String(cause)));
    }
  }

  function reply(socket: WebSocket, frame: NodeFrame): void {
    // A frame stays outstanding until its last part.
    if (!(frame.t === 'batch' && frame.more === true)) {
      outstanding.set(socket, (outstanding.get(socket) ?? 1) - 1);
    }
    if (socket.readyState === socket.OPEN) socket.send(encodeReply(frame));
  }

  /** The frames that answer `frame`: its reply, or the parts replyParts cuts a batch reply into. */
  function partsOf(frame: ClientFrame, answer: NodeFrame): NodeFrame[] {
    if (frame.t !== 'batch' || answer.t !== 'batch' || options.replyParts === undefined) return [answer];
    const parts = options.replyParts(answer.replies, frame);
    return parts.map((replies, i) =>
      i < parts.length - 1
        ? { t: 'batch', id: answer.id, replies, more: true }
        : { t: 'batch', id: answer.id, replies },
    );
  }

  server.on('connection', (socket: WebSocket, request: IncomingMessage) => {
    const { remoteAddress } = request.socket;
    connections++;
    sockets.add(socket);
    outstanding.set(socket, 0);
    let greeted = false;
    socket.on('close', () => {
      sockets.delete(socket);
      subscribed.delete(socket);
      outstanding.delete(socket);
    });
    socket.on('error', () => undefined);
    socket.on('message', (data: Buffer) => {
      if (data.length > codec.maxFrameBytes) {
        oversized.frames++;
        socket.send(codec.encode(error(codec.peekRequestId(data), ErrorCode.FrameTooLarge)));
        socket.close(1002);
        return;
      }
      // A frame the client under test cannot encode properly is a bug: let it throw out of the test.
      const frame = codec.decodeClientFrame(data);
      received.push({ frame, bytes: data.length, socket, remoteAddress });
      if (!greeted) {
        greeted = true;
        if (frame.t !== 'hello') throw new Error(`client sent ${frame.t} before hello`);
        identities.set(socket, frame.identity);
        const welcome: NodeFrame = options.onHello?.(frame) ?? {
          t: 'welcome',
          id: frame.id,
          protocol: PROTOCOL_VERSION,
          nodeId,
          ...(options.maxFrameBytes === undefined ? {} : { maxFrameBytes: options.maxFrameBytes }),
        };
        socket.send(codec.encode(welcome));
        if (welcome.t === 'error') socket.close(1002);
        return;
      }
      const frameReply = answer(frame, socket);
      // State replies are the sync's business, a session's end the close's: never held, not counted as ops.
      if (frame.t === 'getState' || frame.t === 'endSession') {
        socket.send(encodeReply(frameReply));
        return;
      }
      const count = (outstanding.get(socket) ?? 0) + 1;
      outstanding.set(socket, count);
      maxOutstanding = Math.max(maxOutstanding, count);
      partsOf(frame, frameReply).forEach((part, i) => {
        if (fake.hold || (i > 0 && fake.holdLaterParts)) heldReplies.push({ socket, frame: part });
        else reply(socket, part);
      });
    });
  });

  const fake: FakeNode = {
    url,
    nodeId,
    cluster,
    member,
    received,
    sockets,
    get connections() {
      return connections;
    },
    get subscribers() {
      return subscribed.size;
    },
    hold: false,
    holdLaterParts: false,
    notServing: false,
    get held() {
      return heldReplies.length;
    },
    get maxOutstanding() {
      return maxOutstanding;
    },
    refusals,
    oversized,
    releaseHeld() {
      for (const { socket, frame } of heldReplies.splice(0)) reply(socket, frame);
    },
    batches() {
      return received.flatMap(({ frame }) => (frame.t === 'batch' ? [frame] : []));
    },
    page(pool, oid, index) {
      return stored(pool, oid, index)?.page;
    },
    sum(pool, oid, index) {
      return stored(pool, oid, index)?.sum;
    },
    corrupt(pool, oid, index) {
      const copy = stored(pool, oid, index);
      if (copy === undefined || copy.page.length === 0) return false;
      copy.page[0] = (copy.page[0] as number) ^ 0xff;
      return true;
    },
    pageCount() {
      let count = 0;
      for (const objects of pages.values()) for (const object of objects.values()) count += object.size;
      return count;
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

  cluster.join({
    member,
    onCommit(state) {
      // A destroyed pool's pages go from every node.
      for (const id of pages.keys()) if (!state.pools.some((p) => p.id === id)) pages.delete(id);
      if (!cluster.pushes || closed !== undefined) return;
      const push = codec.encode({ t: 'state', id: 0, state: clientView(state), leaderId: cluster.leaderId });
      for (const socket of subscribed) if (socket.readyState === socket.OPEN) socket.send(push);
    },
    applyReplica(change) {
      // A dead node receives nothing.
      if (closed === undefined) apply(change);
    },
  });
  return fake;
}

/** A cluster of fake nodes sharing one state, with ids n1, n2, ... */
export async function startFakeCluster(
  count: number,
  options: FakeClusterOptions & Omit<FakeNodeOptions, 'nodeId' | 'cluster'> = {},
): Promise<{ cluster: FakeCluster; nodes: FakeNode[] }> {
  const cluster = createFakeCluster(options);
  const nodes: FakeNode[] = [];
  for (let i = 1; i <= count; i++) nodes.push(await startFakeNode({ ...options, nodeId: `n${i}`, cluster }));
  return { cluster, nodes };
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
