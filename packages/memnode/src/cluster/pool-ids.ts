// Pool ids that reveal nothing (issue 9, finding 9): the n-th pool of a cluster gets the id that a keyed
// permutation of the u32 domain gives n. Sequential ids told every client how many pools exist and when others
// were created; these look random to anyone without the key, yet stay unique and never reused, because a
// permutation of distinct counters gives distinct ids and the counter (`nextPoolId`) only grows.
//
// The permutation is a 4-round Feistel network over two 16-bit halves with HMAC-SHA256 as its round function:
// four rounds of a pseudo-random function make a pseudo-random permutation (Luby-Rackoff). It covers [0, 2^32);
// 0 is not a pool id, so an output of 0 is walked on (cycle walking: apply the permutation again until the
// value is not 0), which keeps the map a bijection of [1, 2^32) onto itself. Every member computes the same id
// from the committed state alone, so applyChange stays pure and deterministic.
import { createHmac, randomBytes } from 'node:crypto';
import { U32_MAX } from '@tmem/protocol';

const ROUNDS = 4;

/** A fresh key for a new cluster's pool ids: 16 random bytes as hex (the PoolIdKey schema). */
export function newPoolIdKey(): string {
  return randomBytes(16).toString('hex');
}

function roundValue(key: Buffer, round: number, half: number): number {
  const digest = createHmac('sha256', key)
    .update(Uint8Array.of(round, half >>> 8, half & 0xff))
    .digest();
  return digest.readUInt16BE(0);
}

/** The Feistel permutation of [0, 2^32) under `key`. */
function permute(key: Buffer, value: number): number {
  let left = value >>> 16;
  let right = value & 0xffff;
  for (let round = 0; round < ROUNDS; round++) {
    const next = left ^ roundValue(key, round, right);
    left = right;
    right = next;
  }
  return ((left << 16) | right) >>> 0;
}

/**
 * The id of the pool numbered `counter` (1, 2, ...) under `key` (hex): a u32 other than 0, distinct for distinct
 * counters under one key. Throws RangeError for a counter outside 1..2^32-1 (the cluster has run out of ids).
 */
export function poolIdFor(key: string, counter: number): number {
  if (!Number.isInteger(counter) || counter < 1 || counter > U32_MAX) {
    throw new RangeError(`pool counter ${counter} is outside 1..${U32_MAX}`);
  }
  const bytes = Buffer.from(key, 'hex');
  let id = permute(bytes, counter);
  while (id === 0) id = permute(bytes, id);
  return id;
}
