// Flow control of one connection's replies: a client that sends requests but does not read the answers must not
// make the node buffer them without bound (issue 9, finding 4). Stopping to read the socket once the buffer is
// full is not enough, because the requests already read can be worth far more than their own size: a 500-byte
// batch of 32 gets asks for 2 MiB of pages. So each page op is weighed at its largest possible reply while it
// is unanswered, and a frame is served only while buffered bytes plus that weight of the unanswered ops stay
// within the limit; otherwise it is held, the socket is paused, and the held frames are served in order once
// replies drained or were answered. At least one frame is always served when nothing is unanswered, so a
// single batch larger than the limit still gets its answer.

import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';
import { MAX_PAGE_SIZE } from '@tmem/protocol';

/** The weight of one unanswered page op: the largest page plus its reply's framing. */
const REPLY_BYTES_PER_OP = MAX_PAGE_SIZE + 64;

/** Flow control of one connection. */
export interface ReplyFlow {
  /** A frame arrived: served now, or held until the replies drain. */
  offer(data: Buffer): void;
  /** `count` page ops were dispatched and will each be answered once. */
  dispatched(count: number): void;
  /** `count` page ops were answered (their replies handed to the socket). */
  answered(count: number): void;
  /** The connection closed: drop what is held. */
  clear(): void;
}

export interface ReplyFlowOptions {
  socket: WebSocket;
  /** The TCP socket under `socket`, whose 'drain' says buffered bytes went out. */
  tcp: Socket | undefined;
  maxBufferedReplyBytes: number;
  /** Serves one frame. */
  serve(data: Buffer): void;
  /** Called once each time reading pauses (for a debug log). */
  onPause(bufferedAmount: number): void;
}

export function createReplyFlow(options: ReplyFlowOptions): ReplyFlow {
  const { socket, tcp, maxBufferedReplyBytes: limit } = options;
  const serve = (data: Buffer): void => options.serve(data);
  let unanswered = 0;
  let paused = false;
  const held: Buffer[] = [];

  function full(): boolean {
    const buffered = socket.bufferedAmount;
    return buffered > limit || (unanswered > 0 && buffered + unanswered * REPLY_BYTES_PER_OP > limit);
  }

  function hold(data: Buffer): void {
    held.push(data);
    if (paused) return;
    paused = true;
    socket.pause();
    options.onPause(socket.bufferedAmount);
  }

  function resume(): void {
    if (!paused || full()) return;
    paused = false;
    socket.resume();
    while (held.length > 0) {
      if (full()) {
        paused = true;
        socket.pause();
        return;
      }
      serve(held.shift() as Buffer);
    }
  }
  tcp?.on('drain', resume);

  return {
    offer(data) {
      // ws may still deliver frames it had read when reading paused: they queue behind the held ones.
      if (paused || held.length > 0 || full()) hold(data);
      else serve(data);
    },
    dispatched(count) {
      unanswered += count;
    },
    answered(count) {
      unanswered -= count;
      if (paused) queueMicrotask(resume);
    },
    clear() {
      held.length = 0;
      tcp?.off('drain', resume);
    },
  };
}
