import { timingSafeEqual } from 'node:crypto';
import type { Socket } from 'node:net';
import type { WebSocket, RawData } from 'ws';
import {
  ClusterChangedError,
  ErrorCode,
  PROTOCOL_VERSION,
  ProtocolError,
  TmemError,
  errorToWire,
  type Codec,
  type NodeFrame,
} from '@tmem/protocol';
import type { Logger } from './logger.ts';
import { handleFrame, handlePageOp, visibleState, type RequestContext } from './request-handler.ts';
import { createBatchReplies, type BatchReplies } from './batch-replies.ts';
import type { PageStore } from './page-store.ts';
import type { ClusterMember } from './cluster/cluster-member.ts';

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
  /** When set, a connection may act as a peer only if its hello carries this secret. */
  clusterSecret: string | undefined;
  /** True once the node is shutting down: new requests are answered SHUTTING_DOWN. */
  isClosing(): boolean;
  /** Answer batches in parts as their ops finish (see MemnodeOptions.batchReplyParts). */
  batchReplyParts: boolean;
}

/** Constant-time comparison of the configured secret with the one offered; no secret configured admits all. */
function secretMatches(expected: string | undefined, offered: string | undefined): boolean {
  if (expected === undefined) return true;
  if (offered === undefined) return false;
  const a = Buffer.from(expected);
  const b = Buffer.from(offered);
  return a.length === b.length && timingSafeEqual(a, b);
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
  /** Set by the handshake: who is on the other end. One per connection, reused by every frame after it. */
  let ctx: RequestContext | undefined;
  /** Set with ctx: this connection's batch answers. */
  let batches: BatchReplies | undefined;
  let unsubscribe: (() => void) | undefined;
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
      bytes = deps.codec.encode(frame);
    } catch (error) {
      // A reply over the frame limit (a batch of large hits): answer with the error instead of crashing.
      log.error({ err: error, t: frame.t }, 'reply could not be encoded');
      bytes = deps.codec.encode({ t: 'error', id: frame.id, ...errorToWire(error) });
    }
    socket.send(bytes, { binary: true });
  }

  function sendError(id: number, error: unknown): void {
    send({ t: 'error', id, ...errorToWire(error) });
  }

  function onMessage(data: RawData, isBinary: boolean): void {
    if (!isBinary || !(data instanceof Buffer)) {
      sendError(0, new ProtocolError(ErrorCode.MalformedFrame, 'frames must be binary msgpack messages'));
      socket.close(CloseCode.ProtocolViolation, 'binary frames only');
      return;
    }
    let frame;
    try {
      frame = deps.codec.decodeClientFrame(data);
    } catch (error) {
      const code = error instanceof TmemError ? error.code : ErrorCode.Internal;
      log.warn({ code, size: data.length }, 'bad frame');
      sendError(deps.codec.peekRequestId(data), error);
      if (FATAL_FRAME_ERRORS.has(code)) socket.close(CloseCode.ProtocolViolation, code);
      return;
    }
    if (ctx === undefined) {
      if (frame.t !== 'hello') {
        sendError(frame.id, new TmemError(ErrorCode.HandshakeRequired, 'send hello before any other frame'));
        socket.close(CloseCode.PolicyViolation, ErrorCode.HandshakeRequired);
        return;
      }
      if (frame.protocol !== PROTOCOL_VERSION) {
        sendError(
          frame.id,
          new ProtocolError(
            ErrorCode.VersionMismatch,
            `node speaks protocol ${PROTOCOL_VERSION}, client sent ${frame.protocol}; upgrade the older side`,
            { details: { nodeProtocol: PROTOCOL_VERSION, clientProtocol: frame.protocol } },
          ),
        );
        socket.close(CloseCode.ProtocolViolation, ErrorCode.VersionMismatch);
        return;
      }
      if (frame.role === 'peer' && !secretMatches(deps.clusterSecret, frame.secret)) {
        sendError(
          frame.id,
          new ProtocolError(ErrorCode.Unauthorized, 'peer handshake without the cluster secret'),
        );
        socket.close(CloseCode.PolicyViolation, ErrorCode.Unauthorized);
        return;
      }
      const ownCluster = deps.cluster.clusterId();
      if (
        frame.role === 'peer' &&
        frame.clusterId !== undefined &&
        ownCluster !== undefined &&
        frame.clusterId !== ownCluster
      ) {
        // A node of another cluster (this one was restarted as a new cluster, or that one was): states and
        // pages of the two must never mix, whatever their versions and pool ids say.
        log.warn(
          { peer: frame.identity, clusterId: frame.clusterId, served: ownCluster },
          'peer of another cluster refused',
        );
        sendError(
          frame.id,
          new ClusterChangedError(
            `this node serves cluster ${ownCluster}, the peer cluster ${frame.clusterId}`,
            { details: { expected: frame.clusterId, actual: ownCluster } },
          ),
        );
        socket.close(CloseCode.PolicyViolation, ErrorCode.ClusterChanged);
        return;
      }
      const isPeer = frame.role === 'peer';
      ctx = {
        nodeId: deps.nodeId,
        identity: frame.identity,
        isPeer,
        store: deps.store,
        cluster: deps.cluster,
        defaultReplication: deps.defaultReplication,
      };
      const served = ctx;
      batches = createBatchReplies({
        parts: deps.batchReplyParts,
        run: (op, stateVersion) => handlePageOp(served, op, stateVersion),
        send,
      });
      if (isPeer && frame.url !== undefined) deps.cluster.notePeerAddress(frame.identity, frame.url);
      log.debug({ identity: frame.identity, isPeer }, 'handshake');
      send({
        t: 'welcome',
        id: frame.id,
        protocol: PROTOCOL_VERSION,
        nodeId: deps.nodeId,
        maxFrameBytes: deps.codec.maxFrameBytes,
        ...(ownCluster === undefined ? {} : { clusterId: ownCluster }),
      });
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
        (batches as BatchReplies).answer(frame);
        return;
      case 'put':
      case 'get':
      case 'flushPage':
      case 'flushObject': {
        const reply = handlePageOp(ctx, frame, undefined);
        if (reply instanceof Promise) void reply.then(send);
        else send(reply);
        return;
      }
    }
    void handleFrame(ctx, frame).then((reply) => {
      if (reply !== undefined) send(reply);
    });
  }

  socket.on('message', (data, isBinary) => {
    try {
      onMessage(data, isBinary);
    } catch (error) {
      // Only a bug gets here; the node must stay up for everyone else.
      log.error({ err: error }, 'unexpected error serving a frame');
      socket.close(CloseCode.ProtocolViolation, ErrorCode.Internal);
    }
  });
  socket.on('error', (error) => log.debug({ err: error }, 'socket error'));
  socket.on('close', () => unsubscribe?.());
}
