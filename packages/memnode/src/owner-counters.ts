// Per-identity counters of the page store (issue 9, finding 9: stats must not show one identity another's use).
//
// Every counter of StoreStats but the capacity, kept per owner identity beside the node-global ones. The hot
// path does no lookup: a pool record holds a reference to its owner's counters, shared by all pools of that
// owner, and each op increments it next to the global counter. So, at every moment, the sum over owners of
// each counter equals the global one (the page-store model test checks it).
//
// An owner's counters live while it has at least one pool on the node and are dropped with its last pool: the
// map stays bounded by the owners holding pools, whatever identities come and go. An identity that creates a
// pool again starts from zero, like a node restart.

import { zeroStoreCounters } from '@tmem/protocol';
import type { StoreStats } from './page-store.ts';

/** The page-store counters of one owner identity: StoreStats without the node's capacity. */
export type OwnerCounters = Omit<StoreStats, 'capacityBytes'>;

/** All counters zero: what an owner without pools reports. */
export function zeroOwnerCounters(): OwnerCounters {
  // The store's own zero counters, less the capacity: one list of counters to keep, in the protocol.
  const counters: Partial<StoreStats> = zeroStoreCounters();
  delete counters.capacityBytes;
  return counters as OwnerCounters;
}

/** The counters of every owner that has pools; the page store holds one. */
export interface OwnerCounterTable {
  /** The owner's counters, created on its first pool, with `pools` counted up: keep it in the pool record. */
  attachPool(owner: string): OwnerCounters;
  /** Counts one of the owner's pools down (after its pages were removed); drops the owner with its last pool. */
  detachPool(owner: string): void;
  /** A copy of the owner's counters; all zero for an owner without pools. O(1). */
  snapshot(owner: string): OwnerCounters;
  /** The owners that have pools now. */
  owners(): string[];
}

/** An empty table. */
export function createOwnerCounterTable(): OwnerCounterTable {
  const byOwner = new Map<string, OwnerCounters>();
  return {
    attachPool(owner) {
      let counters = byOwner.get(owner);
      if (counters === undefined) {
        counters = zeroOwnerCounters();
        byOwner.set(owner, counters);
      }
      counters.pools++;
      return counters;
    },
    detachPool(owner) {
      const counters = byOwner.get(owner);
      if (counters === undefined) return;
      counters.pools--;
      if (counters.pools === 0) byOwner.delete(owner);
    },
    snapshot(owner) {
      const counters = byOwner.get(owner);
      return counters === undefined ? zeroOwnerCounters() : { ...counters };
    },
    owners() {
      return [...byOwner.keys()];
    },
  };
}
