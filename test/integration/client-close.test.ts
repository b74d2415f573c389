import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { connect } from '@tmem/client';
import { closeAllRawPeers, killAllNodes, openRawPeer, startNode } from '../harness/index.ts';

// What a closed client's pools become: they stay (and count against the identity) unless the client is
// closed with destroyPools, which destroys every pool it created and did not destroy.

afterEach(() => closeAllRawPeers());
afterAll(() => killAllNodes());

/** Ids of the pools `identity` owns, as the cluster state shows them to that identity. */
async function poolsOf(url: string, identity: string): Promise<number[]> {
  const raw = await openRawPeer(url, identity);
  const reply = await raw.request({ t: 'getState', id: 2, subscribe: false });
  raw.close();
  if (reply.t !== 'state') throw new Error(`no state: ${reply.t}`);
  return reply.state.pools.map((pool) => pool.id).sort((a, b) => a - b);
}

describe('client.close()', () => {
  it('leaves pools by default, and destroys those it created with destroyPools', async () => {
    const node = await startNode({ args: ['--replication', '1'] });
    const keeper = await connect({ seeds: [node.url], identity: 'keeper' });
    const kept = await keeper.createPool({ kind: 'persistent' });
    await keeper.close();
    expect(await poolsOf(node.url, 'keeper')).toEqual([kept.id]);

    const tidy = await connect({ seeds: [node.url], identity: 'tidy' });
    const [a, b, c] = [
      await tidy.createPool({ kind: 'ephemeral' }),
      await tidy.createPool({ kind: 'persistent' }),
      await tidy.createPool({ kind: 'persistent' }),
    ];
    expect(await b.put('p', 0, new Uint8Array(4096).fill(1))).toBe(true);
    await c.destroy();
    expect(await poolsOf(node.url, 'tidy')).toEqual([a.id, b.id].sort((x, y) => x - y));
    await tidy.close({ destroyPools: true });
    expect(await poolsOf(node.url, 'tidy')).toEqual([]);
    // Another identity's pools are not touched.
    expect(await poolsOf(node.url, 'keeper')).toEqual([kept.id]);
  });
});
