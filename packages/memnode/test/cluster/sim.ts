// Deterministic simulation of a cluster of consensus cores: virtual time, a seeded PRNG, an adversarial
// network (loss, delay/reordering, duplication, symmetric and asymmetric partitions), pauses (SIGSTOP-like),
// crashes with restarts as new incarnations, graceful leaves, and pool changes. It plays the part of the
// wiring: joiners ask a random node, which forwards to the leader it knows.
//
// Each node also keeps a page model: one ephemeral page per partition (the id of the write that stored it),
// dropped by the same page-retention module the real wiring uses, fed the same outputs in the same order. A
// seeded client workload (its own PRNG, so it never changes what the cluster does) writes and reads at the
// node serving the partition at that instant.
//
// Checked continuously: (a) one state per committed version, cluster-wide; (b) per instance, committed
// versions only grow; (c) at every instant at most one node serves each partition; (e) a read never returns
// a page older than the partition's latest write (a miss is fine: ephemeral pages may vanish), at every
// client read and, after every event, for each partition a running node serves. After the faults stop:
// (d) convergence within a bound. Same seed, same run: a failure is reproduced with SIM_SEED=<seed>.
import {
  createConsensus,
  type Consensus,
  type ConsensusOptions,
  type ConsensusOutput,
} from '../../src/cluster/consensus.ts';
import { ConsensusMessage } from '../../src/cluster/consensus-messages.ts';
import {
  createPageRetention,
  dropsPartition,
  leaseLossFirst,
  type PageDrop,
  type PageRetention,
  type PageRetentionOptions,
} from '../../src/cluster/page-retention.ts';
import {
  initialState,
  isMember,
  type ClusterState,
  type MemberInfo,
  type StateChange,
} from '../../src/cluster/cluster-state.ts';
import { partitionTableFor } from '../../src/cluster/partition-table.ts';

const SIM_POOL_ID_KEY = 'a5a5a5a55a5a5a5a0123456789abcdef';

/** sfc32 seeded through splitmix32: small, fast, and good enough to drive a simulation. */
export function createRandom(seed: number): () => number {
  let s = seed >>> 0;
  const split = (): number => {
    s = (s + 0x9e3779b9) | 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
    z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
    return (z ^ (z >>> 15)) >>> 0;
  };
  let a = split();
  let b = split();
  let c = split();
  let d = split();
  return () => {
    a |= 0;
    b |= 0;
    c |= 0;
    d |= 0;
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
}

/** The command that reruns one seed; printed with every failure. */
export function rerunCommand(seed: number): string {
  return `SIM_SEED=${seed} npx vitest run packages/memnode/test/cluster/consensus-sim.test.ts`;
}

/** An invariant broke; the message names the seed and the command that reproduces it. */
export class SimViolation extends Error {
  readonly seed: number;
  /** The invariant that broke ('a' to 'e', see the top of this file), or null for another failure. */
  readonly invariant: string | null;
  constructor(seed: number, what: string, trace: readonly string[]) {
    super(
      `simulation seed ${seed}: ${what}\n  rerun: ${rerunCommand(seed)}` +
        (trace.length > 0 ? `\n  last events:\n    ${trace.join('\n    ')}` : ''),
    );
    this.name = 'SimViolation';
    this.seed = seed;
    this.invariant = /^\(([a-e])\) /.exec(what)?.[1] ?? null;
  }
}

/** How one run went. */
export interface SimReport {
  seed: number;
  nodes: number;
  events: number;
  sent: number;
  dropped: number;
  duplicated: number;
  faults: Record<string, number>;
  commits: number;
  maxVersion: number;
  elections: number;
  leaseLosts: number;
  reincarnations: number;
  /** Sum over all checks of the partitions being served (how much (c) was exercised). */
  served: number;
  /** Times a partition was next served by another member than the one that served it before. */
  handoffs: number;
  /** Virtual ms from the end of faults to convergence. */
  convergedAfterMs: number;
  virtualMs: number;
  /** Client page writes (each at the node serving the partition then). */
  pageWrites: number;
  /** Client reads that found the partition's latest write (never an older one: checked). */
  pageHits: number;
  /** Client reads that found no page (dropped, crashed, or never written there). */
  pageMisses: number;
  /** Client ops that found no node serving the partition. */
  pageUnserved: number;
  /** Times a node dropped every page (a gap after a lapsed lease, or a removal). */
  pageWipes: number;
}

/** Options of one run; everything not given is drawn from the seed. */
export interface SimOptions {
  seed: number;
  /** Keep the last events as text (for failure messages). */
  trace?: boolean;
  /** Receives every trace line (implies trace). */
  onTrace?: (line: string) => void;
  /** Validate every message with the zod schema after a JSON round trip (slower). */
  validate?: boolean;
  /** Virtual ms of faults. */
  faultMs?: number;
  /** Virtual ms allowed for convergence after the faults stop. */
  convergeWithinMs?: number;
  /** Mean virtual ms between client page ops. @default 8 */
  clientOpEveryMs?: number;
  /** Builds each incarnation's page retention; a test may pass a broken one to see the check catch it. */
  createRetention?: (options: PageRetentionOptions) => PageRetention;
}

const PARTITIONS = 64;
const MIB = 1024 * 1024;

interface SimNode {
  index: number;
  id: string;
  incarnation: number;
  capacityBytes: number;
  c: Consensus | null;
  paused: boolean;
  inbox: { from: string; message: ConsensusMessage }[];
  clockOffset: number;
  clockRate: number;
  tickGen: number;
  tickAt: number;
  lastCommitted: number;
  /** Page model: partition -> id of the write whose page this node holds. */
  pages: Map<number, number>;
  retention: PageRetention;
  /** Recent page-relevant events of this node (traced runs only), for the stale-read report. */
  pageLog: string[];
}

type SimEvent =
  | { kind: 'deliver'; to: number; from: string; message: ConsensusMessage }
  | { kind: 'tick'; node: number; gen: number }
  | { kind: 'join'; node: number }
  | { kind: 'fault' }
  | { kind: 'unblock'; links: string[] }
  | { kind: 'resume'; node: number; incarnation: number }
  | { kind: 'restart'; node: number }
  | { kind: 'heal' }
  | { kind: 'converge' }
  | { kind: 'client' };

interface Queued {
  time: number;
  seq: number;
  event: SimEvent;
}

/** Binary min-heap on (time, seq): ties resolve in insertion order, so runs are deterministic. */
class EventQueue {
  private readonly heap: Queued[] = [];
  private seq = 0;
  get size(): number {
    return this.heap.length;
  }
  push(time: number, event: SimEvent): void {
    const heap = this.heap;
    heap.push({ time, seq: this.seq++, event });
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(heap[i] as Queued, heap[parent] as Queued)) break;
      [heap[i], heap[parent]] = [heap[parent] as Queued, heap[i] as Queued];
      i = parent;
    }
  }
  pop(): Queued | undefined {
    const heap = this.heap;
    const top = heap[0];
    const last = heap.pop();
    if (heap.length > 0 && last) {
      heap[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < heap.length && before(heap[l] as Queued, heap[m] as Queued)) m = l;
        if (r < heap.length && before(heap[r] as Queued, heap[m] as Queued)) m = r;
        if (m === i) break;
        [heap[i], heap[m]] = [heap[m] as Queued, heap[i] as Queued];
        i = m;
      }
    }
    return top;
  }
}

function before(a: Queued, b: Queued): boolean {
  return a.time < b.time || (a.time === b.time && a.seq < b.seq);
}

function majority(n: number): number {
  return Math.floor(n / 2) + 1;
}

function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** Runs one seeded simulation; throws SimViolation when an invariant breaks. */
export function runSimulation(options: SimOptions): SimReport {
  const seed = options.seed;
  const rnd = createRandom(seed);
  const between = (lo: number, hi: number): number => lo + rnd() * (hi - lo);
  const chance = (p: number): boolean => rnd() < p;
  const pick = <T>(items: readonly T[]): T => items[Math.floor(rnd() * items.length)] as T;

  const nodeCount = 3 + Math.floor(rnd() * 3);
  const faultMs = options.faultMs ?? between(2000, 5000);
  const convergeWithinMs = options.convergeWithinMs ?? 20_000;
  const clientOpEveryMs = options.clientOpEveryMs ?? 8;
  const createRetention = options.createRetention ?? createPageRetention;
  // The client workload draws from its own stream: adding or tuning it never changes what the cluster does,
  // so seeds keep reproducing the runs they were recorded from.
  const clientRnd = createRandom(Math.imul(seed, 0x9e3779b1) ^ 0x5eed5eed);
  // Most runs use the defaults; some use other timings (any positive values must be safe).
  const timing: Partial<ConsensusOptions> = {};
  if (chance(0.3)) {
    const min = between(300, 800);
    Object.assign(timing, {
      heartbeatIntervalMs: between(40, 150),
      electionTimeoutMs: { min, max: min + between(100, 800) },
      leaseMs: between(400, 1500),
      leaseMarginMs: between(100, 300),
      failureTimeoutMs: between(400, 1200),
    });
  }
  const trace: string[] = [];
  const traceOn = options.trace === true || options.onTrace !== undefined;
  const validate = options.validate === true;

  // Network conditions change during the run (fault events pick new ones).
  let loss = 0;
  let duplicate = 0;
  let slow = 0;
  const blocked = new Map<string, number>();

  const report: SimReport = {
    seed,
    nodes: nodeCount,
    events: 0,
    sent: 0,
    dropped: 0,
    duplicated: 0,
    faults: {},
    commits: 0,
    maxVersion: 0,
    elections: 0,
    leaseLosts: 0,
    reincarnations: 0,
    served: 0,
    handoffs: 0,
    convergedAfterMs: -1,
    virtualMs: 0,
    pageWrites: 0,
    pageHits: 0,
    pageMisses: 0,
    pageUnserved: 0,
    pageWipes: 0,
  };

  const queue = new EventQueue();
  const committedByVersion = new Map<number, string>();
  let maxCommittedVersion = 0;
  let now = 0;
  let healed = false;
  let healedAt = Infinity;
  let done = false;
  let pendingLeave: { node: number; changeId: string } | null = null;

  const fail = (what: string): never => {
    throw new SimViolation(seed, what, trace.slice(-80));
  };
  const log = (line: string): void => {
    if (!traceOn) return;
    trace.push(`${now.toFixed(1)} ${line}`);
    options.onTrace?.(`${now.toFixed(1)} ${line}`);
    if (trace.length > 400) trace.splice(0, 200);
  };

  const nodes: SimNode[] = [];
  for (let i = 0; i < nodeCount; i++) {
    nodes.push({
      index: i,
      id: `n${i}`,
      incarnation: 1,
      capacityBytes: pick([64, 128, 256, 512]) * MIB,
      c: null,
      paused: false,
      inbox: [],
      // Each node reads its own monotonic clock: another origin and a rate within ±2% (the margin covers it).
      clockOffset: Math.floor(rnd() * 1e6),
      clockRate: 1 + between(-0.02, 0.02),
      tickGen: 0,
      tickAt: Infinity,
      lastCommitted: 0,
      pages: new Map(),
      retention: createRetention({ selfId: `n${i}`, incarnation: 1 }),
      pageLog: [],
    });
  }
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const local = (n: SimNode): number => n.clockOffset + now * n.clockRate;
  const toGlobal = (n: SimNode, t: number): number => (t - n.clockOffset) / n.clockRate;
  const memberInfo = (n: SimNode): MemberInfo => ({
    id: n.id,
    url: `sim://${n.id}`,
    incarnation: n.incarnation,
    capacityBytes: n.capacityBytes,
  });
  const keyOf = (id: string, incarnation: number): string => `${id}:${incarnation}`;
  const isSelfMember = (n: SimNode, s: ClusterState | null): boolean => isMember(s, n.id, n.incarnation);

  function boot(n: SimNode, bootstrap: boolean): void {
    n.c = createConsensus({
      self: { id: n.id, incarnation: n.incarnation },
      // A fixed pool-id key: a seed replays the same run, pool ids included.
      initialState: bootstrap ? initialState(memberInfo(n), PARTITIONS, SIM_POOL_ID_KEY) : undefined,
      random: createRandom(Math.floor(rnd() * 2 ** 32)),
      ...timing,
    });
    n.lastCommitted = bootstrap ? 1 : 0;
    // The store is not cleared here: after 'removed' the retention's drop must have emptied it (checked by
    // the reads), and a crash took it with the process.
    n.retention = createRetention({
      selfId: n.id,
      incarnation: n.incarnation,
      committedVersion: bootstrap ? 1 : 0,
    });
    n.paused = false;
    n.inbox = [];
    n.tickGen++;
    n.tickAt = Infinity;
    scheduleTick(n);
  }

  // ------------------------------------------------------------ outputs and network

  function transmit(from: SimNode, to: string, message: ConsensusMessage): void {
    report.sent++;
    const target = byId.get(to);
    if (!target) fail(`message to unknown node ${to}`);
    const link = `${from.index}>${(target as SimNode).index}`;
    if ((blocked.get(link) ?? 0) > 0 || (blocked.get(`${link}:${message.type}`) ?? 0) > 0 || chance(loss)) {
      report.dropped++;
      return;
    }
    const copies = chance(duplicate) ? 2 : 1;
    if (copies === 2) report.duplicated++;
    for (let k = 0; k < copies; k++) {
      let wire: ConsensusMessage = message;
      if (validate) wire = ConsensusMessage.parse(JSON.parse(JSON.stringify(message)));
      // Mostly fast; `slow` of the messages take up to 400 ms (reordering); a few are very late.
      const delay = chance(slow) ? (chance(0.05) ? between(400, 3000) : between(20, 400)) : between(0.5, 8);
      queue.push(now + delay, {
        kind: 'deliver',
        to: (target as SimNode).index,
        from: from.id,
        message: wire,
      });
    }
  }

  function recordCommit(n: SimNode, state: ClusterState): void {
    report.commits++;
    const text = canonical(state);
    const seen = committedByVersion.get(state.version);
    if (seen === undefined) committedByVersion.set(state.version, text);
    else if (seen !== text) {
      fail(`(a) two states committed at version ${state.version}:\n      ${seen}\n      ${text}`);
    }
    if (state.version <= n.lastCommitted) {
      fail(`(b) ${n.id}:${n.incarnation} committed version ${state.version} after ${n.lastCommitted}`);
    }
    n.lastCommitted = state.version;
    if (state.version > maxCommittedVersion) maxCommittedVersion = state.version;
    if (state.version > report.maxVersion) report.maxVersion = state.version;
  }

  // ------------------------------------------------------------ page model and client workload

  let writeCounter = 0;
  /** Per partition, the id of its latest write (0: never written). */
  const lastWrite = new Float64Array(PARTITIONS);
  /** Traced runs only: every write, for the stale-read report. */
  const writeLog: { p: number; id: number; text: string }[] = [];
  /** Traced runs only: every committed state by version, to show a partition's owners over time. */
  const committedStates = new Map<number, ClusterState>();

  function pageLog(n: SimNode, line: string): void {
    if (!traceOn) return;
    n.pageLog.push(`${now.toFixed(1)} ${n.id}:${n.incarnation} ${line}`);
    if (n.pageLog.length > 400) n.pageLog.splice(0, 200);
  }

  /** Applies a retention decision to the node's page model, as the wiring applies it to the store. */
  function applyDrop(n: SimNode, drop: PageDrop | null): void {
    if (drop === null) return;
    if (drop.type === 'all') report.pageWipes++;
    const gone: number[] = [];
    for (const p of n.pages.keys()) if (dropsPartition(drop, p)) gone.push(p);
    for (const p of gone) n.pages.delete(p);
    if (traceOn) {
      const what = drop.type === 'all' ? `all (${drop.reason})` : `unowned in v${drop.version}`;
      pageLog(n, `drop ${what}: partitions [${gone.join(' ')}]`);
      log(`${n.id}:${n.incarnation} dropped pages of ${what}: [${gone.join(' ')}]`);
    }
  }

  function describeNode(n: SimNode): string {
    return `${n.id}:${n.incarnation} (v${n.c?.committed?.version}/${n.c?.accepted?.version})`;
  }

  /** One client op at a random partition, at the node serving it now (a paused process answers nothing). */
  function clientOp(): void {
    const p = Math.floor(clientRnd() * PARTITIONS);
    const write = clientRnd() < 0.5;
    let server: SimNode | null = null;
    for (const n of nodes) {
      if (!n.c || n.paused || !n.c.isServingPrimary(local(n), p)) continue;
      if (server) fail(`(c) partition ${p} served by ${describeNode(server)} and ${describeNode(n)}`);
      server = n;
    }
    if (server === null) {
      report.pageUnserved++;
      return;
    }
    if (write) {
      const id = ++writeCounter;
      server.pages.set(p, id);
      lastWrite[p] = id;
      report.pageWrites++;
      if (traceOn) writeLog.push({ p, id, text: `${now.toFixed(1)} w${id} at ${describeNode(server)}` });
      return;
    }
    const found = server.pages.get(p);
    if (found === undefined) report.pageMisses++;
    else if (found === lastWrite[p]) report.pageHits++;
    else staleRead(server, p, found);
  }

  function staleRead(reader: SimNode, p: number, found: number): never {
    const latest = lastWrite[p] as number;
    let detail = '';
    if (traceOn) {
      const owners: string[] = [];
      for (const [version, state] of [...committedStates].sort(([a], [b]) => a - b)) {
        const primary = partitionTableFor(state, 1).primary(p);
        owners.push(`v${version}:${primary ? keyOf(primary.id, primary.incarnation) : '-'}`);
      }
      const writes = writeLog.filter((w) => w.p === p && w.id >= found).map((w) => w.text);
      detail =
        `\n  writes of p${p} since w${found}:\n    ${writes.slice(-12).join('\n    ')}` +
        `\n  primary of p${p} by committed version: ${owners.join(' ')}` +
        `\n  the reader's page events:\n    ${reader.pageLog.slice(-40).join('\n    ')}`;
    }
    return fail(
      `(e) stale read: ${describeNode(reader)} served p${p} = w${found}, but the latest write is w${latest}${detail}`,
    );
  }

  function handle(n: SimNode, outputs: readonly ConsensusOutput[]): void {
    let reincarnate = false;
    let acked = false;
    // The same order the real wiring uses (cluster-member.ts).
    for (const o of leaseLossFirst(outputs)) {
      switch (o.type) {
        case 'send':
          if (o.message.type === 'ack') acked = true;
          transmit(n, o.to, o.message);
          break;
        case 'committed':
          log(
            `${n.id}:${n.incarnation} committed v${o.state.version} t${o.state.term} [${o.state.members.map((m) => keyOf(m.id, m.incarnation)).join(' ')}]`,
          );
          recordCommit(n, o.state);
          if (traceOn) {
            committedStates.set(o.state.version, o.state);
            pageLog(n, `committed v${o.state.version}`);
          }
          applyDrop(n, n.retention.onCommitted(o.state));
          break;
        case 'accepted':
          // The node drops pages it no longer owns when it sees 'accepted': that must precede its ack.
          if (acked) fail(`${n.id}:${n.incarnation} sent an ack before the 'accepted' output it covers`);
          log(`${n.id}:${n.incarnation} accepted v${o.state.version} t${o.state.term}`);
          pageLog(n, `accepted v${o.state.version} t${o.state.term}`);
          applyDrop(n, n.retention.onAccepted(o.state));
          break;
        case 'roleChanged':
          if (o.role === 'leader') report.elections++;
          log(`${n.id}:${n.incarnation} ${o.role} term ${o.term} leader ${o.leaderId}`);
          break;
        case 'leaseLost':
          report.leaseLosts++;
          log(`${n.id}:${n.incarnation} lease lost`);
          pageLog(n, 'lease lost');
          n.retention.onLeaseLost();
          break;
        case 'removed':
          log(`${n.id}:${n.incarnation} removed`);
          pageLog(n, 'removed');
          // The real wiring then exits (a leaver) or rejoins with an empty store; either way the pages go.
          applyDrop(n, n.retention.onRemoved());
          reincarnate = true;
          break;
        case 'changeDone':
        case 'changeFailed':
          if (pendingLeave && o.changeId === pendingLeave.changeId) {
            const ok = o.type === 'changeDone' && o.result.ok;
            if (!ok) pendingLeave = null;
          }
          break;
      }
    }
    if (reincarnate) {
      // The wiring's answer to 'removed': a new incarnation that joins again with an empty store.
      report.reincarnations++;
      if (pendingLeave?.node === n.index) pendingLeave = null;
      n.incarnation++;
      boot(n, false);
    }
    scheduleTick(n);
  }

  function scheduleTick(n: SimNode): void {
    if (!n.c || n.paused) return;
    const next = n.c.nextTickAt();
    if (next === Infinity) return;
    const at = Math.max(now, next === -Infinity ? now : toGlobal(n, next)) + rnd() * 2;
    if (n.tickAt >= now && n.tickAt <= at) return;
    n.tickAt = at;
    n.tickGen++;
    queue.push(at, { kind: 'tick', node: n.index, gen: n.tickGen });
  }

  // ------------------------------------------------------------ invariants

  const owner = new Int32Array(PARTITIONS);
  const lastServer: (string | undefined)[] = new Array<string | undefined>(PARTITIONS);
  function checkServing(): void {
    owner.fill(-1);
    for (const n of nodes) {
      if (!n.c) continue;
      for (const p of n.c.servingPartitions(local(n))) {
        const other = owner[p] as number;
        if (other !== -1) {
          const o = nodes[other] as SimNode;
          fail(
            `(c) partition ${p} served by ${o.id}:${o.incarnation} (v${o.c?.committed?.version}/${o.c?.accepted?.version}) ` +
              `and ${n.id}:${n.incarnation} (v${n.c.committed?.version}/${n.c.accepted?.version})`,
          );
        }
        owner[p] = n.index;
        report.served++;
        // (e) at every instant, not only at client reads: what a read here would return now must be current.
        const page = n.paused ? undefined : n.pages.get(p);
        if (page !== undefined && page !== lastWrite[p]) staleRead(n, p, page);
        if (validate && !n.c.isServingPrimary(local(n), p)) fail(`isServingPrimary disagrees on ${p}`);
        const who = keyOf(n.id, n.incarnation);
        if (lastServer[p] !== who) {
          if (lastServer[p] !== undefined) report.handoffs++;
          lastServer[p] = who;
        }
      }
    }
  }

  function liveKeys(except: number): Set<string> {
    const keys = new Set<string>();
    for (const n of nodes)
      if (n.c && !n.c.removed && n.index !== except) keys.add(keyOf(n.id, n.incarnation));
    return keys;
  }

  /** Configurations that may still decide something: every recent state a live node holds. */
  function liveConfigs(): ClusterState[] {
    const configs: ClusterState[] = [];
    for (const n of nodes) {
      for (const s of [n.c?.committed ?? null, n.c?.accepted ?? null]) {
        if (s && s.version >= maxCommittedVersion) configs.push(s);
      }
    }
    return configs;
  }

  /**
   * Without persistence an identity that dies takes its votes with it: if a majority of a configuration is
   * dead, no protocol can make progress. Faults keep a live majority in every configuration that matters.
   */
  function canKill(index: number): boolean {
    if (pendingLeave !== null) return false;
    const live = liveKeys(index);
    // A node cut off or paused right now may be removed by the leader soon: do not count on it.
    for (const n of nodes) {
      const touches = (link: string): boolean =>
        (link.split(':')[0] as string).split('>').includes(String(n.index));
      if (n.paused || [...blocked].some(([l, k]) => k > 0 && touches(l))) {
        live.delete(keyOf(n.id, n.incarnation));
      }
    }
    const target = nodes[index];
    const targetKey = target ? keyOf(target.id, target.incarnation) : '';
    return liveConfigs().every((s) => {
      const alive = s.members.filter((m) => live.has(keyOf(m.id, m.incarnation))).length;
      // A joiner may be added at any moment: keep a live majority even in the configuration that has it.
      const size = s.members.some((m) => keyOf(m.id, m.incarnation) === targetKey)
        ? s.members.length
        : s.members.length + 1;
      // On a lossy or slow network a live member may look dead and be removed right after this crash,
      // before the crash is suspected: keep one spare then.
      return alive >= majority(size) + (loss > 0 || slow > 0 ? 1 : 0);
    });
  }

  // ------------------------------------------------------------ the wiring: joins and forwarded changes

  function forward(origin: SimNode, change: StateChange): void {
    const candidates = nodes.filter((m) => m.c && !m.paused && m !== origin);
    if (candidates.length === 0) return;
    let target = pick(candidates);
    if ((blocked.get(`${origin.index}>${target.index}`) ?? 0) > 0) return;
    for (let hop = 0; hop < 2; hop++) {
      const c = target.c as Consensus;
      const result = c.propose(change, local(target));
      if (result.ok) {
        handle(target, result.outputs);
        return;
      }
      const next = result.leaderId === null ? undefined : byId.get(result.leaderId);
      if (!next || !next.c || next.paused || next === target) return;
      if ((blocked.get(`${target.index}>${next.index}`) ?? 0) > 0) return;
      target = next;
    }
  }

  function joinAttempt(n: SimNode): void {
    const c = n.c;
    if (!c || n.paused || c.removed || isSelfMember(n, c.committed)) return;
    forward(n, { type: 'addMember', changeId: `join:${n.id}:${n.incarnation}`, member: memberInfo(n) });
  }

  // ------------------------------------------------------------ faults

  function count(kind: string): void {
    report.faults[kind] = (report.faults[kind] ?? 0) + 1;
  }

  function block(links: string[], durationMs: number): void {
    for (const l of links) blocked.set(l, (blocked.get(l) ?? 0) + 1);
    queue.push(now + durationMs, { kind: 'unblock', links });
  }

  function split(): [number[], number[]] {
    const a: number[] = [];
    const b: number[] = [];
    for (const n of nodes) (chance(0.5) ? a : b).push(n.index);
    if (a.length === 0) a.push(b.pop() as number);
    if (b.length === 0) b.push(a.pop() as number);
    return [a, b];
  }

  function crash(n: SimNode, kind: string): void {
    count(kind);
    log(`CRASH ${n.id}:${n.incarnation}`);
    pageLog(n, 'crash');
    n.c = null;
    n.pages.clear();
    n.paused = false;
    n.inbox = [];
    n.tickGen++;
    n.tickAt = Infinity;
    queue.push(now + between(50, 1500), { kind: 'restart', node: n.index });
  }

  function restart(n: SimNode): void {
    if (n.c) return;
    n.incarnation++;
    log(`RESTART ${n.id}:${n.incarnation}`);
    boot(n, false);
  }

  function resume(n: SimNode): void {
    if (!n.c || !n.paused) return;
    n.paused = false;
    log(`RESUME ${n.id}:${n.incarnation}`);
    pageLog(n, 'resume');
    const inbox = n.inbox;
    n.inbox = [];
    for (const m of inbox) {
      if (!n.c) return;
      handle(n, n.c.receive(m.from, m.message, local(n)));
    }
    if (n.c) handle(n, n.c.tick(local(n)));
  }

  function injectFault(): void {
    const live = nodes.filter((n) => n.c);
    const r = rnd();
    if (r < 0.14) {
      count('partition');
      const [a, b] = split();
      const links: string[] = [];
      for (const x of a) for (const y of b) links.push(`${x}>${y}`, `${y}>${x}`);
      block(links, between(200, 2500));
    } else if (r < 0.24) {
      count('asymmetric');
      const [a, b] = split();
      const links: string[] = [];
      for (const x of a) for (const y of b) links.push(`${x}>${y}`);
      block(links, between(200, 2500));
    } else if (r < 0.32) {
      count('isolate');
      const x = pick(nodes).index;
      const links: string[] = [];
      for (const n of nodes) if (n.index !== x) links.push(`${x}>${n.index}`, `${n.index}>${x}`);
      block(links, between(200, 3000));
    } else if (r < 0.38) {
      const x = pick(nodes).index;
      const y = pick(nodes).index;
      if (x === y) return;
      if (chance(0.5)) {
        count('link');
        block([`${x}>${y}`], between(100, 3000));
      } else {
        // A selective link: one kind of message is lost (heartbeats but not proposals, say).
        count('filter');
        const type = pick(['heartbeat', 'ack', 'propose', 'commit', 'preVote', 'vote'] as const);
        block([`${x}>${y}:${type}`], between(100, 3000));
      }
    } else if (r < 0.5) {
      const n = pick(live.filter((m) => !m.paused).length > 0 ? live.filter((m) => !m.paused) : nodes);
      if (!n.c || n.paused) return;
      count('pause');
      pageLog(n, 'pause');
      n.paused = true;
      n.tickGen++;
      n.tickAt = Infinity;
      log(`PAUSE ${n.id}:${n.incarnation}`);
      queue.push(now + between(100, 3000), { kind: 'resume', node: n.index, incarnation: n.incarnation });
    } else if (r < 0.6) {
      const victims = live.filter((n) => canKill(n.index));
      if (victims.length > 0) crash(pick(victims), 'crash');
    } else if (r < 0.7) {
      const leader = live.find((n) => n.c?.role === 'leader' && !n.paused);
      if (leader && canKill(leader.index)) crash(leader, 'leaderCrash');
    } else if (r < 0.76) {
      // Graceful leave: only when nobody is dead, so the smaller configuration keeps a live majority.
      const n = pick(nodes);
      if (!n.c || n.paused || pendingLeave !== null || !isSelfMember(n, n.c.committed)) return;
      if (nodes.some((m) => !m.c) || !canKill(-1)) return;
      const everyoneLive = liveKeys(-1);
      if (!liveConfigs().every((s) => s.members.every((m) => everyoneLive.has(keyOf(m.id, m.incarnation)))))
        return;
      count('leave');
      const changeId = `leave:${n.id}:${n.incarnation}`;
      pendingLeave = { node: n.index, changeId };
      log(`LEAVE ${n.id}:${n.incarnation}`);
      const change: StateChange = { type: 'removeMember', changeId, id: n.id, incarnation: n.incarnation };
      const own = n.c.propose(change, local(n));
      if (own.ok) handle(n, own.outputs);
      else forward(n, change);
    } else if (r < 0.88) {
      const n = pick(nodes);
      if (!n.c || n.paused) return;
      count('pool');
      const pools = n.c.committed?.pools ?? [];
      const change: StateChange =
        pools.length > 0 && chance(0.4)
          ? { type: 'destroyPool', changeId: `destroy:${seed}:${now}`, poolId: pick(pools).id }
          : {
              type: 'createPool',
              changeId: `create:${seed}:${now}`,
              kind: chance(0.5) ? 'ephemeral' : 'persistent',
              pageSize: 4096,
              owner: `app${Math.floor(rnd() * 3)}`,
              replication: 1,
            };
      forward(n, change);
    } else {
      count('network');
      loss = chance(0.5) ? 0 : between(0, 0.25);
      duplicate = chance(0.5) ? 0 : between(0, 0.1);
      slow = chance(0.4) ? 0 : between(0, 0.3);
    }
  }

  function heal(): void {
    healed = true;
    healedAt = now;
    log('HEAL');
    blocked.clear();
    loss = 0;
    duplicate = 0;
    slow = 0.05;
    for (const n of nodes) {
      if (n.paused) resume(n);
      if (!n.c) restart(n);
    }
  }

  function converged(): string | null {
    const leaders = nodes.filter((n) => n.c?.role === 'leader');
    if (leaders.length !== 1) return `${leaders.length} leaders`;
    const ref = nodes[0]?.c?.committed ?? null;
    if (!ref) return 'n0 has no committed state';
    for (const n of nodes) {
      const c = n.c;
      if (!c || n.paused) return `${n.id} not running`;
      if (!c.committed || c.committed.version !== ref.version || c.committed.term !== ref.term) {
        return `${n.id} committed v${c.committed?.version} vs v${ref.version}`;
      }
      if (!isSelfMember(n, c.committed)) return `${n.id}:${n.incarnation} not a member`;
    }
    if (ref.members.length !== nodes.length) return `${ref.members.length} members for ${nodes.length} nodes`;
    return null;
  }

  // ------------------------------------------------------------ main loop

  boot(nodes[0] as SimNode, true);
  for (const n of nodes.slice(1)) boot(n, false);
  for (const n of nodes) queue.push(between(0, 200), { kind: 'join', node: n.index });
  for (let t = between(100, 400); t < faultMs; t += between(50, 600)) queue.push(t, { kind: 'fault' });
  queue.push(faultMs, { kind: 'heal' });
  queue.push(faultMs + 50, { kind: 'converge' });
  queue.push(clientRnd() * clientOpEveryMs, { kind: 'client' });

  while (!done) {
    const item = queue.pop();
    if (!item) fail('event queue ran dry');
    const { time, event } = item as Queued;
    now = time;
    if (event.kind === 'client') {
      // Not counted as an event and followed by no serving check: client ops change nothing in the cluster.
      clientOp();
      queue.push(now + clientRnd() * 2 * clientOpEveryMs, { kind: 'client' });
      continue;
    }
    report.events++;
    switch (event.kind) {
      case 'deliver': {
        const n = nodes[event.to] as SimNode;
        if (!n.c) break;
        if (n.paused) {
          n.inbox.push({ from: event.from, message: event.message });
          continue;
        }
        if (traceOn) log(`${event.from} -> ${n.id}:${n.incarnation} ${JSON.stringify(event.message)}`);
        handle(n, n.c.receive(event.from, event.message, local(n)));
        break;
      }
      case 'tick': {
        const n = nodes[event.node] as SimNode;
        if (event.gen !== n.tickGen || !n.c || n.paused) continue;
        n.tickAt = Infinity;
        handle(n, n.c.tick(local(n)));
        break;
      }
      case 'join': {
        const n = nodes[event.node] as SimNode;
        joinAttempt(n);
        queue.push(now + between(150, 300), { kind: 'join', node: n.index });
        break;
      }
      case 'fault':
        if (!healed) injectFault();
        break;
      case 'unblock':
        if (healed) continue;
        for (const l of event.links) blocked.set(l, (blocked.get(l) ?? 1) - 1);
        continue;
      case 'resume': {
        const n = nodes[event.node] as SimNode;
        if (n.incarnation === event.incarnation) resume(n);
        break;
      }
      case 'restart':
        if (healed) continue;
        restart(nodes[event.node] as SimNode);
        break;
      case 'heal':
        heal();
        break;
      case 'converge': {
        const why = converged();
        if (why === null) {
          report.convergedAfterMs = now - healedAt;
          done = true;
        } else if (now - healedAt > convergeWithinMs) {
          fail(`(d) no convergence ${convergeWithinMs} ms after the faults stopped: ${why}`);
        } else {
          queue.push(now + 50, { kind: 'converge' });
        }
        continue;
      }
    }
    checkServing();
  }
  report.virtualMs = now;
  return report;
}
