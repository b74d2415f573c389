// The state the parts of a node's replication share (writes, reads, peer answers, filling, hand-over), and the
// serving rule of persistent pages. The façade (`replication.ts`) creates it once and passes it to every part,
// as ioredis's cluster passes its connection pool to its subscriber and delay queue: one explicit object
// instead of one closure over everything. Fields that change (`self`, `completeness`, `clock`, counters) are
// read through the object every time, never copied into a part.
import {
  ErrorCode,
  TmemError,
  partitionOf,
  replicaTargets,
  sameMember,
  type ClusterState,
  type MemberRef,
  type PoolInfo,
} from '@tmem/protocol';
import type { Logger } from '../logger.ts';
import type { PageStore } from '../page-store.ts';
import type { Completeness } from './completeness.ts';
import type { ReplicaStore } from './replica-store.ts';
import type { ReplicaStreams } from './replica-streams.ts';
import type { ReplicationCluster } from './replication.ts';
import type { VersionClock } from './version-clock.ts';

/** The shared state of one node's replication. */
export interface ReplicationContext {
  readonly store: PageStore;
  readonly cluster: ReplicationCluster;
  readonly log: Logger;
  readonly replicas: ReplicaStore;
  readonly streams: ReplicaStreams;
  readonly replicationTimeoutMs: number;
  readonly peerTimeoutMs: number;
  /** Partition count of the last committed state. */
  partitionCount: number;
  /** This node's current incarnation. */
  self: MemberRef;
  /** Replaced on a new incarnation. */
  completeness: Completeness;
  /** Replaced when the partition count changes. */
  clock: VersionClock;
  /** Writes of persistent handles this node is running as primary, by handle key: gets wait for them. */
  readonly inFlight: Map<string, Promise<void>>;
  /** Handles whose copy here was dropped as corrupt and not yet replaced: a miss here says nothing. */
  readonly unrepaired: Set<string>;
  /** Peer requests waiting for this node to commit a state version. */
  readonly versionWaiters: Set<{ version: number; resolve(): void }>;
  /** Pages copied into this node by fills since it started. */
  copiedPages: number;
  /** Bumped whenever pages of owned partitions go (wipe, drop, new incarnation): copies under way restart. */
  copyEpoch: number;
  closed: boolean;
  /** The fault injection of the tests: spoils this node's copy of a matching page, keeping its checksum. */
  maybeCorrupt(pool: number, oid: Uint8Array, index: number): void;
  /** Waits (at most `timeoutMs`) until this node committed state `version`. */
  waitForVersion(version: number, timeoutMs: number): Promise<void>;
  /**
   * The serving check of a persistent page op: the lease, the pool, and this node being `role` of the page's
   * partition in both the committed and the accepted state. Throws UNKNOWN_POOL or NOT_SERVING.
   */
  serving(
    poolId: number,
    oid: Uint8Array,
    index: number,
    stateVersion: number | undefined,
    role: 'primary' | 'owner',
  ): Serving;
}

/** What a passed serving check found. */
export interface Serving {
  state: ClusterState;
  pool: PoolInfo;
  partition: number;
}

/** What `createReplicationContext` needs; the rest of the context starts empty. */
export interface ReplicationContextInit {
  store: PageStore;
  cluster: ReplicationCluster;
  log: Logger;
  replicas: ReplicaStore;
  streams: ReplicaStreams;
  replicationTimeoutMs: number;
  peerTimeoutMs: number;
  partitionCount: number;
  self: MemberRef;
  completeness: Completeness;
  clock: VersionClock;
  testCorruptOidPrefix: string | undefined;
}

export const now = (): number => performance.now();
export const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The key of one handle in the per-handle maps. */
export function handleKey(pool: number, oid: Uint8Array, index: number): string {
  return `${pool}:${index}:${Buffer.from(oid.buffer, oid.byteOffset, oid.length).toString('latin1')}`;
}

export function notServing(message: string, version: number): TmemError {
  return new TmemError(ErrorCode.NotServing, message, { details: { version } });
}

export function poolInfo(state: ClusterState | null, poolId: number): PoolInfo | undefined {
  return state?.pools.find((p) => p.id === poolId);
}

/** Every other member a write of `partition` must reach. */
export function otherTargets(
  ctx: ReplicationContext,
  state: ClusterState,
  pool: PoolInfo,
  partition: number,
): MemberRef[] {
  return replicaTargets(state, pool.replication, partition).filter((t) => !sameMember(t, ctx.self));
}

/** Creates the shared state. */
export function createReplicationContext(init: ReplicationContextInit): ReplicationContext {
  const { store, cluster, testCorruptOidPrefix, ...rest } = init;
  const corruptPrefix =
    testCorruptOidPrefix === undefined ? undefined : Buffer.from(testCorruptOidPrefix, 'latin1');

  const ctx: ReplicationContext = {
    ...rest,
    store,
    cluster,
    inFlight: new Map(),
    unrepaired: new Set(),
    versionWaiters: new Set(),
    copiedPages: 0,
    copyEpoch: 0,
    closed: false,

    maybeCorrupt(pool, oid, index) {
      if (corruptPrefix === undefined || oid.length < corruptPrefix.length) return;
      if (!Buffer.from(oid.buffer, oid.byteOffset, corruptPrefix.length).equals(corruptPrefix)) return;
      const stored = store.peek(pool, oid, index);
      if (stored === null) return;
      const spoiled = stored.page;
      spoiled[spoiled.length >>> 1] = ((spoiled[spoiled.length >>> 1] as number) ^ 0x5a) & 0xff;
      store.put(pool, oid, index, spoiled, {
        version: stored.version,
        ...(stored.sum === undefined ? {} : { sum: stored.sum }),
      });
    },

    async waitForVersion(version, timeoutMs) {
      if ((cluster.committed()?.version ?? 0) >= version) return;
      await new Promise<void>((resolve) => {
        const waiter = { version, resolve: () => (clearTimeout(timer), resolve()) };
        const timer = setTimeout(() => {
          ctx.versionWaiters.delete(waiter);
          resolve();
        }, timeoutMs);
        ctx.versionWaiters.add(waiter);
      });
    },

    // The node's one serving rule (serving-view.ts): the lease, then this node being `role` of the partition in
    // both the committed and the accepted state, from the masks the view computed once per pair of states.
    serving(poolId, oid, index, stateVersion, role) {
      cluster.checkLease(stateVersion);
      const view = cluster.servingView();
      const state = view.committed as ClusterState;
      const pool = view.pools.get(poolId);
      if (pool === undefined || pool.kind !== 'persistent') {
        throw new TmemError(ErrorCode.UnknownPool, `pool ${poolId} does not exist`, {
          details: { pool: poolId },
        });
      }
      const partition = partitionOf(poolId, oid, index, state.partitionCount);
      if (view.persistentMask(pool.replication, role)[partition] !== 1) {
        throw notServing(`node is not the ${role} of partition ${partition} now`, state.version);
      }
      return { state, pool, partition };
    },
  };
  return ctx;
}
