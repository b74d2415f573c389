import { afterEach, describe, expect, it } from 'vitest';
import {
  ConnectionLostError,
  ErrorCode,
  PROTOCOL_VERSION,
  ProtocolError,
  TmemError,
  createCodec,
  type ClientFrame,
} from '@tmem/protocol';
import { now } from '../src/deadline.ts';
import {
  openNodeConnection,
  type NodeConnection,
  type NodeConnectionOptions,
} from '../src/node-connection.ts';
import { silentLogger } from '../src/options.ts';
import { startFakeNode, startSilentServer, type FakeNodeOptions } from './fake-node.ts';
import { closeAll, defer, rejectionOf, track, waitFor } from './support.ts';

afterEach(closeAll);

const codec = createCodec();

function options(url: string, overrides: Partial<NodeConnectionOptions> = {}): NodeConnectionOptions {
  return {
    url,
    identity: 'tester',
    codec,
    logger: silentLogger,
    connectTimeoutMs: 2000,
    timeoutMs: 2000,
    maxBatchOps: 256,
    maxBatchBytes: 1 << 20,
    maxFramesInFlight: 16,
    ...overrides,
  };
}

async function open(url: string, overrides: Partial<NodeConnectionOptions> = {}): Promise<NodeConnection> {
  const connection = await openNodeConnection(options(url, overrides));
  defer(() => connection.close(new TmemError(ErrorCode.ClientClosed, 'test over')));
  return connection;
}

async function fakeNode(fakeOptions: FakeNodeOptions = {}) {
  return track(await startFakeNode(fakeOptions));
}

const deadline = (): number => now() + 2000;

describe('node connection handshake', () => {
  it('sends hello with the protocol version and identity, and learns the node id', async () => {
    const fake = await fakeNode({ nodeId: 'n1' });
    const connection = await open(fake.url);
    expect(connection.nodeId).toBe('n1');
    expect(connection.isOpen).toBe(true);
    expect(fake.received[0]?.frame).toEqual({
      t: 'hello',
      id: 1,
      protocol: PROTOCOL_VERSION,
      identity: 'tester',
    });
  });

  it('rejects with VERSION_MISMATCH when the node refuses the version', async () => {
    const fake = await fakeNode({
      onHello: (hello) => ({
        t: 'error',
        id: hello.id,
        code: ErrorCode.VersionMismatch,
        message: 'node speaks 2',
        details: { nodeProtocol: 2 },
      }),
    });
    const error = await rejectionOf(openNodeConnection(options(fake.url)));
    expect(error).toBeInstanceOf(ProtocolError);
    expect(error).toMatchObject({
      code: ErrorCode.VersionMismatch,
      details: { nodeProtocol: 2, remote: true },
    });
  });

  it("cuts its batch bound to the frame limit of the node's welcome", async () => {
    const plain = await fakeNode();
    expect((await open(plain.url, { maxBatchBytes: 100_000 })).maxBatchBytes).toBe(100_000);
    const small = await fakeNode({ maxFrameBytes: 64 * 1024 });
    expect((await open(small.url, { maxBatchBytes: 100_000 })).maxBatchBytes).toBe(60 * 1024);
    expect((await open(small.url, { maxBatchBytes: 2000 })).maxBatchBytes).toBe(2000);
  });

  it('rejects with VERSION_MISMATCH when the welcome names another version', async () => {
    const fake = await fakeNode({
      onHello: (hello) => ({ t: 'welcome', id: hello.id, protocol: PROTOCOL_VERSION + 1, nodeId: 'n' }),
    });
    const error = await rejectionOf(openNodeConnection(options(fake.url)));
    expect(error).toBeInstanceOf(ProtocolError);
    expect(error).toMatchObject({ code: ErrorCode.VersionMismatch });
    await waitFor(() => fake.sockets.size === 0, 'the socket to close');
  });

  it('rejects with TIMEOUT when the handshake does not complete within connectTimeoutMs', async () => {
    const silent = track(await startSilentServer());
    const error = await rejectionOf(openNodeConnection(options(silent.url, { connectTimeoutMs: 100 })));
    expect(error).toMatchObject({ code: ErrorCode.Timeout, details: { connectTimeoutMs: 100 } });
  });

  it('rejects with the abort reason when aborted while connecting', async () => {
    const silent = track(await startSilentServer());
    const controller = new AbortController();
    const reason = new TmemError(ErrorCode.ClientClosed, 'closed');
    const opening = rejectionOf(openNodeConnection(options(silent.url, { signal: controller.signal })));
    controller.abort(reason);
    expect(await opening).toBe(reason);
  });
});

describe('node connection requests', () => {
  it('gives every op of a batch its own id, distinct from the frame id and never 0', async () => {
    const fake = await fakeNode();
    const connection = await open(fake.url);
    const pool = (
      await connection.request({ t: 'newPool', kind: 'ephemeral', pageSize: 512 }, { deadline: deadline() })
    ).pool;
    const oid = Uint8Array.of(1);
    const replies = await Promise.all(
      [0, 1, 2].map((index) => connection.request({ t: 'get', pool, oid, index }, { deadline: deadline() })),
    );
    expect(replies.map((r) => r.t)).toEqual(['miss', 'miss', 'miss']);
    const [batch] = fake.batches();
    const ids = [batch?.id, ...(batch?.ops.map((op) => op.id) ?? [])];
    expect(new Set(ids).size).toBe(4);
    expect(ids).not.toContain(0);
  });

  it('rejects an op answered with the wrong reply type with INVALID_FRAME', async () => {
    const fake = await fakeNode({ onPageOp: (op) => ({ t: 'hit', id: op.id, page: new Uint8Array(512) }) });
    const connection = await open(fake.url);
    const error = await rejectionOf(
      connection.request(
        { t: 'put', pool: 1, oid: Uint8Array.of(1), index: 0, page: new Uint8Array(512) },
        { deadline: deadline() },
      ),
    );
    expect(error).toBeInstanceOf(ProtocolError);
    expect(error).toMatchObject({ code: ErrorCode.InvalidFrame });
  });

  it('rejects ops left unanswered in a batch reply with INVALID_FRAME', async () => {
    const fake = await fakeNode({
      onFrame: (frame: ClientFrame) =>
        frame.t === 'batch' ? { t: 'batch', id: frame.id, replies: [] } : undefined,
    });
    const connection = await open(fake.url);
    const error = await rejectionOf(
      connection.request({ t: 'flushObject', pool: 1, oid: Uint8Array.of(1) }, { deadline: deadline() }),
    );
    expect(error).toMatchObject({ code: ErrorCode.InvalidFrame });
    expect(connection.isOpen).toBe(true);
  });

  it('close() rejects waiting ops with the given error, calls onClose once and closes the socket', async () => {
    const fake = await fakeNode();
    const closes: TmemError[] = [];
    const connection = await openNodeConnection(
      options(fake.url, { onClose: (_connection, error) => closes.push(error) }),
    );
    fake.hold = true;
    const op = rejectionOf(
      connection.request({ t: 'flushObject', pool: 1, oid: Uint8Array.of(1) }, { deadline: deadline() }),
    );
    await waitFor(() => fake.held === 1, 'the op to reach the node');
    const reason = new TmemError(ErrorCode.ClientClosed, 'bye');
    await connection.close(reason);
    expect(await op).toBe(reason);
    expect(closes).toEqual([reason]);
    expect(connection.isOpen).toBe(false);
    await waitFor(() => fake.sockets.size === 0, 'the socket to close');
    const late = await rejectionOf(connection.request({ t: 'stats' }, { deadline: deadline() }));
    expect(late).toBeInstanceOf(ConnectionLostError);
  });

  it('closes a connection whose node stops answering pings: ops in flight fail with CONNECTION_LOST', async () => {
    // A node behind a DROP rule: the socket stays open, the node answers nothing, not even pings.
    const fake = await fakeNode({ autoPong: false });
    const closes: TmemError[] = [];
    const connection = await openNodeConnection(
      options(fake.url, {
        pingIntervalMs: 20,
        pongTimeoutMs: 100,
        onClose: (_connection, error) => closes.push(error),
      }),
    );
    fake.hold = true;
    const started = now();
    const op = rejectionOf(
      connection.request({ t: 'flushObject', pool: 1, oid: Uint8Array.of(1) }, { deadline: now() + 10_000 }),
    );
    const error = await op;
    expect(error).toBeInstanceOf(ConnectionLostError);
    expect(error).toMatchObject({ details: { node: fake.url } });
    // By the pong deadline, long before the op's own 10 s.
    expect(now() - started).toBeLessThan(5000);
    expect(closes.map((e) => e.code)).toEqual([ErrorCode.ConnectionLost]);
    expect(connection.isOpen).toBe(false);
  });

  it('keeps a connection whose node answers pings', async () => {
    const fake = await fakeNode();
    const connection = await open(fake.url, { pingIntervalMs: 10, pongTimeoutMs: 50 });
    let pings = 0;
    for (const socket of fake.sockets) socket.on('ping', () => pings++);
    await waitFor(() => pings >= 10, 'ten pings');
    expect(connection.isOpen).toBe(true);
  });

  it('sends the routing version as the batch sv, one version per frame', async () => {
    const fake = await fakeNode();
    const connection = await open(fake.url);
    const flush = (sv: number | undefined) =>
      connection.request({ t: 'flushObject', pool: 1, oid: Uint8Array.of(1) }, { deadline: deadline(), sv });
    const replies = await Promise.allSettled([flush(fake.cluster.state.version), flush(1), flush(undefined)]);
    expect(replies.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected']);
    expect(replies.map((r) => (r.status === 'rejected' ? (r.reason as TmemError).code : ''))).toEqual([
      ErrorCode.UnknownPool,
      ErrorCode.StaleState,
      ErrorCode.UnknownPool,
    ]);
    expect(replies[1]).toMatchObject({ reason: { details: { version: fake.cluster.state.version } } });
    expect(fake.batches().map((b) => b.sv)).toEqual([fake.cluster.state.version, 1, undefined]);
  });

  it('hands state pushes (id 0) to onStatePush, and answers getState', async () => {
    const fake = await fakeNode();
    const pushes: number[] = [];
    const connection = await open(fake.url, { onStatePush: (_c, frame) => pushes.push(frame.state.version) });
    const reply = await connection.request({ t: 'getState', subscribe: true }, { deadline: deadline() });
    // As a node shows it to a client: without the pool counter.
    const shown = { ...fake.cluster.state };
    delete shown.nextPoolId;
    expect(reply.state).toEqual(shown);
    fake.cluster.commit();
    await waitFor(() => pushes.length === 1, 'the push');
    expect(pushes).toEqual([reply.state.version + 1]);
    expect(connection.isOpen).toBe(true);
  });

  it('rejects ops at once when their deadline has already passed', async () => {
    const fake = await fakeNode();
    const connection = await open(fake.url);
    const error = await rejectionOf(connection.request({ t: 'stats' }, { deadline: now() - 1 }));
    expect(error).toMatchObject({ code: ErrorCode.Timeout });
  });
});
