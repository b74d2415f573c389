import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { connect, type TmemClient } from '@tmem/client';
import { ErrorCode, PROTOCOL_VERSION } from '@tmem/protocol';
import {
  closeAllRawPeers,
  killAllNodes,
  openRawPeer,
  startNode,
  type NodeProcess,
} from '../harness/index.ts';

const PAGE = 4096;

/** A page whose every byte differs from its neighbour's, so it is never stored as a same-filled page. */
function pageOf(seed: number, size = PAGE): Uint8Array {
  const page = new Uint8Array(size);
  for (let i = 0; i < size; i++) page[i] = (seed * 31 + i) & 0xff;
  return page;
}

let node: NodeProcess;
let client: TmemClient;

async function startWith(capacity: string): Promise<void> {
  // One node holds one copy: a persistent pool asking for the default two would refuse every put.
  node = await startNode({ capacity, args: ['--replication', '1'] });
  client = await connect({ seeds: [node.url] });
}

afterEach(async () => {
  closeAllRawPeers();
  await client?.close();
  await killAllNodes();
});

describe.each(['ephemeral', 'persistent'] as const)('every op on a %s pool', (kind) => {
  beforeEach(() => startWith('16MiB'));

  it('put then get returns the page', async () => {
    const pool = await client.createPool({ kind });
    expect(pool.pageSize).toBe(PAGE);
    expect(await pool.put('file-1', 7, pageOf(1))).toBe(true);
    expect(await pool.get('file-1', 7)).toEqual(pageOf(1));
  });

  it('get of a handle never put misses', async () => {
    const pool = await client.createPool({ kind });
    expect(await pool.get('nothing', 0)).toBeNull();
  });

  it('accepts object ids as bytes, up to 256 bytes, and the full u32 index range', async () => {
    const pool = await client.createPool({ kind });
    const oid = new Uint8Array(256).fill(0xab);
    expect(await pool.put(oid, 0xffffffff, pageOf(2))).toBe(true);
    expect(await pool.get(oid, 0xffffffff)).toEqual(pageOf(2));
  });

  it('flushPage removes one page and is fine on an empty handle', async () => {
    const pool = await client.createPool({ kind });
    await pool.put('o', 1, pageOf(1));
    await pool.put('o', 2, pageOf(2));
    await pool.flushPage('o', 1);
    await pool.flushPage('o', 99);
    expect(await pool.get('o', 1)).toBeNull();
    expect(await pool.get('o', 2)).toEqual(pageOf(2));
  });

  it('flushObject removes every index of that object only', async () => {
    const pool = await client.createPool({ kind });
    for (let i = 0; i < 20; i++) await pool.put('victim', i, pageOf(i));
    await pool.put('bystander', 0, pageOf(100));
    await pool.flushObject('victim');
    await pool.flushObject('never-existed');
    for (let i = 0; i < 20; i++) expect(await pool.get('victim', i)).toBeNull();
    expect(await pool.get('bystander', 0)).toEqual(pageOf(100));
  });

  it('destroy removes the pool; later ops fail with UNKNOWN_POOL', async () => {
    const pool = await client.createPool({ kind });
    await pool.put('o', 0, pageOf(0));
    await pool.destroy();
    await expect(pool.get('o', 0)).rejects.toMatchObject({ code: ErrorCode.UnknownPool });
    await expect(pool.put('o', 0, pageOf(0))).rejects.toMatchObject({ code: ErrorCode.UnknownPool });
    const [stats] = await client.stats();
    expect(stats?.pools).toBe(0);
    expect(stats?.usedBytes).toBe(0);
  });

  it('honours every allowed page size and rejects others before sending', async () => {
    for (const pageSize of [512, 65536]) {
      const pool = await client.createPool({ kind, pageSize });
      expect(await pool.put('o', 0, pageOf(3, pageSize))).toBe(true);
      expect(await pool.get('o', 0)).toEqual(pageOf(3, pageSize));
    }
    await expect(client.createPool({ kind, pageSize: 1000 })).rejects.toMatchObject({
      code: ErrorCode.BadPageSize,
    });
    const pool = await client.createPool({ kind });
    await expect(pool.put('o', 0, new Uint8Array(PAGE - 1))).rejects.toMatchObject({
      code: ErrorCode.BadPageSize,
    });
  });

  it('many concurrent ops batch and all complete', async () => {
    const pool = await client.createPool({ kind });
    const puts = Array.from({ length: 500 }, (_, i) => pool.put('bulk', i, pageOf(i)));
    expect(await Promise.all(puts)).toEqual(Array(500).fill(true));
    const pages = await Promise.all(Array.from({ length: 500 }, (_, i) => pool.get('bulk', i)));
    pages.forEach((page, i) => expect(page).toEqual(pageOf(i)));
  });
});

describe('the contract invariants on one node', () => {
  // 16 pages of 4 KiB and two objects: each page is charged its record (64 bytes) and each object 96 bytes plus
  // its one-byte oid, beside the page bytes.
  beforeEach(() => startWith(String(16 * (PAGE + 64) + 2 * 97)));

  it('1. put-put-get coherency: the second put wins', async () => {
    for (const kind of ['ephemeral', 'persistent'] as const) {
      const pool = await client.createPool({ kind });
      await pool.put('h', 0, pageOf(1));
      await pool.put('h', 0, pageOf(2));
      expect(await pool.get('h', 0)).toEqual(pageOf(2));
    }
  });

  it('1. a refused duplicate put removes the old page', async () => {
    const pool = await client.createPool({ kind: 'persistent' });
    // Same-filled pages cost metadata only (PAGE_META_BYTES), so once real pages fill the store, freeing one of them
    // still leaves too little room for a real page: the duplicate put below must be refused.
    expect(await pool.put('h', 0, new Uint8Array(PAGE))).toBe(true);
    expect(await pool.put('zeros', 0, new Uint8Array(PAGE))).toBe(true);
    let filled = 0;
    while (await pool.put('filler', filled, pageOf(filled))) filled++;
    expect(filled).toBeGreaterThan(0);
    expect(await pool.put('h', 0, pageOf(999))).toBe(false);
    expect(await pool.get('h', 0)).toBeNull();
    const [stats] = await client.stats();
    expect(stats?.duplicatePuts).toBeGreaterThanOrEqual(1);
  });

  it('2. get-get coherency: once a get misses, later gets miss until a new put', async () => {
    const pool = await client.createPool({ kind: 'persistent' });
    await pool.put('h', 0, pageOf(1));
    await pool.flushPage('h', 0);
    expect(await pool.get('h', 0)).toBeNull();
    expect(await pool.get('h', 0)).toBeNull();
    await pool.put('h', 0, pageOf(2));
    expect(await pool.get('h', 0)).toEqual(pageOf(2));
  });

  it('3. flush means gone, for page, object and pool', async () => {
    const pool = await client.createPool({ kind: 'persistent' });
    await pool.put('a', 0, pageOf(1));
    await pool.put('b', 0, pageOf(2));
    await pool.flushPage('a', 0);
    await pool.flushObject('b');
    expect(await pool.get('a', 0)).toBeNull();
    expect(await pool.get('b', 0)).toBeNull();
    await pool.put('c', 0, pageOf(3));
    await pool.destroy();
    await expect(pool.get('c', 0)).rejects.toMatchObject({ code: ErrorCode.UnknownPool });
  });

  it('4. exclusive gets: an ephemeral get removes the page, a persistent get leaves it', async () => {
    const ephemeral = await client.createPool({ kind: 'ephemeral' });
    await ephemeral.put('h', 0, pageOf(1));
    expect(await ephemeral.get('h', 0)).toEqual(pageOf(1));
    expect(await ephemeral.get('h', 0)).toBeNull();
    const persistent = await client.createPool({ kind: 'persistent' });
    await persistent.put('h', 0, pageOf(1));
    expect(await persistent.get('h', 0)).toEqual(pageOf(1));
    expect(await persistent.get('h', 0)).toEqual(pageOf(1));
  });

  it('evicts ephemeral pages least recently used first under pressure', async () => {
    const pool = await client.createPool({ kind: 'ephemeral' });
    for (let i = 0; i < 16; i++) expect(await pool.put('o', i, pageOf(i))).toBe(true);
    await pool.put('o', 0, pageOf(0)); // touch page 0: now page 1 is the oldest
    for (let i = 16; i < 20; i++) expect(await pool.put('o', i, pageOf(i))).toBe(true);
    const [stats] = await client.stats();
    expect(stats?.evictions).toBe(4);
    expect((stats?.usedBytes ?? 0) + (stats?.recordBytes ?? 0)).toBeLessThanOrEqual(
      stats?.capacityBytes ?? 0,
    );
    for (const evicted of [1, 2, 3, 4]) expect(await pool.get('o', evicted)).toBeNull();
    for (const kept of [0, 5, 19]) expect(await pool.get('o', kept)).toEqual(pageOf(kept));
  });

  it('evicts ephemeral pages to make room for persistent ones, never the reverse', async () => {
    const ephemeral = await client.createPool({ kind: 'ephemeral' });
    const persistent = await client.createPool({ kind: 'persistent' });
    for (let i = 0; i < 8; i++) await ephemeral.put('e', i, pageOf(i));
    for (let i = 0; i < 16; i++) expect(await persistent.put('p', i, pageOf(i))).toBe(true);
    for (let i = 0; i < 8; i++) expect(await ephemeral.get('e', i)).toBeNull();
    // Full of persistent pages: both kinds of put are refused, and nothing persistent is lost.
    expect(await persistent.put('p', 16, pageOf(16))).toBe(false);
    expect(await ephemeral.put('e', 0, pageOf(0))).toBe(false);
    for (let i = 0; i < 16; i++) expect(await persistent.get('p', i)).toEqual(pageOf(i));
    const [stats] = await client.stats();
    expect(stats?.refusedPuts).toBe(2);
  });

  it('6. isolation: another identity cannot reach a private pool', async () => {
    const pool = await client.createPool({ kind: 'persistent' });
    await pool.put('secret', 0, pageOf(1));
    const intruder = await connect({ seeds: [node.url], identity: 'intruder' });
    try {
      const forged = await intruder.createPool({ kind: 'persistent' });
      expect(forged.id).not.toBe(pool.id);
      // Reach the victim's pool id through a raw frame: it must look exactly like a pool that does not exist.
      const raw = await openRawPeer(node.url, 'intruder');
      for (const frame of [
        { t: 'get', id: 2, pool: pool.id, oid: new Uint8Array([0x73]), index: 0 },
        { t: 'flushObject', id: 3, pool: pool.id, oid: new Uint8Array([0x73]) },
        { t: 'destroyPool', id: 4, pool: pool.id },
      ] as const) {
        expect(await raw.request(frame)).toMatchObject({ t: 'error', code: ErrorCode.UnknownPool });
      }
      // The cluster state it can read names only its own pools, not the victim's (id or owner).
      const state = await raw.request({ t: 'getState', id: 5, subscribe: false });
      expect(state.t === 'state' && state.state.pools.map((p) => p.id)).toEqual([forged.id]);
      raw.close();
      // Claiming to be a peer (which could propose destroyPool) needs the cluster secret.
      const impostor = await openRawPeer(node.url);
      impostor.sendFrame({ t: 'hello', id: 1, protocol: PROTOCOL_VERSION, identity: 'x', role: 'peer' });
      expect(await impostor.next()).toMatchObject({ t: 'error', code: ErrorCode.Unauthorized });
      expect((await impostor.waitClosed()).code).toBe(1008);
      // A client connection cannot send coordination frames at all.
      const sneaky = await openRawPeer(node.url, 'intruder');
      const reply = await sneaky.request({
        t: 'propose',
        id: 6,
        change: { type: 'destroyPool', changeId: 'x', poolId: pool.id },
      });
      expect(reply).toMatchObject({ t: 'error', code: ErrorCode.InvalidFrame });
      expect(await pool.get('secret', 0)).toEqual(pageOf(1));
    } finally {
      await intruder.close();
    }
  });
});

describe('node lifecycle', () => {
  it('SIGTERM closes client sockets with 1001 (going away) and exits cleanly', async () => {
    await startWith('1MiB');
    const pool = await client.createPool({ kind: 'ephemeral' });
    await pool.put('o', 0, pageOf(0));
    const raw = await openRawPeer(node.url, 'watcher');
    const exit = await node.stop();
    expect(exit).toEqual({ code: 0, signal: null });
    expect(await raw.waitClosed()).toMatchObject({ code: 1001 });
  });
});
