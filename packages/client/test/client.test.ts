import { afterEach, describe, expect, it } from 'vitest';
import { ConnectionLostError, ErrorCode, PROTOCOL_VERSION, ProtocolError, TmemError } from '@tmem/protocol';
import { connect } from '../src/index.ts';
import { deadUrl, startFakeNode, startSilentServer } from './fake-node.ts';
import { page, setup } from './helpers.ts';
import { closeAll, recordingLogger, rejectionOf, track, waitFor } from './support.ts';

afterEach(closeAll);

describe('connect', () => {
  it('completes the handshake with its identity and reports one stats entry per node', async () => {
    const fake = track(await startFakeNode({ nodeId: 'n1' }));
    const client = track(await connect({ seeds: [fake.url], identity: 'app-1' }));
    expect(client.identity).toBe('app-1');
    expect(fake.received[0]?.frame).toMatchObject({
      t: 'hello',
      protocol: PROTOCOL_VERSION,
      identity: 'app-1',
    });
    const stats = await client.stats();
    expect(stats).toHaveLength(1);
    expect(stats[0]?.nodeId).toBe('n1');
  });

  it('makes up a distinct identity when none is given', async () => {
    const fake = track(await startFakeNode());
    const a = track(await connect({ seeds: [fake.url] }));
    const b = track(await connect({ seeds: [fake.url] }));
    expect(a.identity).toMatch(/^client-/);
    expect(a.identity).not.toBe(b.identity);
  });

  it('falls back through dead, silent and mismatched seeds to the first that completes the handshake', async () => {
    const dead = await deadUrl();
    const silent = track(await startSilentServer());
    const mismatched = track(
      await startFakeNode({
        onHello: (hello) => ({ t: 'error', id: hello.id, code: ErrorCode.VersionMismatch, message: 'old' }),
      }),
    );
    const good = track(await startFakeNode({ nodeId: 'good' }));
    const client = track(
      await connect({ seeds: [dead, silent.url, mismatched.url, good.url], connectTimeoutMs: 500 }),
    );
    const [stats] = await client.stats();
    expect(stats?.nodeId).toBe('good');
  });

  it('rejects with NO_NODES, naming each seed and its failure, when none completes the handshake', async () => {
    const dead = await deadUrl();
    const mismatched = track(
      await startFakeNode({
        onHello: (hello) => ({ t: 'error', id: hello.id, code: ErrorCode.VersionMismatch, message: 'old' }),
      }),
    );
    const error = await rejectionOf(connect({ seeds: [dead, mismatched.url] }));
    expect(error).toBeInstanceOf(TmemError);
    expect(error).toMatchObject({
      code: ErrorCode.NoNodes,
      details: {
        failures: [
          { url: dead, code: ErrorCode.ConnectionLost },
          { url: mismatched.url, code: ErrorCode.VersionMismatch },
        ],
      },
    });
    // The message names each seed and its cause, not just "no nodes".
    expect((error as Error).message).toContain(`${dead}: `);
    expect((error as Error).message).toMatch(/ECONNREFUSED/);
    expect((error as Error).message).toContain(`${mismatched.url}: old`);
  });

  it('surfaces a version mismatch as the cause of NO_NODES', async () => {
    const fake = track(
      await startFakeNode({
        onHello: (hello) => ({ t: 'error', id: hello.id, code: ErrorCode.VersionMismatch, message: 'old' }),
      }),
    );
    const error = await rejectionOf(connect({ seeds: [fake.url] }));
    expect(error).toMatchObject({ code: ErrorCode.NoNodes });
    expect((error as Error).cause).toBeInstanceOf(ProtocolError);
    expect((error as Error).cause).toMatchObject({ code: ErrorCode.VersionMismatch });
  });

  it('rejects bad options with BAD_ARGUMENT before connecting', async () => {
    await expect(connect({ seeds: [] })).rejects.toMatchObject({ code: ErrorCode.BadArgument });
    await expect(connect({ seeds: ['ws://127.0.0.1:1'], maxBatchOps: 0 })).rejects.toMatchObject({
      code: ErrorCode.BadArgument,
    });
  });

  it('logs through the logger it is given', async () => {
    const { logger, lines } = recordingLogger();
    await setup({ logger });
    expect(lines.some((l) => l.level === 'info' && l.message === 'connected')).toBe(true);
  });
});

describe('lost connections', () => {
  it('retries a sent get on a new connection; a sent put is in doubt and not sent again', async () => {
    const { fake, pool } = await setup({ retries: 2 });
    fake.hold = true;
    const put = rejectionOf(pool.put('o', 0, page(5)));
    const get = pool.get('o', 1);
    await waitFor(() => fake.held === 1, 'the batch to reach the node');
    fake.hold = false;
    fake.dropConnections();
    // Sending the put again could apply it twice (around a concurrent flush): the caller learns it is in doubt.
    const error = await put;
    expect(error).toBeInstanceOf(ConnectionLostError);
    expect((error as ConnectionLostError).details['sent']).toBeUndefined();
    expect(await get).toBeNull();
    expect(fake.connections).toBe(2);
    // The node had applied it before its reply was lost: that is what "in doubt" means.
    expect(await pool.get('o', 0)).toEqual(page(5));
  });

  it('retries a put that was still queued in the client when the connection was lost', async () => {
    const { fake, pool } = await setup({ retries: 2, maxFramesInFlight: 1 });
    fake.hold = true;
    const first = rejectionOf(pool.put('o', 0, page(5)));
    await waitFor(() => fake.held === 1, 'the first frame to reach the node');
    // The only frame slot is taken: this put waits in the client's queue.
    const queued = pool.put('o', 1, page(6));
    fake.hold = false;
    fake.dropConnections();
    expect(await first).toBeInstanceOf(ConnectionLostError);
    expect(await queued).toBe(true);
    expect(await pool.get('o', 1)).toEqual(page(6));
  });

  it('rejects with CONNECTION_LOST when retries are exhausted, and reconnects for the next op', async () => {
    const { fake, pool } = await setup({ retries: 0 });
    fake.hold = true;
    const put = rejectionOf(pool.put('o', 0, page(5)));
    await waitFor(() => fake.held === 1, 'the batch to reach the node');
    fake.hold = false;
    fake.dropConnections();
    const error = await put;
    expect(error).toBeInstanceOf(ConnectionLostError);
    expect(error).toMatchObject({ code: ErrorCode.ConnectionLost });
    expect(await pool.put('o', 0, page(6))).toBe(true);
    expect(fake.connections).toBe(2);
  });

  it('rejects with CONNECTION_LOST when the seed is gone', async () => {
    const { fake, pool } = await setup({ retries: 2 });
    fake.hold = true;
    const get = rejectionOf(pool.get('o', 0));
    await waitFor(() => fake.held === 1, 'the batch to reach the node');
    await fake.close();
    const error = await get;
    expect(error).toBeInstanceOf(ConnectionLostError);
    expect((error as Error).cause).toMatchObject({ code: ErrorCode.NoNodes });
  });

  it('reconnects through the next seed when the first one goes away', async () => {
    const first = track(await startFakeNode({ nodeId: 'first' }));
    const second = track(await startFakeNode({ nodeId: 'second' }));
    const client = track(await connect({ seeds: [first.url, second.url] }));
    expect((await client.stats())[0]?.nodeId).toBe('first');
    first.hold = true;
    const stats = client.stats();
    await waitFor(() => first.held === 1, 'the stats request to reach the first node');
    await first.close();
    expect((await stats)[0]?.nodeId).toBe('second');
  });

  it('does not retry createPool or destroy, whose effect may already have happened', async () => {
    const { fake, client, pool } = await setup({ retries: 2 });
    fake.hold = true;
    const created = rejectionOf(client.createPool({ kind: 'ephemeral' }));
    const destroyed = rejectionOf(pool.destroy());
    await waitFor(() => fake.held === 2, 'both requests to reach the node');
    fake.hold = false;
    fake.dropConnections();
    expect(await created).toBeInstanceOf(ConnectionLostError);
    expect(await destroyed).toBeInstanceOf(ConnectionLostError);
    expect(fake.connections).toBe(1);
  });

  it('closes the connection and rejects pending ops with ProtocolError on a garbage frame', async () => {
    const { fake, pool } = await setup();
    fake.hold = true;
    const get = rejectionOf(pool.get('o', 0));
    await waitFor(() => fake.held === 1, 'the batch to reach the node');
    // An array header promising two items, then one: not a msgpack value.
    fake.sendRaw(Uint8Array.of(0x92, 0x01));
    const error = await get;
    expect(error).toBeInstanceOf(ProtocolError);
    expect([ErrorCode.MalformedFrame, ErrorCode.TruncatedFrame]).toContain((error as ProtocolError).code);
    await waitFor(() => fake.sockets.size === 0, 'the client to close the connection');
    fake.hold = false;
    expect(await pool.put('o', 0, page(1))).toBe(true);
    expect(fake.connections).toBe(2);
  });

  it.each([
    ['a text frame', 'hello', ErrorCode.MalformedFrame],
    [
      'a frame outside the schema',
      Uint8Array.of(0x81, 0xa1, 0x74, 0xa3, 0x62, 0x61, 0x64),
      ErrorCode.InvalidFrame,
    ],
  ])('treats %s as a broken connection', async (_name, data, code) => {
    const { fake, pool } = await setup();
    fake.hold = true;
    const get = rejectionOf(pool.get('o', 0));
    await waitFor(() => fake.held === 1, 'the batch to reach the node');
    fake.sendRaw(data);
    expect(await get).toMatchObject({ code });
    await waitFor(() => fake.sockets.size === 0, 'the client to close the connection');
  });

  it('ignores a reply to an unknown request id, logging it at debug', async () => {
    const { logger, lines } = recordingLogger();
    const { fake, pool } = await setup({ logger });
    fake.send({ t: 'ok', id: 4242 });
    await waitFor(
      () => lines.some((l) => l.level === 'debug' && /unknown/.test(l.message ?? '')),
      'a debug line',
    );
    expect(await pool.put('o', 0, page(1))).toBe(true);
    expect(fake.connections).toBe(1);
  });
});

describe('createPool compression', () => {
  it('sends compression with newPool and the pool reports it; none by default', async () => {
    const { fake, client, pool } = await setup();
    expect(pool.compression).toBeUndefined();
    const compressed = await client.createPool({ kind: 'persistent', compression: 'lz4' });
    expect(compressed.compression).toBe('lz4');
    const frames = fake.received.map((r) => r.frame).filter((f) => f.t === 'newPool');
    expect(frames.map((f) => (f.t === 'newPool' ? f.compression : 'other'))).toEqual([undefined, 'lz4']);
  });

  it('rejects an unknown compression with BAD_ARGUMENT before sending anything', async () => {
    const { fake, client } = await setup();
    const before = fake.received.length;
    await expect(
      client.createPool({ kind: 'ephemeral', compression: 'gzip' as 'lz4' }),
    ).rejects.toMatchObject({
      code: ErrorCode.BadArgument,
    });
    expect(fake.received.length).toBe(before);
  });
});

describe('close', () => {
  it('rejects pending and later ops with CLIENT_CLOSED and closes the socket', async () => {
    const { fake, client, pool } = await setup();
    fake.hold = true;
    const put = rejectionOf(pool.put('o', 0, page(1)));
    const stats = rejectionOf(client.stats());
    await waitFor(() => fake.held === 2, 'both requests to reach the node');
    await client.close();
    expect(await put).toMatchObject({ code: ErrorCode.ClientClosed });
    expect(await stats).toMatchObject({ code: ErrorCode.ClientClosed });
    await expect(pool.get('o', 0)).rejects.toMatchObject({ code: ErrorCode.ClientClosed });
    await expect(client.createPool({ kind: 'ephemeral' })).rejects.toMatchObject({
      code: ErrorCode.ClientClosed,
    });
    await expect(client.stats()).rejects.toMatchObject({ code: ErrorCode.ClientClosed });
    await client.close();
    await waitFor(() => fake.sockets.size === 0, 'the socket to close');
  });

  it('rejects with CLIENT_CLOSED an op that is reconnecting when the client closes', async () => {
    const { fake, client, pool } = await setup({ retries: 1000, timeoutMs: 10_000 });
    fake.hold = true;
    const put = rejectionOf(pool.put('o', 0, page(1)));
    await waitFor(() => fake.held === 1, 'the batch to reach the node');
    await fake.close();
    await client.close();
    expect(await put).toMatchObject({ code: ErrorCode.ClientClosed });
  });
});
