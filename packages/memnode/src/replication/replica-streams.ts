// Delivery of replicated entries from this node to each other owner: one FIFO stream per target member, so the
// entries a primary sends to an owner arrive in the order it stamped them. A stream sends everything queued as
// one `replicate` frame (bounded), waits for its answer, and on a lost link or no answer sends the same frame
// again (entries are idempotent: newest version wins), until the target is no longer a member.
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
  /** Pause before sending a frame again after a failure. @default 50 */
  retryDelayMs?: number;
  /** Largest page payload of one frame. @default 1 MiB */
  maxFrameBytes?: number;
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

interface Stream {
  target: string;
  queue: Queued[];
  sending: boolean;
}

/** Creates the streams of one node. */
export function createReplicaStreams(options: ReplicaStreamsOptions): ReplicaStreams {
  const { transport } = options;
  const log = options.logger.child({ component: 'replica-streams' });
  const retryDelayMs = options.retryDelayMs ?? 50;
  const maxFrameBytes = options.maxFrameBytes ?? 1024 * 1024;
  const streams = new Map<string, Stream>();
  let backlog = 0;
  let closed = false;

  function settle(items: Queued[], results: readonly DeliveryResult[]): void {
    items.forEach((item, i) => {
      backlog--;
      item.resolve(results[i] ?? 'gone');
    });
  }

  /** The head of the queue that fits one frame. */
  function nextBatch(stream: Stream): Queued[] {
    let bytes = 0;
    let n = 0;
    for (const item of stream.queue) {
      const size = item.entry.page?.length ?? 0;
      if (n > 0 && (n >= MAX_BATCH_OPS || bytes + size > maxFrameBytes)) break;
      bytes += size;
      n++;
    }
    return stream.queue.slice(0, n);
  }

  async function pump(stream: Stream): Promise<void> {
    stream.sending = true;
    let failures = 0;
    while (!closed && stream.queue.length > 0) {
      if (!transport.isMember(stream.target)) {
        settle(stream.queue.splice(0), []);
        break;
      }
      const batch = nextBatch(stream);
      try {
        const results = await transport.send(
          stream.target,
          batch.map((b) => b.entry),
        );
        // Closed meanwhile: close() settled everything already.
        if (closed) break;
        if (results.length !== batch.length) {
          throw new TmemError(ErrorCode.InvalidFrame, 'replicated reply does not answer every entry');
        }
        stream.queue.splice(0, batch.length);
        settle(batch, results);
        failures = 0;
      } catch (error) {
        failures++;
        if (failures === 1 || failures % 50 === 0) {
          log.debug(
            { target: stream.target, failures, err: (error as Error).message },
            'replication send failed',
          );
        }
        await new Promise((resolve) => setTimeout(resolve, Math.min(retryDelayMs * failures, 1000)));
      }
    }
    stream.sending = false;
  }

  return {
    deliver(target, entry) {
      if (closed) return Promise.resolve('gone');
      let stream = streams.get(target);
      if (stream === undefined) {
        stream = { target, queue: [], sending: false };
        streams.set(target, stream);
      }
      const queued = stream;
      backlog++;
      const done = new Promise<DeliveryResult>((resolve) => queued.queue.push({ entry, resolve }));
      if (!queued.sending) void pump(queued);
      return done;
    },
    get backlog() {
      return backlog;
    },
    close() {
      closed = true;
      for (const stream of streams.values()) settle(stream.queue.splice(0), []);
    },
  };
}
