// Routes every op to the member that serves it, and runs the retry loop around it: refresh the cluster state
// and retry after topology answers (STALE_STATE, NOT_SERVING, NO_COORDINATOR) for as long as the op's timeout
// lasts, then fail with TIMEOUT; refresh and retry after a lost connection within the `retries` budget.
import {
  ConnectionLostError,
  type ClusterChangedError,
  ErrorCode,
  TimeoutError,
  TmemError,
  memberKey,
  type MemberInfo,
  type NodeStats,
} from '@tmem/protocol';
import type { ConnectionPool } from './connection-pool.ts';
import type { ViewTracker } from './cluster-view.ts';
import { abortReason, beforeDeadline, now, sleep } from './deadline.ts';
import type { NodeConnection } from './node-connection.ts';
import type { Logger } from './options.ts';
import { clusterChangedFor } from './cluster-identity.ts';
import { readPage } from './page-read.ts';
import type { Execute, ExecuteOptions } from './pool.ts';
import type { PageRequest, ReplyTo, RoutedRequest } from './requests.ts';
import { classifyFailure, isRetryable, isTopologyError, retryDecision, type Failure } from './retry.ts';
import type { StateSync } from './state-sync.ts';

/** What the router needs. */
export interface RouterOptions {
  tracker: ViewTracker;
  pool: ConnectionPool;
  sync: StateSync;
  /** Budget of every op, in milliseconds, from the call. */
  timeoutMs: number;
  /** Retries after lost connections. */
  retries: number;
  /** Aborted, with CLIENT_CLOSED, when the client closes. */
  signal: AbortSignal;
  /** A fresh CLIENT_CLOSED error, for calls made after close. */
  closedError: () => TmemError;
  logger: Logger;
}

/** Runs ops on the cluster. */
export interface Router {
  /**
   * Runs one request: page ops on their partition's primary (a persistent get on another owner when the
   * primary cannot be reached or its copy is corrupt), flushObject on every member, pool changes on any member
   * (which forwards them to the coordinator).
   */
  execute: Execute;
  /** Statistics of every member of the current view, in member order. */
  stats(): Promise<NodeStats[]>;
}

/** Ranks failures of a fan-out: the one the retry loop must see first. */
function severity(error: unknown): number {
  if (isTopologyError(error)) return 1;
  if (isRetryable(error)) return 2;
  return 3;
}

function noOwner(): TmemError {
  return new TmemError(ErrorCode.NotServing, 'no member serves this op in the current cluster state');
}

/** A persistent pool the view does not show yet: a topology answer, so the state is refreshed. */
function poolNotInView(pool: number, viewVersion: number): TmemError {
  return new TmemError(
    ErrorCode.NotServing,
    `persistent pool ${pool} is not in the cluster state the client has (version ${viewVersion}) yet`,
    { details: { pool, viewVersion } },
  );
}

/** A page op of one page: the ops routed to the owners of a partition. */
type OnePageRequest = Exclude<PageRequest, { t: 'flushObject' }>;

/** Creates a router over the client's view, connections and state sync. */
export function createRouter(options: RouterOptions): Router {
  const { tracker, pool, sync, timeoutMs, signal, logger: log } = options;
  /** The connection that answered a topology error: a node ahead of us is the best place to refresh from. */
  const sources = new WeakMap<TmemError, NodeConnection>();

  /** Sends `request` to `member`, connecting first if needed. */
  async function sendTo<R extends RoutedRequest>(
    member: MemberInfo,
    request: R,
    sv: number | undefined,
    deadline: number,
    pageSize: number | undefined,
    clusterId: string | undefined,
  ): Promise<ReplyTo<R>> {
    let connection: NodeConnection | undefined;
    try {
      try {
        // An open connection needs no deadline race (a timer and a race promise per op); connection.request
        // enforces the deadline itself.
        connection = pool.peek(member) ?? (await beforeDeadline(pool.get(member), deadline, timeoutMs));
      } catch (error) {
        // Nothing was sent, so nothing is in doubt: a member of the view that cannot be reached (crashed,
        // not yet removed) is a topology answer. The op waits, within its deadline, for the cluster to move
        // the partition instead of failing: a node crash must not surface as an error for ephemeral gets.
        if (isRetryable(error) && tracker.memberById(member.id) !== undefined) {
          pool.suspect(member);
          throw new TmemError(ErrorCode.NotServing, `member ${member.id} is unreachable`, {
            cause: error,
            details: { member: member.id, unreachable: true },
          });
        }
        // A member that left the view while we connected: nothing was sent, the op follows the new view.
        if (isRetryable(error)) {
          const lost = error as ConnectionLostError;
          throw new ConnectionLostError(lost.message, {
            cause: lost,
            details: { ...lost.details, sent: false },
          });
        }
        throw error;
      }
      // A node of another cluster than the pool's (restarted at a member's address): never send it the op. The
      // refresh this topology answer brings adopts that cluster's state if it is the cluster now, and the
      // next attempt fails with CLUSTER_CHANGED (inPoolCluster).
      if ('pool' in request && clusterChangedFor(request.pool, clusterId, connection.clusterId)) {
        throw new TmemError(ErrorCode.NotServing, `node ${member.id} serves another cluster`, {
          details: { member: member.id, clusterId: connection.clusterId },
        });
      }
      return await connection.request(request, { deadline, pageSize, sv });
    } catch (error) {
      if (isRetryable(error)) pool.suspect(member);
      else if (isTopologyError(error) && connection !== undefined) sources.set(error, connection);
      throw error;
    }
  }

  /** Refreshes the state within the deadline; returns the failure instead of throwing it. */
  async function refreshQuietly(deadline: number, source?: NodeConnection): Promise<unknown> {
    try {
      await beforeDeadline(sync.refresh(source), deadline, timeoutMs);
      return undefined;
    } catch (error) {
      if (signal.aborted) throw abortReason(signal);
      return error;
    }
  }

  /**
   * What an op that ran out of time while rerouting fails with: the lost connection when the member stayed
   * unreachable, else a timeout with the last topology answer (or unsent lost connection) as cause.
   */
  function outOfTime(last: Failure): Error {
    const error = last.error as TmemError;
    if (error.details['unreachable'] === true && error.cause instanceof Error) return error.cause;
    return new TimeoutError(timeoutMs, { cause: error });
  }

  /**
   * Runs `attempt` under the retry policy (retryDecision): after a topology answer or an op that never left
   * the client, refreshes the state (from the node that reported a newer version, when one did) and retries,
   * at once when the state moved, else after a backoff, while the deadline allows; after a connection lost
   * under a sent op, retries after a backoff and a refresh while `retries` and time last, unless `retry` is
   * false or the op is a write (`onlyUnsent`: in doubt).
   */
  async function run<T>(
    retry: boolean,
    deadline: number,
    attempt: () => Promise<T>,
    onlyUnsent = false,
  ): Promise<T> {
    let lostRetries = 0;
    let reroutes = 0;
    /** The last topology answer or unsent failure since the last lost-connection retry. */
    let lastReroute: Failure | undefined;
    let refreshError: unknown;
    for (;;) {
      if (signal.aborted) throw abortReason(signal);
      let error: unknown;
      try {
        return await attempt();
      } catch (caught) {
        error = caught;
      }
      const failure = classifyFailure(error);
      let viewMoved = false;
      if (failure.kind === 'topology' || failure.kind === 'unsent') {
        lastReroute = failure;
        const before = tracker.version;
        const reported = failure.kind === 'topology' ? failure.error.details['version'] : undefined;
        const source =
          typeof reported === 'number' && reported > before ? sources.get(failure.error) : undefined;
        await refreshQuietly(deadline, source);
        viewMoved = tracker.version !== before;
      } else if (failure.kind === 'lost' && signal.aborted) {
        // Closing the client wins over a lost connection: the caller learns why nothing will be retried.
        throw abortReason(signal);
      }
      const decision = retryDecision(
        {
          retryLost: retry,
          onlyUnsent,
          retries: options.retries,
          lostRetries,
          reroutes,
          msLeft: deadline - now(),
        },
        failure,
        viewMoved,
      );
      if (!decision.retry) {
        // The deadline can also strike inside an attempt (while connecting again): when the member had
        // stayed unreachable, that is the same outcome as running out of time while rerouting.
        const final =
          lastReroute !== undefined && (decision.outOfTime || failure.kind === 'timeout')
            ? outOfTime(lastReroute)
            : error;
        // Finding no node after losing one is still a lost connection.
        if (
          isRetryable(final) &&
          refreshError instanceof TmemError &&
          refreshError.code === ErrorCode.NoNodes
        ) {
          throw new ConnectionLostError('connection lost and no node of the cluster could be reached again', {
            cause: refreshError,
            details: refreshError.details,
          });
        }
        throw final as Error;
      }
      if (decision.spends) {
        lostRetries++;
        reroutes = 0;
        lastReroute = undefined;
      } else {
        reroutes++;
      }
      if (decision.delayMs > 0) {
        log.debug({ kind: failure.kind, version: tracker.version, pause: decision.delayMs }, 'retrying');
        await sleep(decision.delayMs, signal);
      }
      if (decision.refresh) refreshError = await refreshQuietly(deadline);
    }
  }

  /** A member to send pool changes to: any member forwards them to the coordinator; one we talk to is best. */
  function anyMember(): MemberInfo | undefined {
    const members = tracker.state?.members ?? [];
    const leader = tracker.leader();
    if (leader !== undefined && pool.peek(leader)) return leader;
    return (
      members.find((m) => pool.peek(m) !== undefined) ??
      leader ??
      members.find((m) => !pool.isSuspect(m)) ??
      members[0]
    );
  }

  /**
   * Sends `request` to every member of the view, in parallel, until each answered; after a failure only the
   * members that have not answered are asked again (members that left the refreshed view are not, members
   * that joined are). Resolves with the replies of the members of the final view, in member order.
   */
  function broadcast<R extends RoutedRequest>(
    request: R,
    how: ExecuteOptions,
    deadline: number,
    withVersion: boolean,
  ): Promise<Array<ReplyTo<R>>> {
    const answered = new Map<string, ReplyTo<R>>();
    /** The state version the answers in `answered` were given at (versioned requests only). */
    let answeredVersion: number | undefined;
    return run(how.retry, deadline, async () => {
      for (;;) {
        const state = tracker.state;
        if (state === undefined) throw noOwner();
        // A versioned op (flushObject) is done only when every member did it at ONE state: a member that
        // answered at an older one may since have become the owner of pages it did not own then.
        if (withVersion && answeredVersion !== state.version) {
          answered.clear();
          answeredVersion = state.version;
        }
        const todo = state.members.filter((m) => !answered.has(memberKey(m)));
        const sv = withVersion ? state.version : undefined;
        const results = await Promise.allSettled(
          todo.map((m) => sendTo(m, request, sv, deadline, how.pageSize, how.clusterId)),
        );
        let failure: unknown;
        results.forEach((result, i) => {
          if (result.status === 'fulfilled') answered.set(memberKey(todo[i] as MemberInfo), result.value);
          else if (failure === undefined || severity(result.reason) > severity(failure))
            failure = result.reason;
        });
        if (failure !== undefined) throw failure as Error;
        // The view may have changed while the members answered: then the members it added are asked too
        // (and, for a versioned op, every member again).
        if (tracker.state === state) {
          return state.members.map((m) => answered.get(memberKey(m)) as ReplyTo<R>);
        }
      }
    });
  }

  function toCoordinator<R extends RoutedRequest>(
    request: R,
    how: ExecuteOptions,
    deadline: number,
  ): Promise<ReplyTo<R>> {
    // NO_COORDINATOR leaves a destroy in doubt (it may commit later): UNKNOWN_POOL on a retry means it did.
    let inDoubt = false;
    return run(how.retry, deadline, async () => {
      const member = anyMember();
      if (member === undefined) throw noOwner();
      try {
        return await sendTo(member, request, undefined, deadline, undefined, how.clusterId);
      } catch (error) {
        if (request.t === 'destroyPool' && error instanceof TmemError) {
          if (error.code === ErrorCode.NoCoordinator) inDoubt = true;
          else if (inDoubt && error.code === ErrorCode.UnknownPool) return { t: 'ok', id: 0 } as ReplyTo<R>;
        }
        throw error;
      }
    });
  }

  /**
   * Owners of the page's partition in the current view, primary first: by the pool's own table (ready members
   * for a persistent pool). Throws a topology answer when there are none, or the view predates the pool.
   */
  function ownersOf(request: OnePageRequest, how: ExecuteOptions): readonly MemberInfo[] {
    if (tracker.state === undefined) throw noOwner();
    const kind = how.kind ?? 'ephemeral';
    const owners = tracker.ownersFor(request.pool, kind, request.oid, request.index, how.createdVersion);
    if (owners === undefined) throw poolNotInView(request.pool, tracker.version);
    if (owners.length === 0) throw noOwner();
    return owners;
  }

  /** Throws CLUSTER_CHANGED when the op's pool belongs to another cluster than the one the client routes by. */
  function inPoolCluster(request: RoutedRequest, how: ExecuteOptions): void {
    const changed = poolClusterChange(request, how);
    if (changed !== undefined) throw changed;
  }

  /** The CLUSTER_CHANGED error of an op whose pool belongs to another cluster than the current view's. */
  function poolClusterChange(request: RoutedRequest, how: ExecuteOptions): ClusterChangedError | undefined {
    if (how.clusterId === undefined || !('pool' in request)) return undefined;
    return clusterChangedFor(request.pool, how.clusterId, tracker.state?.clusterId);
  }

  function route(request: RoutedRequest, how: ExecuteOptions): Promise<unknown> {
    const deadline = how.deadline ?? now() + timeoutMs;
    const changed = poolClusterChange(request, how);
    if (changed !== undefined) return Promise.reject(changed);
    switch (request.t) {
      case 'put':
      case 'flushPage':
        return run(
          how.retry,
          deadline,
          () => {
            inPoolCluster(request, how);
            // Owners and version read together: the op travels with the version it was routed by.
            const sv = tracker.version;
            const [primary] = ownersOf(request, how);
            return sendTo(primary as MemberInfo, request, sv, deadline, how.pageSize, how.clusterId);
          },
          how.onlyUnsent ?? false,
        );
      case 'get':
        return run(how.retry, deadline, () => {
          inPoolCluster(request, how);
          const sv = tracker.version;
          return readPage(request, {
            kind: how.kind ?? 'ephemeral',
            owners: ownersOf(request, how),
            send: (member, get) => sendTo(member, get, sv, deadline, how.pageSize, how.clusterId),
            isSuspect: (member) => pool.isSuspect(member),
            logger: log,
          });
        });
      case 'flushObject':
        // Each member flushes what it holds of the object: a page may sit on a former owner until it is moved.
        return broadcast(request, how, deadline, true).then(() => ({ t: 'ok', id: 0 }));
      case 'stats':
        return broadcast(request, how, deadline, false).then((replies) => replies[0]);
      case 'newPool':
      case 'destroyPool':
        return toCoordinator(request, how, deadline);
    }
  }

  return {
    execute: <R extends RoutedRequest>(request: R, how: ExecuteOptions) => {
      if (signal.aborted) return Promise.reject(options.closedError());
      return route(request, how) as Promise<ReplyTo<R>>;
    },
    async stats() {
      if (signal.aborted) throw options.closedError();
      const replies = await broadcast({ t: 'stats' }, { retry: true }, now() + timeoutMs, false);
      return replies.map((reply) => reply.stats);
    },
  };
}
