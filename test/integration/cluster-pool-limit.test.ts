import { afterEach, describe, expect, it } from 'vitest';
import { connect, type Pool, type TmemClient } from '@tmem/client';
import { ErrorCode, TmemError } from '@tmem/protocol';
import {
  TEST_TIMING_ARGS,
  closeAllRawPeers,
  killAllNodes,
  openRawPeer,
  startCluster,
  startNode,
  waitForReadyMembers,
} from '../harness/index.ts';

// Issue 9, finding 7: many identities together cannot grow the cluster state without bound (it travels whole in
// every commit, and a joiner must receive it in one frame); finding 9: pool ids tell nothing of the pool count.

const MAX_POOLS = 12;
const ARGS = ['--replication', '1', '--max-pools', String(MAX_POOLS), '--max-pools-per-identity', '5'];

const clients: TmemClient[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  closeAllRawPeers();
  await killAllNodes();
});

describe('the cluster-wide pool limit', () => {
  it('refuses pools past --max-pools whoever asks, and a new node still joins afterwards', async () => {
    const nodes = await startCluster({ size: 2, args: ARGS });
    const handles: Pool[] = [];
    const refusals: unknown[] = [];
    // Eight identities, each within its own limit of 5, want 32 pools together; the cluster holds 12.
    for (let i = 0; i < 8; i++) {
      const client = await connect({ seeds: [nodes[i % 2]!.url], identity: `tenant-${i}` });
      clients.push(client);
      for (let j = 0; j < 4; j++) {
        try {
          handles.push(await client.createPool({ kind: 'ephemeral' }));
        } catch (error) {
          refusals.push(error);
        }
      }
    }
    const created = handles.map((h) => h.id);
    expect(created).toHaveLength(MAX_POOLS);
    expect(refusals).toHaveLength(32 - MAX_POOLS);
    for (const refusal of refusals) {
      expect(refusal).toBeInstanceOf(TmemError);
      expect(refusal).toMatchObject({ code: ErrorCode.LimitExceeded, details: { limit: 'maxPools' } });
    }
    // Ids are unique, and neither 1..12 nor each one more than the last.
    expect(new Set(created).size).toBe(MAX_POOLS);
    expect(created.filter((id) => id <= MAX_POOLS).length).toBeLessThan(2);
    expect(created.filter((id, i) => i > 0 && id === (created[i - 1] as number) + 1)).toEqual([]);

    // A client sees its own pools only, and neither the pool-id key nor the pool counter.
    const raw = await openRawPeer(nodes[0]!.url, 'tenant-0');
    const reply = await raw.request({ t: 'getState', id: 7, subscribe: false });
    if (reply.t !== 'state') throw new Error(JSON.stringify(reply));
    expect(reply.state.pools.map((p) => p.owner)).toEqual(['tenant-0', 'tenant-0', 'tenant-0', 'tenant-0']);
    expect(reply.state).not.toHaveProperty('poolIdKey');
    expect(reply.state).not.toHaveProperty('nextPoolId');

    // The state stayed small: a joiner receives it and becomes a ready member.
    const joiner = await startNode({
      until: 'ready',
      args: [...TEST_TIMING_ARGS, ...ARGS, '--node-id', 'n2', '--join', nodes[0]!.url],
    });
    await waitForReadyMembers([...nodes, joiner]);
    // Still full for everyone, the new node's clients too, until a pool is destroyed.
    const late = await connect({ seeds: [joiner.url], identity: 'late' });
    clients.push(late);
    await expect(late.createPool({ kind: 'ephemeral' })).rejects.toMatchObject({
      code: ErrorCode.LimitExceeded,
      details: { limit: 'maxPools' },
    });
    await handles[0]!.destroy();
    const fresh = await late.createPool({ kind: 'ephemeral' });
    expect(created).not.toContain(fresh.id);
    expect(await fresh.put('o', 0, new Uint8Array(4096).fill(1))).toBe(true);
  });

  it('is lowered to what half of a small --max-frame-bytes holds, so the largest state still reaches a joiner', async () => {
    // 128 KiB frames, the smallest allowed: half holds 69 entries of the widest encoding.
    const small = ['--replication', '1', '--max-frame-bytes', '128KiB'];
    const nodes = await startCluster({ size: 2, args: small });
    expect(nodes[0]!.stderr()).toContain('maxPools lowered');
    // Owners of the longest identity (128 characters; the state's schema allows owners of 256, which the bound
    // assumes), in three-byte characters.
    const owners = Array.from({ length: 4 }, (_, i) => `${i}`.padEnd(128, '€'));
    let created = 0;
    const refusals: unknown[] = [];
    for (const owner of owners) {
      const client = await connect({ seeds: [nodes[0]!.url], identity: owner });
      clients.push(client);
      for (let j = 0; j < 25; j++) {
        await client.createPool({ kind: 'ephemeral' }).then(
          () => created++,
          (error: unknown) => refusals.push(error),
        );
      }
    }
    expect(created).toBe(69);
    expect(refusals).toHaveLength(100 - 69);
    for (const refusal of refusals) {
      expect(refusal).toMatchObject({ code: ErrorCode.LimitExceeded, details: { limit: 'maxPools' } });
    }
    const joiner = await startNode({
      until: 'ready',
      args: [...TEST_TIMING_ARGS, ...small, '--node-id', 'n2', '--join', nodes[0]!.url],
    });
    await waitForReadyMembers([...nodes, joiner]);
  });
});
