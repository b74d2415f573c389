// Randomized fault schedules for the chaos script, drawn from a seeded PRNG: the same seed and run number always
// give the same schedule (which faults, in which order, on which node by position, with which parameters).
// The processes' timing is not reproducible, so a replayed run strikes the same way but not at the same instant.
import * as faults from './faults.ts';
import type { FaultContext } from './scenario.ts';
import { seededRandom } from '../harness/random.ts';

/** Every kind of fault the chaos script injects. */
export const FAULT_KINDS = [
  'kill-primary',
  'kill-replica',
  'kill-coordinator',
  'restart-empty',
  'pause',
  'partition',
  'one-way',
  'slow',
  'lossy',
  'flap',
  'join-leave',
] as const;

/** One kind of fault. */
export type FaultKind = (typeof FAULT_KINDS)[number];

/** One step of a schedule. Nodes are chosen by position (`pick` in [0, 1)), since ids of leaders are timing. */
export interface ScheduledFault {
  kind: FaultKind;
  /** Chooses the node(s) struck among the candidates, in id order. */
  pick: number;
  /** Ops the workload must settle while the fault holds. */
  holdOps: number;
  /** slow: base delay each way; lossy: unused. */
  ms: number;
  /** slow: jitter on top of `ms`. */
  jitterMs: number;
  /** lossy: the probability that a chunk resets its connection. */
  probability: number;
  /** one-way: cut the coordinator's messages to a follower (true) or a follower's to the coordinator. */
  fromCoordinator: boolean;
}

/** The seed of run `run` (1-based) of a chaos session started with `seed`: also the workload's and proxies'. */
export function runSeed(seed: number, run: number): number {
  return (Math.imul(seed >>> 0, 1_000_003) + run) >>> 0;
}

/** The schedule of run `run` of a session seeded `seed`: `count` faults, a pure function of its arguments. */
export function makeSchedule(seed: number, run: number, count: number): ScheduledFault[] {
  const random = seededRandom(runSeed(seed, run));
  return Array.from({ length: count }, () => {
    const kind = FAULT_KINDS[Math.floor(random() * FAULT_KINDS.length)] as FaultKind;
    // Every field is drawn for every step, used or not, so one kind's parameters never shift the next step's.
    return {
      kind,
      pick: random(),
      holdOps: 100 + Math.floor(random() * 200),
      ms: 20 + Math.floor(random() * 130),
      jitterMs: Math.floor(random() * 60),
      probability: 0.005 + random() * 0.03,
      fromCoordinator: random() < 0.5,
    };
  });
}

/** A schedule step as one short word, for logs and reports: `slow(pick .42, 80+13ms)`. */
export function describeStep(step: ScheduledFault): string {
  // Truncated, not rounded: .997 is .99, never 1.00, which no pick can be.
  const pick = `pick .${String(Math.floor(step.pick * 100)).padStart(2, '0')}`;
  switch (step.kind) {
    case 'slow':
      return `slow(${pick}, ${step.ms}+${step.jitterMs}ms)`;
    case 'lossy':
      return `lossy(${pick}, p=${step.probability.toFixed(3)})`;
    case 'one-way':
      return `one-way(${pick}, ${step.fromCoordinator ? 'coordinator->follower' : 'follower->coordinator'})`;
    default:
      return `${step.kind}(${pick})`;
  }
}

/** Injects one scheduled fault and holds it (see faults.ts); the caller heals with `recover`. */
export async function injectStep(context: FaultContext, step: ScheduledFault): Promise<void> {
  const hold = { holdOps: step.holdOps };
  const { cluster } = context;
  switch (step.kind) {
    case 'kill-primary':
      return faults.crash(context, await faults.follower(context, step.pick), 'primary', hold);
    case 'kill-replica':
      return faults.crash(context, await faults.follower(context, step.pick), 'replica', hold);
    case 'kill-coordinator':
      return faults.crash(context, await cluster.leader(), 'coordinator', hold);
    case 'restart-empty':
      return faults.restartEmpty(context, await faults.follower(context, step.pick), hold);
    case 'pause':
      return faults.pauseBeyondLease(context, await faults.follower(context, step.pick), hold);
    case 'partition': {
      // A minority as large as a majority survives: a run of consecutive nodes from the picked position.
      const live = cluster.live();
      const size = Math.floor((live.length - 1) / 2);
      const start = Math.floor(step.pick * live.length);
      const minority = Array.from({ length: size }, (_, i) => live[(start + i) % live.length]!);
      return faults.partitionMinority(context, minority, hold);
    }
    case 'one-way': {
      const leader = await cluster.leader();
      const other = await faults.follower(context, step.pick);
      return step.fromCoordinator
        ? faults.oneWay(context, leader, other, hold)
        : faults.oneWay(context, other, leader, hold);
    }
    case 'slow':
      return faults.slowLinks(
        context,
        await faults.follower(context, step.pick),
        step.ms,
        step.jitterMs,
        hold,
      );
    case 'lossy': {
      const node = await faults.follower(context, step.pick);
      cluster.lossy(node, step.probability);
      context.log(`lossy links at ${node.id}, p=${step.probability.toFixed(3)}`);
      return context.workload.progress(step.holdOps);
    }
    case 'flap':
      return faults.flap(context, await faults.follower(context, step.pick), 2, hold);
    case 'join-leave': {
      await faults.join(context, hold);
      return faults.leave(context, await faults.follower(context, step.pick), hold);
    }
  }
}

/**
 * Undoes a step: lifts every link fault, resumes paused nodes, restarts killed ones (fresh and empty, so the
 * cluster keeps its size), and waits until every node is a member again and the workload ran on.
 */
export async function recover(context: FaultContext): Promise<void> {
  const { cluster } = context;
  cluster.heal();
  for (const node of cluster.nodes) {
    if (node.status === 'paused') cluster.resume(node);
    else if (node.status === 'killed') await cluster.restart(node);
  }
  await cluster.waitForMembers();
  await context.workload.progress(100);
}
