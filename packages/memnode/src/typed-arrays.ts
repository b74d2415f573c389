// The growing the page store's records and the dedup index's entries share: parallel typed arrays.

/** The typed arrays the stores keep their records in. */
export type RecordArray = Int32Array | Uint32Array | Uint16Array | Uint8Array | Float64Array;

/** A copy of `a` with room for `length` elements. */
export function grown<T extends RecordArray>(a: T, length: number): T {
  const b = new (a.constructor as new (n: number) => T)(length);
  b.set(a);
  return b;
}
