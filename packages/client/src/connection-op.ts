// The request object of one op on a node connection: what the connection queues, sends, times out and
// settles, with the op's deadline, batch weight and callbacks.
import { ConnectionLostError, type NodeFrame } from '@tmem/protocol';
import { pageOpWeight, type QueuedOp } from './batcher.ts';
import { isPageRequest, type Request } from './requests.ts';

/** Per-request options. */
export interface RequestOptions {
  /** When the op gives up with TimeoutError, on the `now` clock. */
  deadline: number;
  /** Page size of the op's pool: a get's reply carries a page, which counts against maxBatchBytes. */
  pageSize?: number;
  /**
   * Cluster-state version a page op was routed by, sent as the batch's `sv`: ops with different versions never
   * share a frame. Absent: the batch carries no version and the node does not check it.
   */
  sv?: number;
}

/**
 * One op on a connection: the request object the connection queues, sends, times out and settles. Callers make
 * it with `connectionOp` (or as an object of their own with these fields) and hand it to `enqueue`; exactly one
 * of its callbacks is called, once.
 */
export interface ConnectionOp extends QueuedOp {
  readonly request: Request;
  /** When the op gives up with TimeoutError, on the `now` clock. */
  readonly deadline: number;
  /** The `sv` its batch carries. */
  readonly group: number | undefined;
  /** Called with the node's reply, of a type the request allows. */
  readonly resolve: (reply: NodeFrame) => void;
  /**
   * Called instead with why there is no reply: an error reply, a protocol error, TIMEOUT or a lost connection.
   * `sent` is false when the op never left the client (it cannot have been applied).
   */
  readonly reject: (error: unknown, sent: boolean) => void;
  /** Request id once sent; 0 while queued. Owned by the connection. */
  id: number;
  /** Id of the frame that carried it; equal to `id` for an op that travelled alone. Owned by the connection. */
  frameId: number;
  /** Settled: answered, failed or timed out. Owned by the connection. */
  done: boolean;
}

/** Makes the request object of one op for `enqueue`. */
export function connectionOp(
  request: Request,
  options: RequestOptions,
  resolve: (reply: NodeFrame) => void,
  reject: (error: unknown, sent: boolean) => void,
): ConnectionOp {
  const batchable = isPageRequest(request);
  return {
    request,
    deadline: options.deadline,
    weight: batchable ? pageOpWeight(request, options.pageSize ?? 0) : 0,
    batchable,
    group: batchable ? options.sv : undefined,
    resolve,
    reject,
    id: 0,
    frameId: 0,
    done: false,
  };
}

/** The error a promise-returning request rejects with: a lost connection that never carried the op says so. */
export function asPromiseError(error: unknown, sent: boolean): Error {
  if (!(error instanceof Error)) return new Error(String(error));
  if (sent || !(error instanceof ConnectionLostError) || error.details['sent'] === false) return error;
  return new ConnectionLostError(error.message, { cause: error, details: { ...error.details, sent: false } });
}
