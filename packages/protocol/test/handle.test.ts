import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
  ErrorCode,
  MAX_OID_BYTES,
  MAX_PAGE_SIZE,
  MIN_PAGE_SIZE,
  STRIPE_SHIFT,
  TmemError,
  U32_MAX,
  checkIndex,
  isU32,
  isValidPageSize,
  murmur3,
  oidFromKey,
  oidKey,
  partitionHash,
  partitionOf,
  toOidBytes,
} from '../src/index.ts';

const utf8 = new TextEncoder();
const STRIPE = 2 ** STRIPE_SHIFT;

/** The code of the TmemError `fn` throws; fails the test if it returns or throws anything else. */
function tmemCode(fn: () => unknown): string {
  let thrown: unknown;
  try {
    fn();
  } catch (error) {
    thrown = error;
  }
  expect(thrown, 'expected a TmemError, but the call returned').toBeDefined();
  expect(thrown).toBeInstanceOf(TmemError);
  return (thrown as TmemError).code;
}

/** Small seeded PRNG (mulberry32), so the statistical tests are deterministic rather than flaky. */
function prng(seed: number): () => number {
  let a = seed | 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  };
}

function popcount(x: number): number {
  let n = 0;
  for (let v = x >>> 0; v !== 0; v &= v - 1) n++;
  return n;
}

/**
 * An independent MurmurHash3_x86_32, written the classic way (16-bit split multiplies, no Math.imul) from the
 * smhasher reference, to cross-check the production one on arbitrary input.
 */
function referenceMurmur3(key: Uint8Array, seed: number): number {
  const mul32 = (a: number, b: number) => ((a & 0xffff) * b + ((((a >>> 16) * b) & 0xffff) << 16)) >>> 0;
  const rotl = (x: number, r: number) => ((x << r) | (x >>> (32 - r))) >>> 0;
  const byte = (i: number) => key[i] ?? 0;
  const c1 = 0xcc9e2d51;
  const c2 = 0x1b873593;
  let h = seed >>> 0;
  const nblocks = key.length >>> 2;
  for (let b = 0; b < nblocks; b++) {
    const i = b * 4;
    let k = (byte(i) | (byte(i + 1) << 8) | (byte(i + 2) << 16) | (byte(i + 3) << 24)) >>> 0;
    k = mul32(rotl(mul32(k, c1), 15), c2);
    h = rotl((h ^ k) >>> 0, 13);
    h = (mul32(h, 5) + 0xe6546b64) >>> 0;
  }
  const t = nblocks * 4;
  const rest = key.length & 3;
  let k = 0;
  if (rest >= 3) k ^= byte(t + 2) << 16;
  if (rest >= 2) k ^= byte(t + 1) << 8;
  if (rest >= 1) {
    k ^= byte(t);
    k = mul32(rotl(mul32(k >>> 0, c1), 15), c2);
    h = (h ^ k) >>> 0;
  }
  h = (h ^ key.length) >>> 0;
  h = (h ^ (h >>> 16)) >>> 0;
  h = mul32(h, 0x85ebca6b);
  h = (h ^ (h >>> 13)) >>> 0;
  h = mul32(h, 0xc2b2ae35);
  h = (h ^ (h >>> 16)) >>> 0;
  return h;
}

describe('murmur3', () => {
  // Computed with the smhasher C reference (MurmurHash3.cpp, MurmurHash3_x86_32) built with gcc on x86-64;
  // they also match the widely published test vectors.
  const allBytes = Uint8Array.from({ length: 256 }, (_, i) => i);
  const vectors: [string, Uint8Array, number, number][] = [
    ['empty, seed 0', new Uint8Array(0), 0, 0x00000000],
    ['empty, seed 1', new Uint8Array(0), 1, 0x514e28b7],
    ['empty, seed 0xffffffff', new Uint8Array(0), 0xffffffff, 0x81f16f39],
    ['four zero bytes', new Uint8Array(4), 0, 0x2362f9de],
    ['four 0xff bytes', new Uint8Array(4).fill(0xff), 0, 0x76293b50],
    ['1-byte tail', Uint8Array.of(0x21), 0x5082edee, 0x366cb0cb],
    ['2-byte tail', Uint8Array.of(0x21, 0x43), 0x5082edee, 0x038ddfdb],
    ['3-byte tail', Uint8Array.of(0x21, 0x43, 0x65), 0x5082edee, 0xcafa9623],
    ['one block', Uint8Array.of(0x21, 0x43, 0x65, 0x87), 0x5082edee, 0x2362f9de],
    ['"hello"', utf8.encode('hello'), 0, 0x248bfa47],
    ['"abc"', utf8.encode('abc'), 0, 0xb3dd93fa],
    ['"aaaa"', utf8.encode('aaaa'), 0x9747b28c, 0x5a97808a],
    ['"Hello, world!"', utf8.encode('Hello, world!'), 0x9747b28c, 0x24884cba],
    ['quick brown fox, seed 0', utf8.encode('The quick brown fox jumps over the lazy dog'), 0, 0x2e4ff723],
    ['quick brown fox', utf8.encode('The quick brown fox jumps over the lazy dog'), 0x9747b28c, 0x2fa826cd],
    ['UTF-8 "π"', utf8.encode('π'), 0x9747b28c, 0x445626f5],
    ['bytes 0..255, seed 0', allBytes, 0, 0xe40a0e56],
    ['bytes 0..255, seed 42', allBytes, 42, 0xa89526f3],
  ];

  it.each(vectors)('matches the reference for %s', (_name, bytes, seed, expected) => {
    expect(murmur3(bytes, seed)).toBe(expected);
    expect(referenceMurmur3(bytes, seed)).toBe(expected);
  });

  it('defaults to seed 0', () => {
    expect(murmur3(utf8.encode('hello'))).toBe(0x248bfa47);
    expect(murmur3(new Uint8Array(0))).toBe(0);
  });

  it('agrees with an independent implementation on arbitrary bytes and seeds', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.integer({ min: 0, max: U32_MAX }), (bytes, seed) => {
        const h = murmur3(bytes, seed);
        expect(h).toBe(referenceMurmur3(bytes, seed));
        expect(isU32(h)).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it('hashes a view by its own bytes, not its backing buffer', () => {
    const backing = utf8.encode('xxThe quick brown fox jumps over the lazy dogyy');
    expect(murmur3(backing.subarray(2, 2 + 43), 0)).toBe(0x2e4ff723);
    expect(murmur3(Buffer.from('hello'), 0)).toBe(0x248bfa47);
  });
});

describe('partitionHash', () => {
  const oid = utf8.encode('inode:42');

  it('is deterministic and depends on the bytes, not the array instance', () => {
    const h = partitionHash(3, oid, 100);
    expect(partitionHash(3, oid, 100)).toBe(h);
    expect(partitionHash(3, Uint8Array.from(oid), 100)).toBe(h);
    expect(partitionHash(3, Buffer.from(oid), 100)).toBe(h);
    const backing = new Uint8Array(oid.length + 5).fill(0xee);
    backing.set(oid, 3);
    expect(partitionHash(3, backing.subarray(3, 3 + oid.length), 100)).toBe(h);
    expect(isU32(h)).toBe(true);
  });

  it('is the same for every index of one stripe', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: U32_MAX }),
        fc.uint8Array({ minLength: 1, maxLength: MAX_OID_BYTES }),
        fc.integer({ min: 0, max: U32_MAX }),
        (pool, bytes, index) => {
          const first = Math.floor(index / STRIPE) * STRIPE;
          const h = partitionHash(pool, bytes, first);
          expect(isU32(h)).toBe(true);
          for (let i = first; i < first + STRIPE; i++) expect(partitionHash(pool, bytes, i)).toBe(h);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('changes at stripe boundaries, including the last stripe of the u32 range', () => {
    expect(STRIPE).toBe(16);
    expect(partitionHash(1, oid, STRIPE - 1)).not.toBe(partitionHash(1, oid, STRIPE));
    expect(partitionHash(1, oid, U32_MAX)).toBe(partitionHash(1, oid, U32_MAX - (STRIPE - 1)));
    expect(partitionHash(1, oid, U32_MAX)).not.toBe(partitionHash(1, oid, U32_MAX - STRIPE));
    // 2^31 is where a signed shift would go wrong.
    expect(partitionHash(1, oid, 2 ** 31)).toBe(partitionHash(1, oid, 2 ** 31 + STRIPE - 1));
    expect(partitionHash(1, oid, 2 ** 31)).not.toBe(partitionHash(1, oid, 2 ** 31 - 1));
  });

  it('gives distinct hashes to distinct stripes, pools and oids', () => {
    const distinct = (hashes: number[]) => expect(new Set(hashes).size).toBe(hashes.length);
    const range = (n: number) => Array.from({ length: n }, (_, i) => i);
    distinct(range(10_000).map((s) => partitionHash(1, oid, s * STRIPE)));
    distinct(range(10_000).map((pool) => partitionHash(pool, oid, 0)));
    distinct([0, 1, 2 ** 31 - 1, 2 ** 31, U32_MAX].map((pool) => partitionHash(pool, oid, 0)));
    distinct(range(10_000).map((i) => partitionHash(1, utf8.encode(`file-${i}`), 0)));
    // Zero-extended oids: the length must take part, or [1] and [1, 0] would share pages' placement.
    distinct(range(MAX_OID_BYTES).map((n) => partitionHash(1, new Uint8Array(n + 1), 0)));
    distinct(range(MAX_OID_BYTES).map((n) => partitionHash(1, new Uint8Array(n + 1).fill(0xff), 0)));
    distinct(
      [[1], [1, 0], [1, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0, 0], [0, 1], [0, 0, 0, 1]].map((b) =>
        partitionHash(1, Uint8Array.from(b), 0),
      ),
    );
    // Every single-bit change of a full-length oid.
    const base = Uint8Array.from({ length: MAX_OID_BYTES }, (_, i) => i);
    const flipped = range(MAX_OID_BYTES * 8).map((bit) => {
      const b = Uint8Array.from(base);
      b[bit >> 3] = (b[bit >> 3] ?? 0) ^ (1 << (bit & 7));
      return partitionHash(1, b, 0);
    });
    distinct([partitionHash(1, base, 0), ...flipped]);
    // Fields do not blur into one another.
    distinct([
      partitionHash(1, Uint8Array.of(0, 0, 0, 0), 0),
      partitionHash(0, Uint8Array.of(1, 0, 0, 0), 0),
      partitionHash(0, Uint8Array.of(0, 0, 0, 0), STRIPE),
      partitionHash(0, Uint8Array.of(0, 0, 0, 0), 0),
    ]);
  });

  it('gives distinct hashes to random distinct handles (seeded)', () => {
    fc.assert(
      fc.property(
        fc.tuple(
          fc.integer({ min: 0, max: U32_MAX }),
          fc.uint8Array({ minLength: 1, maxLength: 40 }),
          fc.nat(2 ** 28 - 1),
        ),
        fc.tuple(
          fc.integer({ min: 0, max: U32_MAX }),
          fc.uint8Array({ minLength: 1, maxLength: 40 }),
          fc.nat(2 ** 28 - 1),
        ),
        ([p1, o1, s1], [p2, o2, s2]) => {
          const same = p1 === p2 && s1 === s2 && oidKey(o1) === oidKey(o2);
          fc.pre(!same);
          expect(partitionHash(p1, o1, s1 * STRIPE)).not.toBe(partitionHash(p2, o2, s2 * STRIPE));
        },
      ),
      { seed: 20240601, numRuns: 5000 },
    );
  });

  it('avalanches: flipping any input bit flips about half of the output bits', () => {
    const next = prng(7);
    const samples = 1000;
    // Input bits: 32 of the pool, 64 of an 8-byte oid, 28 of the stripe.
    const inputBits = 32 + 64 + 28;
    const flips = new Array<number>(inputBits).fill(0);
    for (let s = 0; s < samples; s++) {
      const pool = next();
      const bytes = new Uint8Array(8);
      new DataView(bytes.buffer).setUint32(0, next());
      new DataView(bytes.buffer).setUint32(4, next());
      const stripe = next() >>> 4;
      const h = partitionHash(pool, bytes, stripe * STRIPE);
      for (let bit = 0; bit < inputBits; bit++) {
        let p = pool;
        const b = Uint8Array.from(bytes);
        let st = stripe;
        if (bit < 32) p = (pool ^ (1 << bit)) >>> 0;
        else if (bit < 96) b[(bit - 32) >> 3] = (b[(bit - 32) >> 3] ?? 0) ^ (1 << ((bit - 32) & 7));
        else st = stripe ^ (1 << (bit - 96));
        flips[bit] = (flips[bit] ?? 0) + popcount(h ^ partitionHash(p, b, st * STRIPE));
      }
    }
    const means = flips.map((f) => f / samples);
    // Binomial(32, 1/2) averaged over 1000 samples: standard deviation about 0.09 bits.
    for (const mean of means) {
      expect(mean).toBeGreaterThan(15);
      expect(mean).toBeLessThan(17);
    }
  });

  describe('distribution over 1024 partitions', () => {
    const partitions = 1024;

    function counts(n: number, handle: (i: number) => [number, Uint8Array, number]): number[] {
      const c = new Array<number>(partitions).fill(0);
      for (let i = 0; i < n; i++) {
        const [pool, bytes, index] = handle(i);
        const p = partitionOf(pool, bytes, index, partitions);
        c[p] = (c[p] ?? 0) + 1;
      }
      return c;
    }

    /** Pearson's chi-square against the uniform distribution: mean df = 1023, sd = sqrt(2 * 1023) ~ 45. */
    function chiSquare(c: number[], n: number): number {
      const expected = n / partitions;
      return c.reduce((sum, o) => sum + (o - expected) ** 2 / expected, 0);
    }

    function randomHandle(next: () => number): [number, Uint8Array, number] {
      const bytes = new Uint8Array(1 + (next() % 64));
      for (let j = 0; j < bytes.length; j++) bytes[j] = next() & 0xff;
      return [next() % 16, bytes, next()];
    }

    const families: [string, (next: () => number) => (i: number) => [number, Uint8Array, number]][] = [
      ['random handles', (next) => () => randomHandle(next)],
      ['sequential file names, index 0', () => (i) => [1, utf8.encode(`/var/lib/vm/disk-${i}.img`), 0]],
      ['one large object (a swap area), stripe by stripe', () => (i) => [1, utf8.encode('swap'), i * STRIPE]],
      ['many pools, one oid', () => (i) => [i, utf8.encode('x'), 0]],
      [
        'little-endian counters as oids',
        () => (i) => {
          const b = new Uint8Array(8);
          new DataView(b.buffer).setUint32(0, i, true);
          return [0, b, 0];
        },
      ],
    ];

    it.each(families)('100k %s: chi-square fits a uniform distribution', (_name, family) => {
      const n = 100_000;
      const c = counts(n, family(prng(1)));
      const chi = chiSquare(c, n);
      // 5 standard deviations either side of the mean of the chi-square distribution with 1023 df.
      expect(chi).toBeGreaterThan(1023 - 5 * 45.2);
      expect(chi).toBeLessThan(1023 + 5 * 45.2);
      // With ~98 per partition the binomial sd is ~10 (10%); 50% is a 5-sigma bound.
      const mean = n / partitions;
      for (const o of c) {
        expect(o).toBeGreaterThan(mean * 0.5);
        expect(o).toBeLessThan(mean * 1.5);
      }
    });

    it('1M random handles: every partition within 25% of the mean', () => {
      // ±25% needs about a million handles: at 100k (sd ~10% per partition) even an ideal hash would have
      // a dozen of the 1024 partitions outside ±25%.
      const n = 1_000_000;
      const c = counts(n, families[0]![1](prng(2)));
      const mean = n / partitions;
      expect(Math.min(...c)).toBeGreaterThanOrEqual(mean * 0.75);
      expect(Math.max(...c)).toBeLessThanOrEqual(mean * 1.25);
      expect(chiSquare(c, n)).toBeLessThan(1023 + 5 * 45.2);
    });
  });
});

describe('partitionOf', () => {
  it('is the partition hash modulo the count, always in range', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: U32_MAX }),
        fc.uint8Array({ minLength: 1, maxLength: 64 }),
        fc.integer({ min: 0, max: U32_MAX }),
        fc.constantFrom(1, 2, 7, 256, 1024, 4096, 65_536, 1_000_003),
        (pool, bytes, index, count) => {
          const p = partitionOf(pool, bytes, index, count);
          expect(Number.isInteger(p) && p >= 0 && p < count).toBe(true);
          expect(p).toBe(partitionHash(pool, bytes, index) % count);
        },
      ),
      { numRuns: 1000 },
    );
  });
});

describe('toOidBytes', () => {
  it('takes strings as their UTF-8 bytes', () => {
    expect(toOidBytes('abc')).toEqual(Uint8Array.of(0x61, 0x62, 0x63));
    expect(toOidBytes('é')).toEqual(Uint8Array.of(0xc3, 0xa9));
    expect(toOidBytes('日本')).toEqual(Uint8Array.of(0xe6, 0x97, 0xa5, 0xe6, 0x9c, 0xac));
    expect(toOidBytes('🙂')).toEqual(Uint8Array.of(0xf0, 0x9f, 0x99, 0x82));
    expect(toOidBytes('\0')).toEqual(Uint8Array.of(0));
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 40 }), (s) => {
        expect(new TextDecoder().decode(toOidBytes(s))).toBe(s);
      }),
    );
  });

  it('returns byte ids as they are', () => {
    const bytes = Uint8Array.of(0, 255, 7);
    expect(toOidBytes(bytes)).toBe(bytes);
    const buffer = Buffer.from([1, 2, 3]);
    expect(toOidBytes(buffer)).toBe(buffer);
  });

  it('accepts 1..MAX_OID_BYTES bytes, counted in bytes, not characters', () => {
    expect(MAX_OID_BYTES).toBeGreaterThanOrEqual(64);
    for (const length of [1, 64, MAX_OID_BYTES]) {
      expect(toOidBytes(new Uint8Array(length))).toHaveLength(length);
      expect(toOidBytes('x'.repeat(length))).toHaveLength(length);
    }
    expect(toOidBytes('é'.repeat(MAX_OID_BYTES / 2))).toHaveLength(MAX_OID_BYTES);
    expect(tmemCode(() => toOidBytes('é'.repeat(MAX_OID_BYTES / 2 + 1)))).toBe(ErrorCode.BadArgument);
    expect(tmemCode(() => toOidBytes('x'.repeat(MAX_OID_BYTES + 1)))).toBe(ErrorCode.BadArgument);
    expect(tmemCode(() => toOidBytes(new Uint8Array(MAX_OID_BYTES + 1)))).toBe(ErrorCode.BadArgument);
  });

  it('rejects empty ids with BAD_ARGUMENT and names the limit', () => {
    for (const empty of ['', new Uint8Array(0)]) {
      let thrown: unknown;
      try {
        toOidBytes(empty);
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(TmemError);
      expect((thrown as TmemError).code).toBe(ErrorCode.BadArgument);
      expect((thrown as TmemError).details).toEqual({ length: 0, max: MAX_OID_BYTES });
    }
  });

  it('rejects ids that are neither strings nor bytes with BAD_ARGUMENT', () => {
    for (const bad of [
      42,
      null,
      undefined,
      [1, 2, 3],
      { length: 3 },
      new ArrayBuffer(3),
      new Uint16Array(3),
    ]) {
      expect(tmemCode(() => toOidBytes(bad as unknown as string))).toBe(ErrorCode.BadArgument);
    }
  });
});

describe('checkIndex and isU32', () => {
  it('accepts every u32 and returns it', () => {
    for (const index of [0, 1, 15, 16, 2 ** 31 - 1, 2 ** 31, U32_MAX - 1, U32_MAX]) {
      expect(checkIndex(index)).toBe(index);
      expect(isU32(index)).toBe(true);
    }
    fc.assert(
      fc.property(fc.integer({ min: 0, max: U32_MAX }), (index) => {
        expect(checkIndex(index)).toBe(index);
      }),
    );
  });

  it('rejects anything else with BAD_ARGUMENT and names the index', () => {
    for (const index of [-1, U32_MAX + 1, 2 ** 53, 1.5, -0.5, NaN, Infinity, -Infinity]) {
      expect(isU32(index)).toBe(false);
      let thrown: unknown;
      try {
        checkIndex(index);
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(TmemError);
      expect((thrown as TmemError).code).toBe(ErrorCode.BadArgument);
      expect((thrown as TmemError).details).toEqual({ index });
    }
    for (const index of ['1', null, undefined, 1n, [1]]) {
      expect(isU32(index)).toBe(false);
      expect(tmemCode(() => checkIndex(index as unknown as number))).toBe(ErrorCode.BadArgument);
    }
  });
});

describe('isValidPageSize', () => {
  it('accepts exactly the powers of two from MIN_PAGE_SIZE to MAX_PAGE_SIZE', () => {
    const valid: number[] = [];
    for (let size = MIN_PAGE_SIZE; size <= MAX_PAGE_SIZE; size *= 2) valid.push(size);
    expect(valid).toEqual([512, 1024, 2048, 4096, 8192, 16384, 32768, 65536]);
    for (const size of valid) expect(isValidPageSize(size)).toBe(true);
    for (const size of [
      0,
      1,
      2,
      256,
      511,
      513,
      1000,
      3 * 1024,
      4095,
      4097,
      65_535,
      65_537,
      131_072,
      2 ** 31,
    ]) {
      expect(isValidPageSize(size)).toBe(false);
    }
    for (const size of [-512, -4096, 512.5, 4096.000001, NaN, Infinity, -Infinity]) {
      expect(isValidPageSize(size)).toBe(false);
    }
    fc.assert(
      fc.property(fc.integer({ min: -(2 ** 40), max: 2 ** 40 }), (size) => {
        expect(isValidPageSize(size)).toBe(valid.includes(size));
      }),
      { numRuns: 2000 },
    );
  });
});

describe('oidKey and oidFromKey', () => {
  it('round-trip arbitrary bytes, including long ones', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 10_000 }), (bytes) => {
        const key = oidKey(bytes);
        expect(key).toHaveLength(bytes.length);
        expect(oidFromKey(key)).toEqual(bytes);
      }),
      { numRuns: 300 },
    );
    // Longer than the 4096-byte chunk of oidKey, and an exact multiple of it.
    for (const length of [4095, 4096, 4097, 8192, 100_000]) {
      const bytes = Uint8Array.from({ length }, (_, i) => (i * 7) & 0xff);
      expect(oidFromKey(oidKey(bytes))).toEqual(bytes);
    }
    expect(oidKey(new Uint8Array(0))).toBe('');
    expect(oidFromKey('')).toEqual(new Uint8Array(0));
  });

  it('maps distinct byte strings to distinct keys', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), fc.uint8Array({ maxLength: 40 }), (a, b) => {
        const sameBytes = a.length === b.length && a.every((v, i) => v === b[i]);
        expect(oidKey(a) === oidKey(b)).toBe(sameBytes);
      }),
      { numRuns: 2000 },
    );
    expect(oidKey(Uint8Array.of(1))).not.toBe(oidKey(Uint8Array.of(1, 0)));
  });

  it('keys a view by its own bytes', () => {
    const backing = Uint8Array.of(9, 9, 1, 2, 3, 9);
    expect(oidKey(backing.subarray(2, 5))).toBe(oidKey(Uint8Array.of(1, 2, 3)));
    expect(oidFromKey(oidKey(backing.subarray(2, 5)))).toEqual(Uint8Array.of(1, 2, 3));
  });

  it('works as a Map key for the same bytes in different arrays', () => {
    const map = new Map<string, number>();
    map.set(oidKey(toOidBytes('inode:42')), 1);
    expect(map.get(oidKey(utf8.encode('inode:42')))).toBe(1);
    expect(map.get(oidKey(utf8.encode('inode:43')))).toBeUndefined();
  });
});
