// The faults of the failure tests and the chaos script, one function each. Every fault waits for the cluster to
// react (a condition, never a guessed time) and for the workload to make progress under it, then returns with
// the fault still in force: healing is the caller's (runScenario heals at the end; chaos heals between faults).
import { stateOf } from '../harness/cluster.ts';
import { waitFor } from '../harness/wait-for.ts';
import type { ProxiedNode } from '../harness/proxied-cluster.ts';
import type { OpRecord } from './history.ts';
import type { FaultContext } from './scenario.ts';

/** What a victim is to the writes in flight when it is struck. */
export type VictimRole = 'primary' | 'replica' | 'coordinator';

/** Ops that must settle while a fault holds, so the workload ran under it. @default in each fault */
export interface HoldOptions {
  holdOps?: number;
}

/** A live node that is not the coordinator: `pick` in [0, 1) chooses among them in id order. */
export async function follower(context: FaultContext, pick = 0): Promise<ProxiedNode> {
  const leader = await context.cluster.leader();
  const followers = context.cluster.live().filter((n) => n.id !== leader.id);
  const node = followers[Math.floor(pick * followers.length)];
  if (node === undefined) throw new Error('no live follower to strike');
  return node;
}

/** A victim for `role`: the coordinator, or a follower (every follower is primary of some keys, replica of others). */
export async function victimFor(context: FaultContext, role: VictimRole, pick = 0): Promise<ProxiedNode> {
  return role === 'coordinator' ? context.cluster.leader() : follower(context, pick);
}

/**
 * Waits until a persistent put is in flight whose handle `node` owns in `role` (its primary, one of its
 * replicas, or either for the coordinator), so a fault that follows strikes mid-write.
 */
export async function whileWriting(
  context: FaultContext,
  node: ProxiedNode,
  role: VictimRole,
): Promise<void> {
  const { cluster, workload } = context;
  const state = await cluster.state();
  const owns = (op: OpRecord): boolean => {
    if (op.type !== 'put' || op.poolKind !== 'persistent') return false;
    const owners = cluster.ownersOf(state, Number(op.pool), op.oid, op.index, workload.replication);
    if (role === 'primary') return owners[0] === node.id;
    if (role === 'replica') return owners.slice(1).includes(node.id);
    return owners.includes(node.id);
  };
  await waitFor(() => workload.history.pending().some(owns), {
    what: `a put in flight with ${node.id} as its ${role}`,
    intervalMs: 1,
  });
}

/** SIGKILL, mid-write; holds until the survivors removed it and the workload ran on without it. */
export async function crash(
  context: FaultContext,
  node: ProxiedNode,
  role: VictimRole,
  options: HoldOptions = {},
): Promise<void> {
  await whileWriting(context, node, role);
  await context.cluster.kill(node);
  context.failed(node);
  context.log(`killed ${node.id} (${role}) mid-write`);
  await context.cluster.waitForMembers();
  await context.workload.progress(options.holdOps ?? 200);
}

/** The incarnation the cluster lists for node `id`, read from a live node. */
async function incarnationOf(context: FaultContext, id: string): Promise<number | undefined> {
  return (await context.cluster.state()).members.find((m) => m.id === id)?.incarnation;
}

/**
 * SIGKILL mid-write and at once a fresh process with the same id and an empty store; holds until its new
 * incarnation is a member and the workload ran on.
 */
export async function restartEmpty(
  context: FaultContext,
  node: ProxiedNode,
  options: HoldOptions = {},
): Promise<void> {
  const before = (await incarnationOf(context, node.id)) ?? 0;
  await whileWriting(context, node, 'primary');
  await context.cluster.restart(node);
  context.failed(node);
  context.log(`restarted ${node.id} empty`);
  await waitFor(async () => ((await incarnationOf(context, node.id)) ?? 0) > before, {
    what: `a new incarnation of ${node.id} in the cluster`,
    timeoutMs: 30_000,
    intervalMs: 100,
  });
  await context.cluster.waitForMembers();
  await context.workload.progress(options.holdOps ?? 200);
}

/**
 * SIGSTOP until the others removed the node (longer than its lease), the workload running meanwhile; then
 * SIGCONT. The node wakes without a lease and must rejoin as a new, empty incarnation.
 */
export async function pauseBeyondLease(
  context: FaultContext,
  node: ProxiedNode,
  options: HoldOptions = {},
): Promise<void> {
  await whileWriting(context, node, 'primary');
  context.cluster.pause(node);
  context.failed(node);
  context.log(`paused ${node.id}`);
  await context.cluster.waitForMembers();
  await context.workload.progress(options.holdOps ?? 150);
  context.cluster.resume(node);
  context.log(`resumed ${node.id}`);
}

/**
 * Cuts `minority` off from the other nodes (clients still reach both sides); holds until the majority removed
 * the minority and the workload ran on.
 */
export async function partitionMinority(
  context: FaultContext,
  minority: readonly ProxiedNode[],
  options: HoldOptions = {},
): Promise<void> {
  const { cluster } = context;
  const majority = cluster.live().filter((n) => !minority.some((m) => m.id === n.id));
  cluster.partition(minority, majority);
  for (const node of minority) context.failed(node);
  context.log(
    `partitioned ${minority.map((n) => n.id).join(', ')} | ${majority.map((n) => n.id).join(', ')}`,
  );
  await cluster.waitForMembers(majority);
  await context.workload.progress(options.holdOps ?? 200);
}

/**
 * Bytes from `from` to `to` vanish, the other way still flows; holds until the cluster removed one of the two
 * (`to` no longer hears its coordinator, or `from` no longer hears `to`'s acks) and the workload ran on.
 */
export async function oneWay(
  context: FaultContext,
  from: ProxiedNode,
  to: ProxiedNode,
  options: HoldOptions = {},
): Promise<void> {
  const { cluster } = context;
  cluster.oneWay(from, to);
  context.log(`one-way cut ${from.id} -> ${to.id}`);
  // Asked of a third node: either of the two may still list itself.
  const observer = cluster.live().find((n) => n.id !== from.id && n.id !== to.id);
  if (observer === undefined) throw new Error('a one-way cut needs a third node to observe it');
  const removed = await waitFor(
    async () => {
      const members = (await stateOf(observer.directUrl))?.members;
      return members && [from, to].find((n) => !members.some((m) => m.id === n.id));
    },
    { what: `${from.id} or ${to.id} removed`, timeoutMs: 30_000, intervalMs: 100 },
  );
  context.failed(removed);
  context.log(`${removed.id} was removed`);
  await context.workload.progress(options.holdOps ?? 200);
}

/** Delays every byte to and from the node; holds while the workload runs `holdOps` ops. Nothing fails. */
export async function slowLinks(
  context: FaultContext,
  node: ProxiedNode,
  ms: number,
  jitterMs: number,
  options: HoldOptions = {},
): Promise<void> {
  context.cluster.slow(node, ms, jitterMs);
  context.log(`slowed ${node.id} by ${ms}+${jitterMs} ms`);
  await context.workload.progress(options.holdOps ?? 300);
}

/**
 * The node drops off the network until removed, comes back until it is a member again, `cycles` times (a
 * flapping link); returns with it cut off once more.
 */
export async function flap(
  context: FaultContext,
  node: ProxiedNode,
  cycles: number,
  options: HoldOptions = {},
): Promise<void> {
  const { cluster } = context;
  const others = () => cluster.live().filter((n) => n.id !== node.id);
  context.failed(node);
  for (let cycle = 1; cycle <= cycles; cycle++) {
    cluster.isolate(node);
    context.log(`flap ${cycle}: ${node.id} cut off`);
    await cluster.waitForMembers(others());
    await context.workload.progress(options.holdOps ?? 50);
    if (cycle === cycles) return;
    cluster.heal();
    await cluster.waitForMembers();
    context.log(`flap ${cycle}: ${node.id} back`);
    await context.workload.progress(options.holdOps ?? 50);
  }
}

/** A new node joins; holds until it is a member and the workload ran on. */
export async function join(context: FaultContext, options: HoldOptions = {}): Promise<ProxiedNode> {
  const node = await context.cluster.join();
  context.log(`${node.id} joining`);
  await context.cluster.waitForMembers();
  await context.workload.progress(options.holdOps ?? 150);
  return node;
}

/** A graceful leave (SIGTERM); holds until the node is gone from the cluster and the workload ran on. */
export async function leave(
  context: FaultContext,
  node: ProxiedNode,
  options: HoldOptions = {},
): Promise<void> {
  await context.cluster.leave(node);
  context.log(`${node.id} left`);
  await context.cluster.waitForMembers();
  await context.workload.progress(options.holdOps ?? 150);
}
