// Who shares each shared pool, as this node's latest accepted or committed state says: the node's ownership
// check for shared pools (request-handler.ts), kept apart from the page store because sharers change with every
// join and leave while a store's pool spec is fixed at creation. Each update also says who left, so the node can
// flush the objects each leaver put to last (the departure rule) when it applies the state.
import type { ClusterState } from '@tmem/protocol';

/** One identity that stopped sharing one pool (it left, or the pool went with its last sharer). */
export interface Departure {
  pool: number;
  identity: string;
}

/** The sharers of every shared pool of the node's current state. */
export interface Sharers {
  /** True when `identity` shares the shared pool `pool` now. O(1). */
  has(pool: number, identity: string): boolean;
  /** Takes the sharers `state` names, replacing the previous ones; returns who is no longer a sharer. */
  update(state: ClusterState): Departure[];
}

/** An empty table: nobody shares anything until the first state. */
export function createSharers(): Sharers {
  let byPool = new Map<number, ReadonlySet<string>>();
  return {
    has(pool, identity) {
      return byPool.get(pool)?.has(identity) === true;
    },
    update(state) {
      const next = new Map<number, ReadonlySet<string>>();
      for (const pool of state.pools) {
        if (pool.sharers !== undefined) next.set(pool.id, new Set(pool.sharers));
      }
      const departures: Departure[] = [];
      for (const [pool, before] of byPool) {
        const now = next.get(pool);
        for (const identity of before) if (now?.has(identity) !== true) departures.push({ pool, identity });
      }
      byPool = next;
      return departures;
    },
  };
}
