import { describe, expect, it } from 'vitest';
import { U32_MAX } from '@tmem/protocol';
import { createRequestIds } from '../src/request-ids.ts';

describe('createRequestIds', () => {
  it('counts up from 1', () => {
    const ids = createRequestIds(() => false);
    expect([ids.next(), ids.next(), ids.next()]).toEqual([1, 2, 3]);
  });

  it('wraps after U32_MAX to 1, never handing out 0', () => {
    const ids = createRequestIds(() => false, U32_MAX - 1);
    expect([ids.next(), ids.next(), ids.next()]).toEqual([U32_MAX - 1, U32_MAX, 1]);
  });

  it('skips ids still in use, across the wrap too', () => {
    const inUse = new Set([2, 3, U32_MAX, 1]);
    const ids = createRequestIds((id) => inUse.has(id), U32_MAX - 1);
    expect(ids.next()).toBe(U32_MAX - 1);
    expect(ids.next()).toBe(4);
  });
});
