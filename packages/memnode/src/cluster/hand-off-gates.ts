// The receiving rule of the ephemeral hand-over (docs/architecture.md, "The hand-over of ephemeral pages").
// Pure: no I/O and no clock of its own; the wiring feeds it every accepted and committed state in output order
// and the time, and asks it per page op and per handed-over page.
//
// The rule: when this node becomes primary of partition p in state S, and p's primary in the state just before
// S is a member that hands its pages over (still a member of S: a join moved p; or `leaving` and removed in S:
// a graceful leave), p is GATED: this node does not serve ephemeral ops of p (NOT_SERVING; clients retry) and
// takes that member's pages of p for transition S.version, until the member says `done` or `gateMs` passed.
// Then the gate opens for ops and closes for pages, for good.
//
// Why a handed-over page is never older than what a get may see: the old primary stopped serving p when it
// accepted S (the serving rule wants primaryship in both states) and copied its pages of p at that moment; the
// new primary has not served p at all while gated, and nobody else was p's primary in between (consecutive
// states, or the joiner's first state, which must be the transition the sender names). So no put, flush or
// (exclusive) get of a handle of p happened anywhere after the copy: the page is the handle's last value, and a
// page that was got, flushed or evicted before is simply not in the copy. Once the gate opens, every later
// page is refused, so a hand-over can never overwrite a put or resurrect a flushed or got page. The one op
// that reaches a gated node is flushObject (it goes to every member and needs no primaryship): the objects it
// flushes while any gate is open are remembered, and their pages refused.
import { partitionTableFor, sameMember, type ClusterState, type MemberRef } from '@tmem/protocol';
import { ownedPartitions } from './page-retention.ts';

/** Options of a node's hand-over gates. */
export interface HandOffGatesOptions {
  /** This node's id. */
  selfId: string;
  /** The incarnation it gates for; a new incarnation needs new gates. */
  incarnation: number;
  /**
   * Longest a gained partition waits for its old primary's pages before it is served anyway (the old primary
   * crashed mid-way, or its pages are late: they are dropped). @default 3000
   */
  gateMs?: number;
}

/** What `onState` opened: partitions gated per sender, for logs. */
export interface GatesOpened {
  transition: number;
  from: MemberRef;
  partitions: number;
}

/** The gates of one incarnation; create with createHandOffGates(). */
export interface HandOffGates {
  /** Feeds an accepted or committed state (in output order); returns the gates it opened. */
  onState(state: ClusterState, nowMs: number): GatesOpened[];
  /** True while ephemeral ops of `partition` must not be served (waiting for handed-over pages). */
  gated(partition: number, nowMs: number): boolean;
  /**
   * True when a page of `partition` from `from` for `transition` may be stored now: its gate is still waiting
   * for exactly that sender and transition.
   */
  accepts(from: MemberRef, transition: number, partition: number, nowMs: number): boolean;
  /** True when `transition` is later than every state fed so far: the sender is ahead, ask it to resend. */
  behind(transition: number): boolean;
  /** The sender is done with `transition`: its gates open (ops served, no more pages). Returns how many. */
  done(from: MemberRef, transition: number): number;
  /** A flushObject served while gates are open: pages of that object are refused from now on. */
  noteFlushObject(pool: number, oid: Uint8Array): void;
  /** True when `(pool, oid)` was flushed while a gate was open (so its handed-over pages must not land). */
  flushedObject(pool: number, oid: Uint8Array): boolean;
  /** Closes every gate (the store was wiped: nothing may be taken on the old premise). */
  closeAll(): void;
  /** Gates waiting now (expired ones are closed first). */
  open(nowMs: number): number;
}

interface Gate {
  from: MemberRef;
  transition: number;
  untilMs: number;
}

/** The key of an object in the sets both ends of the hand-over keep. */
export function objectKey(pool: number, oid: Uint8Array): string {
  return `${pool}:${Buffer.from(oid.buffer, oid.byteOffset, oid.byteLength).toString('base64')}`;
}

/** True when `member` hands its pages over on the move from `before` to `after` (see the module comment). */
function handsOver(member: MemberRef, before: ClusterState | null, after: ClusterState): boolean {
  if (after.members.some((m) => sameMember(m, member))) return true;
  const was = before?.members.find((m) => sameMember(m, member));
  return was?.phase === 'leaving';
}

/** Starts the hand-over gates of one incarnation. */
export function createHandOffGates(options: HandOffGatesOptions): HandOffGates {
  const { selfId, incarnation } = options;
  const gateMs = options.gateMs ?? 3000;
  const self: MemberRef = { id: selfId, incarnation };
  let last: ClusterState | null = null;
  let lastOwned: Uint8Array | null = null;
  const gates = new Map<number, Gate>();
  /** gates as a mask, so the per-op check is one array read when nothing is gated. */
  let mask = new Uint8Array(0);
  const flushed = new Set<string>();

  function close(partition: number): void {
    if (!gates.delete(partition)) return;
    mask[partition] = 0;
    if (gates.size === 0) flushed.clear();
  }

  function closeAll(): void {
    for (const p of gates.keys()) mask[p] = 0;
    gates.clear();
    flushed.clear();
  }

  function expire(partition: number, nowMs: number): Gate | undefined {
    const gate = gates.get(partition);
    if (gate !== undefined && nowMs >= gate.untilMs) {
      close(partition);
      return undefined;
    }
    return gate;
  }

  return {
    onState(state, nowMs) {
      if (last !== null && state.version < last.version) return []; // a commit learned after a later accept
      const owned = ownedPartitions(state, selfId, incarnation);
      if (mask.length !== state.partitionCount) {
        closeAll();
        mask = new Uint8Array(state.partitionCount);
      }
      // Partitions no longer owned lose their gate (their pages are dropped by page retention anyway).
      for (const p of [...gates.keys()]) if (owned[p] !== 1) close(p);
      let before: ClusterState | null = null;
      let previousOwner: ((p: number) => MemberRef | undefined) | null = null;
      if (last !== null && lastOwned !== null) {
        if (state.version === last.version + 1 && state.partitionCount === last.partitionCount) {
          const table = partitionTableFor(last, 1);
          const ownedBefore = lastOwned;
          before = last;
          previousOwner = (p) => (ownedBefore[p] === 1 ? undefined : table.primary(p));
        } else if (state.version !== last.version) {
          // A state went by unseen: p may have had another primary meanwhile, who served it. No gate may
          // stay open, and none opens.
          closeAll();
        }
      } else if (state.members.some((m) => sameMember(m, self))) {
        // The first state of a joiner: its owners without it are its owners before it (a join moves
        // partitions only to the joiner). The sender must name this very state as its transition.
        const without = { ...state, members: state.members.filter((m) => !sameMember(m, self)) };
        const table = partitionTableFor(without, 1);
        previousOwner = (p) => table.primary(p);
      }
      const opened = new Map<string, GatesOpened>();
      if (previousOwner !== null && state.pools.some((pool) => pool.kind === 'ephemeral')) {
        for (let p = 0; p < owned.length; p++) {
          if (owned[p] !== 1 || gates.has(p)) continue;
          const from = previousOwner(p);
          if (from === undefined || sameMember(from, self) || !handsOver(from, before, state)) continue;
          gates.set(p, { from, transition: state.version, untilMs: nowMs + gateMs });
          mask[p] = 1;
          const key = `${from.id}:${from.incarnation}`;
          const entry = opened.get(key) ?? { transition: state.version, from, partitions: 0 };
          entry.partitions++;
          opened.set(key, entry);
        }
      }
      last = state;
      lastOwned = owned;
      return [...opened.values()];
    },
    gated(partition, nowMs) {
      if (mask[partition] !== 1) return false;
      return expire(partition, nowMs) !== undefined;
    },
    accepts(from, transition, partition, nowMs) {
      if (mask[partition] !== 1) return false;
      const gate = expire(partition, nowMs);
      return gate !== undefined && gate.transition === transition && sameMember(gate.from, from);
    },
    behind(transition) {
      return last === null || transition > last.version;
    },
    done(from, transition) {
      let opened = 0;
      for (const [p, gate] of [...gates]) {
        if (gate.transition === transition && sameMember(gate.from, from)) {
          close(p);
          opened++;
        }
      }
      return opened;
    },
    noteFlushObject(pool, oid) {
      if (gates.size > 0) flushed.add(objectKey(pool, oid));
    },
    flushedObject(pool, oid) {
      return flushed.size > 0 && flushed.has(objectKey(pool, oid));
    },
    closeAll,
    open(nowMs) {
      for (const p of [...gates.keys()]) expire(p, nowMs);
      return gates.size;
    },
  };
}
