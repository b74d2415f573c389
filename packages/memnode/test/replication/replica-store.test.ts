import { describe, expect, it } from 'vitest';
import { pageChecksum, partitionHash, type ReplicaEntry } from '@tmem/protocol';
import { createPageStore, objectCharge, RECORD_BYTES } from '../../src/page-store.ts';
import { createReplicaStore } from '../../src/replication/replica-store.ts';

const PAGE = 512;
const oid = Uint8Array.of(1, 2, 3);

function setup(now = { t: 0 }) {
  // Room for exactly 64 pages of one object.
  const store = createPageStore({ capacityBytes: 64 * (PAGE + RECORD_BYTES) + objectCharge(oid.length) });
  store.createPool({ id: 1, kind: 'persistent', pageSize: PAGE, owner: 'app' });
  store.createPool({ id: 2, kind: 'ephemeral', pageSize: PAGE, owner: 'app' });
  const replicas = createReplicaStore({
    store,
    tombstoneTtlMs: 1000,
    partitionCount: () => 16,
    now: () => now.t,
  });
  return { store, replicas, now };
}

function pageEntry(index: number, version: number, fill: number): ReplicaEntry {
  const page = new Uint8Array(PAGE).fill(fill);
  page[0] = 255 - fill; // not same-filled
  return { pool: 1, oid, index, version, page, sum: pageChecksum(page) };
}

describe('replica store', () => {
  it('keeps the newest version of a page, whatever order copies arrive in', () => {
    const { store, replicas } = setup();
    expect(replicas.apply(pageEntry(0, 20, 2))).toBe('ok');
    expect(replicas.apply(pageEntry(0, 10, 1))).toBe('ok');
    expect(store.peek(1, oid, 0)?.version).toBe(20);
    expect(store.peek(1, oid, 0)?.page[1]).toBe(2);
    expect(replicas.apply(pageEntry(0, 30, 3))).toBe('ok');
    expect(store.peek(1, oid, 0)?.page[1]).toBe(3);
  });

  it('a flush leaves a tombstone: an older page arriving later is not applied, a newer one is', () => {
    const { store, replicas } = setup();
    replicas.apply(pageEntry(0, 10, 1));
    replicas.apply({ pool: 1, oid, index: 0, version: 15 });
    expect(store.peek(1, oid, 0)).toBeNull();
    expect(replicas.apply(pageEntry(0, 12, 2))).toBe('ok');
    expect(store.peek(1, oid, 0)).toBeNull();
    expect(replicas.newest(1, oid, 0)).toEqual({ pool: 1, oid, index: 0, version: 15 });
    replicas.apply(pageEntry(0, 16, 3));
    expect(store.peek(1, oid, 0)?.version).toBe(16);
  });

  it('refuses corrupt pages, pages of unknown or ephemeral pools, and reports a full store', () => {
    const { replicas } = setup();
    const bad = pageEntry(0, 10, 1);
    bad.page![7] = 99;
    expect(replicas.apply(bad)).toBe('corrupt');
    expect(replicas.apply({ ...pageEntry(0, 10, 1), pool: 9 })).toBe('unknown-pool');
    expect(replicas.apply({ ...pageEntry(0, 10, 1), pool: 2 })).toBe('unknown-pool');
    for (let i = 0; i < 64; i++) expect(replicas.apply(pageEntry(i, 10, 1))).toBe('ok');
    expect(replicas.apply(pageEntry(64, 10, 1))).toBe('full');
  });

  it('lists tombstones by partition, forgets them after their time and with their pool', () => {
    const { replicas, now } = setup();
    replicas.apply({ pool: 1, oid, index: 3, version: 9 });
    const p = partitionHash(1, oid, 3) % 16;
    expect(replicas.tombstonesIn(1, new Set([p]))).toEqual([{ pool: 1, oid, index: 3, version: 9 }]);
    expect(replicas.tombstonesIn(1, new Set([(p + 1) % 16]))).toEqual([]);
    now.t = 2000;
    replicas.sweep();
    expect(replicas.tombstoneCount).toBe(0);
    replicas.apply({ pool: 1, oid, index: 4, version: 9 });
    replicas.dropPool(1);
    expect(replicas.tombstoneCount).toBe(0);
  });
});
