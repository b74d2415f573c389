import { describe, it, expect } from 'vitest';
import { TmemError, U32_MAX, partitionHash } from '@tmem/protocol';
import { OBJECT_HASH, createTombstones } from '../src/tombstones.ts';
import type { Tombstone, Tombstones } from '../src/tombstones.ts';

const utf8 = new TextEncoder();
const oid = (s: string): Uint8Array => utf8.encode(s);

/** The error code `fn` throws, or undefined if it returns. */
function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    return error instanceof TmemError ? error.code : `not a TmemError: ${String(error)}`;
  }
  return undefined;
}

/** A tombstone set on a clock the test moves by hand. */
function withClock(ttlMs = 1000): { tombs: Tombstones; advance: (ms: number) => void } {
  let t = 5000;
  const tombs = createTombstones({ ttlMs, now: () => t });
  return { tombs, advance: (ms) => (t += ms) };
}

/** flushedPage with the hash computed as the node does. */
function flushPage(tombs: Tombstones, pool: number, o: Uint8Array, index: number, version: number): void {
  tombs.flushedPage(pool, o, index, version, partitionHash(pool, o, index));
}

/** A tombstone as a comparable string. */
function show(t: Tombstone): string {
  return `${t.pool}/${Buffer.from(t.oid).toString('hex')}/${t.index ?? '*'}@${t.version}`;
}

describe('tombstones', () => {
  it('covering is 0 without a tombstone, and the page tombstone version with one', () => {
    const { tombs } = withClock();
    expect(tombs.covering(1, oid('a'), 0)).toBe(0);
    flushPage(tombs, 1, oid('a'), 0, 7);
    expect(tombs.covering(1, oid('a'), 0)).toBe(7);
    expect(tombs.covering(1, oid('a'), 1)).toBe(0);
    expect(tombs.covering(2, oid('a'), 0)).toBe(0);
    expect(tombs.covering(1, oid('b'), 0)).toBe(0);
    expect(tombs.size).toBe(1);
  });

  it('keeps the highest version per handle and per object', () => {
    const { tombs } = withClock();
    flushPage(tombs, 1, oid('a'), 0, 7);
    flushPage(tombs, 1, oid('a'), 0, 3);
    expect(tombs.covering(1, oid('a'), 0)).toBe(7);
    flushPage(tombs, 1, oid('a'), 0, 9);
    expect(tombs.covering(1, oid('a'), 0)).toBe(9);
    tombs.flushedObject(1, oid('a'), 4);
    tombs.flushedObject(1, oid('a'), 2);
    expect(tombs.covering(1, oid('a'), 5)).toBe(4);
    expect(tombs.size).toBe(2);
  });

  it('covering takes the larger of the page and object tombstones', () => {
    const { tombs } = withClock();
    flushPage(tombs, 1, oid('a'), 0, 5);
    tombs.flushedObject(1, oid('a'), 8);
    expect(tombs.covering(1, oid('a'), 0)).toBe(8);
    expect(tombs.covering(1, oid('a'), U32_MAX)).toBe(8);
    flushPage(tombs, 1, oid('a'), 0, 12);
    expect(tombs.covering(1, oid('a'), 0)).toBe(12);
    expect(tombs.covering(1, oid('a'), 1)).toBe(8);
    expect(tombs.covering(1, oid('ab'), 0)).toBe(0);
  });

  it('keeps binary oids apart, including ones that look like a key plus an index', () => {
    const { tombs } = withClock();
    const oids = [
      new Uint8Array([0x80]),
      new Uint8Array([0x80, 0x00]),
      new Uint8Array([0xff, 0x31]), // 0xff then "1"
      new Uint8Array([0xff]),
    ];
    oids.forEach((o, i) => flushPage(tombs, 1, o, 1, 10 + i));
    oids.forEach((o, i) => expect(tombs.covering(1, o, 1)).toBe(10 + i));
    expect(tombs.covering(1, new Uint8Array([0xff]), 11)).toBe(0);
    const listed = tombs.list(() => true);
    expect(listed.map((t) => Buffer.from(t.oid).toString('hex')).sort()).toEqual([
      '80',
      '8000',
      'ff',
      'ff31',
    ]);
  });

  it('lists page tombstones by (pool, hash) and object tombstones when the predicate accepts OBJECT_HASH', () => {
    const { tombs } = withClock();
    const names = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'];
    for (const pool of [1, 2]) {
      for (const name of names) flushPage(tombs, pool, oid(name), 3, pool * 10);
      tombs.flushedObject(pool, oid('obj'), pool * 100);
    }
    const calls: [number, number][] = [];
    const even = tombs.list((pool, hash) => {
      calls.push([pool, hash]);
      return pool === 1 && hash % 2 === 0; // -1 % 2 is -1: not asked for object tombstones
    });
    const expected = names
      .filter((n) => partitionHash(1, oid(n), 3) % 2 === 0)
      .map((n) => `1/${Buffer.from(n).toString('hex')}/3@10`);
    expect(even.map(show).sort()).toEqual(expected.sort());
    // The predicate saw every page tombstone's hash, and OBJECT_HASH once per pool with object tombstones.
    expect(calls.filter(([, h]) => h === OBJECT_HASH)).toEqual([
      [1, OBJECT_HASH],
      [2, OBJECT_HASH],
    ]);
    expect(calls.filter(([, h]) => h !== OBJECT_HASH)).toHaveLength(2 * names.length);

    const objects = tombs.list((pool, hash) => pool === 2 && hash === OBJECT_HASH);
    expect(objects).toEqual([{ pool: 2, oid: oid('obj'), version: 200 }]);
    expect('index' in (objects[0] as Tombstone)).toBe(false);
    expect(tombs.list(() => true)).toHaveLength(2 * names.length + 2);
  });

  it('lists a fresh oid copy each time', () => {
    const { tombs } = withClock();
    flushPage(tombs, 1, oid('a'), 0, 1);
    const first = tombs.list(() => true)[0] as Tombstone;
    first.oid.fill(0);
    expect((tombs.list(() => true)[0] as Tombstone).oid).toEqual(oid('a'));
  });

  it('sweep removes tombstones not updated for more than ttlMs, and an update restarts the ttl', () => {
    const { tombs, advance } = withClock(1000);
    flushPage(tombs, 1, oid('a'), 0, 1);
    tombs.flushedObject(1, oid('o'), 1);
    advance(600);
    flushPage(tombs, 1, oid('b'), 0, 1);
    expect(tombs.sweep()).toBe(0);
    advance(400); // a and o are exactly ttlMs old: not older than it
    expect(tombs.sweep()).toBe(0);
    flushPage(tombs, 1, oid('a'), 0, 0); // an update, even with a lower version, restarts a's ttl
    advance(1);
    expect(tombs.sweep()).toBe(1); // o
    expect(tombs.covering(1, oid('o'), 0)).toBe(0);
    expect(tombs.covering(1, oid('a'), 0)).toBe(1);
    advance(600); // b is 1001 old, a is 601
    expect(tombs.sweep()).toBe(1);
    expect(tombs.covering(1, oid('b'), 0)).toBe(0);
    expect(tombs.size).toBe(1);
    advance(400);
    expect(tombs.sweep()).toBe(1);
    expect(tombs.size).toBe(0);
    expect(tombs.list(() => true)).toEqual([]);
  });

  it('an expired tombstone still covers until swept', () => {
    const { tombs, advance } = withClock(10);
    flushPage(tombs, 1, oid('a'), 0, 3);
    advance(100);
    expect(tombs.covering(1, oid('a'), 0)).toBe(3);
    tombs.sweep();
    expect(tombs.covering(1, oid('a'), 0)).toBe(0);
  });

  it('dropPool forgets the pool and nothing else, and sweep still works afterwards', () => {
    const { tombs, advance } = withClock(1000);
    flushPage(tombs, 1, oid('a'), 0, 1);
    flushPage(tombs, 1, oid('a'), 1, 1);
    tombs.flushedObject(1, oid('a'), 1);
    flushPage(tombs, 2, oid('a'), 0, 2);
    expect(tombs.dropPool(1)).toBe(3);
    expect(tombs.dropPool(1)).toBe(0);
    expect(tombs.size).toBe(1);
    expect(tombs.covering(1, oid('a'), 0)).toBe(0);
    expect(tombs.covering(2, oid('a'), 0)).toBe(2);
    flushPage(tombs, 1, oid('a'), 0, 4); // the pool can have tombstones again
    expect(tombs.covering(1, oid('a'), 0)).toBe(4);
    advance(1001);
    expect(tombs.sweep()).toBe(2);
    expect(tombs.size).toBe(0);
  });

  it('uses performance.now by default', () => {
    const tombs = createTombstones({ ttlMs: 60_000 });
    flushPage(tombs, 1, oid('a'), 0, 1);
    expect(tombs.sweep()).toBe(0);
    expect(tombs.size).toBe(1);
  });

  it('rejects bad arguments with BAD_ARGUMENT and records nothing', () => {
    expect(codeOf(() => createTombstones({ ttlMs: -1 }))).toBe('BAD_ARGUMENT');
    expect(codeOf(() => createTombstones({ ttlMs: Number.NaN }))).toBe('BAD_ARGUMENT');
    const { tombs } = withClock();
    const a = oid('a');
    expect(codeOf(() => tombs.flushedPage(-1, a, 0, 1, 0))).toBe('BAD_ARGUMENT');
    expect(codeOf(() => tombs.flushedPage(1, new Uint8Array(0), 0, 1, 0))).toBe('BAD_ARGUMENT');
    expect(codeOf(() => tombs.flushedPage(1, a, -1, 1, 0))).toBe('BAD_ARGUMENT');
    expect(codeOf(() => tombs.flushedPage(1, a, 0, -1, 0))).toBe('BAD_ARGUMENT');
    expect(codeOf(() => tombs.flushedPage(1, a, 0, 1.5, 0))).toBe('BAD_ARGUMENT');
    expect(codeOf(() => tombs.flushedPage(1, a, 0, 1, -1))).toBe('BAD_ARGUMENT');
    expect(codeOf(() => tombs.flushedObject(1, a, 2 ** 53))).toBe('BAD_ARGUMENT');
    expect(codeOf(() => tombs.flushedObject(1.5, a, 1))).toBe('BAD_ARGUMENT');
    expect(tombs.size).toBe(0);
  });
});
