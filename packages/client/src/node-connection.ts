import { WebSocket, type RawData } from 'ws';
import {
  ConnectionLostError,
  ErrorCode,
  PROTOCOL_VERSION,
  ProtocolError,
  TimeoutError,
  TmemError,
  certificateRejection,
  createFrameBuffers,
  errorFromWire,
  watchLiveness,
  type ClientFrame,
  type BatchReply,
  type Codec,
  type NodeFrame,
  type PageOp,
  type StateReply,
} from '@tmem/protocol';
import { batchBytesFor, createOpQueue, type BatchLimits } from './batcher.ts';
import { asPromiseError, connectionOp, type ConnectionOp, type RequestOptions } from './connection-op.ts';
import { now } from './deadline.ts';
// Re-exported: callers of enqueue() build request objects of this shape.
export type { ConnectionOp, RequestOptions } from './connection-op.ts';
import { createDeadlineSweep } from './deadline-sweep.ts';
import type { Logger } from './options.ts';
import type { ResolvedTls } from './tls-options.ts';
import { createRequestIds } from './request-ids.ts';
import { isExpectedReply, type ReplyTo, type Request } from './requests.ts';

/**
 * Buffers of encoded request frames, shared by the process's connections and back for reuse once ws is done
 * with them: a client putting 32-page batches otherwise allocates a fresh 128 KiB buffer per frame, which V8
 * answers with full collections (protocol's frame-buffers.ts).
 */
const sendFrames = createFrameBuffers();

/** WebSocket close codes the client sends, from RFC 6455. */
const CloseCode = { Normal: 1000, ProtocolViolation: 1002 } as const;

/** How long a closing socket may wait for the node's close frame before it is torn down, in milliseconds. */
const CLOSE_GRACE_MS = 1000;

/** What one connection needs; the client passes its resolved options. */
export interface NodeConnectionOptions {
  /** ws:// URL of the node. */
  url: string;
  /** Identity sent in the handshake. */
  identity: string;
  /** Token proving it, for nodes that authenticate clients. */
  token?: string | undefined;
  /** The client session sent in the handshake: the pools created over this connection belong to it. */
  session?: string | undefined;
  codec: Codec;
  logger: Logger;
  /** Time to open the socket and complete the handshake, in milliseconds. */
  connectTimeoutMs: number;
  /** How often the node is pinged once the socket is open, in milliseconds. @default 1000 */
  pingIntervalMs?: number;
  /** How long a ping may go unanswered before the connection is closed as lost. @default 3000 */
  pongTimeoutMs?: number;
  /** The op budget deadlines were computed from; reported in TimeoutErrors. */
  timeoutMs: number;
  maxBatchOps: number;
  /** The client's bound of one batch; the connection cuts it further to the frame limit its node advertises. */
  maxBatchBytes: number;
  maxFramesInFlight: number;
  /** Local IP address to connect from; undefined lets the operating system choose. */
  localAddress?: string | undefined;
  /** How a wss:// node's certificate is verified. @default verified against Node's bundled root CAs */
  tls?: ResolvedTls | undefined;
  /** Aborting while the connection is being opened rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Called once when an open connection closes, with the error its pending ops were rejected with. */
  onClose?: (connection: NodeConnection, error: TmemError) => void;
  /** Called with every cluster state the node pushes (a `state` frame with id 0) after a getState subscribe. */
  onStatePush?: (connection: NodeConnection, frame: StateReply) => void;
}

/** One WebSocket to one node, past its handshake. */
export interface NodeConnection {
  readonly url: string;
  /** The node's id from its welcome. */
  readonly nodeId: string;
  /** The cluster the node serves, from its welcome; undefined before it or for a node that does not say. */
  readonly clusterId: string | undefined;
  /** False once the connection closed for any reason; a closed connection never reopens. */
  readonly isOpen: boolean;
  /**
   * The byte bound of one batch on this connection: maxBatchBytes, cut to the frame limit the node advertised
   * in its welcome less a margin (see batchBytesFor), so that neither a batch nor its reply exceeds it.
   */
  readonly maxBatchBytes: number;
  /**
   * Sends one request and resolves with its reply. Page ops issued in the same tick share batch frames.
   * Rejects with the node's typed error for an error reply, TimeoutError at the deadline, ConnectionLostError
   * when the connection closes first, ProtocolError when the node sends something undecodable.
   */
  request<R extends Request>(request: R, options: RequestOptions): Promise<ReplyTo<R>>;
  /**
   * Queues one op (see ConnectionOp) without a promise: page ops queued in the same tick share batch frames.
   * On a closed connection, or past its deadline, the op is rejected at once (not sent).
   */
  enqueue(op: ConnectionOp): void;
  /** Rejects every waiting op with `error` and closes the socket; resolves once it is closed. */
  close(error: TmemError): Promise<void>;
}

interface InFlightFrame {
  readonly id: number;
  readonly batch: boolean;
  readonly ops: readonly ConnectionOp[];
  /** Ops of a batch its reply parts have answered so far. */
  answered: number;
}

function asProtocolError(error: unknown, url: string): TmemError {
  if (error instanceof TmemError) return error;
  return new ProtocolError(ErrorCode.MalformedFrame, `node ${url} sent a frame that could not be decoded`, {
    cause: error,
  });
}

/**
 * A hint for a ws:// dial that a node cut before the upgrade: a node serving TLS closes a plain connection
 * during its TLS handshake, which reaches the client as a reset or a hang-up with no reason given.
 */
function plainToTlsHint(url: string, error: Error & { code?: unknown }): string {
  const cutBeforeUpgrade = error.code === 'ECONNRESET' || error.message === 'socket hang up';
  return url.startsWith('ws:') && cutBeforeUpgrade ? ' (if the node serves TLS, use a wss:// URL)' : '';
}

/** `error` for an op that never left the client: a lost connection says so (`sent: false`), so it may be retried. */
function unsentError(error: TmemError): TmemError {
  return error instanceof ConnectionLostError
    ? new ConnectionLostError(error.message, { cause: error, details: { ...error.details, sent: false } })
    : error;
}

/** The error an aborted connect rejects with: the abort reason when it is a TmemError (CLIENT_CLOSED). */
function abortError(reason: unknown): TmemError {
  if (reason instanceof TmemError) return reason;
  return new TmemError(ErrorCode.ClientClosed, 'connecting was aborted', { cause: reason });
}

/**
 * Opens a WebSocket to one node and completes the handshake. Rejects with the node's typed error when it
 * refuses the hello (VERSION_MISMATCH, ...), with CONNECTION_LOST when the socket fails, with TIMEOUT after
 * connectTimeoutMs.
 */
export function openNodeConnection(options: NodeConnectionOptions): Promise<NodeConnection> {
  const { url, codec, timeoutMs, logger: log, signal } = options;
  if (signal?.aborted) return Promise.reject(abortError(signal.reason));

  // Mutable: the welcome may lower maxBytes to the node's frame limit; the queue reads it at every cut.
  const limits: BatchLimits = { maxOps: options.maxBatchOps, maxBytes: options.maxBatchBytes };
  const queue = createOpQueue<ConnectionOp>(limits);
  /** Sent ops awaiting their reply, by request id. */
  const pending = new Map<number, ConnectionOp>();
  /** Sent frames awaiting their reply, by frame id; its size is what maxFramesInFlight bounds. */
  const frames = new Map<number, InFlightFrame>();
  const ids = createRequestIds((id) => pending.has(id) || frames.has(id));
  // One timer for the deadlines of every op on this connection, queued or sent.
  const sweep = createDeadlineSweep<ConnectionOp>(liveOps, onTimeout);
  let state: 'connecting' | 'open' | 'closed' = 'connecting';
  let nodeId = '';
  let clusterId: string | undefined;
  /** Largest frame the node accepts, from its welcome; undefined for a node that does not say. */
  let nodeMaxFrameBytes: number | undefined;
  let helloId = 0;
  let flushHandle: NodeJS.Immediate | undefined;
  let liveness: { stop(): void } | undefined;

  let resolveOpen!: (connection: NodeConnection) => void;
  let rejectOpen!: (error: TmemError) => void;
  const opened = new Promise<NodeConnection>((resolve, reject) => {
    resolveOpen = resolve;
    rejectOpen = reject;
  });

  const ws = new WebSocket(url, {
    perMessageDeflate: false,
    maxPayload: codec.maxFrameBytes,
    localAddress: options.localAddress,
    ...(options.tls?.ca === undefined ? {} : { ca: options.tls.ca }),
    rejectUnauthorized: options.tls?.rejectUnauthorized ?? true,
  });
  ws.binaryType = 'nodebuffer';
  const socketClosed = new Promise<void>((resolve) => ws.once('close', () => resolve()));

  const connectTimer = setTimeout(() => {
    fail(
      new TmemError(
        ErrorCode.Timeout,
        `no handshake with ${url} within ${options.connectTimeoutMs} ms; raise connectTimeoutMs or check the node`,
        { details: { node: url, connectTimeoutMs: options.connectTimeoutMs } },
      ),
    );
  }, options.connectTimeoutMs);
  const onAbort = (): void => fail(abortError(signal?.reason), CloseCode.Normal);
  signal?.addEventListener('abort', onAbort, { once: true });

  const connection: NodeConnection = {
    url,
    get nodeId() {
      return nodeId;
    },
    get clusterId() {
      return clusterId;
    },
    get isOpen() {
      return state === 'open';
    },
    get maxBatchBytes() {
      return limits.maxBytes;
    },
    request,
    enqueue,
    async close(error) {
      fail(error, CloseCode.Normal, true);
      await socketClosed;
    },
  };

  ws.on('open', () => {
    if (state !== 'connecting') return;
    // A stalled connection stays "open" for minutes of TCP retransmissions: without pongs it is closed as
    // lost, so its ops fail over to other nodes and the pool dials again.
    liveness = watchLiveness(ws, {
      pingIntervalMs: options.pingIntervalMs ?? 1000,
      pongTimeoutMs: options.pongTimeoutMs ?? 3000,
      onDead: (silentMs) =>
        fail(
          new ConnectionLostError(`node ${url} answered no ping for ${silentMs} ms; connection closed`, {
            details: { node: url, silentMs },
          }),
        ),
    });
    helloId = ids.next();
    ws.send(
      codec.encode({
        t: 'hello',
        id: helloId,
        protocol: PROTOCOL_VERSION,
        identity: options.identity,
        ...(options.token === undefined ? {} : { token: options.token }),
        ...(options.session === undefined ? {} : { session: options.session }),
      }),
    );
  });
  ws.on('message', onMessage);
  ws.on('error', (error: Error & { code?: unknown }) => {
    // ws reports a node that breaks the WebSocket framing with WS_ERR_* codes; anything else is the network.
    if (typeof error.code === 'string' && error.code.startsWith('WS_ERR_')) {
      const code =
        error.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH'
          ? ErrorCode.FrameTooLarge
          : ErrorCode.MalformedFrame;
      fail(
        new ProtocolError(code, `node ${url} broke the WebSocket protocol: ${error.message}`, {
          cause: error,
          details: { node: url },
        }),
        CloseCode.ProtocolViolation,
      );
      return;
    }
    // An untrusted certificate is no lost connection: retrying will not fix it, the tls.ca option will.
    const rejection = certificateRejection(url, error, 'the tls.ca option');
    if (rejection !== undefined) return fail(rejection);
    fail(
      new ConnectionLostError(`connection to ${url} failed: ${error.message}${plainToTlsHint(url, error)}`, {
        cause: error,
        details: { node: url },
      }),
    );
  });
  ws.on('close', (code: number, reason: Buffer) => {
    fail(
      new ConnectionLostError(`connection to ${url} closed (code ${code})`, {
        details: { node: url, code, reason: reason.toString() },
      }),
    );
  });

  function onMessage(data: RawData, isBinary: boolean): void {
    if (state === 'closed') return;
    if (!isBinary || !(data instanceof Uint8Array)) {
      fail(
        new ProtocolError(
          ErrorCode.MalformedFrame,
          `node ${url} sent a text frame; frames are binary msgpack`,
        ),
        CloseCode.ProtocolViolation,
      );
      return;
    }
    let frame: NodeFrame;
    try {
      frame = codec.decodeNodeFrame(data);
    } catch (error) {
      // After one undecodable frame nothing later on this stream can be trusted.
      fail(asProtocolError(error, url), CloseCode.ProtocolViolation);
      return;
    }
    if (state === 'connecting') onHandshakeReply(frame);
    else onReply(frame);
  }

  function onHandshakeReply(frame: NodeFrame): void {
    if (frame.id !== helloId) {
      fail(
        new ProtocolError(ErrorCode.InvalidFrame, `node ${url} sent a ${frame.t} frame before its welcome`),
        CloseCode.ProtocolViolation,
      );
    } else if (frame.t === 'error') {
      fail(errorFromWire(frame), CloseCode.Normal);
    } else if (frame.t !== 'welcome') {
      fail(
        new ProtocolError(ErrorCode.InvalidFrame, `node ${url} answered hello with ${frame.t}`),
        CloseCode.ProtocolViolation,
      );
    } else if (frame.protocol !== PROTOCOL_VERSION) {
      fail(
        new ProtocolError(
          ErrorCode.VersionMismatch,
          `node ${url} speaks protocol ${frame.protocol}, this client ${PROTOCOL_VERSION}; upgrade the older side`,
          { details: { node: url, nodeProtocol: frame.protocol, clientProtocol: PROTOCOL_VERSION } },
        ),
        CloseCode.ProtocolViolation,
      );
    } else {
      state = 'open';
      nodeId = frame.nodeId;
      clusterId = frame.clusterId;
      nodeMaxFrameBytes = frame.maxFrameBytes;
      // A node refuses a frame over its limit by closing the connection: no batch may come near it.
      limits.maxBytes = batchBytesFor(options.maxBatchBytes, nodeMaxFrameBytes);
      clearTimeout(connectTimer);
      signal?.removeEventListener('abort', onAbort);
      log.info({ node: url, nodeId, maxBatchBytes: limits.maxBytes }, 'connected');
      resolveOpen(connection);
    }
  }

  function onReply(frame: NodeFrame): void {
    // Request ids are never 0, so a state frame with id 0 is a push, not a reply.
    if (frame.id === 0 && frame.t === 'state') {
      options.onStatePush?.(connection, frame);
      return;
    }
    const sent = frames.get(frame.id);
    if (sent === undefined) {
      // Most likely the reply to a frame whose ops all timed out before the connection was replaced.
      log.debug({ node: url, id: frame.id, t: frame.t }, 'reply to an unknown request ignored');
      return;
    }
    if (!sent.batch) {
      frames.delete(frame.id);
      settle(sent.ops[0] as ConnectionOp, frame);
    } else if (frame.t === 'batch') {
      onBatchPart(sent, frame);
      // A batch answered in parts keeps its slot until the last part: it still holds ops at the node.
      if (frame.more === true) return;
      frames.delete(frame.id);
      // Every op is answered exactly once over the parts; counting keeps the error (and its stack) off the
      // hot path: one is built only when an op really went unanswered.
      if (sent.answered < sent.ops.length && sent.ops.some((op) => !op.done)) {
        const missing = new ProtocolError(
          ErrorCode.InvalidFrame,
          `node ${url} left an op of a batch unanswered`,
        );
        for (const op of sent.ops) failOp(op, missing, true);
      }
    } else {
      frames.delete(frame.id);
      // The whole batch was refused (a frame-level error such as INVALID_FRAME): every op shares the answer.
      const error =
        frame.t === 'error'
          ? errorFromWire(frame)
          : new ProtocolError(ErrorCode.InvalidFrame, `node ${url} answered a batch with ${frame.t}`);
      for (const op of sent.ops) failOp(op, error, true);
    }
    // A slot is free: ops queued behind the limit may go now.
    flush();
  }

  /** Settles the ops one part of a batch reply answers; the part may be the whole reply. */
  function onBatchPart(sent: InFlightFrame, part: BatchReply): void {
    for (const reply of part.replies) {
      const op = pending.get(reply.id);
      // The frame check keeps a late reply from answering a newer op that reused the id after a wrap.
      if (op === undefined || op.frameId !== sent.id) {
        log.debug({ node: url, id: reply.id, t: reply.t }, 'batch reply to an unknown op ignored');
        continue;
      }
      sent.answered++;
      settle(op, reply);
    }
  }

  function settle(op: ConnectionOp, reply: NodeFrame): void {
    if (op.done) return;
    finish(op);
    if (reply.t === 'error') {
      op.reject(errorFromWire(reply), true);
    } else if (isExpectedReply(op.request.t, reply.t)) {
      op.resolve(reply);
    } else {
      op.reject(
        new ProtocolError(ErrorCode.InvalidFrame, `node ${url} answered ${op.request.t} with ${reply.t}`),
        true,
      );
    }
  }

  function failOp(op: ConnectionOp, error: unknown, sent: boolean): void {
    if (op.done) return;
    finish(op);
    op.reject(error, sent);
  }

  function finish(op: ConnectionOp): void {
    op.done = true;
    if (op.id !== 0 && pending.get(op.id) === op) pending.delete(op.id);
  }

  function* liveOps(): Generator<ConnectionOp> {
    yield* queue.waiting();
    yield* pending.values();
  }

  function onTimeout(op: ConnectionOp): void {
    if (op.done) return;
    const queued = op.id === 0;
    if (queued) queue.remove(op);
    // A sent op keeps its frame's slot until the reply: a stalled node must not be sent ever more frames.
    failOp(op, new TimeoutError(timeoutMs, { details: { node: url, queued } }), !queued);
  }

  function request<R extends Request>(req: R, requestOptions: RequestOptions): Promise<ReplyTo<R>> {
    return new Promise<ReplyTo<R>>((resolve, reject) => {
      // Sound because settle() resolves only with replies isExpectedReply allows for this request.
      enqueue(
        connectionOp(req, requestOptions, resolve as (reply: NodeFrame) => void, (error, sent) =>
          reject(asPromiseError(error, sent)),
        ),
      );
    });
  }

  function enqueue(op: ConnectionOp): void {
    if (state !== 'open') {
      // Nothing was sent on it: a retry cannot apply the op twice.
      op.done = true;
      op.reject(
        new ConnectionLostError(`connection to ${url} is closed`, { details: { node: url, sent: false } }),
        false,
      );
      return;
    }
    if (op.deadline <= now()) {
      op.done = true;
      op.reject(new TimeoutError(timeoutMs, { details: { node: url, queued: true } }), false);
      return;
    }
    sweep.arm(op.deadline);
    queue.push(op);
    // setImmediate, not a microtask: every op issued in this turn of the event loop, even after a few
    // awaits, joins the same batch.
    flushHandle ??= setImmediate(flush);
  }

  function flush(): void {
    if (flushHandle !== undefined) clearImmediate(flushHandle);
    flushHandle = undefined;
    while (state === 'open' && frames.size < options.maxFramesInFlight) {
      const ops = queue.nextFrame();
      if (ops === undefined) return;
      send(ops);
    }
  }

  function send(ops: ConnectionOp[]): void {
    const first = ops[0] as ConnectionOp;
    const id = ids.next();
    const sent: InFlightFrame = { id, batch: first.batchable, ops, answered: 0 };
    frames.set(id, sent);
    let frame: ClientFrame;
    if (first.batchable) {
      const wireOps = ops.map((op) => {
        op.id = ids.next();
        op.frameId = id;
        pending.set(op.id, op);
        return { ...op.request, id: op.id } as PageOp;
      });
      frame =
        first.group === undefined
          ? { t: 'batch', id, ops: wireOps }
          : { t: 'batch', id, ops: wireOps, sv: first.group };
    } else {
      first.id = id;
      first.frameId = id;
      pending.set(id, first);
      frame = { ...first.request, id };
    }
    let data: Uint8Array | undefined;
    try {
      data = codec.encode(frame, sendFrames);
      // Only an op too big for any batch gets here (a frame holds at least one op): the node would close the
      // connection on it, taking every other op in flight along.
      if (nodeMaxFrameBytes !== undefined && data.length > nodeMaxFrameBytes) {
        throw new ProtocolError(
          ErrorCode.FrameTooLarge,
          `a ${first.request.t} frame of ${data.length} bytes exceeds the ${nodeMaxFrameBytes}-byte frame limit of node ${url}; raise its --max-frame-bytes or use smaller pages`,
          { details: { node: url, size: data.length, maxFrameBytes: nodeMaxFrameBytes } },
        );
      }
    } catch (error) {
      // Only a frame over the codec's or the node's limit gets here; it fails its own ops and takes no slot.
      if (data !== undefined) sendFrames.release(data);
      frames.delete(id);
      for (const op of ops) failOp(op, error, false);
      return;
    }
    // ws may hold on to `data` until it is written (it copies it to mask it, but not while it queues): a
    // pooled buffer goes back on the send callback. msgpackr never reuses the bytes it returned.
    const bytes = data;
    if (sendFrames.owns(bytes)) ws.send(bytes, () => sendFrames.release(bytes));
    else ws.send(bytes);
  }

  /**
   * Closes the connection once: every op still waiting is rejected with `error`. `deliberate` closes (the
   * client let go of the connection) are logged at info, failures at warn.
   */
  function fail(error: TmemError, closeCode?: number, deliberate = false): void {
    if (state === 'closed') return;
    const wasOpen = state === 'open';
    state = 'closed';
    clearTimeout(connectTimer);
    liveness?.stop();
    sweep.stop();
    signal?.removeEventListener('abort', onAbort);
    if (flushHandle !== undefined) clearImmediate(flushHandle);
    flushHandle = undefined;
    const unsent = queue.drain();
    const sent = [...pending.values()];
    pending.clear();
    frames.clear();
    // Ops still queued never left this process: the retry logic may send them again, even writes.
    const notSent = unsentError(error);
    for (const op of unsent) failOp(op, notSent, false);
    for (const op of sent) failOp(op, error, true);
    closeSocket(closeCode);
    if (wasOpen) {
      const level = deliberate || error.code === ErrorCode.ClientClosed ? 'info' : 'warn';
      log[level]({ node: url, nodeId, code: error.code }, 'connection closed');
      options.onClose?.(connection, error);
    } else {
      rejectOpen(error);
    }
  }

  function closeSocket(closeCode: number | undefined): void {
    if (ws.readyState === WebSocket.CLOSED) return;
    if (closeCode === undefined || ws.readyState !== WebSocket.OPEN) {
      ws.terminate();
      return;
    }
    ws.close(closeCode);
    // A node that never answers the close frame must not hold the socket for ws's 30 s close timeout.
    const killer = setTimeout(() => ws.terminate(), CLOSE_GRACE_MS);
    killer.unref();
    ws.once('close', () => clearTimeout(killer));
  }

  return opened;
}
