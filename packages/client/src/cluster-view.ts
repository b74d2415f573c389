// The client's copy of the cluster state: the one place that decides which state is current and which members
// own a page.
import {
  memberKey,
  partitionOf,
  partitionTableFor,
  tableForPool,
  type ClusterState,
  type MemberInfo,
  type MemberRef,
  type PartitionTable,
  type PoolInfo,
  type PoolKind,
} from '@tmem/protocol';
import { createEmitter, type Emitter } from './emitter.ts';

/** One member of the cluster as the client sees it. */
export interface ClusterMember {
  /** Stable name of the node. */
  readonly id: string;
  /** Where the node listens (ws:// or wss://). */
  readonly url: string;
  /** Changes on every start of the node process: a new incarnation is a new member with an empty store. */
  readonly incarnation: number;
  /** Bytes of page data the node offers. */
  readonly capacityBytes: number;
}

/** The client's view of the cluster: the state it routes by. Immutable; a change makes a new view. */
export interface ClusterView {
  /**
   * Version of the cluster state this view comes from (0 before any state is known). It only grows, except
   * when every member the client knew became unreachable and a seed reported another cluster state.
   */
  readonly version: number;
  /** Members, sorted by id. */
  readonly members: readonly ClusterMember[];
  /** Id of the coordinator, as far as the node that reported the state knew; null when it knew none. */
  readonly leaderId: string | null;
  /**
   * The cluster this view is of (drawn by its founding node); a new id means the whole cluster was restarted
   * and the pools of the old one are gone. Undefined before any state, or from nodes that do not say.
   */
  readonly clusterId?: string;
}

/** Events of the client. */
export interface ClientEvents {
  /** The view changed: a newer cluster state was learned. Emitted once per new version. */
  view: (view: ClusterView) => void;
}

/** How a state is offered. */
export interface OfferOptions {
  /**
   * Adopt `state` even when it is not newer, unless it is the current one: used once every member of the
   * current view proved unreachable, when the seeds may be a restarted cluster whose versions began again.
   */
  reset?: boolean;
}

/** The current cluster state, with the partition table derived from it once per version. */
export interface ViewTracker {
  /** The current state; undefined until the first one is offered. */
  readonly state: ClusterState | undefined;
  /** Version of the current state; 0 before the first. */
  readonly version: number;
  /** The current view (the same object until the state changes). */
  view(): ClusterView;
  /**
   * Adopts `state` when its version is higher than the current one, when it is of another cluster (a
   * whole-cluster restart: versions began again), or, with `reset`, when it is another state; emits 'view'. A state at the current version only updates the leader. Returns true if adopted.
   */
  offer(state: ClusterState, leaderId: string | null, options?: OfferOptions): boolean;
  /**
   * The members that own the page (pool, oid, index) of a pool of `kind` in the current state, primary first:
   * for an ephemeral pool its one owner in the table of every member; for a persistent pool its `replication`
   * owners among the ready members (see tableForPool). The array is shared by every op of the partition until
   * the state changes: read it, do not change it. Empty when no member owns it. Undefined when the
   * persistent pool is newer than the current state (its replication is not known yet): refresh and ask again.
   * `createdVersion` is the version of the state that created the pool (from the createPool reply): pool ids
   * are unordered, so only it tells a pool newer than the view from one that is gone.
   */
  ownersFor(
    pool: number,
    kind: PoolKind,
    oid: Uint8Array,
    index: number,
    createdVersion?: number,
  ): readonly MemberInfo[] | undefined;
  /** The member with this id in the current state. */
  memberById(id: string): MemberInfo | undefined;
  /** True when this incarnation of the member is in the current state. */
  isMember(ref: MemberRef): boolean;
  /** The coordinator, when it is a member of the current state. */
  leader(): MemberInfo | undefined;
  on<E extends keyof ClientEvents>(event: E, listener: ClientEvents[E]): void;
  off<E extends keyof ClientEvents>(event: E, listener: ClientEvents[E]): void;
}

const EMPTY_VIEW: ClusterView = Object.freeze({ version: 0, members: Object.freeze([]), leaderId: null });

interface Current {
  readonly state: ClusterState;
  readonly table: PartitionTable;
  readonly byKey: ReadonlyMap<string, MemberInfo>;
  readonly byId: ReadonlyMap<string, MemberInfo>;
  /** This client's pools in the state (a node shows a client its own pools only). */
  readonly pools: ReadonlyMap<number, PoolInfo>;
  leaderId: string | null;
  view: ClusterView | undefined;
  /**
   * The routing table of this state: per partition table (one per pool kind and replication), the owners of
   * each partition as members, primary first. Filled lazily, one partition at a time, and dropped with the
   * state: an op finds its owners with one array lookup after hashing its handle once.
   */
  readonly routes: Map<PartitionTable, Array<readonly MemberInfo[] | undefined>>;
}

/** True when `a` and `b` are the same committed state (same cluster, version, term and members). */
export function sameState(a: ClusterState, b: ClusterState): boolean {
  return (
    a.clusterId === b.clusterId &&
    a.version === b.version &&
    a.term === b.term &&
    a.members.length === b.members.length &&
    a.members.every((m, i) => memberKey(m) === memberKey(b.members[i] as MemberInfo))
  );
}

/**
 * The table a pool's pages are placed by in `current`. A persistent pool missing from the state is either newer
 * than it (the state predates `createdVersion`, the version that created the pool: undefined, the caller
 * refreshes) or gone: destroyed, or never this identity's. Then any member answers UNKNOWN_POOL, so the
 * ephemeral table serves to get that answer. Without a creation version (a node that predates it) the pool is
 * taken as gone: the member asked answers by its own state, STALE_STATE if it is newer, and the client
 * refreshes then.
 */
function tableFor(
  current: Current,
  pool: number,
  kind: PoolKind,
  createdVersion: number | undefined,
): PartitionTable | undefined {
  const info = current.pools.get(pool);
  if (info !== undefined) return tableForPool(current.state, info);
  if (kind === 'persistent' && createdVersion !== undefined && current.state.version < createdVersion) {
    return undefined;
  }
  return current.table;
}

/** Creates an empty tracker. Listener errors go to `onListenerError`. */
export function createViewTracker(onListenerError: (error: unknown) => void): ViewTracker {
  const events: Emitter<ClientEvents> = createEmitter<ClientEvents>(onListenerError);
  let current: Current | undefined;

  function adopt(state: ClusterState, leaderId: string | null): void {
    current = {
      state,
      // Ephemeral pages have one owner per partition, among every member (a filling one too).
      table: partitionTableFor(state, 1),
      byKey: new Map(state.members.map((m) => [memberKey(m), m])),
      byId: new Map(state.members.map((m) => [m.id, m])),
      pools: new Map(state.pools.map((p) => [p.id, p])),
      leaderId,
      view: undefined,
      routes: new Map(),
    };
  }

  function view(): ClusterView {
    if (current === undefined) return EMPTY_VIEW;
    current.view ??= Object.freeze({
      version: current.state.version,
      members: Object.freeze(
        current.state.members.map((m) =>
          Object.freeze({ id: m.id, url: m.url, incarnation: m.incarnation, capacityBytes: m.capacityBytes }),
        ),
      ),
      leaderId: current.leaderId,
      ...(current.state.clusterId === undefined ? {} : { clusterId: current.state.clusterId }),
    });
    return current.view;
  }

  return {
    get state() {
      return current?.state;
    },
    get version() {
      return current?.state.version ?? 0;
    },
    view,
    offer(state, leaderId, options = {}) {
      if (current !== undefined) {
        const newer = state.version > current.state.version;
        // Another cluster (restarted from nothing): its versions began again, so they say nothing against ours.
        const otherCluster =
          state.clusterId !== undefined &&
          current.state.clusterId !== undefined &&
          state.clusterId !== current.state.clusterId;
        const replaces =
          newer || otherCluster || (options.reset === true && !sameState(state, current.state));
        if (!replaces) {
          if (state.version === current.state.version && leaderId !== current.leaderId) {
            current.leaderId = leaderId;
            current.view = undefined;
          }
          return false;
        }
      }
      adopt(state, leaderId);
      events.emit('view', view());
      return true;
    },
    ownersFor(pool, kind, oid, index, createdVersion) {
      if (current === undefined) return undefined;
      const table = tableFor(current, pool, kind, createdVersion);
      if (table === undefined) return undefined;
      const partition = partitionOf(pool, oid, index, current.state.partitionCount);
      let route = current.routes.get(table);
      if (route === undefined) {
        route = new Array<readonly MemberInfo[] | undefined>(current.state.partitionCount);
        current.routes.set(table, route);
      }
      let owners = route[partition];
      if (owners === undefined) {
        const members: MemberInfo[] = [];
        for (const ref of table.owners(partition)) {
          const member = current.byKey.get(memberKey(ref));
          if (member !== undefined) members.push(member);
        }
        owners = Object.freeze(members);
        route[partition] = owners;
      }
      return owners;
    },
    memberById: (id) => current?.byId.get(id),
    isMember: (ref) => current?.byKey.has(memberKey(ref)) ?? false,
    leader() {
      const id = current?.leaderId;
      return id == null ? undefined : current?.byId.get(id);
    },
    on: (event, listener) => events.on(event, listener),
    off: (event, listener) => events.off(event, listener),
  };
}
