// Keeps the client's cluster state current: a subscription on one "control" connection (pushed updates),
// refreshes on demand (version mismatches, lost connections) and a periodic refresh as the safety net.
import { ErrorCode, TmemError, type MemberInfo, type StateReply } from '@tmem/protocol';
import type { ConnectionPool } from './connection-pool.ts';
import { sameState, type ViewTracker } from './cluster-view.ts';
import { abortReason, now } from './deadline.ts';
import type { NodeConnection } from './node-connection.ts';
import type { Logger } from './options.ts';
import { backoffMs } from './retry.ts';
import { connectFirst, noNodesError, seedFailure, type SeedFailure } from './seeds.ts';

/** What the state sync needs. */
export interface StateSyncOptions {
  seeds: readonly string[];
  tracker: ViewTracker;
  pool: ConnectionPool;
  /** Opens a connection to a seed URL, with the client's hooks installed. */
  openSeed: (url: string) => Promise<NodeConnection>;
  /** Time a node has to answer getState, in milliseconds. */
  timeoutMs: number;
  /** Period of the safety-net refresh, in milliseconds. */
  stateRefreshMs: number;
  logger: Logger;
  /** Aborted when the client closes. */
  signal: AbortSignal;
}

/** The client's source of cluster states. */
export interface StateSync {
  /**
   * Learns the first state from the first seed that answers getState, subscribes there, and starts the
   * periodic refresh. Rejects with NO_NODES (details.failures per seed) when no seed answers.
   */
  start(): Promise<void>;
  /**
   * Asks for the current state: `source` first when given (a node that reported a newer version), then the
   * control connection, the members of the view (suspects last) and the seeds. Concurrent calls share one
   * refresh. Resolves once a node answered (its state adopted if newer); rejects with NO_NODES when none did.
   * Subscribes on the node that answers when no subscription is alive.
   */
  refresh(source?: NodeConnection): Promise<void>;
  /** A state a node pushed. */
  pushed(connection: NodeConnection, frame: StateReply): void;
  /** A connection closed; when it carried the subscription, another is made through any reachable node. */
  connectionClosed(connection: NodeConnection): void;
  /** Stops the timers and closes the connection the sync owns (a seed that is not a member). */
  close(error: TmemError): Promise<void>;
}

interface Candidate {
  readonly url: string;
  /** Set when the candidate is a member of the current view. */
  readonly member?: MemberInfo;
}

/** Creates the state sync; nothing happens before start(). */
export function createStateSync(options: StateSyncOptions): StateSync {
  const { tracker, pool, logger: log, signal } = options;
  /** The connection our subscription lives on; pushes from any connection are taken, though. */
  let control: NodeConnection | undefined;
  /** The connection the sync itself owns: a control connection to a node the pool does not know as a member. */
  let owned: NodeConnection | undefined;
  /** Every open connection the sync made to a seed URL: closed with the client unless the pool took it over. */
  const seedConnections = new Set<NodeConnection>();
  let inFlight: Promise<void> | undefined;
  let periodic: NodeJS.Timeout | undefined;
  let resubscribe: NodeJS.Timeout | undefined;

  tracker.on('view', (view) => {
    log.debug({ version: view.version, members: view.members.length }, 'cluster view changed');
    const state = tracker.state;
    if (state === undefined) return;
    pool.retain(state.members);
    // A control connection to a seed that has become a member now belongs with the member's other traffic.
    if (owned !== undefined) {
      const member = tracker.memberById(owned.nodeId);
      if (member !== undefined && pool.adopt(member, owned)) owned = undefined;
    }
  });

  async function openSeed(url: string): Promise<NodeConnection> {
    const connection = await options.openSeed(url);
    // Opened just as the client closed: nobody would close it later.
    if (signal.aborted) {
      await connection.close(signal.reason as TmemError);
      throw abortReason(signal);
    }
    if (connection.isOpen) seedConnections.add(connection);
    return connection;
  }

  function getState(connection: NodeConnection, subscribe: boolean): Promise<StateReply> {
    return connection.request({ t: 'getState', subscribe }, { deadline: now() + options.timeoutMs });
  }

  function subscribed(): boolean {
    return control?.isOpen === true;
  }

  /** Lets go of a seed connection nobody needs. */
  function discard(connection: NodeConnection): void {
    if (connection === control || pool.owns(connection)) return;
    void connection.close(new TmemError(ErrorCode.ConnectionLost, 'seed connection no longer needed'));
  }

  /** Takes a state reply from `connection`, which subscribed when `subscribe` was set. */
  function accept(connection: NodeConnection, reply: StateReply, subscribe: boolean, reset: boolean): void {
    if (signal.aborted) {
      discard(connection);
      return;
    }
    tracker.offer(reply.state, reply.leaderId, { reset });
    if (!pool.owns(connection)) {
      const member = tracker.memberById(connection.nodeId);
      if (member !== undefined) pool.adopt(member, connection);
    }
    if (subscribe) {
      const previous = owned;
      control = connection;
      owned = pool.owns(connection) ? undefined : connection;
      if (previous !== undefined && previous !== owned) discard(previous);
      log.debug({ node: connection.url, nodeId: connection.nodeId }, 'subscribed to cluster state');
    } else if (!pool.owns(connection)) {
      discard(connection);
    }
  }

  /**
   * True when a state is newer than ours, or ours: nothing to doubt. A state of another cluster is not: a seed
   * may answer for another cluster than the members we know, so it is taken only when no member answers.
   */
  function agrees(reply: StateReply): boolean {
    const current = tracker.state;
    return current === undefined || reply.state.version > current.version || sameState(reply.state, current);
  }

  function candidates(): Candidate[] {
    const members = tracker.state?.members ?? [];
    const open: Candidate[] = [];
    const healthy: Candidate[] = [];
    const suspect: Candidate[] = [];
    for (const member of members) {
      const list = pool.peek(member) ? open : pool.isSuspect(member) ? suspect : healthy;
      list.push({ url: member.url, member });
    }
    const memberUrls = new Set(members.map((m) => m.url));
    const seeds = options.seeds.filter((url) => !memberUrls.has(url)).map((url) => ({ url }));
    // A seed at a member's URL last, as a seed: after a whole-cluster restart on the same ports the member
    // there is gone (a new process of a new cluster, maybe under another node id, which the member connection
    // refuses), and only the seed connection, which takes any node, finds the new cluster.
    const memberSeeds = options.seeds.filter((url) => memberUrls.has(url)).map((url) => ({ url }));
    // Seeds before suspects: a suspect member is probably dead and would cost a connect timeout.
    return [...open, ...healthy, ...seeds, ...suspect, ...memberSeeds];
  }

  async function fetchFrom(source: NodeConnection | undefined): Promise<void> {
    const failures: SeedFailure[] = [];
    const errors: unknown[] = [];
    const fail = (url: string, error: unknown): void => {
      if (signal.aborted) throw abortReason(signal);
      failures.push(seedFailure(url, error));
      errors.push(error);
    };
    const subscribe = !subscribed();
    const firstTries = [source, subscribe ? undefined : control].filter(
      (c, i, all): c is NodeConnection => c?.isOpen === true && all.indexOf(c) === i,
    );
    const tried = new Set<NodeConnection>();
    for (const connection of firstTries) {
      tried.add(connection);
      try {
        accept(connection, await getState(connection, subscribe), subscribe, false);
        return;
      } catch (error) {
        fail(connection.url, error);
      }
    }
    const members = tracker.state?.members.length ?? 0;
    let membersFailed = 0;
    // A seed that reports an older or another state than ours: used only if no member of our view answers.
    let fallback: { connection: NodeConnection; reply: StateReply } | undefined;
    for (const candidate of candidates()) {
      let connection: NodeConnection | undefined;
      try {
        connection = candidate.member ? await pool.get(candidate.member) : await openSeed(candidate.url);
        // The control connection failed above already; its failure is on the list.
        if (!tried.has(connection)) {
          const reply = await getState(connection, subscribe);
          if (candidate.member !== undefined || agrees(reply)) {
            accept(connection, reply, subscribe, false);
            if (fallback !== undefined) discard(fallback.connection);
            return;
          }
          if (fallback === undefined || reply.state.version > fallback.reply.state.version) {
            if (fallback !== undefined) discard(fallback.connection);
            fallback = { connection, reply };
          } else {
            discard(connection);
          }
        }
      } catch (error) {
        if (candidate.member === undefined && connection !== undefined) discard(connection);
        fail(candidate.url, error);
      }
      if (candidate.member !== undefined) membersFailed++;
    }
    if (fallback !== undefined) {
      // Every member we knew is unreachable: the seeds may be a restarted cluster, with versions begun anew.
      const reset = membersFailed === members;
      accept(fallback.connection, fallback.reply, subscribe, reset);
      if (reset) log.warn({ version: fallback.reply.state.version }, 'no known member answered; state reset');
      return;
    }
    throw noNodesError(
      'no member of the cluster and no seed answered with the cluster state; check that the nodes run',
      failures,
      errors,
    );
  }

  function refresh(source?: NodeConnection): Promise<void> {
    if (signal.aborted) return Promise.reject(abortReason(signal));
    inFlight ??= fetchFrom(source).finally(() => {
      inFlight = undefined;
    });
    return inFlight;
  }

  function background(why: string): void {
    refresh().catch((error: unknown) => {
      if (!signal.aborted) log.debug({ why, code: (error as TmemError).code }, 'state refresh failed');
    });
  }

  return {
    async start() {
      const { connection, reply } = await connectFirst(
        options.seeds,
        async (url) => {
          const connection = await openSeed(url);
          try {
            return { connection, reply: await getState(connection, true) };
          } catch (error) {
            discard(connection);
            throw error;
          }
        },
        signal,
      );
      accept(connection, reply, true, false);
      periodic = setInterval(background, options.stateRefreshMs, 'periodic');
      periodic.unref();
    },
    refresh,
    pushed(_connection, frame) {
      tracker.offer(frame.state, frame.leaderId);
    },
    connectionClosed(connection) {
      seedConnections.delete(connection);
      if (connection === owned) owned = undefined;
      if (connection !== control) return;
      control = undefined;
      // Ask the others first next time: the node may be dead while the cluster does not know it yet.
      const member = tracker.memberById(connection.nodeId);
      if (member !== undefined) pool.suspect(member);
      if (signal.aborted || resubscribe !== undefined) return;
      // After a short, jittered pause: many clients cut off by one failure should not all call at once.
      resubscribe = setTimeout(() => {
        resubscribe = undefined;
        background('subscription lost');
      }, backoffMs(1));
      resubscribe.unref();
    },
    async close(error) {
      clearInterval(periodic);
      clearTimeout(resubscribe);
      // An in-flight refresh ends by itself: its connections close here or with the pool, and it adopts nothing.
      owned = undefined;
      control = undefined;
      const mine = [...seedConnections].filter((c) => !pool.owns(c));
      seedConnections.clear();
      await Promise.all(mine.map((c) => c.close(error)));
    },
  };
}
