import { U32_MAX } from '@tmem/protocol';

/** Hands out request ids for one connection. */
export interface RequestIds {
  /** The next free id: a u32, never 0, never one `inUse` reports. */
  next(): number;
}

/**
 * Allocates u32 request ids in increasing order, wrapping after U32_MAX. 0 is skipped because nodes use it for
 * replies to frames whose id they could not read; ids still awaiting a reply are skipped so that a long-pending
 * request never shares an id with a new one after a wrap. At most as many ids are skipped as are in use.
 */
export function createRequestIds(inUse: (id: number) => boolean, first = 1): RequestIds {
  let last = first - 1;
  return {
    next() {
      do {
        last = last >= U32_MAX ? 1 : last + 1;
      } while (inUse(last));
      return last;
    },
  };
}
