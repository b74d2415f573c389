import { EventEmitter } from 'node:events';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { watchLiveness, type LivenessSocket } from '../src/index.ts';

/** A socket that counts pings and terminations; the test answers pings by emitting 'pong'. */
function fakeSocket() {
  const events = new EventEmitter();
  const socket = {
    pings: 0,
    terminated: 0,
    ping() {
      socket.pings++;
    },
    terminate() {
      socket.terminated++;
    },
    on(event: 'pong', listener: () => void) {
      events.on(event, listener);
    },
    off(event: 'pong', listener: () => void) {
      events.off(event, listener);
    },
    pong() {
      events.emit('pong');
    },
    listeners: () => events.listenerCount('pong'),
  } satisfies LivenessSocket & Record<string, unknown>;
  return socket;
}

describe('watchLiveness (fake timers)', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('pings every interval and never terminates a socket that answers', () => {
    const socket = fakeSocket();
    const watcher = watchLiveness(socket, { pingIntervalMs: 500, pongTimeoutMs: 2000 });
    for (let i = 1; i <= 20; i++) {
      vi.advanceTimersByTime(500);
      expect(socket.pings).toBe(i);
      socket.pong();
    }
    expect(socket.terminated).toBe(0);
    watcher.stop();
  });

  it('terminates pongTimeoutMs after the first unanswered ping, and reports the silence', () => {
    const socket = fakeSocket();
    const onDead = vi.fn();
    watchLiveness(socket, { pingIntervalMs: 500, pongTimeoutMs: 2000, onDead });
    vi.advanceTimersByTime(500); // first ping, answered
    socket.pong();
    vi.advanceTimersByTime(500); // second ping at 1000 ms: never answered
    vi.advanceTimersByTime(1999);
    expect(socket.terminated).toBe(0);
    vi.advanceTimersByTime(1);
    expect(socket.terminated).toBe(1);
    // Silent since the pong at 500 ms, dead at 3000 ms.
    expect(onDead).toHaveBeenCalledExactlyOnceWith(2500);
  });

  it('a late pong within the deadline keeps the socket', () => {
    const socket = fakeSocket();
    watchLiveness(socket, { pingIntervalMs: 500, pongTimeoutMs: 2000 });
    vi.advanceTimersByTime(1900); // three pings unanswered
    socket.pong();
    vi.advanceTimersByTime(1000);
    socket.pong();
    vi.advanceTimersByTime(1000);
    expect(socket.terminated).toBe(0);
  });

  it('stops pinging after the kill and after stop(), and lets go of its pong listener', () => {
    const dead = fakeSocket();
    // Pings at 100, 200 and 300 ms; dead at 350 ms.
    watchLiveness(dead, { pingIntervalMs: 100, pongTimeoutMs: 250 });
    vi.advanceTimersByTime(10_000);
    expect(dead.terminated).toBe(1);
    expect(dead.pings).toBe(3);
    expect(dead.listeners()).toBe(0);

    const stopped = fakeSocket();
    const watcher = watchLiveness(stopped, { pingIntervalMs: 100, pongTimeoutMs: 300 });
    vi.advanceTimersByTime(150);
    watcher.stop();
    watcher.stop();
    vi.advanceTimersByTime(10_000);
    expect(stopped.pings).toBe(1);
    expect(stopped.terminated).toBe(0);
    expect(stopped.listeners()).toBe(0);
  });

  it('rejects durations that are not positive', () => {
    expect(() => watchLiveness(fakeSocket(), { pingIntervalMs: 0, pongTimeoutMs: 100 })).toThrow(RangeError);
    expect(() => watchLiveness(fakeSocket(), { pingIntervalMs: 100, pongTimeoutMs: NaN })).toThrow(
      RangeError,
    );
  });
});

describe('watchLiveness on a real ws socket', () => {
  it('closes a connection whose other end stopped answering pings', async () => {
    // autoPong off: the server's socket stays open but never answers, as a host behind a DROP rule would.
    const server = new WebSocketServer({ port: 0, host: '127.0.0.1', autoPong: false });
    await new Promise<void>((resolve) => server.once('listening', () => resolve()));
    const { port } = server.address() as { port: number };
    const socket = new WebSocket(`ws://127.0.0.1:${port}`);
    await new Promise<void>((resolve) => socket.once('open', () => resolve()));
    const onDead = vi.fn();
    const started = Date.now();
    watchLiveness(socket, { pingIntervalMs: 20, pongTimeoutMs: 100, onDead });
    await new Promise<void>((resolve) => socket.once('close', () => resolve()));
    expect(onDead).toHaveBeenCalledOnce();
    expect(Date.now() - started).toBeGreaterThanOrEqual(100);
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
});
