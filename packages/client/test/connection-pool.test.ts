import { afterEach, describe, expect, it } from 'vitest';
import { ConnectionLostError, ErrorCode, TmemError, createCodec, type MemberInfo } from '@tmem/protocol';
import { createConnectionPool } from '../src/connection-pool.ts';
import { openNodeConnection } from '../src/node-connection.ts';
import { now } from '../src/deadline.ts';
import { silentLogger } from '../src/options.ts';
import { deadUrl, startFakeNode } from './fake-node.ts';
import { closeAll, defer, rejectionOf, track, waitFor } from './support.ts';

afterEach(closeAll);

const codec = createCodec();

function pool() {
  const opened: string[] = [];
  const connections = createConnectionPool({
    open: (url) => {
      opened.push(url);
      return openNodeConnection({
        url,
        identity: 'tester',
        codec,
        logger: silentLogger,
        connectTimeoutMs: 2000,
        timeoutMs: 2000,
        maxBatchOps: 256,
        maxBatchBytes: 1 << 20,
        maxFramesInFlight: 16,
        onClose: (connection) => connections.forget(connection),
      });
    },
  });
  defer(() => connections.close(new TmemError(ErrorCode.ClientClosed, 'test over')));
  return { connections, opened };
}

const asMember = (fake: { member: MemberInfo }, overrides: Partial<MemberInfo> = {}): MemberInfo => ({
  ...fake.member,
  ...overrides,
});

describe('connection pool', () => {
  it('opens one connection per member on first use, shared by concurrent callers', async () => {
    const fake = track(await startFakeNode({ nodeId: 'a' }));
    const { connections, opened } = pool();
    const member = asMember(fake);
    expect(connections.peek(member)).toBeUndefined();
    const [x, y] = await Promise.all([connections.get(member), connections.get(member)]);
    expect(x).toBe(y);
    expect(await connections.get(member)).toBe(x);
    expect(connections.peek(member)).toBe(x);
    expect(opened).toHaveLength(1);
    expect(connections.owns(x)).toBe(true);
  });

  it('refuses a node that answers under another id, as a lost connection', async () => {
    const fake = track(await startFakeNode({ nodeId: 'a' }));
    const { connections } = pool();
    const error = await rejectionOf(connections.get(asMember(fake, { id: 'b' })));
    expect(error).toBeInstanceOf(ConnectionLostError);
    expect(error).toMatchObject({ details: { expected: 'b', nodeId: 'a' } });
    await waitFor(() => fake.sockets.size === 0, 'the wrong connection to close');
  });

  it('reports an unreachable member as a lost connection, and tracks suspects', async () => {
    const { connections } = pool();
    const member: MemberInfo = { id: 'gone', url: await deadUrl(), incarnation: 1, capacityBytes: 1 };
    expect(await rejectionOf(connections.get(member))).toBeInstanceOf(ConnectionLostError);
    expect(connections.isSuspect(member)).toBe(false);
    connections.suspect(member);
    expect(connections.isSuspect(member)).toBe(true);
  });

  it('closes the connections of members that left, keyed by id and incarnation', async () => {
    const a = track(await startFakeNode({ nodeId: 'a' }));
    const b = track(await startFakeNode({ nodeId: 'b' }));
    const { connections } = pool();
    const toA = await connections.get(asMember(a));
    const toB = await connections.get(asMember(b));
    // b restarted: a new incarnation is a new member.
    connections.retain([asMember(a), asMember(b, { incarnation: 2 })]);
    await waitFor(() => !toB.isOpen, 'the old incarnation to be closed');
    expect(toA.isOpen).toBe(true);
    const again = await connections.get(asMember(b, { incarnation: 2 }));
    expect(again).not.toBe(toB);
    expect(b.connections).toBe(2);
  });

  it('close() also closes a connection still draining after its member left, failing its ops', async () => {
    const a = track(await startFakeNode({ nodeId: 'a' }));
    const { connections } = pool();
    const toA = await connections.get(asMember(a));
    a.hold = true;
    const op = toA.request({ t: 'flushObject', pool: 1, oid: Uint8Array.of(1) }, { deadline: now() + 5000 });
    await waitFor(() => a.held === 1, 'the op to reach the node');
    connections.retain([]);
    expect(toA.isOpen).toBe(true);
    const reason = new TmemError(ErrorCode.ClientClosed, 'bye');
    await connections.close(reason);
    expect(toA.isOpen).toBe(false);
    await expect(op).rejects.toBe(reason);
  });

  it('adopts an open seed connection only for the member it is, and only when it has none', async () => {
    const fake = track(await startFakeNode({ nodeId: 'a' }));
    const { connections } = pool();
    const seed = await openNodeConnection({
      url: fake.url,
      identity: 'tester',
      codec,
      logger: silentLogger,
      connectTimeoutMs: 2000,
      timeoutMs: 2000,
      maxBatchOps: 256,
      maxBatchBytes: 1 << 20,
      maxFramesInFlight: 16,
    });
    expect(connections.adopt(asMember(fake, { id: 'b' }), seed)).toBe(false);
    expect(connections.adopt(asMember(fake), seed)).toBe(true);
    expect(await connections.get(asMember(fake))).toBe(seed);
    expect(connections.adopt(asMember(fake), seed)).toBe(false);
  });
});
