// Partition -> owners, derived deterministically from the members of a state with a ketama hash ring.
//
// Why explicit virtual-node counts instead of hashring's `weight`: hashring turns weights into point counts
// relative to the TOTAL weight and the number of servers (floor(w / total * 40 * n)), so adding one member
// of unusual capacity changes every other member's point count and moves partitions between members that
// did not change. Giving each member a vnode count that depends only on its own capacity keeps the ring
// consistent: adding a member only adds points (partitions move only TO it), removing one only removes its
// points (only ITS partitions move), and shares stay proportional to capacity.
import HashRing from 'hashring';
import type { ClusterState, MemberInfo, PoolInfo } from './cluster-state.ts';

/** A member as the partition table names it: a new incarnation is a new owner identity. */
export interface MemberRef {
  readonly id: string;
  readonly incarnation: number;
}

/** Owners of every partition of one state. Immutable; compute once per state version. */
export interface PartitionTable {
  /** Version of the state it was computed from (absent when computed from a bare member list). */
  readonly version?: number;
  readonly partitionCount: number;
  /**
   * Owners per partition: min(replicas asked for, members). Fewer than asked when members are short; persistent
   * puts check hasAllReplicas and are refused then, so a short table never accepts a page with fewer copies.
   */
  readonly replicas: number;
  /** Distinct owners of `partition`, primary first (ring order, so survivors keep their order). */
  readonly owners: (partition: number) => readonly MemberRef[];
  /** The first owner of `partition`, or undefined when there are no members. */
  readonly primary: (partition: number) => MemberRef | undefined;
}

const MIB = 1024 * 1024;
/** Capacity one virtual node stands for. */
export const MIB_PER_VNODE = 2;
/** Fewest virtual nodes a member gets, so tiny nodes still spread over the ring. */
export const MIN_VNODES = 64;
/** Most virtual nodes a member gets (16 GiB at 2 MiB each), bounding the ring build time (~100 ms for three such members). */
export const MAX_VNODES = 8192;

/**
 * Virtual nodes (each = 4 ring points) for a member of `capacityBytes`: one per MIB_PER_VNODE MiB, clamped to
 * [MIN_VNODES, MAX_VNODES]. Depends on this member alone, which is what keeps the ring consistent.
 */
export function vnodesForCapacity(capacityBytes: number): number {
  const mib = Math.max(1, Math.round(capacityBytes / MIB));
  return Math.min(MAX_VNODES, Math.max(MIN_VNODES, Math.ceil(mib / MIB_PER_VNODE)));
}

/** The ring key of a member: id + ':' + incarnation. */
export function memberKey(ref: MemberRef): string {
  return `${ref.id}:${ref.incarnation}`;
}

/** True when both refer to the same incarnation of the same member. */
export function sameMember(a: MemberRef | undefined, b: MemberRef | undefined): boolean {
  return a !== undefined && b !== undefined && a.id === b.id && a.incarnation === b.incarnation;
}

type RingMember = Pick<MemberInfo, 'id' | 'incarnation' | 'capacityBytes'>;

/**
 * Computes the owners of partitions 0..partitionCount-1: `range('p' + partition, replicas)` on a ketama ring
 * whose points per member are vnodesForCapacity(capacity). Deterministic in (members, counts) only.
 */
export function computePartitionTable(
  members: readonly RingMember[],
  partitionCount: number,
  replicas: number,
): PartitionTable {
  const want = Math.max(0, Math.min(Math.floor(replicas), members.length));
  const refs = new Map<string, MemberRef>();
  const servers: Record<string, { vnodes: number }> = {};
  for (const m of members) {
    const ref = { id: m.id, incarnation: m.incarnation };
    refs.set(memberKey(ref), ref);
    servers[memberKey(ref)] = { vnodes: vnodesForCapacity(m.capacityBytes) };
  }
  const owners: (readonly MemberRef[])[] = [];
  if (want > 0) {
    // 'vnode count' 0 makes hashring use our per-member vnodes verbatim (see the module comment).
    const ring = new HashRing(servers, 'md5', { 'vnode count': 0, 'max cache size': 1 });
    for (let p = 0; p < partitionCount; p++) {
      owners.push(Object.freeze(ring.range(`p${p}`, want).map((key) => refs.get(key) as MemberRef)));
    }
    ring.end();
  }
  const none: readonly MemberRef[] = Object.freeze([]);
  return {
    partitionCount,
    replicas: want,
    owners: (partition) => owners[partition] ?? none,
    primary: (partition) => owners[partition]?.[0],
  };
}

// Tables depend only on (members, partitionCount, replicas): a pool change reuses the previous table.
const byState = new WeakMap<ClusterState, Map<number, PartitionTable>>();
const recent = new Map<string, PartitionTable>();
const RECENT_MAX = 32;

/**
 * The partition table of `state` with `replicas` owners per partition, computed once and cached (per state
 * object, and by member list across states), so callers may ask per request without rebuilding the ring.
 */
export function partitionTableFor(state: ClusterState, replicas: number): PartitionTable {
  let perState = byState.get(state);
  const hit = perState?.get(replicas);
  if (hit) return hit;
  const key = `${state.partitionCount}|${replicas}|${state.members
    .map((m) => `${memberKey(m)}=${vnodesForCapacity(m.capacityBytes)}`)
    .join(',')}`;
  let shared = recent.get(key);
  if (shared) {
    recent.delete(key);
  } else {
    shared = computePartitionTable(state.members, state.partitionCount, replicas);
    if (recent.size >= RECENT_MAX) recent.delete(recent.keys().next().value as string);
  }
  recent.set(key, shared);
  const table: PartitionTable = {
    version: state.version,
    partitionCount: shared.partitionCount,
    replicas: shared.replicas,
    owners: shared.owners,
    primary: shared.primary,
  };
  if (!perState) {
    perState = new Map();
    byState.set(state, perState);
  }
  perState.set(replicas, table);
  return table;
}

// ---- persistent placement ----
//
// Persistent partitions are owned by READY members only: a member that joined copies the partitions it will
// own while it is `filling` and owns them once it is committed `ready`, so an owner never lacks an accepted
// page because it has not copied it yet. A `leaving` member owns nothing and hands its copies over. New
// writes go to the owners in both tables (ready, and ready + filling), so a filling member misses nothing
// written while it copies.

/** True for a member that owns persistent partitions: phase `ready` (or absent, the default). */
export function isReadyMember(member: MemberInfo): boolean {
  return member.phase === undefined || member.phase === 'ready';
}

/** Members that own persistent partitions in `state` (phase ready). */
export function readyMemberCount(state: ClusterState): number {
  let ready = 0;
  for (const m of state.members) if (isReadyMember(m)) ready++;
  return ready;
}

/**
 * True when `state` has at least `replication` ready members, so every persistent partition gets that many
 * distinct owners. The partition table takes min(R, members) owners; a put is accepted only when this holds,
 * because an accepted persistent page must really have R copies (the contract's persistence invariant).
 */
export function hasAllReplicas(state: ClusterState, replication: number): boolean {
  return readyMemberCount(state) >= replication;
}

/** The persistent pools of `state` that ask for more copies than it has ready members: their puts are refused. */
export function underReplicatedPools(state: ClusterState): PoolInfo[] {
  const ready = readyMemberCount(state);
  return state.pools.filter((p) => p.kind === 'persistent' && p.replication > ready);
}

const readyViews = new WeakMap<ClusterState, ClusterState>();
const fillingViews = new WeakMap<ClusterState, ClusterState>();

/** `state` with only the members `keep` selects; the same object when that is all of them. */
function viewOf(
  cache: WeakMap<ClusterState, ClusterState>,
  state: ClusterState,
  keep: (m: MemberInfo) => boolean,
): ClusterState {
  let view = cache.get(state);
  if (view === undefined) {
    const members = state.members.filter(keep);
    view = members.length === state.members.length ? state : { ...state, members };
    cache.set(state, view);
  }
  return view;
}

/** Owners of persistent partitions with `replicas` copies: ready members only, primary first. */
export function persistentTableFor(state: ClusterState, replicas: number): PartitionTable {
  return partitionTableFor(viewOf(readyViews, state, isReadyMember), replicas);
}

/**
 * Owners persistent partitions will have once every filling member is ready: ready and filling members (not
 * leaving ones). A primary sends each write to the owners of both tables.
 */
export function fillingTableFor(state: ClusterState, replicas: number): PartitionTable {
  return partitionTableFor(
    viewOf(fillingViews, state, (m) => m.phase !== 'leaving'),
    replicas,
  );
}

/** Every member a persistent write to `partition` must reach: owners of both tables, primary first. */
export function replicaTargets(state: ClusterState, replicas: number, partition: number): MemberRef[] {
  const targets = [...persistentTableFor(state, replicas).owners(partition)];
  for (const owner of fillingTableFor(state, replicas).owners(partition)) {
    if (!targets.some((t) => sameMember(t, owner))) targets.push(owner);
  }
  return targets;
}

/** The table a pool's pages are placed by: one owner for ephemeral pools, `replication` ready owners else. */
export function tableForPool(
  state: ClusterState,
  pool: Pick<PoolInfo, 'kind' | 'replication'>,
): PartitionTable {
  return pool.kind === 'persistent'
    ? persistentTableFor(state, pool.replication)
    : partitionTableFor(state, 1);
}
