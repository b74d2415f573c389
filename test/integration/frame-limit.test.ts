import { afterEach, describe, expect, it } from 'vitest';
import { connect, type TmemClient } from '@tmem/client';
import { killAllNodes, startNode } from '../harness/index.ts';

const PAGE = 4096;
const OPS = 200;

/** A page whose every byte differs from its neighbour's, so it is never stored as a same-filled page. */
function pageOf(seed: number): Uint8Array {
  const page = new Uint8Array(PAGE);
  for (let i = 0; i < PAGE; i++) page[i] = (seed * 31 + i) & 0xff;
  return page;
}

let client: TmemClient | undefined;

afterEach(async () => {
  await client?.close();
  client = undefined;
  await killAllNodes();
});

describe("a node's --max-frame-bytes", () => {
  it('bounds the batches the client sends it and the replies they bring back', async () => {
    const node = await startNode({ capacity: '64MiB', args: ['--max-frame-bytes', '256KiB'] });
    client = await connect({ seeds: [node.url] });
    const pool = await client.createPool({ kind: 'ephemeral', pageSize: PAGE });
    // One tick each: 200 puts (about 800 KiB) and 200 gets would fit the client's own 1 MiB batch bound, so
    // only the node's advertised limit keeps each frame, and each reply, under 256 KiB.
    const puts = await Promise.all(Array.from({ length: OPS }, (_, i) => pool.put('big', i, pageOf(i))));
    expect(puts).toEqual(Array.from({ length: OPS }, () => true));
    const gets = await Promise.all(Array.from({ length: OPS }, (_, i) => pool.get('big', i)));
    gets.forEach((got, i) => expect(got).toEqual(pageOf(i)));
  });
});
