// crc-32 ships CRC-32C as a separate entry point without its own type declarations; it has the API of the
// main entry (types/index.d.ts).
declare module 'crc-32/crc32c.js' {
  /** CRC-32C (Castagnoli) of the bytes, as a signed 32-bit integer. */
  export function buf(data: Uint8Array, seed?: number): number;
}
