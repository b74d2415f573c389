// Two nodes' replication wired to each other in one process (two-node-harness.ts), so that a write can be held
// on its way to the replica while the primary misses a committed state and copies its partitions again.
// Deterministic: each step waits for the condition it needs.
import { describe, expect, it } from 'vitest';
import { waitFor } from '../cluster/wait-until.ts';
import { POOL, commit, createGate, get, handleOnA, page, stateAt, startNodes } from './two-node-harness.ts';

describe('a primary that misses a committed state while a put travels', () => {
  it('keeps the accepted page, not an older copy its new fill took from the replica', async () => {
    const gate = createGate();
    const { a, b } = startNodes(gate);
    const { oid, index } = handleOnA();
    const older = page(1);
    const newer = page(2);
    const first = await a.replication.put({ t: 'put', id: 1, pool: 1, oid, index, page: older }, 2);
    expect(first.t).toBe('accepted');

    gate.close();
    const second = a.replication.put({ t: 'put', id: 2, pool: 1, oid, index, page: newer }, 2);
    await waitFor(() => gate.held > 0, 'the newer page on its way to b');
    // b sees versions 3 and 4; a misses version 3, drops its copies and copies them again from b, which
    // still holds the older page.
    commit(b, stateAt(3));
    commit(b, stateAt(4));
    commit(a, stateAt(4));
    expect(a.store.peek(POOL.id, oid, index)).toBeNull();
    await waitFor(() => a.replication.describe().fillingPartitions === 0, 'a copied again');
    gate.open();
    expect((await second).t).toBe('accepted');

    const reply = await get(a, oid, index);
    expect(reply.t).toBe('hit');
    expect(reply.t === 'hit' && Buffer.from(reply.page).equals(Buffer.from(newer))).toBe(true);
  });

  it('keeps a first page of a handle that its new fill could not find on the replica yet', async () => {
    const gate = createGate();
    const { a, b } = startNodes(gate);
    const { oid, index } = handleOnA();
    gate.close();
    const put = a.replication.put({ t: 'put', id: 1, pool: 1, oid, index, page: page(3) }, 2);
    await waitFor(() => gate.held > 0, 'the page on its way to b');
    commit(b, stateAt(3));
    commit(b, stateAt(4));
    commit(a, stateAt(4));
    await waitFor(() => a.replication.describe().fillingPartitions === 0, 'a copied again');
    gate.open();
    expect((await put).t).toBe('accepted');
    expect((await get(a, oid, index)).t).toBe('hit');
  });

  it('does not take back a page it flushed while the flush travels', async () => {
    const gate = createGate();
    const { a, b } = startNodes(gate);
    const { oid, index } = handleOnA();
    expect((await a.replication.put({ t: 'put', id: 1, pool: 1, oid, index, page: page(4) }, 2)).t).toBe(
      'accepted',
    );
    gate.close();
    const flush = a.replication.flushPage({ t: 'flushPage', id: 2, pool: 1, oid, index }, 2);
    await waitFor(() => gate.held > 0, 'the flush on its way to b');
    commit(b, stateAt(3));
    commit(b, stateAt(4));
    commit(a, stateAt(4));
    await waitFor(() => a.replication.describe().fillingPartitions === 0, 'a copied again');
    gate.open();
    expect((await flush).t).toBe('ok');
    expect((await get(a, oid, index)).t).toBe('miss');
  });
});
