// A primary removed from the cluster while one of its writes travels to the replica: the frame never arrives
// (the primary is cut off), the cluster removes the primary, which learns it, rejoins as a new incarnation
// with an empty store, and then sees the replica as no longer a member. Two nodes' replication are wired to
// each other in one process (two-node-harness.ts); only a's replicate frames go through the link.
import { describe, expect, it } from 'vitest';
import { ErrorCode } from '@tmem/protocol';
import { waitFor } from '../cluster/wait-until.ts';
import {
  POOL,
  codeOf,
  commit,
  createLink,
  get,
  handleOnA,
  page,
  removed,
  stateAt,
  startNodes,
  type Link,
  type SimNode,
} from './two-node-harness.ts';

/**
 * Holds the frame of `write` on its way to b, then removes a while it travels: b is the primary now, a learns
 * it and rejoins empty as a new incarnation. The held frame then gets no answer, and the stream finds b no
 * longer a member of a's (empty) state. Resolves to what `write` came to (see `codeOf`).
 */
async function removedWhileHeld(
  pair: { link: Link; a: SimNode; b: SimNode },
  write: () => Promise<unknown>,
  travelling: string,
): Promise<string> {
  const { link, a, b } = pair;
  link.hold();
  const outcome = codeOf(write());
  await waitFor(() => link.held > 0, travelling);
  commit(b, stateAt(3, ['b']));
  commit(a, stateAt(3, ['b']));
  removed(a);
  link.cut();
  return outcome;
}

describe('a primary removed while its write travels to the replica', () => {
  it('answers the put in doubt (TIMEOUT), not accepted: the replica that now serves never got it', async () => {
    const link = createLink();
    const { a, b } = startNodes(link, { controlledFrom: 'a' });
    const { oid, index } = handleOnA();
    const put = removedWhileHeld(
      { link, a, b },
      () => a.replication.put({ t: 'put', id: 1, pool: POOL.id, oid, index, page: page(1) }, 2),
      'the page on its way to b',
    );
    expect(await put).toBe(ErrorCode.Timeout);
    expect((await get(b, oid, index)).t).toBe('miss');
  });

  it('answers the flush in doubt (TIMEOUT), not ok: the replica that now serves still holds the page', async () => {
    const link = createLink();
    const { a, b } = startNodes(link, { controlledFrom: 'a' });
    const { oid, index } = handleOnA();
    const first = await a.replication.put({ t: 'put', id: 1, pool: POOL.id, oid, index, page: page(2) }, 2);
    expect(first.t).toBe('accepted');
    const flush = removedWhileHeld(
      { link, a, b },
      () => a.replication.flushPage({ t: 'flushPage', id: 2, pool: POOL.id, oid, index }, 2),
      'the flush on its way to b',
    );
    expect(await flush).toBe(ErrorCode.Timeout);
    expect((await get(b, oid, index)).t).toBe('hit');
  });

  it('still accepts a put whose replica left while the primary stays an owner holding it', async () => {
    const link = createLink();
    const { a } = startNodes(link, { controlledFrom: 'a' });
    const { oid, index } = handleOnA();
    link.hold();
    const put = codeOf(a.replication.put({ t: 'put', id: 1, pool: POOL.id, oid, index, page: page(3) }, 2));
    await waitFor(() => link.held > 0, 'the page on its way to b');
    // b is removed instead; a stays the primary, and b's successor would copy the page from a.
    commit(a, stateAt(3, ['a']));
    link.cut();
    expect(await put).toBe('answered accepted');
    expect((await get(a, oid, index)).t).toBe('hit');
  });
});
