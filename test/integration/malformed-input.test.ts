import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { encode } from 'msgpackr';
import { connect, type Pool, type TmemClient } from '@tmem/client';
import { ErrorCode, PROTOCOL_VERSION } from '@tmem/protocol';
import {
  closeAllRawPeers,
  killAllNodes,
  openRawPeer,
  startNode,
  type NodeProcess,
} from '../harness/index.ts';

// Invariant 7: hostile input gets an error reply or a closed connection; the node keeps serving everyone.

const MAX_FRAME = 256 * 1024;
let node: NodeProcess;
let bystander: TmemClient;
let pool: Pool;
const page = new Uint8Array(4096).map((_, i) => i & 0xff);

beforeAll(async () => {
  node = await startNode({
    capacity: '8MiB',
    args: ['--max-frame-bytes', String(MAX_FRAME), '--replication', '1'],
  });
  bystander = await connect({ seeds: [node.url], identity: 'bystander' });
  pool = await bystander.createPool({ kind: 'persistent' });
  expect(await pool.put('kept', 0, page)).toBe(true);
});

afterEach(async () => {
  closeAllRawPeers();
  // After every attack the node still serves the well-behaved client and has lost nothing.
  expect(await pool.get('kept', 0)).toEqual(page);
  expect(node.child.exitCode).toBeNull();
});

afterAll(async () => {
  await bystander.close();
  await killAllNodes();
});

describe('garbage closes the connection after an error reply', () => {
  it('random bytes', async () => {
    const raw = await openRawPeer(node.url);
    raw.sendBytes(new Uint8Array([0xc1, 0xff, 0x00, 0x13, 0x37]));
    expect(await raw.next()).toMatchObject({ t: 'error', code: ErrorCode.MalformedFrame });
    expect((await raw.waitClosed()).code).toBe(1002);
  });

  it('a truncated frame', async () => {
    const raw = await openRawPeer(node.url, 'truncator');
    const whole = encode({ t: 'put', id: 5, pool: pool.id, oid: new Uint8Array([1]), index: 0, page });
    raw.sendBytes(whole.subarray(0, whole.length - 100));
    expect(await raw.next()).toMatchObject({ t: 'error', code: ErrorCode.TruncatedFrame });
    expect((await raw.waitClosed()).code).toBe(1002);
  });

  it('a text message', async () => {
    const raw = await openRawPeer(node.url);
    raw.sendBytes('hello?');
    expect(await raw.next()).toMatchObject({ t: 'error', code: ErrorCode.MalformedFrame });
    expect((await raw.waitClosed()).code).toBe(1002);
  });

  it('a frame over the configured maximum gets FRAME_TOO_LARGE', async () => {
    const raw = await openRawPeer(node.url, 'big');
    raw.sendBytes(new Uint8Array(MAX_FRAME + 1));
    expect(await raw.next()).toMatchObject({ t: 'error', code: ErrorCode.FrameTooLarge });
    expect((await raw.waitClosed()).code).toBe(1002);
  });

  it('a huge frame far over the maximum is cut by the transport (1009)', async () => {
    const raw = await openRawPeer(node.url, 'huge');
    raw.sendBytes(new Uint8Array(8 * 1024 * 1024));
    expect((await raw.waitClosed()).code).toBe(1009);
  });
});

describe('well-formed but wrong frames get an error and the connection stays usable', () => {
  it('the wrong schema', async () => {
    const raw = await openRawPeer(node.url, 'schema');
    raw.sendBytes(encode({ t: 'put', id: 9, pool: 'one', oid: 3 }));
    expect(await raw.next()).toMatchObject({ t: 'error', id: 9, code: ErrorCode.InvalidFrame });
    raw.sendBytes(encode({ t: 'teleport', id: 10 }));
    expect(await raw.next()).toMatchObject({ t: 'error', id: 10, code: ErrorCode.InvalidFrame });
    expect(await raw.request({ t: 'stats', id: 11 })).toMatchObject({ t: 'stats' });
    expect(raw.closed).toBeUndefined();
  });

  it('an unknown field is refused, never ignored: a pool request with one creates no private pool', async () => {
    const raw = await openRawPeer(node.url, 'sharer');
    raw.sendBytes(encode({ t: 'newPool', id: 30, kind: 'ephemeral', pageSize: 4096, weight: 2 }));
    expect(await raw.next()).toMatchObject({ t: 'error', id: 30, code: ErrorCode.InvalidFrame });
    // A data frame on the fast path too: a put with a field no put has stores nothing.
    const oid = new TextEncoder().encode('kept');
    raw.sendBytes(encode({ t: 'put', id: 31, pool: pool.id, oid, index: 1, page, ttl: 60 }));
    expect(await raw.next()).toMatchObject({ t: 'error', id: 31, code: ErrorCode.InvalidFrame });
    const state = await raw.request({ t: 'getState', id: 32, subscribe: false });
    expect(state).toMatchObject({ t: 'state' });
    expect(state.t === 'state' ? state.state.pools : undefined).toEqual([]);
    expect(await pool.get('kept', 1)).toBeNull();
    expect(raw.closed).toBeUndefined();
  });

  it('the wrong page size for the pool changes nothing', async () => {
    const raw = await openRawPeer(node.url, 'bystander');
    const reply = await raw.request({
      t: 'put',
      id: 20,
      pool: pool.id,
      oid: new TextEncoder().encode('kept'),
      index: 0,
      page: new Uint8Array(512),
    });
    expect(reply).toMatchObject({ t: 'error', code: ErrorCode.BadPageSize });
  });

  it('an unknown pool', async () => {
    const raw = await openRawPeer(node.url, 'lost');
    const reply = await raw.request({ t: 'get', id: 21, pool: 987654, oid: new Uint8Array([1]), index: 0 });
    expect(reply).toMatchObject({ t: 'error', code: ErrorCode.UnknownPool });
  });

  it('a batch with one bad op answers the others', async () => {
    const raw = await openRawPeer(node.url, 'bystander');
    const reply = await raw.request({
      t: 'batch',
      id: 30,
      ops: [
        { t: 'get', id: 31, pool: pool.id, oid: new TextEncoder().encode('kept'), index: 0 },
        { t: 'get', id: 32, pool: 424242, oid: new Uint8Array([1]), index: 0 },
      ],
    });
    expect(reply).toMatchObject({
      t: 'batch',
      replies: [
        { t: 'hit', id: 31 },
        { t: 'error', id: 32, code: ErrorCode.UnknownPool },
      ],
    });
  });
});

describe('the handshake', () => {
  it('an op before hello is refused and the connection closed', async () => {
    const raw = await openRawPeer(node.url);
    raw.sendFrame({ t: 'stats', id: 3 });
    expect(await raw.next()).toMatchObject({ t: 'error', id: 3, code: ErrorCode.HandshakeRequired });
    expect((await raw.waitClosed()).code).toBe(1008);
  });

  it('another protocol version gets VERSION_MISMATCH', async () => {
    const raw = await openRawPeer(node.url);
    raw.sendFrame({ t: 'hello', id: 1, protocol: PROTOCOL_VERSION + 1, identity: 'future' });
    expect(await raw.next()).toMatchObject({ t: 'error', code: ErrorCode.VersionMismatch });
    expect((await raw.waitClosed()).code).toBe(1002);
  });
});
