import {
  createServer,
  type IncomingMessage,
  type Server,
  type ServerOptions,
  type ServerResponse,
} from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { randomUUID } from 'node:crypto';
import { WebSocketServer, type WebSocket } from 'ws';
import {
  DEFAULT_MAX_FRAME_BYTES,
  ErrorCode,
  TmemError,
  createCodec,
  type DecodeBudget,
} from '@tmem/protocol';

import { checkAdvertisedUrl } from './advertised-url.ts';
import { silentLogger, type Logger } from './logger.ts';
import { createPageStore, type OwnerQuota, type PageStore } from './page-store.ts';
import { CloseCode, serveSession } from './session.ts';
import type { ClientTokens } from './client-auth.ts';
import { createClusterMember, type ClusterMember, type ClusterTiming } from './cluster/cluster-member.ts';
import {
  DEFAULT_CONNECTION_LIMITS,
  createConnectionRegistry,
  type ConnectionLimits,
} from './connection-limits.ts';
import { effectiveMaxPools } from './cluster/state-bound.ts';
import type { PeerLinkTiming } from './cluster/peer-links.ts';
import type { EphemeralHandOverOptions } from './cluster/ephemeral-hand-over.ts';
import { createOpMetrics, type OpMetrics } from './op-metrics.ts';
import { createMetricsRegistry, startMetricsServer, type MetricsServer } from './metrics-server.ts';
import type { NodeTls } from './tls-files.ts';
import { createSessionLiveness, DEFAULT_SESSION_GRACE_MS } from './session-liveness.ts';
import { startSessionExpiry } from './cluster/session-expiry.ts';
import type { SharedPoolAccess } from './shared-pool-access.ts';

/** Options of one memory node. */
export interface MemnodeOptions {
  /** Bytes of page data the node may hold (with `dedup`, at most MAX_DEDUP_CAPACITY_BYTES). */
  capacityBytes: number;
  /**
   * Deduplicate ephemeral pages: identical pages of one identity's ephemeral pools share one slot in this node's
   * store (PageStoreOptions.dedup). Persistent pages are never shared. @default false
   */
  dedup?: boolean;
  /**
   * Most bytes of emptied slabs the store keeps mapped for reuse, each for 10 s (PageStoreOptions.spareSlabMaxBytes).
   * @default min(capacityBytes / 4, 1 GiB)
   */
  spareSlabBytes?: number;
  /**
   * What one identity may hold in this node's store, pages and charged bytes (PageStoreOptions.ownerQuota).
   * @default {} (no quota: the capacity, shared by eviction from the identity charged most)
   */
  identityQuota?: OwnerQuota;
  /** @default '127.0.0.1' */
  host?: string;
  /** 0 picks a free port. @default 0 */
  port?: number;
  /** @default a random UUID */
  nodeId?: string;
  /** Largest frame accepted from a peer. @default DEFAULT_MAX_FRAME_BYTES (16 MiB) */
  maxFrameBytes?: number;
  /** How long a graceful close waits for clients to close their sockets before cutting them. @default 2000 */
  closeGraceMs?: number;
  /**
   * After a graceful leave, how long the node keeps its sockets open, answering SHUTTING_DOWN, for clients
   * that still route to it to learn it left and let go once their ops in flight are answered. @default 2000
   */
  leaveDrainMs?: number;
  /** @default a silent logger */
  logger?: Logger;
  /** URLs of nodes to join through; none founds a new cluster. @default [] */
  join?: readonly string[];
  /** Partitions of a new cluster. @default 1024 */
  partitionCount?: number;
  /** Copies a persistent pool keeps unless its creator says otherwise. @default 2 */
  defaultReplication?: number;
  /** Heartbeat, election, lease and failure-detection timing. */
  timing?: ClusterTiming;
  /**
   * Liveness of the links to other nodes: ping interval, pong deadline, dial timeout and redial backoff (see
   * PeerLinkTiming). @default DEFAULT_PEER_LINK_TIMING: ping every 500 ms, closed after 2000 ms without a pong,
   * dials aborted after 2000 ms, redialled after 100 ms doubling to 500 ms
   */
  peerLinks?: PeerLinkTiming;
  /**
   * Shared by every node of the cluster: a connection may act as a peer (send coordination frames, see every
   * pool) only with it. Without one any connection may claim to be a peer, which is fine only on a trusted
   * loopback. @default none
   */
  clusterSecret?: string;
  /**
   * Without a cluster secret, admit any connection that says it is a peer. Off, a node without a secret admits
   * no peers, so it can be only a cluster of one. Fit only for a trusted loopback. @default false
   */
  insecurePeers?: boolean;
  /**
   * The URL this node gives peers and clients (in the cluster state and its peer handshakes) instead of the one
   * it listens on, e.g. a fault proxy in front of it. `Memnode.url` stays the listening URL.
   * @default the listening URL
   */
  advertiseUrl?: string;
  /**
   * Local IP address of the node's outgoing peer links, e.g. `127.0.0.2`, so a proxy can tell nodes apart by
   * source address. @default chosen by the operating system
   */
  sourceAddress?: string;
  /**
   * Fault injection for tests: the node corrupts (flips a byte of) every persistent page it stores whose object
   * id starts with these bytes (as latin1), keeping the page's checksum, as a memory error would. Never set it
   * in production. @default none
   */
  testCorruptOidPrefix?: string;
  /**
   * Answer a batch in parts (`batch {replies, more: true}`): the ops answered synchronously (ephemeral ones)
   * at once, the persistent ones that wait for their copies in later parts as they finish, coalesced per turn
   * of the event loop. Off, a batch is answered in one frame once its slowest op finished, for clients that
   * treat the first batch frame as final (the client of this protocol version understands parts).
   * @default true
   */
  batchReplyParts?: boolean;
  /**
   * Hashes of client tokens and the identity each proves (client-auth.ts, `tmem token`): a client must present
   * one. Without it the node is open: any client may claim any identity, fit only for a trusted local network.
   * @default open
   */
  clientTokens?: ClientTokens;
  /**
   * Client identities that see node-global `stats` (every pool, page and op of the node); every other client
   * sees only its own counters. Needs clientTokens (an open node gives every client node-global stats), and
   * each must have a token there. Peers always see node-global stats.
   * @default none
   */
  adminIdentities?: readonly string[];
  /**
   * Which identities may join which shared pools (shared-pool-access.ts, `--shared-pools FILE`): a UUID's
   * listed identities only. Without it, an open node (no clientTokens) lets anyone join any shared pool and an
   * authenticating node nobody.
   * @default none
   */
  sharedPools?: SharedPoolAccess;
  /** Connection limits (counts, handshake deadline, idle timeout, reply buffer). @default DEFAULT_CONNECTION_LIMITS */
  limits?: Partial<ConnectionLimits>;
  /**
   * Decode budgets of client and peer frames (see @tmem/protocol msgpack-budget.ts).
   * @default DEFAULT_CLIENT_DECODE_BUDGET, DEFAULT_PEER_DECODE_BUDGET
   */
  decodeBudgets?: { client?: DecodeBudget; peer?: DecodeBudget };
  /**
   * Serve Prometheus metrics on `http://host:<metricsPort>/metrics` (metrics-server.ts); 0 picks a free port.
   * @default off
   */
  metricsPort?: number;
  /**
   * Serve `wss://` with this certificate and key, and dial peers over `wss://`, verifying their certificates
   * against `ca` (tls-files.ts loads it from files). Every node of a cluster must have it, or none: the seeds
   * must be `wss://` URLs. The metrics endpoint stays plain HTTP.
   * @default none: plain ws://
   */
  tls?: NodeTls;
  /**
   * The hand-over of ephemeral pages to their new primaries when partitions move away from this node while it
   * lives (a graceful leave, a join): time, bytes and frames it may take, and how long this node as a new
   * primary waits for pages handed to it (see EphemeralHandOverOptions). `timeoutMs: 0` hands nothing over.
   * @default DEFAULT_EPHEMERAL_HAND_OVER
   */
  ephemeralHandOver?: EphemeralHandOverOptions;
  /**
   * How long the pools of a client session outlive its last connection (`--session-grace-ms`): a client that
   * reconnects within it keeps them; after it, the coordinator destroys them cluster-wide. Every node of a
   * cluster should have the same. @default DEFAULT_SESSION_GRACE_MS (30000)
   */
  sessionGraceMs?: number;
}

/** How a node stops. */
export interface CloseOptions {
  /**
   * Leave the cluster first, so its partitions move before the process goes. Skip it when the whole cluster
   * is going down (its launcher died): the last nodes would wait for a majority that is already gone.
   * @default true
   */
  leave?: boolean;
}

/** A running memory node. */
export interface Memnode {
  readonly nodeId: string;
  /** ws://host:port (wss:// under TLS) that clients connect to. */
  readonly url: string;
  readonly port: number;
  readonly store: PageStore;
  readonly cluster: ClusterMember;
  /** The op counters the metrics endpoint reads (kept whether or not it is on). */
  readonly ops: OpMetrics;
  /** http://host:port/metrics when MemnodeOptions.metricsPort is set. */
  readonly metricsUrl: string | undefined;
  /**
   * Leaves the cluster gracefully (its partitions move to the others), then closes every client socket
   * (1001) and the listener. Idempotent.
   */
  close(options?: CloseOptions): Promise<void>;
}

// Frames up to the codec limit are read and answered with FRAME_TOO_LARGE; far beyond it ws itself cuts the
// connection (close code 1009) so a hostile peer cannot make the node buffer unbounded data.
const WS_PAYLOAD_SLACK_BYTES = 64 * 1024;

/**
 * The admin identities as a set. Throws BAD_ARGUMENT when given without client tokens (an open node shows every
 * client node-global stats already) or when one of them has no token (nobody could ever use it).
 */
function checkAdminIdentities(
  admins: readonly string[] | undefined,
  tokens: ClientTokens | undefined,
): ReadonlySet<string> {
  const set = new Set(admins ?? []);
  if (set.size === 0) return set;
  if (tokens === undefined) {
    throw new TmemError(
      ErrorCode.BadArgument,
      'adminIdentities need client tokens: an open node shows every client node-global stats',
    );
  }
  const known = new Set(tokens.values());
  const missing = [...set].filter((identity) => !known.has(identity));
  if (missing.length > 0) {
    throw new TmemError(
      ErrorCode.BadArgument,
      `admin identities without a token in the tokens file: ${missing.join(', ')}; issue one with tmem token <identity>`,
      {
        details: { missing },
      },
    );
  }
  return set;
}

/**
 * Starts a memory node listening on host:port. Resolves once it accepts connections. Throws BAD_ARGUMENT when
 * the URL it would advertise cannot be dialled by its peers (a wildcard host, or loopback while joining nodes
 * on other hosts): pass `advertiseUrl`.
 */
export async function createMemnode(options: MemnodeOptions): Promise<Memnode> {
  // Before anything listens: a node peers cannot dial back would start and then never join.
  checkAdvertisedUrl({
    host: options.host ?? '127.0.0.1',
    advertiseUrl: options.advertiseUrl,
    join: options.join,
    tls: options.tls !== undefined,
  });
  const adminIdentities = checkAdminIdentities(options.adminIdentities, options.clientTokens);
  const nodeId = options.nodeId ?? randomUUID();
  const logger = options.logger ?? silentLogger();
  // Every line names its component; the modules below take `logger` and make their own child.
  const log = logger.child({ component: 'server' });
  const maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  const codec = createCodec({
    maxFrameBytes,
    ...(options.decodeBudgets?.client === undefined ? {} : { clientBudget: options.decodeBudgets.client }),
    ...(options.decodeBudgets?.peer === undefined ? {} : { peerBudget: options.decodeBudgets.peer }),
  });
  const configured: ConnectionLimits = { ...DEFAULT_CONNECTION_LIMITS, ...options.limits };
  // The cluster state must fit this node's frames, or a joiner could never receive it (state-bound.ts).
  const limits: ConnectionLimits = {
    ...configured,
    maxPools: effectiveMaxPools(configured.maxPools, maxFrameBytes),
  };
  if (limits.maxPools < configured.maxPools) {
    log.warn(
      { maxPools: configured.maxPools, applied: limits.maxPools, maxFrameBytes },
      'maxPools lowered to what half of a frame holds; raise --max-frame-bytes for more',
    );
  }
  const connections = createConnectionRegistry(limits);
  const store = createPageStore({
    capacityBytes: options.capacityBytes,
    dedup: options.dedup === true,
    ...(options.spareSlabBytes === undefined ? {} : { spareSlabMaxBytes: options.spareSlabBytes }),
    ownerQuota: options.identityQuota ?? {},
  });
  const ops = createOpMetrics();
  let metricsServer: MetricsServer | undefined;
  const closeGraceMs = options.closeGraceMs ?? 2000;
  const leaveDrainMs = options.leaveDrainMs ?? 2000;
  const peerSockets = new WeakSet<WebSocket>();
  let closing: Promise<void> | undefined;
  /** Set once the node stops taking requests: after a graceful leave handed its partitions over. */
  let refusing = false;

  const serverOptions: ServerOptions = {
    // The upgrade request must be complete within the handshake deadline (the hello's own timer starts
    // after it); Node checks these deadlines every connectionsCheckingInterval.
    headersTimeout: limits.handshakeTimeoutMs,
    requestTimeout: limits.handshakeTimeoutMs,
    connectionsCheckingInterval: Math.min(1000, limits.handshakeTimeoutMs),
  };
  const refuseHttp = (_req: IncomingMessage, res: ServerResponse): void => {
    res.writeHead(426, { 'content-type': 'text/plain' }).end('tmem node: connect with WebSocket\n');
  };
  // Under TLS the node is an https server and nothing else: a plain ws:// dial fails its TLS handshake, so no
  // frame ever travels in the clear. Peers are not asked for certificates: they prove the cluster secret.
  const http: Server =
    options.tls === undefined
      ? createServer(serverOptions, refuseHttp)
      : createTlsServer(
          {
            ...serverOptions,
            cert: options.tls.cert,
            key: options.tls.key,
            handshakeTimeout: limits.handshakeTimeoutMs,
          },
          refuseHttp,
        );
  // A plain client (or a port scanner) on a TLS port: its socket is closed; worth a debug line, not more.
  http.on('tlsClientError', (error: Error) => log.debug({ err: error.message }, 'TLS handshake failed'));
  // TCP sockets that never finish an upgrade count too: beyond twice the WebSocket limit they are refused, and
  // each must upgrade within the handshake deadline (Node's own request timeouts ignore a socket that sends
  // nothing). The session's timer then gives the hello the same deadline again. Under TLS the timer starts
  // once the TLS handshake is done, on the socket the upgrade arrives on; the handshake itself is bounded by
  // handshakeTimeout, which bytes trickled into an unfinished hello do not reset (tls.test.ts pins both).
  http.maxConnections = 2 * limits.maxConnections;
  const upgradeTimers = new WeakMap<Socket, NodeJS.Timeout>();
  http.on(options.tls === undefined ? 'connection' : 'secureConnection', (tcp: Socket) => {
    const timer = setTimeout(() => tcp.destroy(), limits.handshakeTimeoutMs);
    upgradeTimers.set(tcp, timer);
    tcp.once('close', () => clearTimeout(timer));
  });
  const wss = new WebSocketServer({
    server: http,
    perMessageDeflate: false,
    maxPayload: maxFrameBytes + WS_PAYLOAD_SLACK_BYTES,
  });
  // ws re-emits the HTTP server's errors; one of listening (a port in use) rejects createMemnode below, and
  // the caller reports it, so only later ones are logged here.
  let listening = false;
  wss.on('error', (error) => {
    if (listening) log.error({ err: error }, 'websocket server error');
  });

  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
      http.off('error', reject);
      listening = true;
      resolve();
    });
  });
  const address = http.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `${options.tls === undefined ? 'ws' : 'wss'}://${host}:${address.port}`;
  const member = createClusterMember({
    nodeId,
    url: options.advertiseUrl ?? url,
    ...(options.sourceAddress === undefined ? {} : { sourceAddress: options.sourceAddress }),
    capacityBytes: options.capacityBytes,
    seeds: options.join ?? [],
    ...(options.partitionCount === undefined ? {} : { partitionCount: options.partitionCount }),
    store,
    codec,
    logger,
    ...(options.timing === undefined ? {} : { timing: options.timing }),
    ...(options.clusterSecret === undefined ? {} : { clusterSecret: options.clusterSecret }),
    ...(options.peerLinks === undefined ? {} : { peerLinks: options.peerLinks }),
    ...(options.tls?.ca === undefined ? {} : { peerCa: options.tls.ca }),
    ...(options.testCorruptOidPrefix === undefined
      ? {}
      : { testCorruptOidPrefix: options.testCorruptOidPrefix }),
    ...(options.ephemeralHandOver === undefined ? {} : { ephemeralHandOver: options.ephemeralHandOver }),
  });
  const sessions = createSessionLiveness({ graceMs: options.sessionGraceMs ?? DEFAULT_SESSION_GRACE_MS });
  const expiry = startSessionExpiry({ member, liveness: sessions, logger, maxFrameBytes });
  if (options.clientTokens === undefined) {
    log.warn('open mode: clients are not authenticated, any client may act as any identity');
  }
  if (options.clusterSecret === undefined) {
    log.warn(
      options.insecurePeers === true
        ? 'no cluster secret: any connection may claim to be a peer; set TMEM_CLUSTER_SECRET'
        : 'no cluster secret: this node admits no peers; set TMEM_CLUSTER_SECRET to form a cluster',
    );
  }
  // Sessions are served from here on; nobody knows the URL before this point, so no connection is missed.
  wss.on('connection', (socket: WebSocket, request: IncomingMessage) => {
    clearTimeout(upgradeTimers.get(request.socket));
    serveSession(socket, {
      nodeId,
      codec,
      store,
      cluster: member,
      logger,
      defaultReplication: options.defaultReplication ?? 2,
      clusterSecret: options.clusterSecret,
      insecurePeers: options.insecurePeers ?? false,
      isClosing: () => refusing,
      batchReplyParts: options.batchReplyParts ?? true,
      connections,
      clientTokens: options.clientTokens,
      adminIdentities,
      sharedPoolAccess: options.sharedPools,
      metrics: ops,
      peerSockets,
      sessions,
    });
  });
  log.info({ url, capacityBytes: options.capacityBytes, tls: options.tls !== undefined }, 'listening');

  async function shutdown(leave: boolean): Promise<void> {
    log.info({ leave }, 'closing');
    // Leaving needs the peers' acks, which arrive on their connections to us: keep listening until it is done.
    // While its persistent copies move it keeps serving; once it is `leaving` its answers say NOT_SERVING and
    // clients move on (cluster-member.ts leave()).
    const left = leave && (await member.leave());
    refusing = true;
    // Cutting the sockets now would fail the ops in flight on them (in doubt, for writes): answer them instead,
    // until every client, told by the new state or a SHUTTING_DOWN answer, has closed its connection. A node
    // that was alone has nowhere to send its clients, so it does not wait.
    if (left) {
      const clients = [...wss.clients].filter((socket) => !peerSockets.has(socket));
      await socketsClosed(clients, leaveDrainMs);
    }
    expiry.close();
    member.close();
    connections.close();
    await metricsServer?.close();
    // Then stop accepting first: peers reconnect every few hundred ms, and a connection accepted now would
    // keep the HTTP server from closing.
    const httpClosed = new Promise<void>((resolve) => http.close(() => resolve()));
    const wssClosed = new Promise<void>((resolve) => wss.close(() => resolve()));
    // ws's close() leaves open sockets alone; close each one ourselves, cutting stragglers after a grace.
    const sockets = [...wss.clients];
    for (const socket of sockets) socket.close(CloseCode.GoingAway, 'node shutting down');
    await socketsClosed(sockets, closeGraceMs);
    for (const socket of sockets) if (socket.readyState !== socket.CLOSED) socket.terminate();
    await socketsClosed(sockets, closeGraceMs);
    // Whatever is left (a half-open upgrade, a plain HTTP request) must not hold the exit.
    http.closeAllConnections();
    await wssClosed;
    await httpClosed;
    log.info('closed');
  }

  /** Resolves once every socket in `sockets` closed, or after `timeoutMs`. */
  function socketsClosed(sockets: readonly WebSocket[], timeoutMs: number): Promise<void> {
    const open = sockets.filter((socket) => socket.readyState !== socket.CLOSED);
    if (open.length === 0 || timeoutMs <= 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      let left = open.length;
      const timer = setTimeout(resolve, timeoutMs);
      for (const socket of open) {
        socket.once('close', () => {
          if (--left > 0) return;
          clearTimeout(timer);
          resolve();
        });
      }
    });
  }

  if (options.metricsPort !== undefined) {
    try {
      metricsServer = await startMetricsServer(
        createMetricsRegistry({ nodeId, ops, store, cluster: member }),
        {
          host: options.host ?? '127.0.0.1',
          port: options.metricsPort,
        },
      );
    } catch (error) {
      // A metrics port in use must not leave a half-started node behind.
      await shutdown(false);
      throw error;
    }
    log.info({ metricsUrl: metricsServer.url }, 'metrics');
  }

  return {
    nodeId,
    url,
    port: address.port,
    store,
    cluster: member,
    ops,
    metricsUrl: metricsServer?.url,
    close: (closeOptions = {}) => (closing ??= shutdown(closeOptions.leave ?? true)),
  };
}
