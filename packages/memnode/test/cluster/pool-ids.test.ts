import { describe, expect, it } from 'vitest';
import { newPoolIdKey, poolIdFor } from '../../src/cluster/pool-ids.ts';

const KEY = '00112233445566778899aabbccddeeff';
const OTHER = 'ffeeddccbbaa99887766554433221100';

describe('pool ids', () => {
  it('are a bijection: distinct counters give distinct u32 ids other than 0', () => {
    const seen = new Set<number>();
    for (let counter = 1; counter <= 20_000; counter++) {
      const id = poolIdFor(KEY, counter);
      expect(Number.isInteger(id) && id >= 1 && id <= 0xffffffff).toBe(true);
      seen.add(id);
    }
    expect(seen.size).toBe(20_000);
    // The far end of the domain too.
    const high = [2 ** 32 - 1, 2 ** 32 - 2, 2 ** 31, 2 ** 16].map((c) => poolIdFor(KEY, c));
    expect(new Set(high).size).toBe(4);
  });

  it('are the same for the same key and counter, on every member', () => {
    for (const counter of [1, 2, 77, 65_536, 2 ** 32 - 1]) {
      expect(poolIdFor(KEY, counter)).toBe(poolIdFor(KEY, counter));
    }
  });

  it('differ between keys, and reveal neither the count nor the order of creation', () => {
    const mine = Array.from({ length: 100 }, (_, i) => poolIdFor(KEY, i + 1));
    const theirs = Array.from({ length: 100 }, (_, i) => poolIdFor(OTHER, i + 1));
    expect(mine.filter((id, i) => id === theirs[i]).length).toBeLessThan(2);
    // Sequential ids would be 1..100, each one more than the last: these are spread over the u32 range.
    expect(mine.filter((id, i) => i > 0 && id === (mine[i - 1] as number) + 1)).toEqual([]);
    expect(mine.filter((id) => id <= 100).length).toBeLessThan(2);
    const ascending = mine.filter((id, i) => i > 0 && id > (mine[i - 1] as number)).length;
    expect(ascending).toBeGreaterThan(25);
    expect(ascending).toBeLessThan(75);
  });

  it('refuse a counter outside 1..2^32-1, and new keys are random', () => {
    expect(() => poolIdFor(KEY, 0)).toThrow(RangeError);
    expect(() => poolIdFor(KEY, 2 ** 32)).toThrow(RangeError);
    expect(newPoolIdKey()).toMatch(/^[0-9a-f]{32}$/);
    expect(newPoolIdKey()).not.toBe(newPoolIdKey());
  });
});
