import { describe, expect, it } from 'vitest';
import { createCodec, DEFAULT_MAX_FRAME_BYTES, type MemberInfo, type PoolInfo } from '@tmem/protocol';
import { ClusterState } from '../../src/cluster/cluster-state.ts';
import { Commit } from '../../src/cluster/consensus-messages.ts';
import {
  DEFAULT_MAX_POOLS,
  MAX_MEMBER_ENCODED_BYTES,
  MAX_POOL_ENCODED_BYTES,
  MAX_SHARER_ENCODED_BYTES,
  effectiveMaxPools,
  poolsThatFit,
  stateEntries,
} from '../../src/cluster/state-bound.ts';
import { MAX_IDENTITY_LENGTH, MAX_SHARERS_PER_POOL } from '@tmem/protocol';

// The widest UTF-8 a string of n UTF-16 units can take: 3 bytes each (astral characters take 4 bytes for 2).
const wide = (n: number, seed = 0): string =>
  Array.from({ length: n }, (_, i) => String.fromCharCode(0x800 + ((i * 7 + seed) % 0xf000))).join('');

function worstPool(id: number): PoolInfo {
  return {
    id,
    kind: 'persistent',
    pageSize: 65536,
    owner: wide(256, id),
    replication: 16,
    compression: 'lz4',
    session: 'f'.repeat(32),
  };
}

/** A shared pool with the widest fields a shared pool can have; its sharers are entries of their own. */
function worstSharedPool(id: number, sharers: number): PoolInfo {
  return {
    ...worstPool(id),
    kind: 'ephemeral',
    replication: 1,
    shared: 'ffffffff-ffff-ffff-ffff-ffffffffffff',
    sharers: Array.from(
      { length: sharers },
      (_, i) => `${i}`.padEnd(4, '-') + wide(MAX_IDENTITY_LENGTH - 4, i),
    ),
  };
}

function worstMember(i: number): MemberInfo {
  return {
    id: `${i}`.padEnd(4, '-') + wide(124, i),
    url: wide(2048, i),
    incarnation: Number.MAX_SAFE_INTEGER,
    capacityBytes: Number.MAX_SAFE_INTEGER,
    phase: 'filling',
  };
}

const codec = createCodec({ maxFrameBytes: 1024 ** 3 });

describe('the cluster state bound', () => {
  it('holds the worst encoding of one pool and one member', () => {
    // u32 ids up to 2^32-1 take 5 bytes, as the arithmetic says.
    expect(codec.encode({ t: 'peer', id: 0, message: [worstPool(0xffffffff)] }).length).toBeLessThanOrEqual(
      codec.encode({ t: 'peer', id: 0, message: [] }).length + MAX_POOL_ENCODED_BYTES,
    );
    // A shared pool with 16 sharers (an array16 header, past fixarray's 15): its fields and every sharer fit.
    const empty = codec.encode({ t: 'peer', id: 0, message: [] }).length;
    expect(
      codec.encode({ t: 'peer', id: 0, message: [worstSharedPool(0xffffffff, 16)] }).length,
    ).toBeLessThanOrEqual(empty + MAX_POOL_ENCODED_BYTES + 16 * MAX_SHARER_ENCODED_BYTES);
    expect(MAX_SHARER_ENCODED_BYTES).toBeLessThanOrEqual(MAX_POOL_ENCODED_BYTES);
    expect(codec.encode({ t: 'peer', id: 0, message: [worstMember(1)] }).length).toBeLessThanOrEqual(
      codec.encode({ t: 'peer', id: 0, message: [] }).length + MAX_MEMBER_ENCODED_BYTES,
    );
  });

  it('keeps a commit of DEFAULT_MAX_POOLS worst pools and 1024 worst members below the default frame', () => {
    const members = Array.from({ length: 1024 }, (_, i) => worstMember(i)).sort((a, b) =>
      a.id < b.id ? -1 : 1,
    );
    const pools = Array.from({ length: DEFAULT_MAX_POOLS }, (_, i) => worstPool(0xffffffff - i));
    const state = ClusterState.parse({
      clusterId: wide(128),
      version: Number.MAX_SAFE_INTEGER,
      term: Number.MAX_SAFE_INTEGER,
      members,
      pools,
      nextPoolId: 0xffffffff,
      poolIdKey: 'f'.repeat(32),
      partitionCount: 1 << 20,
    });
    const commit = Commit.parse({
      type: 'commit',
      term: Number.MAX_SAFE_INTEGER,
      from: wide(128),
      fromIncarnation: Number.MAX_SAFE_INTEGER,
      toIncarnation: Number.MAX_SAFE_INTEGER,
      state,
    });
    const bytes = codec.encode({ t: 'peer', id: 0xffffffff, message: commit }).length;
    expect(bytes).toBeLessThan(DEFAULT_MAX_FRAME_BYTES);
    expect(bytes).toBeLessThanOrEqual(14_502_912);
  });

  it('keeps a commit of DEFAULT_MAX_POOLS entries of shared pools and their sharers below the default frame', () => {
    const members = Array.from({ length: 1024 }, (_, i) => worstMember(i)).sort((a, b) =>
      a.id < b.id ? -1 : 1,
    );
    // Pools of one sharer and pools of MAX_SHARERS_PER_POOL: DEFAULT_MAX_POOLS entries in all.
    const full = Math.floor(DEFAULT_MAX_POOLS / 2 / (MAX_SHARERS_PER_POOL + 1));
    const pools = Array.from({ length: full }, (_, i) =>
      worstSharedPool(0xffffffff - i, MAX_SHARERS_PER_POOL),
    );
    while (stateEntries({ pools }) + 2 <= DEFAULT_MAX_POOLS) pools.push(worstSharedPool(1 + pools.length, 1));
    expect(stateEntries({ pools })).toBeGreaterThan(DEFAULT_MAX_POOLS - 2);
    const state = ClusterState.parse({
      clusterId: wide(128),
      version: Number.MAX_SAFE_INTEGER,
      term: Number.MAX_SAFE_INTEGER,
      members,
      pools,
      nextPoolId: 0xffffffff,
      poolIdKey: 'f'.repeat(32),
      partitionCount: 1 << 20,
    });
    const commit = Commit.parse({
      type: 'commit',
      term: Number.MAX_SAFE_INTEGER,
      from: wide(128),
      fromIncarnation: Number.MAX_SAFE_INTEGER,
      toIncarnation: Number.MAX_SAFE_INTEGER,
      state,
    });
    const bytes = codec.encode({ t: 'peer', id: 0xffffffff, message: commit }).length;
    expect(bytes).toBeLessThanOrEqual(14_502_912);
  });

  it('counts one entry per pool and one per sharer', () => {
    expect(stateEntries({ pools: [] })).toBe(0);
    expect(stateEntries({ pools: [worstPool(1), worstSharedPool(2, 3)] })).toBe(5);
  });

  it('lowers a node’s bound to what half of its frames hold', () => {
    expect(poolsThatFit(DEFAULT_MAX_FRAME_BYTES)).toBe(8876);
    expect(effectiveMaxPools(DEFAULT_MAX_POOLS)).toBe(DEFAULT_MAX_POOLS);
    expect(effectiveMaxPools(DEFAULT_MAX_POOLS, 1024 * 1024)).toBe(554);
    expect(effectiveMaxPools(DEFAULT_MAX_POOLS, 128 * 1024)).toBe(69);
    expect(effectiveMaxPools(10, 128 * 1024)).toBe(10);
  });
});
