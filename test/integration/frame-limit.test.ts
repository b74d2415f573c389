import { afterEach, describe, expect, it } from 'vitest';
import { connect, type TmemClient } from '@tmem/client';
import { ErrorCode } from '@tmem/protocol';
import { closeAllRawPeers, killAllNodes, openRawPeer, startNode } from '../harness/index.ts';

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
  closeAllRawPeers();
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

describe('a batch whose reply could exceed the frame limit', () => {
  it('is refused with FRAME_TOO_LARGE before any op runs, so no ephemeral page is consumed', async () => {
    const node = await startNode({ capacity: '64MiB', args: ['--max-frame-bytes', '1MiB'] });
    client = await connect({ seeds: [node.url], identity: 'reader' });
    const pool = await client.createPool({ kind: 'ephemeral', pageSize: 65536 });
    const page = new Uint8Array(65536).fill(5);
    const handles = Array.from({ length: 20 }, (_, index) => ({ oid: 'wide', index }));
    expect(await pool.putMany(handles.map((h) => ({ ...h, page })))).toEqual(handles.map(() => true));

    // 20 gets of 64 KiB pages: a 1.3 MB reply, over the node's 1 MiB frames. A client of our own never sends it.
    const raw = await openRawPeer(node.url, 'reader');
    const oid = new TextEncoder().encode('wide');
    const ops = handles.map((h, i) => ({ t: 'get' as const, id: i + 1, pool: pool.id, oid, index: h.index }));
    expect(await raw.request({ t: 'batch', id: 9, ops })).toMatchObject({
      t: 'error',
      code: ErrorCode.FrameTooLarge,
    });
    // Every page is still there for a batch the client cuts to fit.
    expect(await pool.getMany(handles)).toEqual(handles.map(() => page));
  });
});
