import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import { ErrorCode, PROTOCOL_VERSION, TmemError, createCodec } from '@tmem/protocol';
import { createPeerLinks, type PeerLinks } from '../../src/cluster/peer-links.ts';
import { waitFor } from './wait-until.ts';

const codec = createCodec();

/** Fast timing, so a test sees several pings, deaths and redials in well under a second. */
const FAST = {
  pingIntervalMs: 20,
  pongTimeoutMs: 100,
  connectTimeoutMs: 150,
  redialMinMs: 10,
  redialMaxMs: 40,
};

/** A logger whose lines the test can read. */
function capturingLogger() {
  type Line = { level: number; msg: string; url?: string; err?: string; reason?: string };
  const lines: Line[] = [];
  const logger = pino(
    { level: 'debug' },
    { write: (line: string) => void lines.push(JSON.parse(line) as Line) },
  );
  return { logger, lines, warnings: () => lines.filter((l) => l.level === 40) };
}

/**
 * A node stand-in: answers every hello with a welcome; with `autoPong` false its sockets stay open but never
 * answer a ping, as a peer behind an iptables DROP rule looks to the sender.
 */
async function startPeer(autoPong: boolean) {
  const server = new WebSocketServer({ port: 0, host: '127.0.0.1', autoPong });
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  const sockets: WebSocket[] = [];
  let pings = 0;
  server.on('connection', (socket) => {
    sockets.push(socket);
    socket.on('ping', () => pings++);
    socket.on('message', (data: Buffer) => {
      const frame = codec.decodeClientFrame(data);
      if (frame.t === 'hello') {
        socket.send(codec.encode({ t: 'welcome', id: frame.id, protocol: PROTOCOL_VERSION, nodeId: 'peer' }));
      }
    });
  });
  const { port } = server.address() as { port: number };
  return {
    url: `ws://127.0.0.1:${port}`,
    connections: () => sockets.length,
    pings: () => pings,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function links(logger = capturingLogger().logger): PeerLinks {
  const created = createPeerLinks({
    selfId: 'self',
    selfUrl: 'ws://127.0.0.1:1',
    codec,
    logger,
    timing: FAST,
  });
  cleanups.push(() => created.close());
  return created;
}

describe('peer links: liveness and redial', () => {
  it('keeps a link whose peer answers pings', async () => {
    const peer = await startPeer(true);
    cleanups.push(peer.close);
    links().send(peer.url, { hello: 1 });
    await waitFor(() => peer.pings() >= 10, 'ten pings answered');
    expect(peer.connections()).toBe(1);
  });

  it('closes a link whose pongs stop, fails its requests with CONNECTION_LOST, and redials', async () => {
    const peer = await startPeer(false);
    cleanups.push(peer.close);
    const log = capturingLogger();
    const set = links(log.logger);
    const started = Date.now();
    const reply = set.getState(peer.url, 10_000).then(
      () => undefined,
      (error: unknown) => error,
    );
    const error = await reply;
    expect(error).toBeInstanceOf(TmemError);
    expect((error as TmemError).code).toBe(ErrorCode.ConnectionLost);
    // Failed by the pong deadline, long before the request's own 10 s timeout.
    expect(Date.now() - started).toBeLessThan(5000);
    await waitFor(() => peer.connections() >= 3, 'two redials');
    expect(log.warnings().some((l) => l.msg === 'peer link lost; redialling' && l.url === peer.url)).toBe(
      true,
    );
  });

  it('aborts a dial that does not complete in connectTimeoutMs, redials, and warns naming the url', async () => {
    // Accepts TCP connections and never answers the upgrade: a dial that hangs.
    const held: Socket[] = [];
    let accepted = 0;
    const server: Server = createServer((socket) => {
      accepted++;
      held.push(socket);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          for (const socket of held) socket.destroy();
          server.close(() => resolve());
        }),
    );
    const url = `ws://127.0.0.1:${(server.address() as { port: number }).port}`;
    const log = capturingLogger();
    links(log.logger).send(url, { hello: 1 });
    await waitFor(() => accepted >= 3, 'three dials');
    const warned = log.warnings().filter((l) => l.msg === 'peer unreachable');
    // Once per unreachableLogIntervalMs (10 s by default), not once per dial.
    expect(warned).toHaveLength(1);
    expect(warned[0]?.url).toBe(url);
  });

  it('warns with the dial error when nothing listens at the url', async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    const url = `ws://127.0.0.1:${(server.address() as { port: number }).port}`;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const log = capturingLogger();
    links(log.logger).send(url, { hello: 1 });
    const warning = await waitFor(
      () => log.warnings().find((l) => l.msg === 'peer unreachable'),
      'a warning',
    );
    expect(warning.url).toBe(url);
    expect(warning.err).toContain('ECONNREFUSED');
  });
});
