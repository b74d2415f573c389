// A cluster state that stays small whatever clients do (issue 9, finding 7). The whole state travels in every
// proposal and commit, and a joiner must receive it in one frame: a state past a node's --max-frame-bytes kept
// joiners out for good. Members are the operators' doing; pools are the clients', so pools are bounded
// cluster-wide (`maxPools`) and the bound is chosen so that the worst state still fits a frame. The bound counts
// entries (stateEntries): a pool is one, and each sharer a shared pool names is one more, so that sharers, which
// clients add too, are bounded with the pools.
//
// Worst encodings, in msgpack as the codec writes it (keys are strings; msgpackr gives every map a 3-byte map16
// header; a string of up to n UTF-16 units, as zod counts length, is at most 3n bytes of UTF-8):
//
//   pool:   map header 3
//           "id" 3 + u32 5                        =   8
//           "kind" 5 + "persistent" 11            =  16
//           "pageSize" 9 + 65536 as u32 5         =  14
//           "owner" 6 + str16 header 3 + 256 * 3  = 777
//           "replication" 12 + fixint 1           =  13
//           "compression" 12 + "lz4" 4            =  16
//           "session" 8 + str8 header 2 + 32      =  42
//           "shared" 7 + str8 header 2 + 36       =  45
//           "sharers" 8 + array16 header 3        =  11   (the sharers themselves are entries of their own)
//                                           total   945 bytes
//   sharer: str16 header 3 + 128 * 3              = 387 bytes (an identity is at most MAX_IDENTITY_LENGTH)
//   member: map header 3
//           "id" 3 + 3 + 128 * 3                  =  390
//           "url" 4 + 3 + 2048 * 3                = 6151
//           "incarnation" 12 + u64 9              =   21
//           "capacityBytes" 14 + u64 9            =   23
//           "phase" 6 + "filling" 8               =   14
//                                           total   6602 bytes; 1024 members (the schema's most): 6,760,448
//
// An entry is at most 945 bytes, pool or sharer. A node gives pools half of its frame and leaves the other half
// to members and the envelope. With the default 16 MiB frame, half is 8,388,608 bytes: 8,876 entries of 945
// bytes. The default is 8192 entries: 7,741,440 bytes, which with 1024 of the largest members and the commit's
// envelope (under 1 KiB) comes to at most 14,502,912 bytes, below 16 MiB (16,777,216); state-bound.test.ts
// encodes that state to check. Real pools (owners of tens of ASCII characters) take about 100 bytes, so the
// default state is nearer 1 MB. A node with a smaller frame lowers its own bound to what half of its frame holds
// (`poolsThatFit`): at the smallest frame, 128 KiB, 69.
import { DEFAULT_MAX_FRAME_BYTES, type ClusterState } from '@tmem/protocol';

/** Most bytes one pool adds to the encoded state, its sharers apart (see the arithmetic above). */
export const MAX_POOL_ENCODED_BYTES = 945;

/** Most bytes one sharer of a shared pool adds to the encoded state (see the arithmetic above). */
export const MAX_SHARER_ENCODED_BYTES = 387;

/** Most bytes one member adds to the encoded state (see the arithmetic above). */
export const MAX_MEMBER_ENCODED_BYTES = 6602;

/** Default cluster-wide bound (`--max-pools`) on pools and sharers: 8192 worst-case entries fill 46% of a default frame. */
export const DEFAULT_MAX_POOLS = 8192;

/** The entries of `state` that `maxPools` bounds: one per pool, and one per sharer of a shared pool. */
export function stateEntries(state: Pick<ClusterState, 'pools'>): number {
  let entries = state.pools.length;
  for (const pool of state.pools) entries += pool.sharers?.length ?? 0;
  return entries;
}

/**
 * The most entries (pools and sharers) whose worst encoding fits half of a `maxFrameBytes` frame: the bound a
 * node applies when its `--max-pools` asks for more than its frames can carry.
 */
export function poolsThatFit(maxFrameBytes: number): number {
  return Math.floor(maxFrameBytes / 2 / MAX_POOL_ENCODED_BYTES);
}

/** The pool bound a node applies: `maxPools`, lowered to what its frames can carry. */
export function effectiveMaxPools(maxPools: number, maxFrameBytes = DEFAULT_MAX_FRAME_BYTES): number {
  return Math.min(maxPools, poolsThatFit(maxFrameBytes));
}
