// Outgoing WebSocket links from this node to other nodes, keyed by URL. Coordination messages are one-way
// and may be lost (the consensus core tolerates loss), so a link that is down drops them and reconnects in
// the background; requests (propose) wait for their reply or time out.
import WebSocket from 'ws';
import {
  ClusterChangedError,
  ErrorCode,
  PROTOCOL_VERSION,
  TmemError,
  errorFromWire,
  type ChangeResult,
  type ClientFrame,
  type Codec,
  type NodeFrame,
} from '@tmem/protocol';
import type { Logger } from '../logger.ts';

/** Options of the link set. */
export interface PeerLinksOptions {
  /** This node's id, sent as the handshake identity with role 'peer'. */
  selfId: string;
  /** This node's URL, sent in the handshake so the peer can reach it back. */
  selfUrl: string;
  /** The cluster secret, proving to peers that this node belongs. */
  secret?: string;
  /** The cluster this node serves, sent in every hello so a node of another cluster refuses the link. */
  clusterId?: () => string | undefined;
  codec: Codec;
  logger: Logger;
  /** Delay before reconnecting a link that failed. @default 200 */
  reconnectDelayMs?: number;
  /**
   * Local IP address outgoing links are made from (`localAddress` of the socket), so that a fault proxy in
   * front of a peer can tell which node a connection comes from. @default chosen by the operating system
   */
  localAddress?: string;
}

/** Links to other nodes. */
export interface PeerLinks {
  /** Sends a coordination message; dropped silently if the link is not up (it reconnects meanwhile). */
  send(url: string, message: unknown): void;
  /** Asks the node at `url` to get a state change committed; resolves with its ChangeResult frame. */
  propose(url: string, change: unknown, timeoutMs: number, forwarded: boolean): Promise<ChangeResult>;
  /**
   * Sends the request `build(id)` and resolves with its reply, which must be of type `expect`; an error reply
   * rejects with the typed error, a lost link with CONNECTION_LOST, no reply in time with TIMEOUT.
   */
  call<K extends NodeFrame['t']>(
    url: string,
    build: (id: number) => ClientFrame,
    expect: K,
    timeoutMs: number,
  ): Promise<Extract<NodeFrame, { t: K }>>;
  /** Reads the cluster state a node holds (used to join and to find the coordinator). */
  getState(url: string, timeoutMs: number): Promise<NodeFrame & { t: 'state' }>;
  /** Closes links whose URL is not in `keep`. */
  retain(keep: ReadonlySet<string>): void;
  close(): void;
}

interface Link {
  url: string;
  socket: WebSocket | null;
  ready: boolean;
  retryTimer: NodeJS.Timeout | null;
  pending: Map<
    number,
    { resolve(frame: NodeFrame): void; reject(error: Error): void; timer: NodeJS.Timeout }
  >;
  /** Frames queued while the handshake runs; coordination messages only, bounded. */
  backlog: Uint8Array[];
}

const MAX_BACKLOG = 256;

/** Creates the set of outgoing links of one node. */
export function createPeerLinks(options: PeerLinksOptions): PeerLinks {
  const { codec, selfId } = options;
  const log = options.logger.child({ component: 'peer-links' });
  const reconnectDelayMs = options.reconnectDelayMs ?? 200;
  const links = new Map<string, Link>();
  let nextId = 1;
  let closed = false;

  /** The hello's clusterId field: present once this node serves a cluster. */
  function clusterIdField(): { clusterId?: string } {
    const served = options.clusterId?.();
    return served === undefined ? {} : { clusterId: served };
  }

  function clusterChanged(url: string, served: string, theirs: string): ClusterChangedError {
    return new ClusterChangedError(`${url} serves cluster ${theirs}, this node serves ${served}`, {
      details: { url, expected: served, actual: theirs },
    });
  }

  function failPending(link: Link, error: Error): void {
    for (const [id, waiter] of link.pending) {
      clearTimeout(waiter.timer);
      waiter.reject(error);
      link.pending.delete(id);
    }
  }

  function open(link: Link): void {
    if (closed || link.socket !== null) return;
    const socket = new WebSocket(link.url, {
      perMessageDeflate: false,
      handshakeTimeout: 2000,
      ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }),
    });
    link.socket = socket;
    link.ready = false;
    socket.binaryType = 'nodebuffer';
    socket.on('open', () => {
      socket.send(
        codec.encode({
          t: 'hello',
          id: 0,
          protocol: PROTOCOL_VERSION,
          identity: selfId,
          role: 'peer',
          url: options.selfUrl,
          ...(options.secret === undefined ? {} : { secret: options.secret }),
          ...clusterIdField(),
        }),
      );
    });
    socket.on('message', (data: Buffer) => {
      let frame: NodeFrame;
      try {
        frame = codec.decodeNodeFrame(data);
      } catch (error) {
        log.warn({ url: link.url, err: error }, 'bad frame from peer; closing the link');
        socket.terminate();
        return;
      }
      if (frame.t === 'welcome') {
        const served = options.clusterId?.();
        if (served !== undefined && frame.clusterId !== undefined && frame.clusterId !== served) {
          // The node at this URL serves another cluster (it was restarted as a new one): never talk to it.
          log.warn(
            { url: link.url, clusterId: frame.clusterId, served },
            'peer serves another cluster; link refused',
          );
          failPending(link, clusterChanged(link.url, served, frame.clusterId));
          socket.close(1000);
          return;
        }
        link.ready = true;
        for (const bytes of link.backlog.splice(0)) socket.send(bytes);
        return;
      }
      if (frame.t === 'error' && frame.id === 0 && frame.code === ErrorCode.ClusterChanged) {
        log.warn(
          { url: link.url, served: options.clusterId?.() },
          'peer refused us: it serves another cluster',
        );
        failPending(link, errorFromWire(frame));
        return;
      }
      const waiter = link.pending.get(frame.id);
      if (waiter === undefined) return;
      link.pending.delete(frame.id);
      clearTimeout(waiter.timer);
      waiter.resolve(frame);
    });
    socket.on('error', (error) => log.debug({ url: link.url, err: error.message }, 'peer link error'));
    socket.on('close', () => {
      link.socket = null;
      link.ready = false;
      link.backlog = [];
      failPending(link, new TmemError(ErrorCode.ConnectionLost, `link to ${link.url} closed`));
      if (!closed && links.get(link.url) === link && link.retryTimer === null) {
        link.retryTimer = setTimeout(() => {
          link.retryTimer = null;
          if (links.get(link.url) === link) open(link);
        }, reconnectDelayMs);
      }
    });
  }

  function linkTo(url: string): Link {
    let link = links.get(url);
    if (link === undefined) {
      link = { url, socket: null, ready: false, retryTimer: null, pending: new Map(), backlog: [] };
      links.set(url, link);
      open(link);
    }
    return link;
  }

  function sendBytes(link: Link, bytes: Uint8Array): boolean {
    if (link.ready && link.socket?.readyState === WebSocket.OPEN) {
      link.socket.send(bytes);
      return true;
    }
    if (link.backlog.length < MAX_BACKLOG) link.backlog.push(bytes);
    return false;
  }

  function request(url: string, encode: (id: number) => Uint8Array, timeoutMs: number) {
    const link = linkTo(url);
    const id = nextId++;
    if (nextId > 0xffffffff) nextId = 1;
    return new Promise<NodeFrame>((resolve, reject) => {
      const timer = setTimeout(() => {
        link.pending.delete(id);
        reject(new TmemError(ErrorCode.Timeout, `no reply from ${url} within ${timeoutMs} ms`));
      }, timeoutMs);
      link.pending.set(id, { resolve, reject, timer });
      sendBytes(link, encode(id));
    });
  }

  return {
    send(url, message) {
      if (closed) return;
      sendBytes(linkTo(url), codec.encode({ t: 'peer', id: 0, message }));
    },
    async propose(url, change, timeoutMs, forwarded) {
      const reply = await request(
        url,
        (id) => codec.encode({ t: 'propose', id, change, forwarded }),
        timeoutMs,
      );
      if (reply.t === 'changeResult') return reply;
      if (reply.t === 'error') throw errorFromWire(reply);
      throw new TmemError(ErrorCode.InvalidFrame, `unexpected ${reply.t} reply to propose`);
    },
    async call(url, build, expect, timeoutMs) {
      if (closed) throw new TmemError(ErrorCode.ConnectionLost, 'node closing');
      const reply = await request(url, (id) => codec.encode(build(id)), timeoutMs);
      if (reply.t === expect) return reply as Extract<NodeFrame, { t: typeof expect }>;
      if (reply.t === 'error') throw errorFromWire(reply);
      throw new TmemError(ErrorCode.InvalidFrame, `unexpected ${reply.t} reply to a request for ${expect}`);
    },
    async getState(url, timeoutMs) {
      const reply = await request(
        url,
        (id) => codec.encode({ t: 'getState', id, subscribe: false }),
        timeoutMs,
      );
      if (reply.t === 'state') return reply;
      if (reply.t === 'error') throw errorFromWire(reply);
      throw new TmemError(ErrorCode.InvalidFrame, `unexpected ${reply.t} reply to getState`);
    },
    retain(keep) {
      for (const [url, link] of links) {
        if (keep.has(url) || link.pending.size > 0) continue;
        links.delete(url);
        if (link.retryTimer !== null) clearTimeout(link.retryTimer);
        link.socket?.terminate();
      }
    },
    close() {
      closed = true;
      for (const link of links.values()) {
        if (link.retryTimer !== null) clearTimeout(link.retryTimer);
        failPending(link, new TmemError(ErrorCode.ConnectionLost, 'node closing'));
        link.socket?.terminate();
      }
      links.clear();
    },
  };
}
