// Test helper: a msgpack encoder that writes the same value in the many ways msgpack allows (every integer
// width that fits, floats for integers, every str/bin/map/array width, keys in any order), driven by a seeded
// random source, so the fast decoder meets encodings our own encoder never produces.

/** A deterministic random source in [0, 1) (mulberry32). */
export type Rand = () => number;

/** A seeded random source. */
export function seeded(seed: number): Rand {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Bytes written as they are: msgpack the encoder has no value for (ext types, invalid UTF-8, reserved bytes). */
export class Raw {
  readonly bytes: Uint8Array;
  constructor(bytes: ArrayLike<number>) {
    this.bytes = Uint8Array.from(bytes);
  }
}

/** A map as a list of entries, so keys can repeat, be `__proto__` or be something other than strings. */
export class Entries {
  readonly entries: [unknown, unknown][];
  constructor(entries: [unknown, unknown][]) {
    this.entries = entries;
  }
}

const utf8 = new TextEncoder();

function pick<T>(rand: Rand, items: readonly T[]): T {
  return items[Math.floor(rand() * items.length)]!;
}

function be(out: number[], v: number | bigint, bytes: number): void {
  let x = BigInt.asUintN(bytes * 8, BigInt(v));
  const b: number[] = [];
  for (let i = 0; i < bytes; i++) {
    b.unshift(Number(x & 0xffn));
    x >>= 8n;
  }
  out.push(...b);
}

/** Length header of a str, bin, array or map: the smallest width most of the time, any fitting one otherwise. */
function header(
  out: number[],
  n: number,
  rand: Rand,
  fix: number | undefined,
  fixMax: number,
  codes: number[],
): void {
  const widths: [number, number][] = [];
  if (fix !== undefined && n <= fixMax) widths.push([fix | n, 0]);
  const sizes = [1, 2, 4];
  codes.forEach((code, i) => {
    const size = sizes[i + (codes.length === 2 ? 1 : 0)]!;
    if (n < 2 ** (8 * size)) widths.push([code, size]);
  });
  const [code, size] = rand() < 0.6 ? widths[0]! : pick(rand, widths);
  out.push(code);
  if (size > 0) be(out, n, size);
}

function encodeNumber(out: number[], v: number, rand: Rand): void {
  const options: (() => void)[] = [];
  if (Number.isInteger(v) && !Object.is(v, -0)) {
    if (v >= 0 && v < 128) options.push(() => out.push(v));
    if (v < 0 && v >= -32) options.push(() => out.push(v & 0xff));
    if (v >= 0 && v < 2 ** 8) options.push(() => (out.push(0xcc), be(out, v, 1)));
    if (v >= 0 && v < 2 ** 16) options.push(() => (out.push(0xcd), be(out, v, 2)));
    if (v >= 0 && v < 2 ** 32) options.push(() => (out.push(0xce), be(out, v, 4)));
    if (v >= 0 && Number.isSafeInteger(v)) options.push(() => (out.push(0xcf), be(out, v, 8)));
    if (v >= -(2 ** 7) && v < 2 ** 7) options.push(() => (out.push(0xd0), be(out, v, 1)));
    if (v >= -(2 ** 15) && v < 2 ** 15) options.push(() => (out.push(0xd1), be(out, v, 2)));
    if (v >= -(2 ** 31) && v < 2 ** 31) options.push(() => (out.push(0xd2), be(out, v, 4)));
    if (Number.isSafeInteger(v)) options.push(() => (out.push(0xd3), be(out, v, 8)));
  }
  const f64 = (): void => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, v);
    out.push(0xcb, ...b);
  };
  if (Math.fround(v) === v || Number.isNaN(v)) {
    options.push(() => {
      const b = new Uint8Array(4);
      new DataView(b.buffer).setFloat32(0, v);
      out.push(0xca, ...b);
    });
  }
  options.push(f64);
  (rand() < 0.6 ? options[0]! : pick(rand, options))();
}

/** Appends a msgpack encoding of `value` to `out`, choosing among the valid encodings with `rand`. */
export function encodeVaried(value: unknown, rand: Rand, out: number[] = []): number[] {
  if (value instanceof Raw) for (const x of value.bytes) out.push(x);
  else if (value === null) out.push(0xc0);
  else if (value === undefined) out.push(0xd4, 0, 0);
  else if (value === true) out.push(0xc3);
  else if (value === false) out.push(0xc2);
  else if (typeof value === 'number') encodeNumber(out, value, rand);
  else if (typeof value === 'string') {
    const b = utf8.encode(value);
    header(out, b.length, rand, 0xa0, 31, [0xd9, 0xda, 0xdb]);
    for (const x of b) out.push(x);
  } else if (value instanceof Uint8Array) {
    header(out, value.length, rand, undefined, 0, [0xc4, 0xc5, 0xc6]);
    for (const x of value) out.push(x);
  } else if (Array.isArray(value)) {
    header(out, value.length, rand, 0x90, 15, [0xdc, 0xdd]);
    for (const v of value) encodeVaried(v, rand, out);
  } else if (typeof value === 'object') {
    const entries = value instanceof Entries ? [...value.entries] : Object.entries(value);
    if (rand() < 0.3) {
      for (let i = entries.length - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [entries[i], entries[j]] = [entries[j]!, entries[i]!];
      }
    }
    header(out, entries.length, rand, 0x80, 15, [0xde, 0xdf]);
    for (const [k, v] of entries) {
      encodeVaried(k, rand, out);
      encodeVaried(v, rand, out);
    }
  } else throw new Error(`cannot encode ${typeof value}`);
  return out;
}
