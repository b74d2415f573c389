import { connect, createServer, type Server, type Socket } from 'node:net';
import { seededRandom } from './random.ts';

// A TCP proxy that sits between two processes on loopback and breaks the link on command: delay, drop,
// blackhole, cut, refuse. It works on raw bytes, below WebSocket, so it can break anything (clients, peer
// links) the way a network does, without the processes knowing a proxy is there.
//
// Faults can be set for every connection or only for connections from one source address: when each process
// connects from its own loopback address (127.0.0.N), one proxy in front of a node can cut the link from one
// peer and leave the others alone, which is how per-pair partitions are built (see proxied-cluster.ts).

/** Where the proxy forwards connections to. */
export interface FaultProxyTarget {
  host: string;
  port: number;
}

/**
 * Which bytes a fault applies to: `toTarget` flows from whoever connected to the proxy to the target (requests),
 * `fromTarget` flows back (replies, pushes). `both` sets the two at once.
 */
export type FaultDirection = 'both' | 'toTarget' | 'fromTarget';

/**
 * What the proxy does to the bytes of one direction. A chunk is whatever one read from the source socket
 * returned: TCP keeps no message boundaries, so a chunk may hold part of a WebSocket frame or several.
 *
 * - `none`: bytes pass as they come.
 * - `delay`: every chunk is held `ms` plus a uniform random `0..jitterMs` (seeded by `seed`, @default 1) before
 *   it is written on. Never less than `ms`, and order within a direction is kept: a chunk is never delivered
 *   before one read earlier, so jitter bunches chunks up instead of reordering them (TCP never reorders).
 * - `drop`: with `probability` per chunk (a seeded PRNG, `seed` @default 1), the chunk is discarded and the
 *   connection is reset on both sides (RST). Dropping a chunk and carrying on would hand the receiver a byte
 *   stream with a hole, which no real network produces: TCP retransmits lost segments, so loss shows up as
 *   delay (use `delay` with jitter), and persistent loss shows up as a dead connection. The latter is what
 *   this models: a WebSocket peer sees an abnormal close (1006), never garbage. Which chunk draws the drop is
 *   reproducible for a seed only as far as chunk boundaries are (they depend on timing).
 * - `blackhole`: bytes (and a FIN) are swallowed while the connection stays open: applied to one direction
 *   it is a one-way partition, to both a full one. New connections are accepted but their handshake bytes
 *   vanish too. A connection that lost bytes this way has a hole in its stream, so it delivers nothing more
 *   in that direction, and it is reset when the blackhole is lifted (like a TCP connection that timed out
 *   during the partition); connections that lost nothing carry on. The receiver never sees garbage.
 */
export type Fault =
  | { kind: 'none' }
  | { kind: 'delay'; ms: number; jitterMs?: number; seed?: number }
  | { kind: 'drop'; probability: number; seed?: number }
  | { kind: 'blackhole' };

/**
 * Which connections a control applies to. `from` is a source address as the proxy sees it (the connecting
 * socket's remote address, e.g. `127.0.0.2`; an IPv4-mapped `::ffff:` prefix is ignored). Without `from`, the
 * control applies to every connection, and a fault set that way is the default of every source that has no
 * fault of its own for that direction.
 */
export interface FaultScope {
  from?: string;
}

/** Counters since the proxy started. */
export interface FaultProxyStats {
  /** Connections open now (through the proxy to the target). */
  connections: number;
  /** Connections accepted and forwarded, including those closed since. */
  accepted: number;
  /** Connections reset at once because refuse(true) was on or the proxy had no target yet. */
  refused: number;
  /** Connections the proxy reset: cut(), a drop, or a lifted blackhole. */
  cuts: number;
  /** Bytes written to the target. */
  bytesToTarget: number;
  /** Bytes written back to the connecting side. */
  bytesFromTarget: number;
  /** Chunks discarded, by a blackhole or a drop (not bytes: chunk sizes depend on timing). */
  dropped: number;
  /** Chunks read and held back (delayed), not yet written: 0 means nothing is still on its way. */
  queued: number;
  /** Connections open now, by source address (as FaultScope names them). */
  sources: Record<string, number>;
}

/** A running fault proxy. Every control takes effect at once, on open connections and new ones alike. */
export interface FaultProxy {
  /** `ws://127.0.0.1:<port>`: give it to a client or peer in place of the target's URL. */
  readonly url: string;
  readonly port: number;
  /** Where new connections go; undefined until a proxy started without one is given one by retarget(). */
  readonly target: FaultProxyTarget | undefined;
  /**
   * Sets the fault of one direction or both, replacing what was set there: for every connection (the default),
   * or with `scope.from` only for connections from that source address, which then ignore the default in that
   * direction until clearFaults({ from }). Chunks already delayed keep their delivery time (they are on the
   * wire), and later chunks still queue behind them.
   */
  setFault(direction: FaultDirection, fault: Fault, scope?: FaultScope): void;
  /**
   * With `scope.from`, drops that source's own faults, so the defaults apply to it again; without, drops every
   * source's faults and sets the defaults to none. Blackholes lifted this way reset their connections.
   */
  clearFaults(scope?: FaultScope): void;
  /**
   * Resets every open connection (only those from `scope.from`, if given), both sides (RST): each side sees its
   * connection die at once.
   */
  cut(scope?: FaultScope): void;
  /**
   * Sends new connections to `target` (a host and port, or a `ws://` URL), e.g. a node restarted on another
   * port behind the same proxy URL. Open connections keep the target they were made to.
   */
  retarget(target: FaultProxyTarget | string): void;
  /**
   * While on, new connections are accepted and reset at once, so connecting fails with ECONNRESET. (Not
   * ECONNREFUSED: the listener stays bound, so the port and the url stay the proxy's.) Open ones are untouched.
   */
  refuse(on: boolean): void;
  stats(): FaultProxyStats;
  /** Stops listening and resets every connection. Idempotent. */
  close(): Promise<void>;
}

/** Options of startFaultProxy. */
export interface FaultProxyOptions {
  /**
   * Where to forward: a host and port, or a `ws://host:port` URL such as NodeProcess.url. Without one, every
   * connection is reset until retarget() gives one: a node can then be told the proxy's URL before it starts.
   */
  target?: FaultProxyTarget | string;
}

type Way = 'toTarget' | 'fromTarget';

/** One direction of one connection. */
interface Pipe {
  readonly way: Way;
  readonly source: Socket;
  readonly dest: Socket;
  /** Chunks read and not yet written, oldest first, with due times never decreasing; null is the FIN. */
  readonly queue: { chunk: Buffer | null; dueMs: number }[];
  timer: NodeJS.Timeout | undefined;
  /** A blackhole swallowed bytes: the stream has a hole, so nothing more may be delivered. */
  lost: boolean;
}

interface Connection {
  /** The source address of the connecting side, as rules name it. */
  readonly source: string;
  readonly client: Socket;
  readonly target: Socket;
  readonly pipes: readonly [Pipe, Pipe];
}

const proxies = new Set<FaultProxy>();

const DEFAULT_SEED = 1;

function checkFault(fault: Fault): void {
  const bad = (what: string): never => {
    throw new RangeError(`invalid ${fault.kind} fault: ${what}`);
  };
  if (fault.kind === 'delay') {
    if (!Number.isFinite(fault.ms) || fault.ms < 0) bad('ms must be a finite number >= 0');
    const jitter = fault.jitterMs ?? 0;
    if (!Number.isFinite(jitter) || jitter < 0) bad('jitterMs must be a finite number >= 0');
  } else if (fault.kind === 'drop') {
    if (!(fault.probability >= 0 && fault.probability <= 1)) bad('probability must be in [0, 1]');
  }
}

/** Resets a socket (RST) so its peer sees the connection die, not end. */
function reset(socket: Socket): void {
  if (socket.destroyed) return;
  // A socket still connecting has no connection to reset; resetAndDestroy would wait for one.
  if (socket.connecting) socket.destroy();
  else socket.resetAndDestroy();
}

/** The host and port of a `ws://` or `wss://` URL (e.g. NodeProcess.url). */
export function targetOf(url: string): FaultProxyTarget {
  const parsed = new URL(url);
  const port = Number(parsed.port);
  if (!Number.isInteger(port) || port <= 0) throw new RangeError(`url ${url} names no port`);
  // URL keeps IPv6 hosts bracketed; net.connect wants them bare.
  return { host: parsed.hostname.replace(/^\[(.*)\]$/, '$1'), port };
}

/** A fault in force, with the PRNG its drops and jitter draw from. */
interface ActiveFault {
  fault: Fault;
  random: () => number;
}

function activeFault(way: Way, fault: Fault): ActiveFault {
  // Each direction draws from its own sequence, so `both` does not make the two mirror each other.
  const seed = (fault.kind === 'drop' || fault.kind === 'delay' ? fault.seed : undefined) ?? DEFAULT_SEED;
  return { fault: { ...fault }, random: seededRandom(way === 'toTarget' ? seed : seed + 1) };
}

function targetFrom(target: FaultProxyTarget | string): FaultProxyTarget {
  return typeof target === 'string' ? targetOf(target) : { ...target };
}

/** A source address as rules name it: IPv4-mapped IPv6 (`::ffff:127.0.0.2`) is the IPv4 address. */
function sourceOf(socket: Socket): string {
  return (socket.remoteAddress ?? '').replace(/^::ffff:/, '');
}

/**
 * Starts a fault proxy on 127.0.0.1, port 0, forwarding every accepted connection to `target` over a
 * connection of its own, bytes piped both ways (half-closes included). It starts with no fault. Every proxy
 * started here is registered for closeAllFaultProxies().
 */
export async function startFaultProxy(options: FaultProxyOptions = {}): Promise<FaultProxy> {
  let target = options.target === undefined ? undefined : targetFrom(options.target);
  const defaults: Record<Way, ActiveFault> = {
    toTarget: activeFault('toTarget', { kind: 'none' }),
    fromTarget: activeFault('fromTarget', { kind: 'none' }),
  };
  /** Faults of single source addresses, per direction; a direction without one falls back to the default. */
  const rules = new Map<string, Partial<Record<Way, ActiveFault>>>();
  const connections = new Set<Connection>();
  const counters = { accepted: 0, refused: 0, cuts: 0, bytesToTarget: 0, bytesFromTarget: 0, dropped: 0 };
  let refusing = false;

  function faultOf(source: string, way: Way): ActiveFault {
    return rules.get(source)?.[way] ?? defaults[way];
  }

  /**
   * Resets every connection that lost bytes to a blackhole no longer in force for it, instead of handing the
   * receiver a stream with a hole (like a TCP connection that timed out during the partition).
   */
  function liftBlackholes(): void {
    for (const connection of connections) {
      const lifted = connection.pipes.some(
        (p) => p.lost && faultOf(connection.source, p.way).fault.kind !== 'blackhole',
      );
      if (lifted) cutOne(connection);
    }
  }

  function destroy(connection: Connection): void {
    for (const pipe of connection.pipes) {
      clearTimeout(pipe.timer);
      pipe.queue.length = 0;
    }
    reset(connection.client);
    reset(connection.target);
  }

  function cutOne(connection: Connection): void {
    counters.cuts++;
    destroy(connection);
  }

  /** Writes every due chunk in order, then sleeps until the next one is due. */
  function pump(pipe: Pipe): void {
    clearTimeout(pipe.timer);
    pipe.timer = undefined;
    // Rechecked against the clock rather than trusting the timer: timers may fire a little early.
    const now = performance.now();
    for (let head = pipe.queue[0]; head !== undefined; head = pipe.queue[0]) {
      if (pipe.dest.destroyed) {
        pipe.queue.length = 0;
        return;
      }
      if (head.dueMs > now) {
        pipe.timer = setTimeout(() => pump(pipe), Math.ceil(head.dueMs - now));
        return;
      }
      pipe.queue.shift();
      if (head.chunk === null) {
        pipe.dest.end();
        continue;
      }
      if (pipe.way === 'toTarget') counters.bytesToTarget += head.chunk.length;
      else counters.bytesFromTarget += head.chunk.length;
      // Backpressure: stop reading the source while the destination's buffer is full.
      if (!pipe.dest.write(head.chunk) && !pipe.source.isPaused()) {
        pipe.source.pause();
        pipe.dest.once('drain', () => pipe.source.resume());
      }
    }
  }

  /** Decides the fate of one chunk (or of the FIN, as null) under the direction's fault at the time it is read. */
  function onRead(connection: Connection, pipe: Pipe, chunk: Buffer | null): void {
    const { fault, random } = faultOf(connection.source, pipe.way);
    const now = performance.now();
    let dueMs = now;
    switch (fault.kind) {
      case 'blackhole':
        if (chunk !== null) counters.dropped++;
        pipe.lost = true;
        return;
      case 'drop':
        if (chunk !== null && random() < fault.probability) {
          counters.dropped++;
          cutOne(connection);
          return;
        }
        break;
      case 'delay':
        dueMs = now + fault.ms + (fault.jitterMs ? random() * fault.jitterMs : 0);
        break;
      case 'none':
        break;
    }
    // FIFO: never due before the chunk ahead, so neither jitter nor a shorter new delay reorders bytes.
    const last = pipe.queue[pipe.queue.length - 1];
    pipe.queue.push({ chunk, dueMs: Math.max(dueMs, last?.dueMs ?? dueMs) });
    pump(pipe);
  }

  function accept(client: Socket): void {
    client.on('error', () => undefined);
    if (refusing || target === undefined) {
      counters.refused++;
      reset(client);
      return;
    }
    counters.accepted++;
    const upstream = connect({ host: target.host, port: target.port, allowHalfOpen: true });
    // Loopback latency is the point of these tests; Nagle would add its own.
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    const pipe = (way: Way, source: Socket, dest: Socket): Pipe => ({
      way,
      source,
      dest,
      queue: [],
      timer: undefined,
      lost: false,
    });
    const connection: Connection = {
      source: sourceOf(client),
      client,
      target: upstream,
      pipes: [pipe('toTarget', client, upstream), pipe('fromTarget', upstream, client)],
    };
    connections.add(connection);
    for (const p of connection.pipes) {
      p.source.on('data', (chunk: Buffer) => onRead(connection, p, chunk));
      p.source.on('end', () => onRead(connection, p, null));
    }
    let open = 2;
    for (const socket of [client, upstream]) {
      // Errors (a reset, a refused target) are expected here; 'close' handles the aftermath.
      socket.on('error', () => undefined);
      socket.on('close', (hadError) => {
        // One side died: the other must not linger half-connected, as it would without a proxy in between.
        if (hadError) destroy(connection);
        if (--open === 0) connections.delete(connection);
      });
    }
  }

  const server: Server = createServer({ allowHalfOpen: true }, accept);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('fault proxy has no TCP address');
  const port = address.port;

  let closing: Promise<void> | undefined;
  const proxy: FaultProxy = {
    url: `ws://127.0.0.1:${port}`,
    port,
    get target() {
      return target === undefined ? undefined : { ...target };
    },
    setFault(direction, fault, scope = {}) {
      checkFault(fault);
      const ways: Way[] = direction === 'both' ? ['toTarget', 'fromTarget'] : [direction];
      for (const way of ways) {
        if (scope.from === undefined) {
          defaults[way] = activeFault(way, fault);
        } else {
          const own = rules.get(scope.from) ?? {};
          own[way] = activeFault(way, fault);
          rules.set(scope.from, own);
        }
      }
      liftBlackholes();
    },
    clearFaults(scope = {}) {
      if (scope.from !== undefined) {
        rules.delete(scope.from);
      } else {
        rules.clear();
        defaults.toTarget = activeFault('toTarget', { kind: 'none' });
        defaults.fromTarget = activeFault('fromTarget', { kind: 'none' });
      }
      liftBlackholes();
    },
    cut(scope = {}) {
      for (const connection of connections) {
        if (scope.from === undefined || connection.source === scope.from) cutOne(connection);
      }
    },
    retarget(next) {
      target = targetFrom(next);
    },
    refuse(on) {
      refusing = on;
    },
    stats: () => {
      let queued = 0;
      const sources: Record<string, number> = {};
      for (const connection of connections) {
        for (const pipe of connection.pipes) queued += pipe.queue.length;
        sources[connection.source] = (sources[connection.source] ?? 0) + 1;
      }
      return { connections: connections.size, ...counters, queued, sources };
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        proxies.delete(proxy);
        refusing = true;
        server.close(() => resolve());
        for (const connection of connections) destroy(connection);
      });
      return closing;
    },
  };
  proxies.add(proxy);
  return proxy;
}

/** Closes every fault proxy still open (afterEach), so a failed test leaves no listener or connection behind. */
export async function closeAllFaultProxies(): Promise<void> {
  await Promise.all([...proxies].map((proxy) => proxy.close()));
}
