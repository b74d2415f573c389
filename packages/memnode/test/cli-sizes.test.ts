import { describe, expect, it } from 'vitest';
import { CAPACITY_RANGE, formatByteSize, parseSizeIn } from '../src/cli-sizes.ts';
import { formatDuration, parseDuration } from '../src/cli-durations.ts';

describe('formatByteSize', () => {
  it.each([
    [0, '0 B'],
    [1000, '1000 B'],
    [4096, '4 KiB'],
    [16 * 1024 ** 2, '16 MiB'],
    [1.5 * 1024 ** 3, '1.5 GiB'],
    [1_000_000, '976.56 KiB'],
  ])('%i bytes -> %s', (bytes, text) => expect(formatByteSize(bytes)).toBe(text));
});

describe('parseSizeIn', () => {
  it('accepts SI and binary units as documented', () => {
    expect(parseSizeIn('256MB', CAPACITY_RANGE)).toBe(256_000_000);
    expect(parseSizeIn('256MiB', CAPACITY_RANGE)).toBe(256 * 1024 ** 2);
    expect(parseSizeIn('256m', CAPACITY_RANGE)).toBe(256 * 1024 ** 2);
    expect(parseSizeIn('64KiB', CAPACITY_RANGE)).toBe(65_536);
  });

  it('refuses sizes out of range or not sizes, with RangeError', () => {
    for (const text of ['0', '1KiB', '10TiB', 'lots', '1,5MiB', '']) {
      expect(() => parseSizeIn(text, CAPACITY_RANGE), text).toThrow(RangeError);
    }
  });
});

describe('parseDuration', () => {
  it('reads ms, s and m, a bare number as seconds', () => {
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('1.5s')).toBe(1500);
    expect(parseDuration('2m')).toBe(120_000);
    expect(parseDuration('60')).toBe(60_000);
    expect(formatDuration(60_000)).toBe('60 s');
    expect(formatDuration(250)).toBe('250 ms');
  });

  it('refuses zero and nonsense', () => {
    for (const text of ['0', '0ms', 'soon', '-1s', '1h', ''])
      expect(() => parseDuration(text), text).toThrow(RangeError);
  });
});
