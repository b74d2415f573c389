import { Packr } from 'msgpackr';
import type { z } from 'zod';
import { DEFAULT_MAX_FRAME_BYTES } from './constants.ts';
import { ErrorCode, ProtocolError } from './errors.ts';
import { createFastDecoder } from './fast-decode.ts';
import { createFastEncoder } from './fast-encode.ts';
import type { FrameBuffers } from './frame-buffers.ts';
import { ClientFrame, ErrorReply, NodeFrame } from './frames.ts';
import { unsupported } from './msgpack-reader.ts';
import {
  DEFAULT_CLIENT_DECODE_BUDGET,
  DEFAULT_PEER_DECODE_BUDGET,
  checkDecodeBudget,
  type DecodeBudget,
} from './msgpack-budget.ts';

/** Options of a frame codec. */
export interface CodecOptions {
  /**
   * Largest frame accepted on decode and produced on encode, in bytes.
   * @default DEFAULT_MAX_FRAME_BYTES (16 MiB)
   */
  maxFrameBytes?: number;
  /**
   * Decode and encode the data frames (page ops, their replies, batches of them, and the node-to-node page
   * frames replicate, peerGet, fetch and their answers) with the hand-written
   * msgpack path of fast-decode.ts / fast-encode.ts. false runs every frame through msgpackr + zod, the
   * reference the fast path is tested against; both produce the same values and the same errors.
   * @default true
   */
  fastPath?: boolean;
  /**
   * What a client frame may make the reference decoder build (see msgpack-budget.ts).
   * @default DEFAULT_CLIENT_DECODE_BUDGET (65,536 values, depth 16)
   */
  clientBudget?: DecodeBudget;
  /**
   * The same for frames of authenticated peers (`decodeClientFrame(data, codec.peerBudget)`) and for every
   * frame a node sends (decodeNodeFrame): cluster states list every pool.
   * @default DEFAULT_PEER_DECODE_BUDGET (1,048,576 values, depth 16)
   */
  peerBudget?: DecodeBudget;
}

/**
 * Encodes frames to msgpack and decodes them back, validating every decoded frame as the zod schemas of
 * frames.ts do: data frames by the fast path, the rest (and anything the fast path does not recognise) by
 * msgpackr + zod.
 */
export interface Codec {
  readonly maxFrameBytes: number;
  readonly clientBudget: DecodeBudget;
  readonly peerBudget: DecodeBudget;
  /**
   * Packs a frame. Throws FRAME_TOO_LARGE when the result exceeds maxFrameBytes. With `buffers`, a data frame
   * may be encoded into one of its buffers (`buffers.owns(result)`), which the sender releases once written.
   */
  encode(frame: ClientFrame | NodeFrame, buffers?: FrameBuffers): Uint8Array;
  /**
   * Unpacks and validates a frame sent by a client (or, with `codec.peerBudget`, by an authenticated peer).
   * Binary fields are views into `data`. @param budget default: the client budget
   */
  decodeClientFrame(data: Uint8Array, budget?: DecodeBudget): ClientFrame;
  /** Unpacks and validates a frame sent by a node. Binary fields are views into `data`. */
  decodeNodeFrame(data: Uint8Array): NodeFrame;
  /** Best-effort request id of a frame that failed validation, so the error reply can name it (0 if none). */
  peekRequestId(data: Uint8Array): number;
}

/** Creates a codec. One codec per process is enough: it keeps no per-connection state. */
export function createCodec(options: CodecOptions = {}): Codec {
  const maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  const clientBudget = options.clientBudget ?? DEFAULT_CLIENT_DECODE_BUDGET;
  const peerBudget = options.peerBudget ?? DEFAULT_PEER_DECODE_BUDGET;
  // useRecords: false keeps frames plain msgpack maps, readable by any msgpack implementation;
  // int64AsType 'number' so a hostile 64-bit integer becomes a number that zod rejects, not a bigint.
  const packr = new Packr({ useRecords: false, int64AsType: 'number', mapsAsObjects: true });

  /**
   * Reads the msgpack value at the start of `data` and where it ends. unpackMultiple stops after the first
   * value, so trailing bytes are found by comparing `end` with the length: plain `unpack` rejects them too,
   * but only after JSON-stringifying the whole decoded value for its error message, which costs seconds of
   * CPU for a 16 MiB frame with one byte too many.
   */
  function unpackFirst(data: Uint8Array): { value: unknown; end: number } {
    let value: unknown;
    let end = -1;
    packr.unpackMultiple(data, (first: unknown, _start?: number, firstEnd?: number) => {
      value = first;
      end = firstEnd ?? -1;
      return false;
    });
    return { value, end };
  }

  /** The checks that come before any parsing, on both paths: binary, within the size limit, not empty. */
  function checkFrame(data: Uint8Array): void {
    if (!(data instanceof Uint8Array)) {
      throw new ProtocolError(ErrorCode.MalformedFrame, 'frame must be binary');
    }
    if (data.length > maxFrameBytes) {
      throw new ProtocolError(
        ErrorCode.FrameTooLarge,
        `frame of ${data.length} bytes exceeds the limit of ${maxFrameBytes}; send smaller batches`,
        { details: { size: data.length, maxFrameBytes } },
      );
    }
    if (data.length === 0) {
      throw new ProtocolError(ErrorCode.TruncatedFrame, 'empty frame');
    }
  }

  function unpack(data: Uint8Array, budget: DecodeBudget): unknown {
    checkFrame(data);
    checkDecodeBudget(data, budget);
    let first;
    try {
      first = unpackFirst(data);
    } catch (error) {
      // msgpackr flags every RangeError as `incomplete`, including a stack overflow on deeply nested garbage;
      // only a read past the end of the bytes means the frame was cut short.
      const outOfBounds = error instanceof RangeError && /beyond|bounds/i.test(error.message);
      const incomplete =
        typeof error === 'object' && error !== null && (error as { incomplete?: boolean }).incomplete;
      if (outOfBounds || (incomplete && !(error instanceof RangeError))) {
        throw new ProtocolError(ErrorCode.TruncatedFrame, 'frame ends before its msgpack value does', {
          cause: error,
        });
      }
      throw new ProtocolError(ErrorCode.MalformedFrame, 'frame is not a single msgpack value', {
        cause: error,
      });
    }
    if (first.end !== data.length) {
      throw new ProtocolError(ErrorCode.MalformedFrame, 'frame carries bytes after its msgpack value', {
        details: { size: data.length, valueBytes: first.end },
      });
    }
    return first.value;
  }

  function validate<T>(schema: z.ZodType<T>, value: unknown): T {
    const result = schema.safeParse(value);
    if (!result.success) {
      throw new ProtocolError(ErrorCode.InvalidFrame, 'frame does not match the protocol schema', {
        details: {
          issues: result.error.issues.slice(0, 5).map((i) => ({
            path: i.path.map(String).join('.'),
            message: i.message,
          })),
        },
      });
    }
    return result.data;
  }

  const detailsSchema = ErrorReply.shape.details;
  const fast =
    options.fastPath === false
      ? undefined
      : {
          decoder: createFastDecoder((bytes) => {
            // Free-form error details: the reference decoder on just their bytes, within the budget.
            checkDecodeBudget(bytes, peerBudget);
            const { value, end } = unpackFirst(bytes);
            const result = detailsSchema.safeParse(value);
            if (end !== bytes.length || !result.success) throw unsupported;
            return result.data;
          }),
          encode: createFastEncoder((value) => packr.pack(value)),
        };

  function decodeClientFrame(data: Uint8Array, budget: DecodeBudget = clientBudget): ClientFrame {
    if (fast !== undefined) {
      checkFrame(data);
      const frame = fast.decoder.decodeClientFrame(data);
      if (frame !== undefined) return frame;
    }
    return validate(ClientFrame, unpack(data, budget));
  }

  function decodeNodeFrame(data: Uint8Array): NodeFrame {
    if (fast !== undefined) {
      checkFrame(data);
      const frame = fast.decoder.decodeNodeFrame(data);
      if (frame !== undefined) return frame;
    }
    return validate(NodeFrame, unpack(data, peerBudget));
  }

  return {
    maxFrameBytes,
    clientBudget,
    peerBudget,
    encode(frame, buffers) {
      const data = fast?.encode(frame, buffers) ?? packr.pack(frame);
      if (data.length > maxFrameBytes) {
        buffers?.release(data);
        throw new ProtocolError(
          ErrorCode.FrameTooLarge,
          `encoded frame of ${data.length} bytes exceeds the limit of ${maxFrameBytes}`,
          { details: { size: data.length, maxFrameBytes } },
        );
      }
      return data;
    },
    decodeClientFrame,
    decodeNodeFrame,
    peekRequestId(data) {
      try {
        checkDecodeBudget(data, clientBudget);
        const { value: first, end } = unpackFirst(data);
        if (end !== data.length) return 0;
        const value = first as { id?: unknown } | null;
        const id = typeof value === 'object' && value !== null ? value.id : undefined;
        return typeof id === 'number' && Number.isInteger(id) && id >= 0 && id <= 0xffffffff ? id : 0;
      } catch {
        return 0;
      }
    },
  };
}
