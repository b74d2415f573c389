import { describe, expect, it } from 'vitest';
import { ErrorCode, TmemError } from '@tmem/protocol';
import { advertisedUrlProblem, checkAdvertisedUrl } from '../src/advertised-url.ts';

describe('advertisedUrlProblem', () => {
  it.each([
    ['a wildcard IPv4 host', { host: '0.0.0.0' }],
    ['a wildcard IPv6 host', { host: '::' }],
    ['a wildcard advertise URL', { host: '10.0.0.1', advertiseUrl: 'ws://0.0.0.0:7401' }],
    ['a wildcard IPv6 advertise URL', { host: '::', advertiseUrl: 'ws://[::]:7401' }],
  ])('refuses %s, naming --advertise-url', (_name, input) => {
    expect(advertisedUrlProblem(input)).toMatch(/--advertise-url/);
  });

  it('refuses a loopback address when a seed is on another host', () => {
    const problem = advertisedUrlProblem({ host: '127.0.0.1', join: ['ws://10.1.2.3:7401'] });
    expect(problem).toMatch(/--advertise-url/);
    expect(problem).toContain('ws://10.1.2.3:7401');
  });

  it.each([
    ['loopback, founding', { host: '127.0.0.1' }],
    [
      'loopback, joining loopback seeds',
      { host: '127.0.0.1', join: ['ws://127.0.0.1:7401', 'ws://localhost:1'] },
    ],
    ['an interface address, joining others', { host: '10.0.0.2', join: ['ws://10.0.0.1:7401'] }],
    ['a wildcard bind with a real advertise URL', { host: '0.0.0.0', advertiseUrl: 'ws://10.0.0.2:7401' }],
    ['an IPv6 interface address', { host: '::', advertiseUrl: 'ws://[fd00::2]:7401' }],
  ])('accepts %s', (_name, input) => {
    expect(advertisedUrlProblem(input)).toBeUndefined();
  });

  it.each([
    ['a TLS node joining a ws:// seed', { host: '127.0.0.1', tls: true, join: ['ws://127.0.0.1:7401'] }],
    ['a plain node joining a wss:// seed', { host: '127.0.0.1', join: ['wss://127.0.0.1:7401'] }],
    ['a TLS node advertising ws://', { host: '10.0.0.2', tls: true, advertiseUrl: 'ws://10.0.0.2:7401' }],
    ['a plain node advertising wss://', { host: '10.0.0.2', advertiseUrl: 'wss://10.0.0.2:7401' }],
  ])('refuses %s: a cluster is all-TLS or not', (_name, input) => {
    expect(advertisedUrlProblem(input)).toMatch(/must be a wss?:\/\/ URL/);
  });

  it('accepts a TLS node that advertises and joins wss:// URLs', () => {
    const input = {
      host: '0.0.0.0',
      tls: true,
      advertiseUrl: 'wss://10.0.0.2:7401',
      join: ['wss://10.0.0.1:7401'],
    };
    expect(advertisedUrlProblem(input)).toBeUndefined();
  });

  it('checkAdvertisedUrl throws BAD_ARGUMENT', () => {
    let error: unknown;
    try {
      checkAdvertisedUrl({ host: '0.0.0.0' });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(TmemError);
    expect((error as TmemError).code).toBe(ErrorCode.BadArgument);
  });
});
