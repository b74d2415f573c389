// The batch API's path (pool.putMany / pool.getMany): every op of a call goes straight onto its primary's
// connection as a request object, without a promise per op; the call has one promise and one results array.
// An op whose first attempt does not end in an answer (a topology answer, a lost or unopened connection, a
// corrupt persistent copy) continues alone on the single-op path, which owns retries, replica reads and
// in-doubt writes, with the call's deadline.
import { checksumMatches, type MemberInfo, type NodeFrame, type PoolKind } from '@tmem/protocol';
import { pageOpWeight } from './batcher.ts';
import { clusterChangedFor } from './cluster-identity.ts';
import type { ViewTracker } from './cluster-view.ts';
import type { ConnectionPool } from './connection-pool.ts';
import { now } from './deadline.ts';
import type { ConnectionOp, NodeConnection } from './node-connection.ts';
import type { Logger } from './options.ts';
import type { Execute, ExecuteOptions } from './pool.ts';
import type { PageRequest, ReplyTo } from './requests.ts';
import { isRetryable, isTopologyError } from './retry.ts';

/** The ops the batch API carries. */
export type ManyRequest = Extract<PageRequest, { t: 'put' } | { t: 'get' }>;

/** What the batch path needs. */
export interface PageBatchOptions {
  tracker: ViewTracker;
  pool: ConnectionPool;
  /** The single-op path, for ops that need more than one attempt. */
  execute: Execute;
  /** Budget of every call, in milliseconds. */
  timeoutMs: number;
  logger: Logger;
  /**
   * Refreshes the cluster state (from `source` when given: the node that reported a newer version); concurrent
   * refreshes share one. Ops answered with a topology answer wait for it, so that their next attempt carries
   * the new version instead of being refused again.
   */
  refresh: (source?: NodeConnection) => Promise<void>;
  /** Aborted when the client closes. */
  signal: AbortSignal;
  /** A fresh CLIENT_CLOSED error, for calls made after close. */
  closedError: () => Error;
}

/**
 * Runs many page ops of one pool: resolves with `toResult` of each op's reply, in request order, once all are
 * answered; rejects with the first failure (the other ops may have been applied or not).
 */
export type RunMany = <R extends ManyRequest, T>(
  requests: readonly R[],
  how: ExecuteOptions,
  toResult: (reply: ReplyTo<R>) => T,
) => Promise<T[]>;

/** One call of putMany/getMany: its results and its one promise. */
interface Call {
  readonly results: unknown[];
  readonly toResult: (reply: never) => unknown;
  readonly resolve: (results: unknown[]) => void;
  readonly reject: (error: unknown) => void;
  readonly how: ExecuteOptions;
  readonly deadline: number;
  remaining: number;
  settled: boolean;
}

/** Creates the batch path over the client's view and connections. */
export function createPageBatch(options: PageBatchOptions): RunMany {
  const { tracker, pool, execute, logger: log } = options;

  function answer(call: Call, index: number, reply: NodeFrame): void {
    if (call.settled) return;
    try {
      call.results[index] = call.toResult(reply as never);
    } catch (error) {
      fail(call, error);
      return;
    }
    if (--call.remaining === 0) {
      call.settled = true;
      call.resolve(call.results);
    }
  }

  function fail(call: Call, error: unknown): void {
    if (call.settled) return;
    call.settled = true;
    call.reject(error);
  }

  /** The single-op path for one op of the call, within the call's deadline. */
  function alone(call: Call, index: number, request: ManyRequest): void {
    if (call.settled) return;
    execute(request, { ...call.how, deadline: call.deadline }).then(
      (reply) => answer(call, index, reply as NodeFrame),
      (error: unknown) => fail(call, error),
    );
  }

  /** The request object of one op of a call on its primary's connection. */
  class BatchOp implements ConnectionOp {
    readonly request: ManyRequest;
    readonly deadline: number;
    readonly weight: number;
    readonly batchable = true;
    readonly group: number;
    id = 0;
    frameId = 0;
    done = false;
    readonly call: Call;
    readonly index: number;
    readonly member: MemberInfo;
    readonly connection: NodeConnection;
    readonly kind: PoolKind;

    constructor(
      call: Call,
      index: number,
      request: ManyRequest,
      sv: number,
      member: MemberInfo,
      connection: NodeConnection,
      kind: PoolKind,
    ) {
      this.call = call;
      this.index = index;
      this.request = request;
      this.deadline = call.deadline;
      this.weight = pageOpWeight(request, call.how.pageSize ?? 0);
      this.group = sv;
      this.member = member;
      this.connection = connection;
      this.kind = kind;
    }

    resolve(reply: NodeFrame): void {
      if (reply.t === 'hit' && !checksumMatches(reply.page, reply.sum)) {
        const fields = { pool: this.request.pool, index: this.request.index, node: this.member.id };
        if (this.kind === 'persistent') {
          // The other owners hold copies: the single-op read asks them.
          log.warn(fields, 'corrupt copy of a persistent page; reading another owner');
          alone(this.call, this.index, this.request);
          return;
        }
        log.warn(fields, 'corrupt ephemeral page dropped; read as a miss');
        answer(this.call, this.index, { t: 'miss', id: reply.id });
        return;
      }
      answer(this.call, this.index, reply);
    }

    reject(error: unknown, sent: boolean): void {
      if (isRetryable(error)) {
        pool.suspect(this.member);
        // A write that reached the node may have been applied: in doubt, never sent again.
        if (sent && this.request.t === 'put') {
          fail(this.call, error);
          return;
        }
        alone(this.call, this.index, this.request);
        return;
      }
      // Not applied: the single-op path refreshes the state and follows it.
      if (isTopologyError(error)) {
        const reported = error.details['version'];
        const source =
          typeof reported === 'number' && reported > tracker.version ? this.connection : undefined;
        const next = (): void => alone(this.call, this.index, this.request);
        // A failed refresh is the single-op path's to report, after its own attempts.
        options.refresh(source).then(next, next);
        return;
      }
      fail(this.call, error);
    }
  }

  return <R extends ManyRequest, T>(
    requests: readonly R[],
    how: ExecuteOptions,
    toResult: (reply: ReplyTo<R>) => T,
  ): Promise<T[]> => {
    if (options.signal.aborted) return Promise.reject(options.closedError());
    const first = requests[0];
    const changed =
      first === undefined
        ? undefined
        : clusterChangedFor(first.pool, how.clusterId, tracker.state?.clusterId);
    if (changed !== undefined) return Promise.reject(changed);
    return new Promise<T[]>((resolve, reject) => {
      const call: Call = {
        results: new Array<unknown>(requests.length),
        toResult,
        resolve: resolve as (results: unknown[]) => void,
        reject,
        how,
        deadline: now() + options.timeoutMs,
        remaining: requests.length,
        settled: false,
      };
      if (requests.length === 0) {
        resolve([]);
        return;
      }
      const kind = how.kind ?? 'ephemeral';
      // Owners and version read together: every op travels with the version it was routed by.
      const sv = tracker.version;
      const known = tracker.state !== undefined;
      for (let i = 0; i < requests.length && !call.settled; i++) {
        const request = requests[i] as R;
        const primary = known
          ? tracker.ownersFor(request.pool, kind, request.oid, request.index, how.createdVersion)?.[0]
          : undefined;
        const connection = primary === undefined ? undefined : pool.peek(primary);
        if (
          primary === undefined ||
          connection === undefined ||
          (how.clusterId !== undefined &&
            connection.clusterId !== undefined &&
            connection.clusterId !== how.clusterId)
        ) {
          // No open connection, no owner in this view, or a node of another cluster at the owner's address:
          // the single-op path connects, waits for the view, or finds the cluster changed.
          alone(call, i, request);
          continue;
        }
        connection.enqueue(new BatchOp(call, i, request, sv, primary, connection, kind));
      }
    });
  };
}
