// Outgoing WebSocket links from this node to other nodes, keyed by URL. Coordination messages are one-way
// and may be lost (the consensus core tolerates loss), so a link that is down drops them and reconnects in
// the background; requests (propose) wait for their reply or time out.
import WebSocket from 'ws';
import {
  ClusterChangedError,
  ErrorCode,
  PROTOCOL_VERSION,
  ProtocolError,
  watchLiveness,
  TmemError,
  certificateRejection,
  errorFromWire,
  newPeerNonce,
  peerProof,
  peerProofMatches,
  type ChangeResult,
  type ClientFrame,
  type Codec,
  type NodeFrame,
} from '@tmem/protocol';
import type { Logger } from '../logger.ts';

/**
 * Timing of the links. A link whose peer stops answering pings (cut off by a firewall, a host gone without a
 * FIN) is closed after pongTimeoutMs and dialled again on a fresh connection, instead of waiting minutes on the
 * kernel's backed-off TCP retransmissions: a node that is reachable again is linked again within about
 * connectTimeoutMs + redialMaxMs.
 */
export interface PeerLinkTiming {
  /** How often each open link is pinged. @default 500 */
  pingIntervalMs?: number;
  /** How long a ping may go unanswered before the link is closed. @default 2000 */
  pongTimeoutMs?: number;
  /** How long a dial may take to complete the handshake (TCP, upgrade, welcome) before it is aborted. @default 2000 */
  connectTimeoutMs?: number;
  /**
   * First delay before dialling a lost link again; doubles per fast failed dial (refused, reset). A dial that
   * hung for connectTimeoutMs is retried after this first delay. @default 100
   */
  redialMinMs?: number;
  /** Cap of the redial delay. @default 500 */
  redialMaxMs?: number;
  /** While a peer stays unreachable, how often the failed dials are logged again at warn level. @default 10000 */
  unreachableLogIntervalMs?: number;
}

/** Defaults of PeerLinkTiming. */
export const DEFAULT_PEER_LINK_TIMING: Required<PeerLinkTiming> = {
  pingIntervalMs: 500,
  pongTimeoutMs: 2000,
  connectTimeoutMs: 2000,
  redialMinMs: 100,
  redialMaxMs: 500,
  unreachableLogIntervalMs: 10_000,
};

/** Options of the link set. */
export interface PeerLinksOptions {
  /** This node's id, sent as the handshake identity with role 'peer'. */
  selfId: string;
  /** This node's URL, sent in the handshake so the peer can reach it back. */
  selfUrl: string;
  /** The cluster secret: each link proves it, and requires the node it dials to prove it (peer-auth.ts). */
  secret?: string;
  /** The cluster this node serves, sent in every hello so a node of another cluster refuses the link. */
  clusterId?: () => string | undefined;
  codec: Codec;
  logger: Logger;
  /** Liveness, dial and redial timing of every link. */
  timing?: PeerLinkTiming;
  /**
   * Local IP address outgoing links are made from (`localAddress` of the socket), so that a fault proxy in
   * front of a peer can tell which node a connection comes from. @default chosen by the operating system
   */
  localAddress?: string;
  /**
   * CA certificates (PEM) the certificate of a wss:// peer must chain to; a peer whose certificate does not
   * verify is never linked (its requests fail with CERTIFICATE_REJECTED). @default Node's bundled root CAs
   */
  ca?: Buffer;
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
  /** Delay before the next redial; back to redialMinMs once a dial succeeds. */
  redialDelayMs: number;
  /** Dials that failed in a row (closed before the welcome). */
  failedDials: number;
  /** When the failed dials were last logged at warn level, or 0. */
  warnedAt: number;
  /** Why the current socket failed, for the log line of its close. */
  failure: string | null;
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
  const timing: Required<PeerLinkTiming> = { ...DEFAULT_PEER_LINK_TIMING, ...options.timing };
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
      ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }),
      ...(options.ca === undefined ? {} : { ca: options.ca }),
    });
    link.socket = socket;
    link.ready = false;
    link.failure = null;
    socket.binaryType = 'nodebuffer';
    // Our challenge to the node: its welcome must prove the secret over it (peer-auth.ts).
    const dialerNonce = newPeerNonce();
    let liveness: { stop(): void } | undefined;
    /** The dial ran out of time (TCP connect, upgrade, hello and welcome all count). */
    let hung = false;
    const connectTimer = setTimeout(() => {
      hung = true;
      link.failure = `no handshake within ${timing.connectTimeoutMs} ms`;
      socket.terminate();
    }, timing.connectTimeoutMs);
    socket.on('open', () => {
      liveness = watchLiveness(socket, {
        pingIntervalMs: timing.pingIntervalMs,
        pongTimeoutMs: timing.pongTimeoutMs,
        onDead: (silentMs) => {
          link.failure = `no pong for ${silentMs} ms`;
        },
      });
      socket.send(
        codec.encode({
          t: 'hello',
          id: 0,
          protocol: PROTOCOL_VERSION,
          identity: selfId,
          role: 'peer',
          url: options.selfUrl,
          nonce: dialerNonce,
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
        clearTimeout(connectTimer);
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
        if (options.secret !== undefined) {
          const nonces = { dialer: dialerNonce, acceptor: frame.nonce ?? '' };
          if (!peerProofMatches(options.secret, 'acceptor', nonces, frame.nodeId, frame.proof)) {
            log.warn({ url: link.url }, 'peer did not prove the cluster secret; closing the link');
            // Typed, like a refusal from the peer: a join through it can say the secrets differ and stop.
            failPending(
              link,
              new ProtocolError(
                ErrorCode.Unauthorized,
                `node at ${link.url} does not share this cluster secret`,
              ),
            );
            socket.terminate();
            return;
          }
          const proof = peerProof(options.secret, 'dialer', nonces, selfId);
          socket.send(codec.encode({ t: 'peerAuth', id: 0, proof }));
        }
        link.ready = true;
        if (link.failedDials > 0)
          log.info({ url: link.url, failedDials: link.failedDials }, 'peer reachable again');
        link.failedDials = 0;
        link.warnedAt = 0;
        link.redialDelayMs = timing.redialMinMs;
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
      if (frame.t === 'error' && (!link.ready || frame.id === 0)) {
        // The peer refused our hello or our proof (wrong cluster secret, another protocol version; both have
        // id 0, which no request uses): what waits on this link gets that reason, typed, instead of a bare
        // CONNECTION_LOST when the peer then closes.
        failPending(link, errorFromWire(frame));
        return;
      }
      const waiter = link.pending.get(frame.id);
      if (waiter === undefined) return;
      link.pending.delete(frame.id);
      clearTimeout(waiter.timer);
      waiter.resolve(frame);
    });
    socket.on('error', (error) => {
      // A certificate that does not verify is configuration, not the network: what waits on the link (a join)
      // learns it typed, so it can stop instead of retrying.
      const rejection = certificateRejection(link.url, error, '--tls-ca');
      link.failure ??= rejection?.message ?? error.message;
      if (rejection !== undefined) failPending(link, rejection);
    });
    socket.on('close', (code: number) => {
      clearTimeout(connectTimer);
      liveness?.stop();
      const wasReady = link.ready;
      link.socket = null;
      link.ready = false;
      link.backlog = [];
      const why = link.failure === null ? '' : `: ${link.failure}`;
      failPending(link, new TmemError(ErrorCode.ConnectionLost, `link to ${link.url} closed${why}`));
      const current = !closed && links.get(link.url) === link;
      if (current) noteClose(link, wasReady, code);
      if (current && link.retryTimer === null) {
        // A dial that hung has waited connectTimeoutMs already: dial again at once, so a peer reachable again
        // is found by a fresh SYN rather than by the lost one's retransmission 1 s or 3 s later. Fast failures
        // (refused, reset) back off.
        const delayMs = hung ? timing.redialMinMs : link.redialDelayMs;
        if (!hung) link.redialDelayMs = Math.min(link.redialDelayMs * 2, timing.redialMaxMs);
        link.retryTimer = setTimeout(() => {
          link.retryTimer = null;
          if (links.get(link.url) === link) open(link);
        }, delayMs);
      }
    });
  }

  /**
   * Logs a lost link or a failed dial: an operator must see a peer this node cannot reach (a wrong advertised
   * address, a firewall) at the default level, but a dead peer that is dialled every half second must not
   * flood the log, so failed dials are logged at warn once per unreachableLogIntervalMs.
   */
  function noteClose(link: Link, wasReady: boolean, code: number): void {
    const reason = link.failure ?? `closed with code ${code}`;
    if (wasReady) {
      // A stalled link is a network problem; a peer that closed the link (restart, leave) is routine.
      if (link.failure !== null) log.warn({ url: link.url, reason }, 'peer link lost; redialling');
      else log.info({ url: link.url, reason }, 'peer link closed; redialling');
      return;
    }
    link.failedDials++;
    const at = Date.now();
    if (link.warnedAt === 0 || at - link.warnedAt >= timing.unreachableLogIntervalMs) {
      link.warnedAt = at;
      log.warn({ url: link.url, err: reason, failedDials: link.failedDials }, 'peer unreachable');
    } else {
      log.debug({ url: link.url, err: reason, failedDials: link.failedDials }, 'peer dial failed');
    }
  }

  function linkTo(url: string): Link {
    let link = links.get(url);
    if (link === undefined) {
      link = {
        url,
        socket: null,
        ready: false,
        retryTimer: null,
        redialDelayMs: timing.redialMinMs,
        failedDials: 0,
        warnedAt: 0,
        failure: null,
        pending: new Map(),
        backlog: [],
      };
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
