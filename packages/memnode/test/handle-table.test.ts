import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { createHandleTable, NO_RECORD } from '../src/handle-table.ts';
import type { HandleTable } from '../src/handle-table.ts';

/** A table over plain key arrays, as the page store keeps them. */
function tableWithKeys(): { table: HandleTable; objects: number[]; indexes: number[] } {
  const objects: number[] = [];
  const indexes: number[] = [];
  const table = createHandleTable({
    objectOf: (record) => objects[record] as number,
    indexOf: (record) => indexes[record] as number,
  });
  return { table, objects, indexes };
}

describe('handle table', () => {
  it('finds inserted records and misses everything else', () => {
    const { table, objects, indexes } = tableWithKeys();
    objects.push(1, 1, 2);
    indexes.push(0, 0xffffffff, 0);
    table.insert(0);
    table.insert(1);
    table.insert(2);
    expect(table.size).toBe(3);
    expect(table.get(1, 0)).toBe(0);
    expect(table.get(1, 0xffffffff)).toBe(1);
    expect(table.get(2, 0)).toBe(2);
    expect(table.get(2, 1)).toBe(NO_RECORD);
    expect(table.get(3, 0)).toBe(NO_RECORD);
  });

  it('renumbers a record in place, and refuses a record that is not there under that key', () => {
    const { table, objects, indexes } = tableWithKeys();
    for (let i = 0; i < 100; i++) {
      objects.push(i % 3);
      indexes.push(i);
      table.insert(i);
    }
    // Record 150 takes record 40's key (the store copied the key, then renumbers).
    objects[150] = objects[40] as number;
    indexes[150] = indexes[40] as number;
    table.renumber(40, 150);
    expect(table.get(objects[40] as number, 40)).toBe(150);
    expect(table.size).toBe(100);
    expect(() => table.renumber(40, 150)).toThrow();
    objects[151] = 7;
    indexes[151] = 7;
    expect(() => table.renumber(41, 151)).toThrow();
    expect(table.remove(objects[40] as number, 40)).toBe(150);
  });

  it('removes records and reports misses', () => {
    const { table, objects, indexes } = tableWithKeys();
    objects.push(5);
    indexes.push(9);
    table.insert(0);
    expect(table.remove(5, 9)).toBe(0);
    expect(table.remove(5, 9)).toBe(NO_RECORD);
    expect(table.get(5, 9)).toBe(NO_RECORD);
    expect(table.size).toBe(0);
  });

  it('refuses a key twice, as that would be a bug in the caller', () => {
    const { table, objects, indexes } = tableWithKeys();
    objects.push(1, 1);
    indexes.push(2, 2);
    table.insert(0);
    expect(() => table.insert(1)).toThrow();
    expect(() => table.insert(-1)).toThrow(RangeError);
    expect(table.size).toBe(1);
  });

  it('grows under load and shrinks after mass removal', () => {
    const { table, objects, indexes } = tableWithKeys();
    for (let r = 0; r < 10_000; r++) {
      objects.push(r % 7);
      indexes.push(r);
      table.insert(r);
    }
    expect(table.capacity).toBeGreaterThanOrEqual((10_000 * 4) / 3);
    for (let r = 0; r < 10_000; r++) expect(table.get(r % 7, r)).toBe(r);
    for (let r = 0; r < 9_990; r++) expect(table.remove(r % 7, r)).toBe(r);
    expect(table.capacity).toBeLessThanOrEqual(128);
    for (let r = 9_990; r < 10_000; r++) expect(table.get(r % 7, r)).toBe(r);
  });

  it('behaves like a Map under any insert/remove sequence, including colliding keys', () => {
    const key = fc.tuple(
      fc.integer({ min: 0, max: 5 }),
      fc.constantFrom(0, 1, 2, 16, 0x7fffffff, 0xffffffff),
    );
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.boolean(), key), { maxLength: 400 }), (ops) => {
        const { table, objects, indexes } = tableWithKeys();
        const model = new Map<string, number>();
        for (const [insert, [object, index]] of ops) {
          const k = `${object}/${index}`;
          if (insert && !model.has(k)) {
            const record = objects.length;
            objects.push(object);
            indexes.push(index);
            table.insert(record);
            model.set(k, record);
          } else {
            expect(table.remove(object, index)).toBe(model.get(k) ?? NO_RECORD);
            model.delete(k);
          }
          expect(table.size).toBe(model.size);
          for (let o = 0; o <= 5; o++) {
            for (const i of [0, 1, 2, 16, 0x7fffffff, 0xffffffff]) {
              expect(table.get(o, i)).toBe(model.get(`${o}/${i}`) ?? NO_RECORD);
            }
          }
        }
      }),
      { numRuns: 200 },
    );
  });
});
