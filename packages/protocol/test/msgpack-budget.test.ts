import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import {
  DEFAULT_CLIENT_DECODE_BUDGET,
  ErrorCode,
  TmemError,
  checkDecodeBudget,
  createCodec,
  type DecodeBudget,
} from '../src/index.ts';

const packr = new Packr({ useRecords: false, mapsAsObjects: true });

function codeOf(run: () => unknown): string | undefined {
  try {
    run();
    return undefined;
  } catch (error) {
    return error instanceof TmemError ? error.code : `not a TmemError: ${String(error)}`;
  }
}

/** Values and depth of a decoded value, counted the way the budget counts them. */
function shape(value: unknown): { elements: number; depth: number } {
  if (Array.isArray(value)) {
    const inner = value.map(shape);
    return {
      elements: 1 + inner.reduce((n, s) => n + s.elements, 0),
      depth: 1 + Math.max(0, ...inner.map((s) => s.depth)),
    };
  }
  if (typeof value === 'object' && value !== null && !(value instanceof Uint8Array)) {
    const inner = Object.values(value).map(shape);
    return {
      elements: 1 + inner.length + inner.reduce((n, s) => n + s.elements, 0),
      depth: 1 + Math.max(0, ...inner.map((s) => s.depth)),
    };
  }
  return { elements: 1, depth: 1 };
}

const leaf = fc.oneof(
  fc.integer(),
  fc.double({ noNaN: true }),
  fc.string(),
  fc.boolean(),
  fc.constant(null),
  fc.uint8Array({ maxLength: 300 }),
  fc.string({ minLength: 40, maxLength: 70_000 }).map((s) => s.slice(0, 300)),
);
const value = fc.letrec((tie) => ({
  node: fc.oneof({ depthSize: 'small' }, leaf, tie('array'), tie('map')),
  array: fc.array(tie('node'), { maxLength: 20 }),
  map: fc.dictionary(fc.string({ maxLength: 8 }), tie('node'), { maxKeys: 20 }),
})).node;

describe('decode budget', () => {
  it('counts exactly what msgpackr builds: a value passes at its own size and depth, and fails one below', () => {
    fc.assert(
      fc.property(value, (v) => {
        const bytes = packr.pack(v);
        const { elements, depth } = shape(v);
        expect(() => checkDecodeBudget(bytes, { maxElements: elements, maxDepth: depth })).not.toThrow();
        expect(codeOf(() => checkDecodeBudget(bytes, { maxElements: elements - 1, maxDepth: depth }))).toBe(
          ErrorCode.FrameTooComplex,
        );
        if (depth > 1) {
          expect(codeOf(() => checkDecodeBudget(bytes, { maxElements: elements, maxDepth: depth - 1 }))).toBe(
            ErrorCode.FrameTooComplex,
          );
        }
      }),
      { numRuns: 300 },
    );
  });

  it('refuses an array of a million empty maps at its header, before msgpackr builds any', () => {
    const bytes = new Uint8Array(5 + 1_000_000).fill(0x80);
    bytes.set([0xdd, 0x00, 0x0f, 0x42, 0x40]);
    const codec = createCodec();
    expect(codeOf(() => codec.decodeClientFrame(bytes))).toBe(ErrorCode.FrameTooComplex);
    expect(codec.peekRequestId(bytes)).toBe(0);
  });

  it('counts the values after the first one too: an extension that reads its content from them is bounded', () => {
    // 0xd4 0x73: msgpackr's Set extension, whose elements are the next value in the stream.
    const flood = new Uint8Array(3 + 5 + 100_000).fill(0x80);
    flood.set([0xd4, 0x73, 0x00, 0xdd, 0x00, 0x01, 0x86, 0xa0]);
    expect(codeOf(() => createCodec().decodeClientFrame(flood))).toBe(ErrorCode.FrameTooComplex);
  });

  it('a declared length beyond the bytes present is left to msgpackr: TRUNCATED_FRAME', () => {
    const header = Uint8Array.of(0xdd, 0x01, 0x00, 0x00, 0x00, 0x80, 0x80);
    expect(codeOf(() => createCodec().decodeClientFrame(header))).toBe(ErrorCode.TruncatedFrame);
  });

  it('refuses a map of 100,000 keys from a client, on both codec paths', () => {
    const keys = Object.fromEntries(Array.from({ length: 100_000 }, (_, i) => [`k${i}`, 0]));
    const bytes = new Packr({ useRecords: false, variableMapSize: true }).pack({ t: 'get', id: 7, ...keys });
    for (const fastPath of [true, false]) {
      expect(codeOf(() => createCodec({ fastPath }).decodeClientFrame(bytes))).toBe(
        ErrorCode.FrameTooComplex,
      );
    }
  });

  it('nesting deeper than maxDepth is FRAME_TOO_COMPLEX; at the limit the schema decides', () => {
    const nested = (levels: number): Uint8Array => {
      const bytes = new Uint8Array(levels + 1).fill(0x91);
      bytes[levels] = 0xc0;
      return bytes;
    };
    const codec = createCodec();
    const { maxDepth } = DEFAULT_CLIENT_DECODE_BUDGET;
    expect(codeOf(() => codec.decodeClientFrame(nested(maxDepth - 1)))).toBe(ErrorCode.InvalidFrame);
    expect(codeOf(() => codec.decodeClientFrame(nested(maxDepth)))).toBe(ErrorCode.FrameTooComplex);
  });

  it('an authenticated peer gets the larger budget', () => {
    const big = packr.pack({ t: 'peer', id: 1, junk: Array.from({ length: 100_000 }, () => 0) });
    const codec = createCodec();
    expect(codeOf(() => codec.decodeClientFrame(big))).toBe(ErrorCode.FrameTooComplex);
    expect(codeOf(() => codec.decodeClientFrame(big, codec.peerBudget))).toBe(ErrorCode.InvalidFrame);
  });

  it('the budget is a codec option', () => {
    const budget: DecodeBudget = { maxElements: 8, maxDepth: 4 };
    const codec = createCodec({ clientBudget: budget, fastPath: false });
    expect(codec.clientBudget).toEqual(budget);
    const hello = { t: 'hello', id: 1, protocol: 1, identity: 'a' } as const;
    expect(codeOf(() => codec.decodeClientFrame(codec.encode(hello)))).toBe(ErrorCode.FrameTooComplex);
    expect(codeOf(() => createCodec().decodeClientFrame(codec.encode(hello)))).toBeUndefined();
  });

  it('random bytes never throw anything but a TmemError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        const code = codeOf(() => checkDecodeBudget(bytes, { maxElements: 50, maxDepth: 4 }));
        expect([undefined, ErrorCode.FrameTooComplex]).toContain(code);
      }),
    );
  });

  it('fuzz: any msgpack value, whole or cut, decodes or fails with a frame error, and never past the budget', () => {
    const codec = createCodec({ clientBudget: { maxElements: 200, maxDepth: 6 } });
    const frameCodes = new Set<string>([
      ErrorCode.MalformedFrame,
      ErrorCode.TruncatedFrame,
      ErrorCode.FrameTooComplex,
      ErrorCode.InvalidFrame,
    ]);
    fc.assert(
      fc.property(fc.anything({ maxDepth: 8 }), fc.nat(), (v, cut) => {
        const whole = packr.pack(v);
        for (const bytes of [whole, whole.subarray(0, cut % (whole.length + 1))]) {
          const code = codeOf(() => codec.decodeClientFrame(bytes));
          if (code !== undefined) expect(frameCodes).toContain(code);
          const { elements, depth } = shape(v);
          // A value over the budget never reaches msgpackr: it is refused as too complex, whatever it holds.
          if (bytes === whole && (elements > 200 || depth > 6)) expect(code).toBe(ErrorCode.FrameTooComplex);
        }
      }),
      { numRuns: 500 },
    );
  });
});
