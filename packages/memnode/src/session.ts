import type { Socket } from 'node:net';
import type { WebSocket, RawData } from 'ws';
import {
  ClusterChangedError,
  ErrorCode,
  PROTOCOL_VERSION,
  ProtocolError,
  TmemError,
  createFrameBuffers,
  errorToWire,
  type ClientFrame,
  type Codec,
  type Hello,
  type NodeFrame,
} from '@tmem/protocol';
import { answerPeerHello, verifyPeerAuth, type PeerChallenge } from './peer-handshake.ts';
import type { Logger } from './logger.ts';
import type { OpMetrics } from './op-metrics.ts';
import { handleFrame, handlePageOp, visibleState, type RequestContext } from './request-handler.ts';
import { mayJoinSharedPool, type SharedPoolAccess } from './shared-pool-access.ts';
import { createBatchReplies, type BatchReplies } from './batch-replies.ts';
import { createPageArena } from './page-arena.ts';
import type { PageStore } from './page-store.ts';
import type { ClusterMember } from './cluster/cluster-member.ts';
import { createReplyFlow } from './reply-flow.ts';
import { checkBatchReplyBound } from './batch-reply-bound.ts';
import { authenticateClient, type ClientTokens } from './client-auth.ts';
import { LimitCloseCode, type ConnectionRegistry, type TrackedConnection } from './connection-limits.ts';
import type { SessionLiveness } from './session-liveness.ts';

/** WebSocket close codes the node uses, from RFC 6455. */
export const CloseCode = {
  /** The node is shutting down. */
  GoingAway: 1001,
  /** The peer broke the protocol: garbage bytes, a text frame, a wrong version. */
  ProtocolViolation: 1002,
  /** An op before the handshake. */
  PolicyViolation: 1008,
} as const;

/** What a session shares with its node. */
export interface SessionDeps {
  nodeId: string;
  codec: Codec;
  store: PageStore;
  cluster: ClusterMember;
  logger: Logger;
  defaultReplication: number;
  /** When set, a connection may act as a peer only once it proved this secret (peer-handshake.ts). */
  clusterSecret: string | undefined;
  /** Without a secret, admit any connection that says it is a peer. */
  insecurePeers: boolean;
  /** True once the node is shutting down: new requests are answered SHUTTING_DOWN. */
  isClosing(): boolean;
  /** Answer batches in parts as their ops finish (see MemnodeOptions.batchReplyParts). */
  batchReplyParts: boolean;
  /** The node's connection count and limits. */
  connections: ConnectionRegistry;
  /** Client tokens; undefined is open mode, where a client is whoever it says it is. */
  clientTokens: ClientTokens | undefined;
  /** Client identities whose `stats` are node-global (MemnodeOptions.adminIdentities). */
  adminIdentities: ReadonlySet<string>;
  /** Who may join which shared pool (MemnodeOptions.sharedPools); undefined: see mayJoinSharedPool. */
  sharedPoolAccess: SharedPoolAccess | undefined;
  /** The node's op counters, shared by all its sessions. */
  metrics: OpMetrics;
  /** Sockets whose session is a peer's: a graceful leave drains client sessions only (peers redial seeds). */
  peerSockets: WeakSet<WebSocket>;
  /** The node's connected client sessions (hello.session): a session is live while one of its clients is here. */
  sessions: SessionLiveness;
}

/** ws keeps its per-socket payload limit on the receiver; not typed API, so reached through a guard. */
function receiverOf(socket: WebSocket): { _maxPayload: number } | undefined {
  const receiver = (socket as unknown as { _receiver?: { _maxPayload?: unknown } })._receiver;
  return typeof receiver?._maxPayload === 'number' ? (receiver as { _maxPayload: number }) : undefined;
}

/** The first frame must be a hello of this protocol version; throws HANDSHAKE_REQUIRED or VERSION_MISMATCH. */
function checkHello(frame: ClientFrame): Hello {
  if (frame.t !== 'hello') {
    throw new TmemError(ErrorCode.HandshakeRequired, 'send hello before any other frame');
  }
  if (frame.protocol !== PROTOCOL_VERSION) {
    throw new ProtocolError(
      ErrorCode.VersionMismatch,
      `node speaks protocol ${PROTOCOL_VERSION}, client sent ${frame.protocol}; upgrade the older side`,
      { details: { nodeProtocol: PROTOCOL_VERSION, clientProtocol: frame.protocol } },
    );
  }
  return frame;
}

/** At most one refused-peer warning per this interval, per process (see warnRefusedPeer). */
const REFUSED_PEER_WARNING_INTERVAL_MS = 10_000;

const BINARY = { binary: true } as const;

/**
 * Scratch memory for the pages of replies encoded as soon as they are built (page-arena.ts), shared by every
 * session of the process: each use takes pages, encodes their reply and resets, all in one synchronous run.
 */
const replyPages = createPageArena();

/** Buffers of encoded replies, back for reuse once their socket wrote them (protocol's frame-buffers.ts). */
const replyFrames = createFrameBuffers();
let lastRefusedPeerWarningMs = -Infinity;

/**
 * Said here too, not only to the refused node: when the joiner has the secret and the seed has none, the join
 * commits but the seed's links to the joiner end here, and the joiner never serves. A refused peer redials
 * every few hundred ms: one warning per interval (per process) says it without flooding the log.
 */
function warnRefusedPeer(log: Logger, frame: ClientFrame, challenge: PeerChallenge | undefined): void {
  if (Date.now() - lastRefusedPeerWarningMs < REFUSED_PEER_WARNING_INTERVAL_MS) return;
  lastRefusedPeerWarningMs = Date.now();
  log.warn(
    { peer: challenge?.identity ?? (frame.t === 'hello' ? frame.identity : undefined) },
    'refused a peer that did not prove this cluster secret; every node needs the same TMEM_CLUSTER_SECRET',
  );
}

function isPeerHello(frame: ClientFrame): boolean {
  return frame.t === 'hello' && frame.role === 'peer';
}

/** Frame errors after which the byte stream cannot be trusted, so the connection is closed. */
const FATAL_FRAME_ERRORS = new Set<string>([
  ErrorCode.MalformedFrame,
  ErrorCode.TruncatedFrame,
  ErrorCode.FrameTooLarge,
]);

/**
 * Serves one client connection: the handshake first, then a reply per request frame (a batch may be answered
 * in parts, see batch-replies.ts). Nothing a peer sends can throw out of here; a bad frame gets an error
 * reply, and garbage also closes the connection.
 */
export function serveSession(socket: WebSocket, deps: SessionDeps): void {
  const { connections } = deps;
  const { limits } = connections;
  const tracked: TrackedConnection = {
    active: true,
    closeIdle: () => socket.close(LimitCloseCode.Idle, 'idle'),
  };
  if (!connections.admit(tracked)) {
    socket.close(LimitCloseCode.TryAgainLater, `${ErrorCode.LimitExceeded}: node has too many connections`);
    return;
  }
  /** Set by the handshake: who is on the other end. One per connection, reused by every frame after it. */
  let ctx: RequestContext | undefined;
  /** The decode budget: the client's until a peer has authenticated. */
  let budget = deps.codec.clientBudget;
  const handshakeTimer = setTimeout(
    () => socket.close(CloseCode.PolicyViolation, 'no hello within the handshake timeout'),
    limits.handshakeTimeoutMs,
  );
  // Until the hello, a frame of more than a few KiB is an attack, not a client: ws drops it unread (1009).
  const receiver = receiverOf(socket);
  const maxPayload = receiver?._maxPayload;
  if (receiver !== undefined) receiver._maxPayload = limits.maxHelloBytes;
  /** Set with ctx: this connection's batch answers. */
  let batches: BatchReplies | undefined;
  let unsubscribe: (() => void) | undefined;
  /** Set by a client hello with a session: marks the session disconnected here when the socket closes. */
  let releaseSession: (() => void) | undefined;
  const log = deps.logger.child({ component: 'session' });
  // The TCP socket under ws (not part of ws's typed API, hence the guard). Replies are written synchronously
  // now, each as its own writev; corking until the microtask checkpoint after the current read puts every
  // reply to the frames of one read into one syscall.
  const tcp = (socket as unknown as { _socket?: Socket })._socket;
  let corked = false;
  const uncork = (): void => {
    corked = false;
    tcp?.uncork();
  };

  function send(frame: NodeFrame): void {
    if (socket.readyState !== socket.OPEN) return;
    if (!corked && tcp !== undefined) {
      corked = true;
      tcp.cork();
      queueMicrotask(uncork);
    }
    let bytes: Uint8Array;
    try {
      bytes = deps.codec.encode(frame, replyFrames);
    } catch (error) {
      // A reply over the frame limit (a batch of large hits): answer with the error instead of crashing.
      log.error({ err: error, t: frame.t }, 'reply could not be encoded');
      bytes = deps.codec.encode({ t: 'error', id: frame.id, ...errorToWire(error) });
    }
    // The callback runs once the socket wrote the frame, or failed to: either way ws is done with the bytes.
    if (replyFrames.owns(bytes)) socket.send(bytes, BINARY, () => replyFrames.release(bytes));
    else socket.send(bytes, BINARY);
  }

  function sendOpReply(reply: NodeFrame): void {
    send(reply);
    flow.answered(1);
  }

  function sendError(id: number, error: unknown): void {
    send({ t: 'error', id, ...errorToWire(error) });
  }

  function onMessage(data: RawData, isBinary: boolean): void {
    tracked.active = true;
    if (!isBinary || !(data instanceof Buffer)) {
      sendError(0, new ProtocolError(ErrorCode.MalformedFrame, 'frames must be binary msgpack messages'));
      socket.close(CloseCode.ProtocolViolation, 'binary frames only');
      return;
    }
    flow.offer(data);
  }

  /** When the batch being answered arrived: its ops' latency is counted from it. */
  let batchStartMs = 0;
  /** Set while a peer that said hello owes us its proof of the cluster secret. */
  let peerChallenge: PeerChallenge | undefined;

  /** Frames before the session starts: the hello, and a peer's proof after it. Any failure closes. */
  function handshake(frame: ClientFrame): void {
    try {
      if (peerChallenge !== undefined) {
        verifyPeerAuth(frame, peerChallenge, deps);
        startSession(peerChallenge.identity, true, peerChallenge.url);
        return;
      }
      const hello = checkHello(frame);
      const ownCluster = deps.cluster.clusterId();
      const welcome: NodeFrame = {
        t: 'welcome',
        id: hello.id,
        protocol: PROTOCOL_VERSION,
        nodeId: deps.nodeId,
        maxFrameBytes: deps.codec.maxFrameBytes,
        ...(ownCluster === undefined ? {} : { clusterId: ownCluster }),
      };
      if (hello.role === 'peer') {
        if (hello.clusterId !== undefined && ownCluster !== undefined && hello.clusterId !== ownCluster) {
          // A node of another cluster (this one was restarted as a new cluster, or that one was): states and
          // pages of the two must never mix, whatever their versions and pool ids say.
          log.warn(
            { peer: hello.identity, clusterId: hello.clusterId, served: ownCluster },
            'peer of another cluster refused',
          );
          throw new ClusterChangedError(
            `this node serves cluster ${ownCluster}, the peer cluster ${hello.clusterId}`,
            { details: { expected: hello.clusterId, actual: ownCluster } },
          );
        }
        const answer = answerPeerHello(hello, deps);
        if (answer.admit) startSession(hello.identity, true, hello.url);
        else peerChallenge = answer.challenge;
        send(answer.admit ? welcome : { ...welcome, ...answer.welcome });
        return;
      }
      if (deps.clientTokens !== undefined) authenticateClient(deps.clientTokens, hello.identity, hello.token);
      connections.claimIdentity(tracked, hello.identity);
      startSession(hello.identity, false, undefined, hello.session);
      if (hello.session !== undefined)
        releaseSession = deps.sessions.connected(hello.identity, hello.session);
      send(welcome);
    } catch (error) {
      const code = error instanceof TmemError ? error.code : ErrorCode.Internal;
      if (code === ErrorCode.Unauthorized && (peerChallenge !== undefined || isPeerHello(frame))) {
        warnRefusedPeer(log, frame, peerChallenge);
      }
      sendError(frame.id, error);
      socket.close(
        code === ErrorCode.VersionMismatch ? CloseCode.ProtocolViolation : CloseCode.PolicyViolation,
        code,
      );
    }
  }

  /** The handshake is done: who is on the other end, from now on. */
  function startSession(
    identity: string,
    isPeer: boolean,
    peerUrl: string | undefined,
    clientSession?: string,
  ): void {
    peerChallenge = undefined;
    clearTimeout(handshakeTimer);
    if (receiver !== undefined && maxPayload !== undefined) receiver._maxPayload = maxPayload;
    if (isPeer) {
      budget = deps.codec.peerBudget;
      deps.peerSockets.add(socket);
    }
    const served: RequestContext = {
      nodeId: deps.nodeId,
      identity,
      isPeer,
      // Open mode authenticates nobody: any client could name an admin identity, so scoping would hide nothing.
      statsScope:
        isPeer || deps.clientTokens === undefined || deps.adminIdentities.has(identity) ? 'node' : 'identity',
      store: deps.store,
      cluster: deps.cluster,
      defaultReplication: deps.defaultReplication,
      maxPoolsPerIdentity: limits.maxPoolsPerIdentity,
      maxPools: limits.maxPools,
      metrics: deps.metrics,
      session: clientSession,
      sessions: deps.sessions,
      mayJoinSharedPool: (uuid) =>
        mayJoinSharedPool(deps.sharedPoolAccess, deps.clientTokens === undefined, uuid, identity),
    };
    ctx = served;
    batches = createBatchReplies({
      parts: deps.batchReplyParts,
      run: (op, stateVersion, arena) => handlePageOp(served, op, stateVersion, batchStartMs, arena),
      arena: replyPages,
      send: (part) => {
        send(part);
        flow.answered(part.replies.length);
      },
    });
    if (isPeer && peerUrl !== undefined) deps.cluster.notePeerAddress(identity, peerUrl);
    log.debug({ identity, isPeer }, 'handshake');
  }

  function serveFrame(data: Buffer): void {
    if (ctx === undefined && data.length > limits.maxHelloBytes) {
      // Only without ws's receiver limit (its private field moved): the same rule, after the fact.
      socket.close(LimitCloseCode.TooBig, 'frame before hello exceeds maxHelloBytes');
      return;
    }
    let frame;
    try {
      frame = deps.codec.decodeClientFrame(data, budget);
    } catch (error) {
      const code = error instanceof TmemError ? error.code : ErrorCode.Internal;
      log.warn({ code, size: data.length }, 'bad frame');
      sendError(deps.codec.peekRequestId(data), error);
      if (FATAL_FRAME_ERRORS.has(code)) socket.close(CloseCode.ProtocolViolation, code);
      return;
    }
    if (ctx === undefined) {
      handshake(frame);
      return;
    }
    if (deps.isClosing() && frame.t !== 'peer' && frame.t !== 'propose') {
      sendError(frame.id, new TmemError(ErrorCode.ShuttingDown, 'node is shutting down; use another node'));
      return;
    }
    if (frame.t === 'getState' && frame.subscribe && unsubscribe === undefined) {
      const viewer = ctx;
      unsubscribe = deps.cluster.onCommitted((state, leaderId) =>
        send({ t: 'state', id: 0, state: visibleState(state, viewer.identity, viewer.isPeer), leaderId }),
      );
    }
    // Page ops, the hot path: no promise for what completes synchronously (every ephemeral op).
    switch (frame.t) {
      case 'batch':
        try {
          checkBatchReplyBound(frame, deps.store, deps.codec.maxFrameBytes);
        } catch (error) {
          sendError(frame.id, error);
          return;
        }
        flow.dispatched(frame.ops.length);
        batchStartMs = performance.now();
        (batches as BatchReplies).answer(frame);
        return;
      case 'put':
      case 'get':
      case 'flushPage':
      case 'flushObject': {
        flow.dispatched(1);
        const reply = handlePageOp(ctx, frame, undefined, undefined, replyPages);
        if (reply instanceof Promise) void reply.then(sendOpReply);
        else sendOpReply(reply);
        replyPages.reset();
        return;
      }
    }
    void handleFrame(ctx, frame).then((reply) => {
      if (reply !== undefined) send(reply);
    });
  }

  function guarded<A extends unknown[]>(serve: (...args: A) => void, ...args: A): void {
    try {
      serve(...args);
    } catch (error) {
      // Only a bug gets here; the node must stay up for everyone else.
      log.error({ err: error }, 'unexpected error serving a frame');
      socket.close(CloseCode.ProtocolViolation, ErrorCode.Internal);
    }
  }

  const flow = createReplyFlow({
    socket,
    tcp,
    maxBufferedReplyBytes: limits.maxBufferedReplyBytes,
    serve: (data) => guarded(serveFrame, data),
    onPause: (bufferedAmount) => log.debug({ bufferedAmount }, 'replies back up: reading paused'),
  });
  socket.on('message', (data, isBinary) => guarded(onMessage, data, isBinary));
  socket.on('ping', () => {
    tracked.active = true;
  });
  socket.on('error', (error) => log.debug({ err: error }, 'socket error'));
  socket.on('close', () => {
    clearTimeout(handshakeTimer);
    connections.release(tracked);
    flow.clear();
    unsubscribe?.();
    releaseSession?.();
  });
}
