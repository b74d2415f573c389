import { describe, expect, it } from 'vitest';
import { ErrorCode, MAX_BATCH_OPS, TmemError } from '@tmem/protocol';
import { resolveOptions, type ConnectOptions } from '../src/options.ts';

const seeds = ['ws://127.0.0.1:1'];

describe('resolveOptions', () => {
  it('fills in the documented defaults', () => {
    const options = resolveOptions({ seeds });
    expect(options).toMatchObject({
      seeds,
      timeoutMs: 5000,
      connectTimeoutMs: 5000,
      pingIntervalMs: 1000,
      pongTimeoutMs: 3000,
      maxBatchOps: 256,
      maxBatchBytes: 1024 * 1024,
      maxFramesInFlight: 16,
      retries: 2,
      stateRefreshMs: 2000,
    });
    expect(options.identity).toMatch(/^client-[0-9a-f-]{36}$/);
    expect(options.localAddress).toBeUndefined();
    expect(resolveOptions({ seeds }).identity).not.toBe(options.identity);
  });

  it('draws a fresh session per client, keeps a given one, and refuses one that is not 32 hex digits', () => {
    const drawn = resolveOptions({ seeds }).session;
    expect(drawn).toMatch(/^[0-9a-f]{32}$/);
    expect(resolveOptions({ seeds }).session).not.toBe(drawn);
    expect(resolveOptions({ seeds, session: drawn }).session).toBe(drawn);
    for (const session of ['', 'A'.repeat(32), 'a'.repeat(31), 42]) {
      let thrown: unknown;
      try {
        resolveOptions({ seeds, session } as ConnectOptions);
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toMatchObject({ code: ErrorCode.BadArgument, details: { option: 'session' } });
    }
  });

  it('takes an IPv4 or IPv6 localAddress as it is', () => {
    expect(resolveOptions({ seeds, localAddress: '127.0.0.2' }).localAddress).toBe('127.0.0.2');
    expect(resolveOptions({ seeds, localAddress: '::1' }).localAddress).toBe('::1');
  });

  it.each<[string, Partial<ConnectOptions>]>([
    ['no seeds', { seeds: [] }],
    ['a seed that is not a ws URL', { seeds: ['http://127.0.0.1:1'] }],
    ['a seed that is not a URL', { seeds: ['localhost'] }],
    ['an empty identity', { identity: '' }],
    ['an identity too long', { identity: 'x'.repeat(129) }],
    ['a zero timeout', { timeoutMs: 0 }],
    ['a fractional connect timeout', { connectTimeoutMs: 1.5 }],
    ['a zero ping interval', { pingIntervalMs: 0 }],
    ['a fractional pong timeout', { pongTimeoutMs: 2.5 }],
    ['maxBatchOps 0', { maxBatchOps: 0 }],
    ['maxBatchOps over the protocol limit', { maxBatchOps: MAX_BATCH_OPS + 1 }],
    ['maxBatchBytes 0', { maxBatchBytes: 0 }],
    ['maxFramesInFlight 0', { maxFramesInFlight: 0 }],
    ['negative retries', { retries: -1 }],
    ['a zero state refresh period', { stateRefreshMs: 0 }],
    ['a localAddress that is a host name', { localAddress: 'localhost' }],
    ['an empty localAddress', { localAddress: '' }],
    ['a localAddress that is no IP address', { localAddress: '127.0.0.256' }],
    ['a localAddress that is not a string', { localAddress: 2130706434 as unknown as string }],
  ])('rejects %s with BAD_ARGUMENT', (_name, bad) => {
    let thrown: unknown;
    try {
      resolveOptions({ seeds, ...bad });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(TmemError);
    expect(thrown).toMatchObject({ code: ErrorCode.BadArgument });
  });
});
