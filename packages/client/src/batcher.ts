import type { PageRequest } from './requests.ts';

/**
 * Upper bound of the msgpack bytes one page op adds to a batch frame besides its oid and page. The largest is a
 * put with its checksum: a map of seven short keys, five u32 fields and two binary headers, 64 bytes with the
 * largest oid and page (a get with `replica` takes 54, a hit reply with its `sum` 36).
 */
export const OP_OVERHEAD_BYTES = 64;
/** Upper bound of a batch frame's bytes besides its ops: the map, `t`, `id` and the array header. */
export const BATCH_OVERHEAD_BYTES = 32;

/** Least part of a node's frame limit that batches leave free, in bytes. */
export const FRAME_MARGIN_MIN_BYTES = 1024;
/** Part of a node's frame limit that batches leave free, as a divisor: 1/16 of the limit. */
export const FRAME_MARGIN_DIVISOR = 16;

/**
 * The byte bound of one batch on a connection to a node that accepts frames up to `nodeMaxFrameBytes`: the
 * client's own bound, cut to the node's limit less a margin. Op weights bound the msgpack of page ops and of
 * their ordinary replies, but not of error replies, whose message and details may outweigh the op they
 * answer; the margin (1/16 of the limit, at least FRAME_MARGIN_MIN_BYTES) absorbs those. A node that does not
 * advertise a limit (`undefined`) leaves `maxBatchBytes` as it is. May be 0: then every op travels alone.
 */
export function batchBytesFor(maxBatchBytes: number, nodeMaxFrameBytes: number | undefined): number {
  if (nodeMaxFrameBytes === undefined) return maxBatchBytes;
  const margin = Math.max(FRAME_MARGIN_MIN_BYTES, Math.ceil(nodeMaxFrameBytes / FRAME_MARGIN_DIVISOR));
  return Math.max(0, Math.min(maxBatchBytes, nodeMaxFrameBytes - margin));
}

/**
 * The bytes a page op costs a batch: its own wire bytes plus, for a get, the page its reply will carry.
 * Counting both directions keeps the batch frame and its reply frame within the same bound.
 */
export function pageOpWeight(op: PageRequest, pageSize: number): number {
  switch (op.t) {
    case 'put':
      return OP_OVERHEAD_BYTES + op.oid.length + op.page.length;
    case 'get':
      return OP_OVERHEAD_BYTES + op.oid.length + pageSize;
    case 'flushPage':
    case 'flushObject':
      return OP_OVERHEAD_BYTES + op.oid.length;
  }
}

/** What the queue needs to know of an op. */
export interface QueuedOp {
  /** Bytes counted against maxBytes (see pageOpWeight); ignored for ops that travel alone. */
  readonly weight: number;
  /** True for page ops, which share batch frames; other ops travel in a frame of their own. */
  readonly batchable: boolean;
  /**
   * Ops of one frame all have the same group: the cluster-state version they were routed by, which the batch
   * frame carries once (`sv`). A change of group starts a new frame.
   */
  readonly group?: number | undefined;
}

/**
 * Bounds of one batch frame. The queue reads them at every cut, so a change (a connection learning its node's
 * frame limit) applies to the next frame.
 */
export interface BatchLimits {
  maxOps: number;
  /** Bound of BATCH_OVERHEAD_BYTES plus the weights of the frame's ops. */
  maxBytes: number;
}

/** Ops waiting for a frame slot on one connection, cut into frames in the order they were issued. */
export interface OpQueue<T extends QueuedOp> {
  /** Ops waiting, not counting removed ones. */
  readonly length: number;
  push(op: T): void;
  /** Drops an op that no longer needs sending (it timed out while queued). */
  remove(op: T): void;
  /**
   * The ops of the next frame: one op that travels alone, or a run of batchable ops of one group within the
   * limits (at least one, so an op heavier than maxBytes still goes, alone). Undefined when the queue is empty.
   */
  nextFrame(): T[] | undefined;
  /** Takes every waiting op out, to reject them all. */
  drain(): T[];
  /** The ops waiting, in order, without taking them out (removed ones skipped). */
  waiting(): IterableIterator<T>;
}

/** Creates an empty op queue. Every operation is amortised O(1) per op. */
export function createOpQueue<T extends QueuedOp>(limits: BatchLimits): OpQueue<T> {
  let items: T[] = [];
  let head = 0;
  // Removed ops stay in `items` until they reach the head or a compaction; this set says which to skip.
  const removed = new Set<T>();

  function compactIfWorthIt(): void {
    const waiting = items.length - head;
    if (removed.size > 64 && removed.size * 2 > waiting) {
      items = items.slice(head).filter((op) => !removed.has(op));
      head = 0;
      removed.clear();
    } else if (head > 1024 && head * 2 > items.length) {
      items = items.slice(head);
      head = 0;
    }
  }

  /** The first op still wanted, skipping removed ones; undefined when none is left. */
  function peek(): T | undefined {
    while (head < items.length) {
      const op = items[head] as T;
      if (!removed.delete(op)) return op;
      head++;
    }
    return undefined;
  }

  return {
    get length() {
      return items.length - head - removed.size;
    },
    push(op) {
      items.push(op);
    },
    remove(op) {
      removed.add(op);
      compactIfWorthIt();
    },
    nextFrame() {
      const first = peek();
      if (first === undefined) return undefined;
      head++;
      if (!first.batchable) return [first];
      const frame = [first];
      let bytes = BATCH_OVERHEAD_BYTES + first.weight;
      for (let op = peek(); op !== undefined && op.batchable && op.group === first.group; op = peek()) {
        if (frame.length >= limits.maxOps || bytes + op.weight > limits.maxBytes) break;
        frame.push(op);
        bytes += op.weight;
        head++;
      }
      compactIfWorthIt();
      return frame;
    },
    *waiting() {
      for (let i = head; i < items.length; i++) {
        const op = items[i] as T;
        if (!removed.has(op)) yield op;
      }
    },
    drain() {
      const rest = items.slice(head).filter((op) => !removed.has(op));
      items = [];
      head = 0;
      removed.clear();
      return rest;
    },
  };
}
