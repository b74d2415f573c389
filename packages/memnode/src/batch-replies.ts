// Answers batch frames so that no finished op waits for a slow one (docs/architecture.md, "Batch reply
// parts"). An ephemeral op completes while the frame is handled; a persistent one waits for its other copies,
// which can take up to the replication timeout. In parts, the ops answered synchronously go out at once in the
// first part, and the rest in later parts as they finish, coalesced: every op that finished during one turn of
// the event loop goes out in one part per batch, on the next setImmediate (an incoming `replicated` frame
// settles many puts at once; a microtask flush would cut them into many small frames). Every part but the
// last says `more: true`; each op is answered exactly once over the parts. The first part's pages come from
// the arena (page-arena.ts), reset once that part is encoded.
import type { Batch, BatchReply, PageOp, PageReply } from '@tmem/protocol';
import type { PageArena } from './page-arena.ts';

/**
 * Serves one page op of a batch: the reply itself when it completes synchronously, else its promise. A
 * synchronous hit's page comes from `arena` when given.
 */
export type RunPageOp = (
  op: PageOp,
  stateVersion: number | undefined,
  arena?: PageArena,
) => PageReply | Promise<PageReply>;

/** Options of a connection's batch answers. */
export interface BatchRepliesOptions {
  /**
   * Answer in parts (`more: true`) rather than in one frame once every op finished. A client must understand
   * parts; one that treats the first batch frame as final loses the ops of later parts.
   */
  parts: boolean;
  /** Serves one op (request-handler's handlePageOp for this connection). */
  run: RunPageOp;
  /** Sends one reply frame on the connection, encoding it before it returns. */
  send(frame: BatchReply): void;
  /**
   * Scratch memory for the pages of the first part, which is encoded before `answer` returns (parts only: a
   * batch answered in one frame may hold its synchronous replies until a slow op finishes).
   */
  arena?: PageArena;
}

/** The batch answers of one connection. */
export interface BatchReplies {
  /** Serves every op of `batch` and answers it (at once, or in parts as its ops finish). */
  answer(batch: Batch): void;
}

/** A batch with ops still waiting for their copies. */
interface OpenBatch {
  id: number;
  /** Ops not yet answered. */
  waiting: number;
  /** Parts: replies finished since the last part went out. One frame: every reply, in op order. */
  replies: PageReply[];
  /** True while the batch is in the list of batches the next flush sends a part of. */
  queued: boolean;
}

/** Creates the batch answers of one connection. */
export function createBatchReplies(options: BatchRepliesOptions): BatchReplies {
  const { run, parts, arena } = options;
  const send = (frame: BatchReply): void => options.send(frame);
  /** Batches with replies to send on the next flush; each at most once. */
  let dirty: OpenBatch[] = [];
  let flushScheduled = false;

  function flush(): void {
    flushScheduled = false;
    const batches = dirty;
    dirty = [];
    for (const batch of batches) {
      batch.queued = false;
      const replies = batch.replies;
      batch.replies = [];
      send({ t: 'batch', id: batch.id, replies, more: batch.waiting > 0 });
    }
  }

  /** A part's worth of a batch finished: queue it for the flush of this turn of the event loop. */
  function finished(batch: OpenBatch, reply: PageReply): void {
    batch.waiting--;
    batch.replies.push(reply);
    if (batch.queued) return;
    batch.queued = true;
    dirty.push(batch);
    if (!flushScheduled) {
      flushScheduled = true;
      setImmediate(flush);
    }
  }

  function answerInParts(batch: Batch): void {
    const first: PageReply[] = [];
    let open: OpenBatch | null = null;
    for (const op of batch.ops) {
      const reply = run(op, batch.sv, arena);
      if (!(reply instanceof Promise)) {
        first.push(reply);
        continue;
      }
      open ??= { id: batch.id, waiting: 0, replies: [], queued: false };
      open.waiting++;
      const waiting = open;
      void reply.then((settled) => finished(waiting, settled));
    }
    // No empty first part when every op waits: the first part is simply the first to finish.
    if (open === null || first.length > 0)
      send({ t: 'batch', id: batch.id, replies: first, more: open !== null });
    arena?.reset();
  }

  function answerInOneFrame(batch: Batch): void {
    const replies = new Array<PageReply>(batch.ops.length);
    let waiting = 0;
    for (let i = 0; i < batch.ops.length; i++) {
      const reply = run(batch.ops[i] as PageOp, batch.sv);
      if (!(reply instanceof Promise)) {
        replies[i] = reply;
        continue;
      }
      waiting++;
      void reply.then((settled) => {
        replies[i] = settled;
        if (--waiting === 0) send({ t: 'batch', id: batch.id, replies });
      });
    }
    if (waiting === 0) send({ t: 'batch', id: batch.id, replies });
  }

  return { answer: parts ? answerInParts : answerInOneFrame };
}

/** The whole answer to `batch` as one frame, replies in op order, once every op finished. */
export function collectBatch(batch: Batch, run: RunPageOp): Promise<BatchReply> {
  return new Promise((resolve) => createBatchReplies({ parts: false, run, send: resolve }).answer(batch));
}
