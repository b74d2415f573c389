// Sizes on the command line: parsed with the units of size.ts, checked against the range each flag can use,
// and printed back the way people write them (`--help` says "16 MiB", not 16777216).
import { MAX_PAGE_SIZE } from '@tmem/protocol';
import { MAX_CAPACITY_BYTES } from './page-store.ts';
import { parseByteSize } from './size.ts';

/** A size flag's accepted range, in bytes. */
export interface SizeRange {
  min: number;
  max: number;
}

/** Smallest `--capacity`: one page of the largest size; a node that can hold nothing is a mistake. */
export const MIN_CAPACITY_BYTES = MAX_PAGE_SIZE;

/** `--capacity`: from one largest page up to what the page store's metadata can address. */
export const CAPACITY_RANGE: SizeRange = { min: MIN_CAPACITY_BYTES, max: MAX_CAPACITY_BYTES };

/**
 * `--max-frame-bytes`: a frame must carry at least one page of the largest size and its header; above 1 GiB a
 * single frame would stall a connection for seconds.
 */
export const FRAME_SIZE_RANGE: SizeRange = { min: 2 * MAX_PAGE_SIZE, max: 1024 ** 3 };

const BINARY_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'] as const;

/**
 * Bytes as a person writes them, in binary units: 67108864 -> "64 MiB", 1610612736 -> "1.5 GiB", 4096 ->
 * "4 KiB", 1000 -> "1000 B". At most two decimals, trailing zeros dropped.
 */
export function formatByteSize(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < BINARY_UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${Number(value.toFixed(2))} ${BINARY_UNITS[unit]}`;
}

/**
 * Parses a size flag and checks its range. Throws a RangeError whose message names the accepted forms or the
 * range (in human units), for commander to print as the flag's error.
 */
export function parseSizeIn(text: string, range: SizeRange): number {
  const bytes = parseByteSize(text);
  if (bytes < range.min || bytes > range.max) {
    throw new RangeError(
      `"${text}" is ${formatByteSize(bytes)}; use ${formatByteSize(range.min)} to ${formatByteSize(range.max)}`,
    );
  }
  return bytes;
}

/** What `tmem node --help` says about sizes, so MB and MiB are never guessed. */
export const SIZE_HELP = `
Sizes are bytes (4096) or a number with a unit, case-insensitive, fractions allowed (1.5GiB):
  KiB, MiB, GiB, TiB and K, M, G, T alone are powers of 1024 (256MiB = 268435456 bytes);
  KB, MB, GB, TB are powers of 1000, as SI says (256MB = 256000000 bytes).`;
