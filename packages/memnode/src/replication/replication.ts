// Persistent pools across the cluster (docs/architecture.md, "Replication"): the primary of a partition
// stamps every write with a version, stores it and forwards it to every other owner (ready and filling), and
// answers `accepted` only when they all hold it; gets are served by the primary, or by another ready owner when
// the client cannot reach the primary. Owners that gained a partition copy it from a complete owner in the
// background (newest version wins, flushes are tombstones), a joiner becomes `ready` once it has copied all
// its partitions, and a leaving node waits until its successors hold complete copies. A partition with no
// complete copy left anywhere is lost: its gets answer DATA_LOST, never a miss.
//
// This file is the façade: it owns the shared state (`replication-context.ts`) and hands it to each part:
// the primary's writes (`primary-writes.ts`), the reads and repairs (`reads.ts`), the answers to peers
// (`peer-answers.ts`), the copying of gained partitions (`filling.ts`) and the hand-over (`hand-over.ts`).
// Committed states, new incarnations and closing are handled here, since they touch every part.
import type {
  ClientFrame,
  ClusterState,
  Fetch,
  Fetched,
  FlushObject,
  FlushPage,
  Get,
  NodeFrame,
  PageReply,
  PeerGet,
  PeerGot,
  Put,
  Replicate,
  Replicated,
} from '@tmem/protocol';
import type { Logger } from '../logger.ts';
import type { ServingView } from '../serving-view.ts';
import type { PageStore } from '../page-store.ts';
import { createCompleteness } from './completeness.ts';
import { createFilling } from './filling.ts';
import { handOver } from './hand-over.ts';
import { createPeerAnswers } from './peer-answers.ts';
import { createPrimaryWrites } from './primary-writes.ts';
import { createReads } from './reads.ts';
import { createReplicaStore } from './replica-store.ts';
import { createReplicaStreams } from './replica-streams.ts';
import { createReplicationContext, poolInfo } from './replication-context.ts';
import { createVersionClock } from './version-clock.ts';

/** What replication needs of the node's cluster membership. */
export interface ReplicationCluster {
  readonly nodeId: string;
  incarnation(): number;
  committed(): ClusterState | null;
  accepted(): ClusterState | null;
  /**
   * Throws STALE_STATE unless `stateVersion` (when given) is the committed one, NOT_SERVING unless this node is
   * a member holding a lease.
   */
  checkLease(stateVersion: number | undefined): void;
  /**
   * The node's one serving rule's view of its current states (`serving-view.ts`): the pools by id and the
   * partitions this node serves persistent pools of, as primary or owner.
   */
  servingView(): ServingView;
  /** A request to another member, by id. */
  call<K extends NodeFrame['t']>(
    memberId: string,
    build: (id: number) => ClientFrame,
    expect: K,
    timeoutMs: number,
  ): Promise<Extract<NodeFrame, { t: K }>>;
  /** Gets this member's phase committed; with `ifVersion`, only onto that state version. */
  setPhase(phase: 'ready' | 'leaving', ifVersion?: number): Promise<void>;
}

/** Options of the replication of one node. */
export interface ReplicationOptions {
  store: PageStore;
  cluster: ReplicationCluster;
  logger: Logger;
  /**
   * How long a primary waits for the other owners to hold a write before it refuses the put (and flushes the
   * page everywhere). Longer than failure detection, so a dead owner is replaced rather than refusing.
   * @default 3000
   */
  replicationTimeoutMs?: number;
  /** How long tombstones are kept. @default 60000 */
  tombstoneTtlMs?: number;
  /** Time to wait for an answer from another node. @default 2000 */
  peerTimeoutMs?: number;
  /** Fault injection for tests (see MemnodeOptions.testCorruptOidPrefix). */
  testCorruptOidPrefix?: string;
}

/** Copy progress, for statistics and `tmem status`. */
export interface ReplicationDescription {
  /** Persistent partitions this node owns and is still copying. */
  fillingPartitions: number;
  /** Persistent partitions whose every copy was lost. */
  lostPartitions: number;
  /** Pages copied into this node by fills since it started. */
  copiedPages: number;
  /** Replicated entries waiting to reach other owners. */
  replicationBacklog: number;
}

/** The persistent-pool replication of one node. */
export interface Replication {
  /** True when `pool` is a persistent pool of the committed state. */
  isPersistent(pool: number): boolean;
  put(op: Put, stateVersion: number | undefined): Promise<PageReply>;
  get(op: Get, stateVersion: number | undefined): Promise<PageReply>;
  flushPage(op: FlushPage, stateVersion: number | undefined): Promise<PageReply>;
  flushObject(op: FlushObject, stateVersion: number | undefined): Promise<PageReply>;
  /** Answers a peer's Replicate frame. */
  onReplicate(frame: Replicate): Promise<Replicated>;
  /** Answers a peer's Fetch frame; `requester` tells the copy sessions of different peers apart. */
  onFetch(frame: Fetch, requester: string): Promise<Fetched>;
  /** Answers a peer's PeerGet frame. */
  onPeerGet(frame: PeerGet): Promise<PeerGot>;
  /** A newly committed state; `previous` null when the states before are unknown or the store was wiped. */
  committed(previous: ClusterState | null, state: ClusterState): void;
  /** The node became a new incarnation with an empty store. */
  reset(): void;
  /** Before a graceful leave: become `leaving` and wait until the other owners hold complete copies. */
  handOver(deadline: number): Promise<void>;
  describe(): ReplicationDescription;
  close(): void;
}

/** Creates the replication of one node. */
export function createReplication(options: ReplicationOptions): Replication {
  const { store, cluster } = options;
  const peerTimeoutMs = options.peerTimeoutMs ?? 2000;
  const partitionCount = cluster.committed()?.partitionCount ?? 1024;
  const self = { id: cluster.nodeId, incarnation: cluster.incarnation() };
  const ctx = createReplicationContext({
    store,
    cluster,
    log: options.logger.child({ component: 'replication' }),
    replicas: createReplicaStore({
      store,
      tombstoneTtlMs: options.tombstoneTtlMs ?? 60_000,
      partitionCount: () => ctx.partitionCount,
    }),
    streams: createReplicaStreams({
      logger: options.logger,
      transport: {
        async send(target, entries) {
          const state = cluster.committed();
          const reply = await cluster.call(
            target,
            (id) => ({ t: 'replicate', id, sv: state?.version ?? 0, entries }),
            'replicated',
            peerTimeoutMs,
          );
          return reply.results;
        },
        isMember: (target) => cluster.committed()?.members.some((m) => m.id === target) ?? false,
      },
    }),
    replicationTimeoutMs: options.replicationTimeoutMs ?? 3000,
    peerTimeoutMs,
    partitionCount,
    self,
    completeness: createCompleteness(self),
    clock: createVersionClock(partitionCount),
    testCorruptOidPrefix: options.testCorruptOidPrefix,
  });
  const writes = createPrimaryWrites(ctx);
  const reads = createReads(ctx);
  const peers = createPeerAnswers(ctx, reads);
  const filling = createFilling(ctx);
  /** Pools of the states seen, so the tombstones of destroyed ones can be forgotten. */
  const poolsSeen = new Set<number>();
  const sweeper = setInterval(() => {
    ctx.replicas.sweep();
    peers.sweep();
  }, 5000);
  sweeper.unref();

  return {
    isPersistent(pool) {
      return poolInfo(cluster.committed(), pool)?.kind === 'persistent';
    },
    put: (op, stateVersion) => writes.put(op, stateVersion),
    get: (op, stateVersion) => reads.get(op, stateVersion),
    flushPage: (op, stateVersion) => writes.flushPage(op, stateVersion),
    flushObject: (op, stateVersion) => writes.flushObject(op, stateVersion),
    onReplicate: (frame) => peers.onReplicate(frame),
    onFetch: (frame, requester) => peers.onFetch(frame, requester),
    onPeerGet: (frame) => peers.onPeerGet(frame),
    committed(previous, state) {
      if (state.partitionCount !== ctx.partitionCount) {
        ctx.partitionCount = state.partitionCount;
        ctx.clock = createVersionClock(ctx.partitionCount);
      }
      if (previous === null) {
        ctx.completeness.wipe();
        ctx.copyEpoch++;
      }
      if (previous !== null && state.version !== previous.version + 1) {
        ctx.log.warn(
          { from: previous.version, to: state.version },
          'a committed state went by unseen; copying every persistent partition again',
        );
      }
      const transition = ctx.completeness.applyState(previous, state);
      if (transition.dropped.size > 0) ctx.copyEpoch++;
      for (const [pool, partitions] of transition.dropped) {
        const gone = new Set(partitions);
        store.removePages((spec, hash) => spec.id === pool && gone.has(hash % ctx.partitionCount));
      }
      const live = new Set(state.pools.map((p) => p.id));
      for (const id of poolsSeen) {
        if (live.has(id)) continue;
        ctx.replicas.dropPool(id);
        poolsSeen.delete(id);
      }
      for (const id of live) poolsSeen.add(id);
      for (const waiter of ctx.versionWaiters) {
        if (state.version >= waiter.version) {
          ctx.versionWaiters.delete(waiter);
          waiter.resolve();
        }
      }
      if (ctx.completeness.counts().filling > 0) filling.start();
      else filling.maybeReady();
    },
    reset() {
      ctx.self = { id: cluster.nodeId, incarnation: cluster.incarnation() };
      ctx.completeness = createCompleteness(ctx.self);
      ctx.copyEpoch++;
      peers.clearSessions();
    },
    handOver: (deadline) => handOver(ctx, deadline),
    describe() {
      const counts = ctx.completeness.counts();
      return {
        fillingPartitions: counts.filling,
        lostPartitions: counts.lost,
        copiedPages: ctx.copiedPages,
        replicationBacklog: ctx.streams.backlog,
      };
    },
    close() {
      ctx.closed = true;
      clearInterval(sweeper);
      ctx.streams.close();
      for (const waiter of ctx.versionWaiters) waiter.resolve();
      ctx.versionWaiters.clear();
    },
  };
}
