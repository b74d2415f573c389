import { describe, expect, it } from 'vitest';
import { createCodec, DEFAULT_MAX_FRAME_BYTES, type MemberInfo, type PoolInfo } from '@tmem/protocol';
import { ClusterState } from '../../src/cluster/cluster-state.ts';
import { Commit } from '../../src/cluster/consensus-messages.ts';
import {
  DEFAULT_MAX_POOLS,
  MAX_MEMBER_ENCODED_BYTES,
  MAX_POOL_ENCODED_BYTES,
  effectiveMaxPools,
  poolsThatFit,
} from '../../src/cluster/state-bound.ts';

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
    expect(bytes).toBeLessThanOrEqual(14_044_160);
  });

  it('lowers a node’s bound to what half of its frames hold', () => {
    expect(poolsThatFit(DEFAULT_MAX_FRAME_BYTES)).toBe(9436);
    expect(effectiveMaxPools(DEFAULT_MAX_POOLS)).toBe(DEFAULT_MAX_POOLS);
    expect(effectiveMaxPools(DEFAULT_MAX_POOLS, 1024 * 1024)).toBe(589);
    expect(effectiveMaxPools(DEFAULT_MAX_POOLS, 128 * 1024)).toBe(73);
    expect(effectiveMaxPools(10, 128 * 1024)).toBe(10);
  });
});
