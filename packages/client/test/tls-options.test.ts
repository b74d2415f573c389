import { describe, expect, it } from 'vitest';
import { ErrorCode, TmemError } from '@tmem/protocol';
import { resolveTlsOptions } from '../src/tls-options.ts';
import { resolveOptions } from '../src/options.ts';

const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

describe('resolveTlsOptions', () => {
  it('verifies certificates by default, against the bundled CAs', () => {
    expect(resolveTlsOptions(undefined)).toEqual({ ca: undefined, rejectUnauthorized: true });
    expect(resolveTlsOptions({})).toEqual({ ca: undefined, rejectUnauthorized: true });
    expect(resolveOptions({ seeds: ['wss://127.0.0.1:1'] }).tls.rejectUnauthorized).toBe(true);
  });

  it('takes a CA as text, a Buffer, a Uint8Array or an array of them', () => {
    expect(resolveTlsOptions({ ca: PEM }).ca).toBe(PEM);
    const bytes = new TextEncoder().encode(PEM);
    const fromBytes = resolveTlsOptions({ ca: bytes }).ca;
    expect(Buffer.isBuffer(fromBytes)).toBe(true);
    expect((fromBytes as Buffer).toString()).toBe(PEM);
    expect(resolveTlsOptions({ ca: [PEM, Buffer.from(PEM)] }).ca).toHaveLength(2);
  });

  it('turns verification off only when told to', () => {
    expect(resolveTlsOptions({ rejectUnauthorized: false }).rejectUnauthorized).toBe(false);
  });

  it.each<[string, unknown, string]>([
    ['a tls option that is no object', 'yes', 'tls'],
    [
      'an unknown key (a misspelt rejectUnauthorized)',
      { rejectUnauthorised: false },
      'tls.rejectUnauthorised',
    ],
    ['a rejectUnauthorized that is no boolean', { rejectUnauthorized: 'false' }, 'tls.rejectUnauthorized'],
    ['an empty CA', { ca: '' }, 'tls.ca'],
    ['an empty CA array', { ca: [] }, 'tls.ca'],
    ['a CA that is a number', { ca: 1 }, 'tls.ca'],
  ])('refuses %s with BAD_ARGUMENT naming it', (_name, tls, option) => {
    let thrown: unknown;
    try {
      resolveTlsOptions(tls);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(TmemError);
    expect(thrown).toMatchObject({ code: ErrorCode.BadArgument, details: { option } });
  });
});
