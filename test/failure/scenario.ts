// One failure-injection run, shared by the failure tests and the chaos script: a proxied cluster, the
// workload, a fault injected while it runs, heal, convergence, final reads, and the history checked.
import type { PoolKind } from '@tmem/client';
import { startProxiedCluster, type NodeRef, type ProxiedCluster } from '../harness/proxied-cluster.ts';
import { checkHistory, type Anomaly, type CheckResult, type OpRecord } from './history.ts';
import { anomaliesByPoolKind, startWorkload, type Workload, type WorkloadOptions } from './workload.ts';

/** What a fault injector gets to work with. */
export interface FaultContext {
  readonly cluster: ProxiedCluster;
  readonly workload: Workload;
  /**
   * Counts a node as failed: it lost its memory (killed, restarted empty, removed while paused or cut off and
   * rejoined empty). The checker allows DATA_LOST only once `replication` distinct nodes failed. The runner
   * also counts, at the end, every node whose incarnation changed: it was removed and rejoined empty.
   */
  failed(ref: NodeRef): void;
  /** Progress notes (printed by the chaos script with --verbose). */
  log(line: string): void;
}

/** Injects one fault (or a schedule of them) while the workload runs; the runner heals afterwards. */
export type FaultInjector = (context: FaultContext) => Promise<void>;

/** Options of runScenario. */
export interface ScenarioOptions {
  /** @default 3 */
  nodes?: number;
  /** Replication factor of the persistent pools. @default 2 */
  replication?: number;
  /** Clients of the workload, each from its own address. @default 3 */
  clients?: number;
  /** Seeds the workload's ops and the proxies' draws. @default 1 */
  seed?: number;
  /** Ops that must settle before the fault (the cluster is warm and every key was written). @default 300 */
  warmupOps?: number;
  /** Ops that must settle after the heal, before the workload stops. @default 200 */
  afterHealOps?: number;
  /** Everything else about the workload. */
  workload?: Omit<WorkloadOptions, 'seeds' | 'clientAddresses' | 'replication' | 'seed'>;
  log?: (line: string) => void;
}

/** What a run produced. */
export interface ScenarioResult {
  check: CheckResult;
  /** The anomalies, split by the kind of pool they are about. */
  anomalies: Record<PoolKind, Anomaly[]>;
  /** Distinct nodes that failed (see FaultContext.failed). */
  failedNodes: number;
  replication: number;
  history: OpRecord[];
  /** What each node's last process logged to stderr (its last 64 KiB), for reading an anomaly's cause. */
  nodeLogs: Array<{ id: string; stderr: string }>;
}

const idsOf = (nodes: readonly { id: string }[]): string => nodes.map((n) => n.id).join(', ');

/**
 * Runs one scenario: starts the cluster and the workload, waits for warm-up progress, runs `inject`, then heals
 * every link and resumes every paused node, waits until every running node is a member again and the workload
 * made progress, stops the workload, waits for the proxies to deliver what they delayed, reads every key twice
 * (the convergence check) and checks the history. Every process and proxy is gone when it returns or throws.
 */
export async function runScenario(
  inject: FaultInjector,
  options: ScenarioOptions = {},
): Promise<ScenarioResult> {
  const log = options.log ?? (() => undefined);
  const replication = options.replication ?? 2;
  const seed = options.seed ?? 1;
  const cluster = await startProxiedCluster({ size: options.nodes ?? 3, seed });
  try {
    log(`cluster up: ${idsOf(cluster.nodes)}`);
    const incarnations = new Map((await cluster.state()).members.map((m) => [m.id, m.incarnation]));
    const workload = await startWorkload({
      ...options.workload,
      seeds: cluster.seeds(),
      clientAddresses: Array.from({ length: options.clients ?? 3 }, (_, i) => cluster.clientAddress(i)),
      replication,
      seed,
    });
    const failed = new Set<string>();
    try {
      await workload.progress(options.warmupOps ?? 300);
      log(`warm: ${workload.settled()} ops`);
      await inject({
        cluster,
        workload,
        failed: (ref) => failed.add(cluster.node(ref).id),
        log,
      });
      log(`fault over: ${workload.settled()} ops; healing`);
      cluster.heal();
      for (const node of cluster.nodes) if (node.status === 'paused') cluster.resume(node);
      const converged = await cluster.waitForMembers();
      log(`converged: ${idsOf(cluster.live())} agree`);
      // A node removed and rejoined (a new incarnation) lost its memory, whatever the fault meant to do.
      for (const member of converged.members) {
        const before = incarnations.get(member.id);
        if (before !== undefined && before !== member.incarnation) failed.add(member.id);
      }
      await workload.progress(options.afterHealOps ?? 200);
      await workload.stop();
      await cluster.drained();
      await workload.finalReads(2);
    } finally {
      await workload.close();
    }
    const check = checkHistory(workload.history, { replication, failedNodes: failed.size });
    log(`checked ${check.stats.ops} ops: ${check.anomalies.length} anomalies`);
    return {
      check,
      anomalies: anomaliesByPoolKind(check, workload),
      failedNodes: failed.size,
      replication,
      history: workload.history.ops(),
      nodeLogs: cluster.nodes.map((node) => ({ id: node.id, stderr: node.process.stderr() })),
    };
  } finally {
    await cluster.close();
  }
}

/**
 * 'no anomaly', or a count by kind and the first `max` anomalies with the ops they name: short enough for a
 * test failure message, complete enough to see what went wrong.
 */
export function describeAnomalies(anomalies: readonly Anomaly[], max = 5): string {
  if (anomalies.length === 0) return 'no anomaly';
  const counts = new Map<string, number>();
  for (const a of anomalies) counts.set(a.kind, (counts.get(a.kind) ?? 0) + 1);
  const lines = [
    `${anomalies.length} anomalies: ${[...counts].map(([kind, n]) => `${kind} ×${n}`).join(', ')}`,
    ...anomalies.slice(0, max).map((a) => `  ${a.kind} on ${a.key}: ${a.message}`),
  ];
  if (anomalies.length > max) lines.push(`  ... and ${anomalies.length - max} more`);
  return lines.join('\n');
}
