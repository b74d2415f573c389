// Delivery of replicated entries from this node to each other owner: one stream per target member. Entries
// queued for a target in the same turn of the event loop (the persistent puts of one client batch, say) are
// coalesced into one `replicate` frame, bounded by MAX_BATCH_OPS entries and `maxFrameBytes` of pages, and up
// to `maxFramesInFlight` frames per stream are on the wire at once. A frame that fails (lost link, no answer)
// is sent again (entries are idempotent: newest version wins) until the target is no longer a member.
//
// Why a window is safe although a later frame may now be applied before an earlier one (docs/architecture.md,
// "Versions", "Writes"):
// - Every copy applies newest version wins per handle, with flushes as tombstones (`replica-store.ts`), and
//   notes versions as a maximum (`version-clock.ts`). A set of entries gives the same result in any order, as
//   long as an older page of a handle does not arrive after the tombstone of a newer flush was forgotten
//   (`tombstoneTtlMs`, 60 s). Across handles order never mattered. The code relied on versions, not on FIFO,
//   before the window too: an entry answered `not-owner` is queued again behind later ones, and fills copy
//   entries concurrently with forwards.
// - Within one handle two entries are seldom outstanding together: writes of a handle run one after another
//   at the primary (`primary-writes.ts`), so the next one starts only once the earlier entry was answered, or
//   once the put gave up at its deadline; then the refusal's flush (a newer version) may follow the page while
//   its frame is unanswered, and if the page lands later it is ignored under the tombstone.
// - It lands within seconds or never: after a failure the stream opens no new frame; it sends the failed
//   frames again one at a time, oldest first, and what queued meanwhile only once they all went through. So a
//   target that answers anything answers the oldest failed frame first, and a target that answers nothing for
//   longer than a lease is removed (its entries resolve 'gone' and it comes back empty), well before 60 s.
// - A receiver handles the frames of one link as they arrive; the `sv` of a stream's frames never decreases,
//   so frames that wait for the receiver to catch up with a state resume in the order they came.
import { ErrorCode, MAX_BATCH_OPS, TmemError, type ReplicaEntry, type ReplicaResult } from '@tmem/protocol';
import type { Logger } from '../logger.ts';

/** What became of one entry sent to one target. */
export type DeliveryResult = ReplicaResult | 'gone';

/** How a stream reaches its target. */
export interface StreamTransport {
  /** Sends entries to member `target`; resolves with one result per entry or rejects (link lost, no reply). */
  send(target: string, entries: ReplicaEntry[]): Promise<ReplicaResult[]>;
  /** False once `target` is no longer a member of the committed state: its entries resolve 'gone'. */
  isMember(target: string): boolean;
}

/** Options of the stream set. */
export interface ReplicaStreamsOptions {
  transport: StreamTransport;
  logger: Logger;
  /** Pause before sending a frame again after a failure (times the consecutive failures, at most 1 s). @default 50 */
  retryDelayMs?: number;
  /** Largest page payload of one frame; well under the frame limit. @default 1 MiB */
  maxFrameBytes?: number;
  /** Frames per stream sent and not yet answered. 1 is stop-and-wait. @default 8 */
  maxFramesInFlight?: number;
}

/** Streams to every target. */
export interface ReplicaStreams {
  /** Queues `entry` for `target`; resolves when the target answered for it, or 'gone'. Never rejects. */
  deliver(target: string, entry: ReplicaEntry): Promise<DeliveryResult>;
  /** Entries queued or in flight, over every target. */
  readonly backlog: number;
  /** Resolves every queued entry 'gone' and stops. */
  close(): void;
}

interface Queued {
  entry: ReplicaEntry;
  resolve(result: DeliveryResult): void;
}

interface Frame {
  /** Order of the frame in its stream: failed frames are resent oldest first. */
  seq: number;
  items: Queued[];
}

interface Stream {
  target: string;
  /** Entries not yet in a frame, in the order they were queued. */
  queue: Queued[];
  inFlight: Set<Frame>;
  /** Frames that failed and wait to be sent again, oldest first. */
  failed: Frame[];
  /** The failed frame being sent again (one at a time), if any. */
  resending: Frame | undefined;
  /** Consecutive failures; above 0 the stream is recovering and opens no new frame. */
  failures: number;
  /** A pump is scheduled (end of this turn) or a retry pause is running. */
  scheduled: boolean;
  backingOff: boolean;
  nextSeq: number;
}

/** Creates the streams of one node. */
export function createReplicaStreams(options: ReplicaStreamsOptions): ReplicaStreams {
  const { transport } = options;
  const log = options.logger.child({ component: 'replica-streams' });
  const retryDelayMs = options.retryDelayMs ?? 50;
  const maxFrameBytes = options.maxFrameBytes ?? 1024 * 1024;
  const maxFramesInFlight = Math.max(1, options.maxFramesInFlight ?? 8);
  const streams = new Map<string, Stream>();
  let backlog = 0;
  let closed = false;

  function settle(items: readonly Queued[], results: readonly DeliveryResult[]): void {
    items.forEach((item, i) => {
      backlog--;
      item.resolve(results[i] ?? 'gone');
    });
  }

  /** Takes the head of the queue that fits one frame. */
  function nextFrame(stream: Stream): Frame {
    let bytes = 0;
    let n = 0;
    for (const item of stream.queue) {
      const size = item.entry.page?.length ?? 0;
      if (n > 0 && (n >= MAX_BATCH_OPS || bytes + size > maxFrameBytes)) break;
      bytes += size;
      n++;
    }
    return { seq: stream.nextSeq++, items: stream.queue.splice(0, n) };
  }

  function send(stream: Stream, frame: Frame): void {
    stream.inFlight.add(frame);
    void transport
      .send(
        stream.target,
        frame.items.map((q) => q.entry),
      )
      .then((results) => {
        if (results.length !== frame.items.length) {
          throw new TmemError(ErrorCode.InvalidFrame, 'replicated reply does not answer every entry');
        }
        return results;
      })
      .then(
        (results) => {
          // Closed meanwhile: close() settled everything already.
          if (closed) return;
          stream.inFlight.delete(frame);
          if (stream.resending === frame) stream.resending = undefined;
          settle(frame.items, results);
          if (stream.failed.length === 0 && stream.resending === undefined) stream.failures = 0;
          pump(stream);
        },
        (error: unknown) => {
          if (closed) return;
          stream.inFlight.delete(frame);
          if (stream.resending === frame) stream.resending = undefined;
          stream.failures++;
          if (stream.failures === 1 || stream.failures % 50 === 0) {
            log.debug(
              { target: stream.target, failures: stream.failures, err: (error as Error).message },
              'replication send failed',
            );
          }
          const at = stream.failed.findIndex((f) => f.seq > frame.seq);
          stream.failed.splice(at < 0 ? stream.failed.length : at, 0, frame);
          if (!stream.backingOff) {
            stream.backingOff = true;
            setTimeout(
              () => {
                stream.backingOff = false;
                pump(stream);
              },
              Math.min(retryDelayMs * stream.failures, 1000),
            );
          }
        },
      );
  }

  /** Sends what the stream may send now. */
  function pump(stream: Stream): void {
    if (closed || stream.backingOff) return;
    if (!transport.isMember(stream.target)) {
      // Frames still in flight settle with whatever answer they get; nothing else will be sent.
      for (const frame of stream.failed.splice(0)) settle(frame.items, []);
      settle(stream.queue.splice(0), []);
      return;
    }
    if (stream.failures > 0) {
      // Recovering: the failed frames go again one at a time, oldest first, before anything new.
      const frame = stream.resending === undefined ? stream.failed.shift() : undefined;
      if (frame !== undefined) {
        stream.resending = frame;
        send(stream, frame);
      }
      if (stream.failed.length > 0 || stream.resending !== undefined) return;
      stream.failures = 0;
    }
    while (stream.inFlight.size < maxFramesInFlight && stream.queue.length > 0)
      send(stream, nextFrame(stream));
  }

  function schedule(stream: Stream): void {
    if (stream.scheduled) return;
    stream.scheduled = true;
    // At the end of this turn, so the entries queued by the same batch share frames.
    setImmediate(() => {
      stream.scheduled = false;
      pump(stream);
    });
  }

  return {
    deliver(target, entry) {
      if (closed) return Promise.resolve('gone');
      let stream = streams.get(target);
      if (stream === undefined) {
        stream = {
          target,
          queue: [],
          inFlight: new Set(),
          failed: [],
          resending: undefined,
          failures: 0,
          scheduled: false,
          backingOff: false,
          nextSeq: 0,
        };
        streams.set(target, stream);
      }
      const queued = stream;
      backlog++;
      const done = new Promise<DeliveryResult>((resolve) => queued.queue.push({ entry, resolve }));
      schedule(queued);
      return done;
    },
    get backlog() {
      return backlog;
    },
    close() {
      closed = true;
      for (const stream of streams.values()) {
        for (const frame of stream.inFlight) settle(frame.items, []);
        for (const frame of stream.failed) settle(frame.items, []);
        settle(stream.queue.splice(0), []);
        stream.inFlight.clear();
        stream.failed = [];
      }
    },
  };
}
