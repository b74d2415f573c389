const UNITS: Record<string, number> = {
  b: 1,
  k: 1024,
  kb: 1000,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1000 ** 4,
  tib: 1024 ** 4,
};

/**
 * Parses a byte size such as `256MiB`, `1.5GiB`, `64k` or `4096`. Binary units (KiB, MiB, GiB, TiB and the
 * bare letters K, M, G, T) are powers of 1024; KB, MB, GB, TB are powers of 1000, as SI says.
 * Returns a whole number of bytes, or throws a RangeError that names the accepted forms.
 */
export function parseByteSize(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = match?.[2]?.toLowerCase() ?? '';
  const multiplier = unit === '' ? 1 : UNITS[unit];
  if (!match?.[1] || multiplier === undefined) {
    throw new RangeError(`cannot read "${text}" as a size; write e.g. 4096, 64KiB, 256MiB or 2GiB`);
  }
  const bytes = Math.floor(Number(match[1]) * multiplier);
  if (!Number.isSafeInteger(bytes)) throw new RangeError(`size "${text}" is too large`);
  return bytes;
}
