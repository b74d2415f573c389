import WebSocket from 'ws';
import { PROTOCOL_VERSION, createCodec, type ClientFrame, type NodeFrame } from '@tmem/protocol';
import { waitFor } from './wait-for.ts';

const codec = createCodec();

/** A hand-driven WebSocket peer for sending frames a well-behaved client never would. */
export interface RawPeer {
  /** Frames received so far, decoded (or the decode error). */
  readonly received: (NodeFrame | Error)[];
  /** Set once the socket closed: the close code the node sent. */
  readonly closed: { code: number; reason: string } | undefined;
  sendBytes(bytes: Uint8Array | string): void;
  sendFrame(frame: ClientFrame): void;
  /** Sends a frame and waits for the reply with the same id (every part of a batch reply, merged). */
  request(frame: ClientFrame): Promise<NodeFrame>;
  /** Waits for the next received frame after the current count. */
  next(): Promise<NodeFrame | Error>;
  waitClosed(): Promise<{ code: number; reason: string }>;
  close(): void;
}

const peers = new Set<WebSocket>();

/**
 * CA certificates wss:// raw peers verify nodes with. Set once for a test file of TLS nodes, so every helper
 * built on raw peers (stateOf, waitForMembers, startCluster) can reach them without a CA in each signature.
 */
let trustedCa: Buffer | undefined;

/** Makes every later wss:// raw peer trust `ca` (undefined: Node's bundled root CAs again). */
export function trustTestCa(ca: Buffer | undefined): void {
  trustedCa = ca;
}

/** Opens a raw connection; with `identity`, also performs the handshake. */
export async function openRawPeer(url: string, identity?: string): Promise<RawPeer> {
  const socket = new WebSocket(url, {
    perMessageDeflate: false,
    ...(trustedCa === undefined ? {} : { ca: trustedCa }),
  });
  peers.add(socket);
  const received: (NodeFrame | Error)[] = [];
  let closed: { code: number; reason: string } | undefined;
  socket.on('message', (data: Buffer) => {
    try {
      received.push(codec.decodeNodeFrame(data));
    } catch (error) {
      received.push(error as Error);
    }
  });
  socket.on('close', (code, reason) => {
    closed = { code, reason: reason.toString() };
    peers.delete(socket);
  });
  socket.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('error', reject);
  });

  const peer: RawPeer = {
    received,
    get closed() {
      return closed;
    },
    sendBytes: (bytes) => socket.send(bytes),
    sendFrame: (frame) => socket.send(codec.encode(frame)),
    async request(frame) {
      const from = received.length;
      peer.sendFrame(frame);
      const replies = () =>
        received
          .slice(from)
          .filter((reply): reply is NodeFrame => !(reply instanceof Error) && reply.id === frame.id);
      const first = await waitFor(() => replies()[0], { what: `reply to ${frame.t} #${frame.id}` });
      if (frame.t !== 'batch' || first.t !== 'batch') return first;
      // A batch may be answered in parts (`more: true` on all but the last): wait for the last, and return the
      // parts as one reply with the replies in op order, as a node answering in one frame would.
      const parts = await waitFor(
        () => {
          const all = replies();
          return all.some((part) => part.t !== 'batch' || part.more !== true) ? all : undefined;
        },
        { what: `the last part of the reply to batch #${frame.id}` },
      );
      const byOp = new Map(
        parts.flatMap((part) => (part.t === 'batch' ? part.replies : [])).map((r) => [r.id, r]),
      );
      return {
        t: 'batch',
        id: frame.id,
        replies: frame.ops.flatMap((op) => {
          const reply = byOp.get(op.id);
          return reply === undefined ? [] : [reply];
        }),
      };
    },
    async next() {
      const from = received.length;
      return waitFor(() => received[from], { what: 'a frame from the node' });
    },
    waitClosed: () => waitFor(() => closed, { what: 'the node to close the connection' }),
    close: () => socket.close(),
  };
  if (identity !== undefined) {
    const welcome = await peer.request({ t: 'hello', id: 1, protocol: PROTOCOL_VERSION, identity });
    if (welcome.t !== 'welcome') throw new Error(`handshake failed: ${JSON.stringify(welcome)}`);
  }
  return peer;
}

/** Closes every raw peer still open (afterEach). */
export function closeAllRawPeers(): void {
  for (const socket of peers) socket.terminate();
  peers.clear();
}
