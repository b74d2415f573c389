import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer, type WebSocket } from 'ws';
import type { AddressInfo } from 'node:net';
import { connect } from '@tmem/client';
import {
  ErrorCode,
  MAX_BATCH_OPS,
  PROTOCOL_VERSION,
  createCodec,
  newPeerNonce,
  pageChecksum,
  peerProof,
  type HandOff,
} from '@tmem/protocol';
import {
  TEST_CLUSTER_SECRET,
  closeAllRawPeers,
  killAllNodes,
  openRawPeer,
  runCli,
  startNode,
  stateOf,
  waitFor,
  type RawPeer,
} from '../harness/index.ts';

// Issue 9, findings 2 and 3: a peer proves the cluster secret without sending it, and a consensus message
// speaks only for the member whose authenticated connection carried it.

afterEach(() => closeAllRawPeers());
afterAll(() => killAllNodes());

const codec = createCodec();

/** Says hello as a peer and answers the node's challenge with a proof under `secret`. */
async function helloAsPeer(url: string, identity: string, secret: string): Promise<RawPeer> {
  const raw = await openRawPeer(url);
  const nonce = newPeerNonce();
  const welcome = await raw.request({
    t: 'hello',
    id: 1,
    protocol: PROTOCOL_VERSION,
    identity,
    role: 'peer',
    nonce,
  });
  if (welcome.t !== 'welcome' || welcome.nonce === undefined) throw new Error(`no challenge: ${welcome.t}`);
  const nonces = { dialer: nonce, acceptor: welcome.nonce };
  // The node proved the secret first; check it as a real peer would.
  expect(welcome.proof).toBe(peerProof(TEST_CLUSTER_SECRET, 'acceptor', nonces, welcome.nodeId));
  raw.sendFrame({ t: 'peerAuth', id: 2, proof: peerProof(secret, 'dialer', nonces, identity) });
  return raw;
}

describe('peer handshake', () => {
  it('the secret never crosses the wire, and a node that cannot prove it gets no link', async () => {
    // A fake node records what a real one sends when it dials it, and answers with a proof it cannot make.
    const seen: Buffer[] = [];
    const fake = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    fake.on('connection', (socket: WebSocket) => {
      socket.on('message', (data: Buffer) => {
        seen.push(data);
        const hello = codec.decodeClientFrame(data);
        if (hello.t !== 'hello') return;
        const welcome = { t: 'welcome', id: hello.id, protocol: PROTOCOL_VERSION, nodeId: 'fake' } as const;
        socket.send(codec.encode({ ...welcome, nonce: newPeerNonce(), proof: 'x'.repeat(43) }));
      });
    });
    await new Promise((resolve) => fake.once('listening', resolve));
    const port = (fake.address() as AddressInfo).port;
    try {
      const joiner = await startNode({
        args: ['--join', `ws://127.0.0.1:${port}`],
        env: { TMEM_LOG_LEVEL: 'warn' },
      });
      await waitFor(() => joiner.stderr().includes('did not prove the cluster secret'), {
        what: 'the joiner to refuse the fake node',
      });
      expect(seen.length).toBeGreaterThan(0);
      const frames = seen.map((bytes) => codec.decodeClientFrame(bytes));
      expect(frames.every((frame) => frame.t === 'hello')).toBe(true);
      for (const bytes of seen) expect(bytes.toString('latin1')).not.toContain(TEST_CLUSTER_SECRET);
    } finally {
      fake.close();
    }
  });

  it('a peer without the secret is refused, before and after the challenge, and changes nothing', async () => {
    const node = await startNode({ args: ['--replication', '1'] });
    const client = await connect({ seeds: [node.url] });
    const pool = await client.createPool({ kind: 'persistent' });
    expect(await pool.put('kept', 0, new Uint8Array(4096).fill(9))).toBe(true);
    const before = await stateOf(node.url);

    const wrong = await helloAsPeer(node.url, 'intruder', 'not-the-secret');
    expect(await wrong.next()).toMatchObject({ t: 'error', code: ErrorCode.Unauthorized });
    expect((await wrong.waitClosed()).code).toBe(1008);

    // Skipping the proof: the first frame after the challenge is a forged commit that would wipe every pool.
    const skipper = await openRawPeer(node.url);
    const nonce = newPeerNonce();
    await skipper.request({
      t: 'hello',
      id: 1,
      protocol: PROTOCOL_VERSION,
      identity: 'x',
      role: 'peer',
      nonce,
    });
    const forged = { ...before!, version: before!.version + 100, pools: [] };
    const commit = {
      type: 'commit',
      term: 99,
      from: 'x',
      fromIncarnation: 1,
      toIncarnation: 0,
      state: forged,
    };
    skipper.sendFrame({ t: 'peer', id: 3, message: commit });
    expect(await skipper.next()).toMatchObject({ t: 'error', code: ErrorCode.Unauthorized });

    expect((await stateOf(node.url))?.version).toBe(before!.version);
    expect(await pool.get('kept', 0)).toEqual(new Uint8Array(4096).fill(9));
    await client.close();
  });

  it("an authenticated peer cannot speak in another member's name", async () => {
    const node = await startNode({ args: ['--replication', '1'], env: { TMEM_LOG_LEVEL: 'warn' } });
    const client = await connect({ seeds: [node.url] });
    const pool = await client.createPool({ kind: 'persistent' });
    const before = (await stateOf(node.url))!;
    const member = await helloAsPeer(node.url, 'insider', TEST_CLUSTER_SECRET);
    // Authenticated: it may read the state as a peer does.
    expect(await member.request({ t: 'getState', id: 4, subscribe: false })).toMatchObject({ t: 'state' });
    const forged = { ...before, version: before.version + 100, pools: [] };
    const commit = {
      type: 'commit',
      term: 99,
      from: node.nodeId,
      fromIncarnation: before.members[0]!.incarnation,
      toIncarnation: before.members[0]!.incarnation,
      state: forged,
    };
    member.sendFrame({ t: 'peer', id: 5, message: commit });
    await waitFor(() => node.stderr().includes("another member's name"), {
      what: 'the forged message dropped',
    });
    expect((await stateOf(node.url))?.version).toBe(before.version);
    expect(await pool.put('p', 0, new Uint8Array(4096))).toBe(true);
    await client.close();
  });

  it('handOff (ephemeral hand-over) is for authenticated peers only, validated, and lands only where a gate waits', async () => {
    const node = await startNode({ env: { TMEM_LOG_LEVEL: 'warn' } });
    const client = await connect({ seeds: [node.url], identity: 'app' });
    const pool = await client.createPool({ kind: 'ephemeral' });
    const state = (await stateOf(node.url))!;
    const page = new Uint8Array(4096).fill(7);
    const entry = {
      pool: pool.id,
      oid: new TextEncoder().encode('planted'),
      index: 0,
      page,
      sum: pageChecksum(page),
    };
    const handOff: HandOff = {
      t: 'handOff',
      id: 7,
      transition: state.version,
      incarnation: 1,
      entries: [entry],
      done: true,
    };

    // A client connection, even one of the pool's owner: not a peer frame it may send.
    const app = await openRawPeer(node.url, 'app');
    expect(await app.request(handOff)).toMatchObject({ t: 'error', code: ErrorCode.InvalidFrame });

    // A peer that proved the secret but is not the old primary of any gated partition: nothing lands.
    const insider = await helloAsPeer(node.url, 'insider', TEST_CLUSTER_SECRET);
    expect(await insider.request({ ...handOff, id: 8 })).toMatchObject({
      t: 'handedOff',
      stored: 0,
      skipped: 1,
    });
    // Malformed: too many entries, a bad field. Typed errors, the connection stays usable.
    const tooMany = { ...handOff, id: 9, entries: Array.from({ length: MAX_BATCH_OPS + 1 }, () => entry) };
    expect(await insider.request(tooMany)).toMatchObject({ t: 'error', code: ErrorCode.InvalidFrame });
    const badIndex = { ...handOff, id: 10, entries: [{ ...entry, index: -1 }] };
    expect(await insider.request(badIndex as never)).toMatchObject({
      t: 'error',
      code: ErrorCode.InvalidFrame,
    });
    // A transition ahead of the node: it asks to be sent again later and takes nothing.
    expect(await insider.request({ ...handOff, id: 11, transition: state.version + 50 })).toMatchObject({
      t: 'handedOff',
      stored: 0,
      behind: true,
    });
    expect(await pool.get('planted', 0)).toBeNull();
    await client.close();
  });

  it('a node without a secret admits no peer, and --join without one exits 1 naming TMEM_CLUSTER_SECRET', async () => {
    const lonely = await startNode({ args: ['--replication', '1'], env: { TMEM_CLUSTER_SECRET: '' } });
    const raw = await openRawPeer(lonely.url);
    const reply = await raw.request({
      t: 'hello',
      id: 1,
      protocol: PROTOCOL_VERSION,
      identity: 'p',
      role: 'peer',
      nonce: newPeerNonce(),
    });
    expect(reply).toMatchObject({ t: 'error', code: ErrorCode.Unauthorized });
    const result = await runCli(['node', '--open', '--capacity', '8MiB', '--join', lonely.url]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('TMEM_CLUSTER_SECRET');
  });
});
