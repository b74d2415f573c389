// Per-owner quotas of the page store (issue 9, finding 8): one identity can neither evict another's ephemeral
// pages nor fill the node so that another's persistent puts are refused, and what it is charged includes the
// records and oids its pages cost.
import { describe, expect, it } from 'vitest';
import {
  createPageStore,
  objectCharge,
  PAGE_META_BYTES,
  RECORD_BYTES,
  type OwnerQuota,
  type PageStore,
} from '../src/page-store.ts';

const PAGE = 512;
const SLOT = PAGE + RECORD_BYTES;
const OBJ = objectCharge(1);
const ALICE_EPH = 1;
const ALICE_PERS = 2;
const BOB_EPH = 3;
const BOB_PERS = 4;

function page(seed: number): Uint8Array {
  const p = new Uint8Array(PAGE);
  for (let i = 0; i < PAGE; i++) p[i] = (seed * 31 + i * 7) & 0xff;
  p[0] = seed & 0xff;
  p[1] = (seed >> 8) & 0xff;
  return p;
}

const oid = (s: string): Uint8Array => new TextEncoder().encode(s);

function store(capacityBytes: number, ownerQuota: OwnerQuota): PageStore {
  const s = createPageStore({ capacityBytes, ownerQuota });
  s.createPool({ id: ALICE_EPH, kind: 'ephemeral', pageSize: PAGE, owner: 'alice' });
  s.createPool({ id: ALICE_PERS, kind: 'persistent', pageSize: PAGE, owner: 'alice' });
  s.createPool({ id: BOB_EPH, kind: 'ephemeral', pageSize: PAGE, owner: 'bob' });
  s.createPool({ id: BOB_PERS, kind: 'persistent', pageSize: PAGE, owner: 'bob' });
  return s;
}

function charged(s: PageStore, owner: string): number {
  const o = s.ownerStats(owner);
  return o.usedBytes + o.recordBytes;
}

describe('page store owner quotas', () => {
  it('an owner at its byte quota evicts only its own ephemeral pages, least recently used first', () => {
    const s = store(1 << 20, { maxBytes: 4 * SLOT + OBJ });
    // bob's page is the oldest in the store, and the store is far from full.
    s.put(BOB_EPH, oid('b'), 0, page(1));
    for (let i = 0; i < 10; i++) expect(s.put(ALICE_EPH, oid('a'), i, page(10 + i)).status).toBe('accepted');
    expect(s.ownerStats('alice')).toMatchObject({ ephemeralPages: 4, evictions: 6 });
    expect(charged(s, 'alice')).toBe(4 * SLOT + OBJ);
    for (let i = 0; i < 6; i++) expect(s.peek(ALICE_EPH, oid('a'), i)).toBeNull();
    for (let i = 6; i < 10; i++) expect(s.peek(ALICE_EPH, oid('a'), i)?.page).toEqual(page(10 + i));
    expect(s.peek(BOB_EPH, oid('b'), 0)?.page).toEqual(page(1));
    expect(s.ownerStats('bob').evictions).toBe(0);
  });

  it('refuses a persistent put over the quota with reason capped, evicting and changing nothing', () => {
    const s = store(1 << 20, { maxBytes: 2 * SLOT + OBJ + SLOT + OBJ });
    s.put(ALICE_PERS, oid('p'), 0, page(1));
    s.put(ALICE_PERS, oid('p'), 1, page(2));
    s.put(ALICE_EPH, oid('e'), 0, page(3));
    // The ephemeral page is evicted for the third persistent page...
    expect(s.put(ALICE_PERS, oid('p'), 2, page(4)).status).toBe('accepted');
    expect(s.peek(ALICE_EPH, oid('e'), 0)).toBeNull();
    // ...and then nothing could make room: refused, nothing evicted, nothing stored.
    const before = s.ownerStats('alice');
    expect(s.put(ALICE_PERS, oid('p'), 3, page(5))).toEqual({ status: 'refused', reason: 'capped' });
    expect(s.ownerStats('alice')).toEqual({
      ...before,
      puts: before.puts + 1,
      refusedPuts: before.refusedPuts + 1,
    });
    expect(s.peek(ALICE_PERS, oid('p'), 3)).toBeNull();
    // bob is not capped by alice's quota.
    expect(s.put(BOB_PERS, oid('q'), 0, page(6)).status).toBe('accepted');
  });

  it('one owner cannot fill the node so that another is refused, when the quotas fit the capacity', () => {
    const quota = 8 * SLOT + OBJ;
    const s = store(2 * quota, { maxBytes: quota });
    let alicePages = 0;
    while (s.put(ALICE_PERS, oid('p'), alicePages, page(alicePages)).status === 'accepted') alicePages++;
    expect(alicePages).toBe(8);
    for (let i = 0; i < 8; i++) expect(s.put(BOB_PERS, oid('q'), i, page(100 + i)).status).toBe('accepted');
    expect(s.stats().refusedPuts).toBe(1);
  });

  it('caps pages too: ephemeral puts evict the owner’s own, persistent puts are refused capped', () => {
    const s = store(1 << 20, { maxPages: 3 });
    s.put(ALICE_PERS, oid('p'), 0, page(1));
    for (let i = 0; i < 5; i++) expect(s.put(ALICE_EPH, oid('e'), i, page(10 + i)).status).toBe('accepted');
    expect(s.ownerStats('alice')).toMatchObject({ persistentPages: 1, ephemeralPages: 2, evictions: 3 });
    // Same-filled pages are pages too.
    expect(s.put(ALICE_PERS, oid('p'), 1, new Uint8Array(PAGE)).status).toBe('accepted');
    expect(s.put(ALICE_PERS, oid('p'), 2, new Uint8Array(PAGE))).toEqual({ status: 'accepted' });
    expect(s.ownerStats('alice')).toMatchObject({ persistentPages: 3, ephemeralPages: 0 });
    expect(s.put(ALICE_PERS, oid('p'), 3, page(2))).toEqual({ status: 'refused', reason: 'capped' });
    expect(s.put(ALICE_EPH, oid('e'), 9, page(3))).toEqual({ status: 'refused', reason: 'capped' });
    // A duplicate put replaces a page: it fits.
    expect(s.put(ALICE_PERS, oid('p'), 0, page(4)).status).toBe('accepted');
  });

  it('charges records and oids, so long oids fill the quota long before their page bytes would', () => {
    const quota = 1 << 16;
    const s = store(1 << 20, { maxBytes: quota });
    const longOid = (i: number) =>
      new Uint8Array(256).fill(i & 0xff).map((b, j) => (j < 4 ? (i >> (8 * j)) & 0xff : b));
    let n = 0;
    while (s.put(ALICE_PERS, longOid(n), 0, page(n)).status === 'accepted') n++;
    expect(n).toBe(Math.floor(quota / (SLOT + objectCharge(256))));
    expect(s.ownerStats('alice').usedBytes).toBe(n * PAGE);
    expect(charged(s, 'alice')).toBeLessThanOrEqual(quota);
    // The node's capacity check counts them the same way.
    expect(s.stats().recordBytes).toBe(n * (RECORD_BYTES + objectCharge(256)));
  });

  it('counts a same-filled page as its metadata and record', () => {
    const s = store(1 << 20, { maxBytes: 2 * (PAGE_META_BYTES + RECORD_BYTES) + OBJ });
    expect(s.put(ALICE_PERS, oid('z'), 0, new Uint8Array(PAGE)).status).toBe('accepted');
    expect(s.put(ALICE_PERS, oid('z'), 1, new Uint8Array(PAGE)).status).toBe('accepted');
    expect(s.put(ALICE_PERS, oid('z'), 2, new Uint8Array(PAGE)).status).toBe('refused');
  });

  it('rejects a quota that is not an integer >= 0', () => {
    for (const ownerQuota of [{ maxBytes: -1 }, { maxPages: 1.5 }, { maxBytes: Number.NaN }]) {
      expect(() => createPageStore({ capacityBytes: 1024, ownerQuota })).toThrow(/ownerQuota/);
    }
  });
});
