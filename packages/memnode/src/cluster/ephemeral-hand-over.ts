// The hand-over of ephemeral pages (docs/architecture.md, "The hand-over of ephemeral pages"): when partitions
// move away from this node while it is alive (a graceful leave, a join), it copies their ephemeral pages out
// of its store at the moment it stops being their primary, drops them from the store as before, and once the
// move is committed pushes the copies to the new primaries in `handOff` frames, within a budget of time,
// bytes and frames in flight. What does not fit the budget is dropped, as ephemeral pages may be. The
// receiving rule, which makes a hand-over unable to overwrite a newer put or bring back a flushed or got page,
// is hand-off-gates.ts; this module applies it to the frames that arrive.
import {
  MAX_BATCH_OPS,
  checksumMatches,
  pageChecksum,
  partitionHash,
  partitionTableFor,
  sameMember,
  type ClusterState,
  type HandOff,
  type HandOffEntry,
  type HandedOff,
  type MemberRef,
} from '@tmem/protocol';
import type { Logger } from '../logger.ts';
import type { PageStore } from '../page-store.ts';
import { createHandOffGates, objectKey, type HandOffGates } from './hand-off-gates.ts';

/** The budget of the ephemeral hand-over; each field is a `tmem node` flag. */
export interface EphemeralHandOverOptions {
  /**
   * How long pushing the pages of one move may take, from its commit; pages not sent by then are dropped.
   * 0 hands nothing over (the new primaries are told at once, so they do not wait). @default 2000
   */
  timeoutMs?: number;
  /** Most page bytes copied out for one move (the copies are held in memory until sent). @default 64 MiB */
  maxBytes?: number;
  /** Most page bytes per handOff frame (and at most MAX_BATCH_OPS pages). @default 1 MiB */
  frameBytes?: number;
  /** Most handOff frames awaiting an answer at once, over all receivers. @default 4 */
  framesInFlight?: number;
  /**
   * How long this node, as a new primary, keeps a gained partition closed while waiting for the old
   * primary's pages (see hand-off-gates.ts). Longer than timeoutMs, so that pages sent in time land. @default 3000
   */
  gateMs?: number;
}

/** Defaults of EphemeralHandOverOptions. */
export const DEFAULT_EPHEMERAL_HAND_OVER = {
  timeoutMs: 2000,
  maxBytes: 64 * 1024 * 1024,
  frameBytes: 1024 * 1024,
  framesInFlight: 4,
  gateMs: 3000,
} as const satisfies Required<EphemeralHandOverOptions>;

/**
 * Largest `frameBytes`: half the default frame limit, so a frame of pages plus its keys always fits a peer that
 * kept the default `--max-frame-bytes`.
 */
export const MAX_HAND_OFF_FRAME_BYTES = 8 * 1024 * 1024;

/** The budget with its defaults filled in; throws a RangeError naming a field out of range. */
export function handOverBudget(options: EphemeralHandOverOptions = {}): Required<EphemeralHandOverOptions> {
  const budget = { ...DEFAULT_EPHEMERAL_HAND_OVER, ...options };
  const ranges: [keyof EphemeralHandOverOptions, number, number][] = [
    ['timeoutMs', 0, Number.MAX_SAFE_INTEGER],
    ['maxBytes', 0, Number.MAX_SAFE_INTEGER],
    ['frameBytes', 1, MAX_HAND_OFF_FRAME_BYTES],
    ['framesInFlight', 1, 1024],
    ['gateMs', 0, Number.MAX_SAFE_INTEGER],
  ];
  for (const [field, min, max] of ranges) {
    const value = budget[field];
    if (!Number.isSafeInteger(value) || value < min || value > max) {
      throw new RangeError(
        `ephemeralHandOver.${field} must be an integer from ${min} to ${max}, not ${value}`,
      );
    }
  }
  return budget;
}

/** What the hand-over needs from its node. */
export interface EphemeralHandOverDeps {
  selfId: string;
  incarnation: number;
  store: PageStore;
  logger: Logger;
  options?: EphemeralHandOverOptions;
  /** Sends one handOff frame to member `memberId` and resolves with its answer. */
  call(memberId: string, build: (id: number) => HandOff, timeoutMs: number): Promise<HandedOff>;
}

/** Counters for the node's stats. */
export interface HandOverCounters {
  handOffSent: number;
  handOffDropped: number;
  handOffStored: number;
  handOffSkipped: number;
}

/** One node's ephemeral hand-over, both directions. */
export interface EphemeralHandOver {
  /**
   * For an 'accepted' output, BEFORE its page drop: copies the ephemeral pages of partitions this node is
   * primary of in `previous` (the newest state it accepted or committed before) and not in `state`, when
   * `state` directly follows `previous` and `copiesCurrent` (the caller vouches that the store holds no page
   * a move it did not see made stale: the lease held, or `previous` was committed and the gap rule at the
   * commit of `state` wipes otherwise). Also feeds the gates.
   */
  onAccepted(previous: ClusterState | null, state: ClusterState, copiesCurrent: boolean): void;
  /** For a 'committed' output: feeds the gates and starts pushing the copies of moves up to this version. */
  onCommitted(state: ClusterState): void;
  /** Starts pushing every copy held (a leaving node whose removal committed elsewhere). */
  pushAll(): void;
  /** Resolves once nothing is being pushed, or at `deadlineMs` (performance.now() clock). */
  drained(deadlineMs: number): Promise<void>;
  /** The store was wiped: no gate may stay open, and copies not yet pushing are discarded. */
  wiped(): void;
  /** True while ephemeral ops of `partition` must wait for handed-over pages (answer NOT_SERVING). */
  gated(partition: number): boolean;
  /** A flushObject served here: copies of the object go, and its handed-over pages will be refused. */
  onFlushObject(pool: number, oid: Uint8Array): void;
  /** Answers a handOff frame from the authenticated peer `senderId`. Never throws. */
  receive(frame: HandOff, senderId: string): HandedOff;
  /** A new incarnation: copies and gates of the old one go. */
  reset(incarnation: number): void;
  counters(): HandOverCounters;
  close(): void;
}

interface Copy {
  entry: HandOffEntry;
  bytes: number;
  dead: boolean;
}

/** The copies of one move for one receiver. */
interface Move {
  target: MemberRef;
  transition: number;
  copies: Copy[];
  pushing: boolean;
}

const now = () => performance.now();
const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Creates a node's ephemeral hand-over. */
export function createEphemeralHandOver(deps: EphemeralHandOverDeps): EphemeralHandOver {
  const { selfId, store } = deps;
  const log = deps.logger.child({ component: 'ephemeral-hand-over' });
  const budget = handOverBudget(deps.options);
  let incarnation = deps.incarnation;
  let gates: HandOffGates = createHandOffGates({ selfId, incarnation, gateMs: budget.gateMs });
  let partitionCount = 1;
  let moves: Move[] = [];
  /** Copies by object, so a flushObject finds them without a scan. */
  let byObject = new Map<string, Copy[]>();
  const pushes = new Set<Promise<void>>();
  let inFlight = 0;
  const slotWaiters: (() => void)[] = [];
  let closed = false;
  const counters: HandOverCounters = {
    handOffSent: 0,
    handOffDropped: 0,
    handOffStored: 0,
    handOffSkipped: 0,
  };

  function feed(state: ClusterState): void {
    partitionCount = state.partitionCount;
    for (const opened of gates.onState(state, now())) {
      log.info(
        { from: opened.from.id, transition: opened.transition, partitions: opened.partitions },
        'waiting for handed-over pages',
      );
    }
  }

  /**
   * Records the moves of partitions this node is primary of in `committed` and not in `state`, one per new
   * primary, with copies of their ephemeral pages when `copy` (else the moves carry only their `done`, so the
   * new primaries stop waiting at once instead of after their gate time).
   */
  function copyOut(committed: ClusterState, state: ClusterState, copy: boolean): void {
    const self: MemberRef = { id: selfId, incarnation };
    const before = partitionTableFor(committed, 1);
    const after = partitionTableFor(state, 1);
    const targetOf: (MemberRef | undefined)[] = new Array<MemberRef | undefined>(state.partitionCount);
    const lost = new Uint8Array(state.partitionCount);
    const byTarget = new Map<string, Move>();
    for (let p = 0; p < state.partitionCount; p++) {
      const next = after.primary(p);
      if (!sameMember(before.primary(p), self) || next === undefined || sameMember(next, self)) continue;
      lost[p] = 1;
      targetOf[p] = next;
      const key = `${next.id}:${next.incarnation}`;
      if (!byTarget.has(key)) {
        byTarget.set(key, { target: next, transition: state.version, copies: [], pushing: false });
      }
    }
    if (byTarget.size === 0) return;
    let bytes = 0;
    let dropped = 0;
    if (copy && budget.timeoutMs > 0) {
      // Shared pools' pages stay behind (dropped with the partition): a handed-over page would arrive without
      // its object's last putter, and a departure must flush every object its sharer put to last.
      const handles = store.handlesWhere(
        (pool, hash) =>
          pool.kind === 'ephemeral' && pool.shared !== true && lost[hash % state.partitionCount] === 1,
      );
      for (const h of handles) {
        // Past the byte budget the rest is dropped uncopied (the copies live in memory until sent).
        if (bytes + (store.getPool(h.pool)?.pageSize ?? 0) > budget.maxBytes) {
          dropped++;
          continue;
        }
        const stored = store.peek(h.pool, h.oid, h.index);
        if (stored === null) continue;
        const target = targetOf[partitionHash(h.pool, h.oid, h.index) % state.partitionCount];
        const move = target === undefined ? undefined : byTarget.get(`${target.id}:${target.incarnation}`);
        if (move === undefined) continue;
        // handlesWhere builds one fresh oid array per object, shared by its pages and owned by us.
        const entry: HandOffEntry = {
          pool: h.pool,
          oid: h.oid,
          index: h.index,
          page: stored.page,
          sum: stored.sum ?? pageChecksum(stored.page),
        };
        const copy: Copy = { entry, bytes: stored.page.length + h.oid.length + 32, dead: false };
        move.copies.push(copy);
        const key = objectKey(h.pool, h.oid);
        const list = byObject.get(key);
        if (list === undefined) byObject.set(key, [copy]);
        else list.push(copy);
        bytes += stored.page.length;
      }
    }
    counters.handOffDropped += dropped;
    moves.push(...byTarget.values());
    log.info(
      { transition: state.version, receivers: byTarget.size, bytes, dropped },
      'copied ephemeral pages of partitions moving away',
    );
  }

  async function slot(): Promise<void> {
    while (!closed && inFlight >= budget.framesInFlight) {
      await new Promise<void>((resolve) => slotWaiters.push(resolve));
    }
    inFlight++;
  }

  function release(): void {
    inFlight--;
    slotWaiters.shift()?.();
  }

  /** Sends `entries` (possibly none, with `done`) until answered or the deadline; returns the answer. */
  async function send(
    move: Move,
    copies: Copy[],
    done: boolean,
    deadline: number,
  ): Promise<HandedOff | null> {
    while (!closed && now() < deadline) {
      const entries = copies.filter((c) => !c.dead).map((c) => c.entry);
      if (entries.length === 0 && !done) return null;
      await slot();
      try {
        const reply = await deps.call(
          move.target.id,
          (id) => ({
            t: 'handOff',
            id,
            transition: move.transition,
            incarnation,
            entries,
            ...(done ? { done: true } : {}),
          }),
          Math.max(1, Math.min(2000, deadline - now())),
        );
        if (reply.behind !== true) {
          counters.handOffSent += reply.stored;
          counters.handOffDropped += reply.skipped;
          return reply;
        }
      } catch (error) {
        log.debug({ to: move.target.id, err: (error as Error).message }, 'handOff failed; sending again');
      } finally {
        release();
      }
      await delay(25);
    }
    return null;
  }

  async function push(move: Move): Promise<void> {
    const deadline = now() + budget.timeoutMs;
    const frames: Copy[][] = [];
    let frame: Copy[] = [];
    let frameBytes = 0;
    for (const copy of move.copies) {
      if (
        frame.length > 0 &&
        (frameBytes + copy.bytes > budget.frameBytes || frame.length >= MAX_BATCH_OPS)
      ) {
        frames.push(frame);
        frame = [];
        frameBytes = 0;
      }
      frame.push(copy);
      frameBytes += copy.bytes;
    }
    if (frame.length > 0) frames.push(frame);
    move.copies = [];
    let unsent = 0;
    await Promise.all(
      frames.map(async (copies) => {
        const reply = await send(move, copies, false, deadline);
        if (reply === null) unsent += copies.filter((c) => !c.dead).length;
        for (const c of copies) c.dead = true; // sent or given up: the copy's memory can go
      }),
    );
    counters.handOffDropped += unsent;
    // `done` opens the receiver's gates at once; a short grace past the budget, else its gates time out.
    await send(move, [], true, Math.max(deadline, now() + 250));
    log.info(
      { to: move.target.id, transition: move.transition, frames: frames.length, unsent },
      'hand-over to a new primary finished',
    );
  }

  function startPushes(upTo: number): void {
    for (const move of moves) {
      if (move.pushing || move.transition > upTo) continue;
      move.pushing = true;
      const running = push(move).catch((error: unknown) => {
        log.warn({ err: (error as Error).message }, 'hand-over failed');
      });
      pushes.add(running);
      void running.finally(() => {
        pushes.delete(running);
        moves = moves.filter((m) => m !== move);
        if (moves.length === 0) byObject = new Map();
      });
    }
  }

  function receive(frame: HandOff, senderId: string): HandedOff {
    const from: MemberRef = { id: senderId, incarnation: frame.incarnation };
    if (gates.behind(frame.transition))
      return { t: 'handedOff', id: frame.id, stored: 0, skipped: 0, behind: true };
    const t = now();
    let stored = 0;
    let skipped = 0;
    for (const e of frame.entries) {
      try {
        const spec = store.getPool(e.pool);
        const partition = partitionHash(e.pool, e.oid, e.index) % partitionCount;
        const { capacityBytes, usedBytes } = store.stats();
        if (
          spec?.kind === 'ephemeral' &&
          spec.shared !== true &&
          e.page.length === spec.pageSize &&
          gates.accepts(from, frame.transition, partition, t) &&
          !gates.flushedObject(e.pool, e.oid) &&
          // Never over a page held here, and never evicting this node's own pages for a handed-over one.
          store.versionOf(e.pool, e.oid, e.index) === -1 &&
          capacityBytes - usedBytes >= spec.pageSize &&
          checksumMatches(e.page, e.sum) &&
          store.put(e.pool, e.oid, e.index, e.page, { sum: e.sum }).status === 'accepted'
        ) {
          stored++;
        } else {
          skipped++;
        }
      } catch {
        skipped++;
      }
    }
    counters.handOffStored += stored;
    counters.handOffSkipped += skipped;
    if (frame.done === true) {
      const opened = gates.done(from, frame.transition);
      if (opened > 0)
        log.info({ from: senderId, transition: frame.transition, partitions: opened }, 'hand-over received');
    }
    return { t: 'handedOff', id: frame.id, stored, skipped };
  }

  return {
    onAccepted(committed, state, copiesCurrent) {
      if (
        !closed &&
        committed !== null &&
        state.version === committed.version + 1 &&
        state.partitionCount === committed.partitionCount &&
        state.pools.some((pool) => pool.kind === 'ephemeral')
      ) {
        // When the caller cannot vouch for the store (a lapse after a proposal that may have lost), no copies:
        // only the `done` that spares the new primaries their wait.
        copyOut(committed, state, copiesCurrent);
      }
      feed(state);
    },
    onCommitted(state) {
      feed(state);
      startPushes(state.version);
    },
    pushAll() {
      startPushes(Number.MAX_SAFE_INTEGER);
    },
    async drained(deadlineMs) {
      while (pushes.size > 0 && now() < deadlineMs) {
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<void>((resolve) => {
          timer = setTimeout(resolve, Math.max(1, deadlineMs - now()));
        });
        // The timer goes with the pushes: an embedded node must not be held open by it after they finished.
        await Promise.race([Promise.all([...pushes]), timeout]);
        clearTimeout(timer);
      }
    },
    wiped() {
      gates.closeAll();
      // Copies not yet pushing were taken from the store that was just judged stale: only their `done` goes.
      for (const move of moves) {
        if (move.pushing) continue;
        for (const copy of move.copies) copy.dead = true;
        move.copies = [];
      }
    },
    gated(partition) {
      return gates.gated(partition, now());
    },
    onFlushObject(pool, oid) {
      gates.noteFlushObject(pool, oid);
      const key = objectKey(pool, oid);
      const copies = byObject.get(key);
      if (copies === undefined) return;
      for (const copy of copies) copy.dead = true;
      byObject.delete(key);
    },
    receive(frame, senderId) {
      try {
        return receive(frame, senderId);
      } catch (error) {
        log.warn({ err: (error as Error).message }, 'handOff frame not applied');
        return { t: 'handedOff', id: frame.id, stored: 0, skipped: frame.entries.length };
      }
    },
    reset(next) {
      incarnation = next;
      gates = createHandOffGates({ selfId, incarnation, gateMs: budget.gateMs });
      moves = [];
      byObject = new Map();
    },
    counters: () => ({ ...counters }),
    close() {
      closed = true;
      moves = [];
      byObject = new Map();
      for (const waiter of slotWaiters.splice(0)) waiter();
    },
  };
}
