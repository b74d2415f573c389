// The decode budget: how much structure one frame may make the reference decoder (msgpackr) build. The byte
// limit alone does not bound that: 16 MiB of 0x80 bytes is 16M empty maps, seconds of CPU and gigabytes of heap
// before any schema sees them. So before msgpackr runs, one pass over the bytes counts the values and the nesting
// depth, without allocating, and refuses a frame over the budget at the first value past it (a declared
// container length is counted before its elements are read, so a lying header is refused at once).
// The fast path (fast-decode.ts) needs no budget: it reads only fixed shapes bounded by the schema limits.

import { ErrorCode, ProtocolError } from './errors.ts';

/** How much structure one frame may carry. */
export interface DecodeBudget {
  /** Most msgpack values in one frame, counting every map key, map value and array element. */
  maxElements: number;
  /** Deepest nesting of maps and arrays; the top-level value is depth 1. */
  maxDepth: number;
}

/**
 * Budget of a frame from a client, before and after its hello: a full batch (MAX_BATCH_OPS ops of a dozen
 * values each) fits with room to spare.
 */
export const DEFAULT_CLIENT_DECODE_BUDGET: DecodeBudget = { maxElements: 65_536, maxDepth: 16 };

/**
 * Budget of a frame from an authenticated peer, or a reply from a node: a cluster state lists every pool and
 * partition, so it is larger, but still bounded.
 */
export const DEFAULT_PEER_DECODE_BUDGET: DecodeBudget = { maxElements: 1_048_576, maxDepth: 16 };

function tooComplex(what: string, budget: DecodeBudget): ProtocolError {
  return new ProtocolError(ErrorCode.FrameTooComplex, `frame ${what}; send smaller frames`, {
    details: { maxElements: budget.maxElements, maxDepth: budget.maxDepth },
  });
}

/**
 * Throws FRAME_TOO_COMPLEX when the msgpack values in `data` hold more values or deeper nesting than the budget
 * allows. Every value in the bytes counts, trailing ones too: some extension types make msgpackr read the value
 * after them as their content (a Set, an Error), so what it builds is bounded only by all the values present.
 * Anything this pass does not understand (a declared length beyond the bytes, the never-used byte 0xc1) is left
 * to msgpackr, which reports it precisely. Costs one pass over the structure; string, binary and extension
 * payloads are skipped, not read.
 */
export function checkDecodeBudget(data: Uint8Array, budget: DecodeBudget): void {
  const end = data.length;
  // remaining[d] = values still to read in the container open at depth d; depth 0 is the frame itself.
  const remaining: number[] = [1];
  let depth = 0;
  let elements = 0;
  let pos = 0;
  while (pos < end) {
    while (remaining[depth] === 0) {
      if (depth === 0) {
        remaining[0] = 1; // bytes after the first value: counted as further values
        break;
      }
      depth--;
    }
    remaining[depth]!--;
    if (++elements > budget.maxElements) throw tooComplex('holds too many values', budget);
    const b = data[pos++]!;
    let children = 0;
    let skip = 0;
    if (b <= 0x7f || b >= 0xe0) {
      // positive and negative fixint
    } else if (b <= 0x8f) {
      children = (b & 0x0f) * 2;
    } else if (b <= 0x9f) {
      children = b & 0x0f;
    } else if (b <= 0xbf) {
      skip = b & 0x1f;
    } else {
      switch (b) {
        case 0xc4:
        case 0xd9:
          skip = 1 + (data[pos] ?? 0);
          break;
        case 0xc5:
        case 0xda:
          skip = 2 + readBigEndian(data, pos, 2);
          break;
        case 0xc6:
        case 0xdb:
          skip = 4 + readBigEndian(data, pos, 4);
          break;
        case 0xcc:
        case 0xd0:
          skip = 1;
          break;
        case 0xcd:
        case 0xd1:
          skip = 2;
          break;
        case 0xca:
        case 0xce:
        case 0xd2:
          skip = 4;
          break;
        case 0xcb:
        case 0xcf:
        case 0xd3:
          skip = 8;
          break;
        case 0xdc:
          children = readBigEndian(data, pos, 2);
          skip = 2;
          break;
        case 0xdd:
          children = readBigEndian(data, pos, 4);
          skip = 4;
          break;
        case 0xde:
          children = readBigEndian(data, pos, 2) * 2;
          skip = 2;
          break;
        case 0xdf:
          children = readBigEndian(data, pos, 4) * 2;
          skip = 4;
          break;
        case 0xd4:
          skip = 2;
          break;
        case 0xd5:
          skip = 3;
          break;
        case 0xd6:
          skip = 5;
          break;
        case 0xd7:
          skip = 9;
          break;
        case 0xd8:
          skip = 17;
          break;
        case 0xc7:
          skip = 2 + (data[pos] ?? 0);
          break;
        case 0xc8:
          skip = 3 + readBigEndian(data, pos, 2);
          break;
        case 0xc9:
          skip = 5 + readBigEndian(data, pos, 4);
          break;
        default:
        // nil, false, true and the never-used 0xc1: no payload
      }
    }
    pos += skip;
    if (children > 0) {
      // Each value takes at least a byte: a longer declaration is a cut-off frame, msgpackr's to report.
      if (children > end - pos) return;
      if (elements + children > budget.maxElements) throw tooComplex('declares too many values', budget);
      if (depth + 1 >= budget.maxDepth) throw tooComplex('nests too deeply', budget);
      remaining[++depth] = children;
    }
  }
}

/** Unsigned big-endian integer of 2 or 4 bytes at `pos`; bytes past the end read as 0 (msgpackr reports those). */
function readBigEndian(data: Uint8Array, pos: number, bytes: 2 | 4): number {
  if (bytes === 2) return ((data[pos] ?? 0) << 8) | (data[pos + 1] ?? 0);
  return (
    (((data[pos] ?? 0) << 24) |
      ((data[pos + 1] ?? 0) << 16) |
      ((data[pos + 2] ?? 0) << 8) |
      (data[pos + 3] ?? 0)) >>>
    0
  );
}
