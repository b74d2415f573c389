import { describe, expect, it } from 'vitest';
import { zeroStoreCounters, type IdentityUse, type NodeStats } from '@tmem/protocol';
import { identityLines, identityTotals, STATUS_LISTED_IDENTITIES } from '../src/status-identities.ts';

function member(identities: IdentityUse[] | undefined): { stats: NodeStats } {
  return {
    stats: {
      nodeId: 'n',
      scope: 'node',
      ...zeroStoreCounters(1 << 20),
      ...(identities === undefined ? {} : { identities }),
    },
  };
}

const use = (identity: string, pages: number, usedBytes: number, pools = 1): IdentityUse => ({
  identity,
  pools,
  pages,
  usedBytes,
  recordBytes: pages * 64,
  evictions: pages % 3,
  refusedPuts: pages % 2,
});

describe('identityTotals', () => {
  it('sums pages, bytes, evictions and refusals over members, and takes the most pools any member saw', () => {
    const totals = identityTotals([
      member([use('alice', 4, 4096), use('bob', 1, 100)]),
      member([use('alice', 2, 2048, 3)]),
      {},
    ]);
    expect(totals).toEqual([
      {
        identity: 'alice',
        pools: 3,
        pages: 6,
        usedBytes: 6144,
        recordBytes: 384,
        evictions: 1 + 2,
        refusedPuts: 0,
      },
      { identity: 'bob', pools: 1, pages: 1, usedBytes: 100, recordBytes: 64, evictions: 1, refusedPuts: 1 },
    ]);
  });

  it('orders by charged bytes, then by name, and leaves the members untouched', () => {
    const first = member([use('b', 1, 10), use('a', 1, 10), use('c', 2, 5)]);
    const copy = structuredClone(first);
    expect(identityTotals([first]).map((u) => u.identity)).toEqual(['c', 'a', 'b']);
    expect(first).toEqual(copy);
  });
});

describe('identityLines', () => {
  it('prints nothing without node-scope lists', () => {
    expect(identityLines([member(undefined), member([])])).toEqual([]);
  });

  it(`prints the ${STATUS_LISTED_IDENTITIES} charged most, and how many more there are`, () => {
    const many = Array.from({ length: 12 }, (_, i) =>
      use(`id-${String(i).padStart(2, '0')}`, i + 1, 1024 * (i + 1)),
    );
    const lines = identityLines([member(many)]);
    expect(lines[0]).toBe('identities, charged most first:');
    expect(lines[1]).toBe(
      '  id-11: 1 pool, 12 pages, 12.75 KiB charged (768 B of records), 0 evicted, 0 refused',
    );
    expect(lines).toHaveLength(1 + STATUS_LISTED_IDENTITIES + 1);
    expect(lines.at(-1)).toBe("  and 2 more (--json lists each member's)");
  });
});
