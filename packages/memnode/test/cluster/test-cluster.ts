// A small hand-driven cluster for focused consensus tests: shared virtual clock, instant in-order delivery,
// links that can be cut, every output recorded per node. The big adversarial run is in sim.ts.
import { ConsensusMessage } from '../../src/cluster/consensus-messages.ts';
import {
  createConsensus,
  type Consensus,
  type ConsensusOptions,
  type ConsensusOutput,
} from '../../src/cluster/consensus.ts';
import { initialState, type MemberInfo, type StateChange } from '../../src/cluster/cluster-state.ts';
import { createRandom } from './sim.ts';

/** The pool-id key of every test cluster, so its runs, and the pool ids they give, repeat exactly. */
export const TEST_POOL_ID_KEY = '0f1e2d3c4b5a69788796a5b4c3d2e1f0';

/** One message in flight. */
export interface Envelope {
  /** Virtual time it was sent. */
  at: number;
  from: string;
  to: string;
  message: ConsensusMessage;
}

/** A test cluster; node ids are the keys of `nodes`. */
export interface TestCluster {
  readonly nodes: Map<string, Consensus>;
  /** Every output each node produced, in order (cleared by `clearOutputs`). */
  readonly outputs: Map<string, ConsensusOutput[]>;
  /** Every output with the time and node that produced it. */
  readonly timeline: { at: number; id: string; output: ConsensusOutput }[];
  /** Messages sent and not yet delivered. */
  readonly pending: Envelope[];
  /** Every message ever sent (validated against the zod schema when sent). */
  readonly sent: Envelope[];
  now: number;
  /** Starts the first node of a new cluster. */
  bootstrap(id: string): Consensus;
  /** Starts a joiner (no state) with the given incarnation. */
  start(id: string, incarnation?: number): Consensus;
  /** Removes a node: it processes nothing any more, messages to it are dropped. */
  crash(id: string): void;
  /** Cuts (or restores) delivery from `a` to `b`; `both` cuts both directions. */
  cut(a: string, b: string, both?: boolean): void;
  heal(): void;
  /** Delivers pending messages (and what they cause) until none is left. */
  flush(): void;
  /** Advances the clock by `ms` in `stepMs` steps, ticking every node and flushing after each step. */
  run(ms: number, stepMs?: number): void;
  /** Proposes at `id`, processing outputs. */
  propose(id: string, change: StateChange): ReturnType<Consensus['propose']>;
  /** Asks the leader (found by role) to add `id` (started unless running), then runs until it is committed everywhere or `ms` passed. */
  join(id: string, incarnation?: number, ms?: number): void;
  leader(): Consensus | undefined;
  member(id: string, incarnation?: number): MemberInfo;
  clearOutputs(): void;
  /** Outputs of one node of one type. */
  outputsOf<T extends ConsensusOutput['type']>(id: string, type: T): Extract<ConsensusOutput, { type: T }>[];
}

/** Creates an empty test cluster; `options` apply to every node (besides self/initialState/random). */
export function createTestCluster(options: Partial<ConsensusOptions> = {}, partitionCount = 16): TestCluster {
  const random = createRandom(42);
  const nodes = new Map<string, Consensus>();
  const outputs = new Map<string, ConsensusOutput[]>();
  const blocked = new Set<string>();
  const crashed = new Set<string>();
  const incarnations = new Map<string, number>();

  const member = (id: string, incarnation = incarnations.get(id) ?? 1): MemberInfo => ({
    id,
    url: `test://${id}`,
    incarnation,
    capacityBytes: 256 * 1024 * 1024,
  });

  const cluster: TestCluster = {
    nodes,
    outputs,
    timeline: [],
    pending: [],
    sent: [],
    now: 1000,
    bootstrap(id) {
      incarnations.set(id, 1);
      const c = createConsensus({
        ...options,
        self: { id, incarnation: 1 },
        initialState: initialState(member(id, 1), partitionCount, TEST_POOL_ID_KEY),
        random,
      });
      nodes.set(id, c);
      outputs.set(id, []);
      crashed.delete(id);
      return c;
    },
    start(id, incarnation = 1) {
      incarnations.set(id, incarnation);
      const c = createConsensus({ ...options, self: { id, incarnation }, random });
      nodes.set(id, c);
      outputs.set(id, outputs.get(id) ?? []);
      crashed.delete(id);
      return c;
    },
    crash(id) {
      crashed.add(id);
    },
    cut(a, b, both = true) {
      blocked.add(`${a}>${b}`);
      if (both) blocked.add(`${b}>${a}`);
    },
    heal() {
      blocked.clear();
    },
    flush() {
      for (let guard = 0; cluster.pending.length > 0; guard++) {
        if (guard > 100_000) throw new Error('message storm: flush did not settle');
        const env = cluster.pending.shift() as Envelope;
        if (crashed.has(env.to) || blocked.has(`${env.from}>${env.to}`)) continue;
        const target = nodes.get(env.to);
        if (!target) continue;
        record(env.to, target.receive(env.from, env.message, cluster.now));
      }
    },
    run(ms, stepMs = 10) {
      const end = cluster.now + ms;
      while (cluster.now < end) {
        cluster.now = Math.min(end, cluster.now + stepMs);
        for (const [id, c] of nodes) if (!crashed.has(id)) record(id, c.tick(cluster.now));
        cluster.flush();
      }
    },
    propose(id, change) {
      const result = (nodes.get(id) as Consensus).propose(change, cluster.now);
      if (result.ok) record(id, result.outputs);
      cluster.flush();
      return result;
    },
    join(id, incarnation = 1, ms = 3000) {
      const existing = nodes.get(id);
      const joiner =
        existing && existing.self.incarnation === incarnation && !crashed.has(id)
          ? existing
          : cluster.start(id, incarnation);
      const change: StateChange = {
        type: 'addMember',
        changeId: `join:${id}:${incarnation}`,
        member: member(id, incarnation),
      };
      const end = cluster.now + ms;
      while (cluster.now < end) {
        const leader = [...nodes.entries()].find(([n, c]) => c.role === 'leader' && !crashed.has(n));
        if (leader) cluster.propose(leader[0], change);
        cluster.run(50);
        if (joiner.committed?.members.some((m) => m.id === id && m.incarnation === incarnation)) {
          const version = joiner.committed.version;
          const all = [...nodes.entries()].filter(([n, c]) => !crashed.has(n) && !c.removed);
          if (all.every(([, c]) => c.committed?.version === version)) return;
        }
      }
      throw new Error(`${id}:${incarnation} did not join within ${ms} ms`);
    },
    leader() {
      const leaders = [...nodes.entries()].filter(([id, c]) => c.role === 'leader' && !crashed.has(id));
      return leaders.length === 1 ? leaders[0]?.[1] : undefined;
    },
    member,
    clearOutputs() {
      for (const list of outputs.values()) list.length = 0;
    },
    outputsOf(id, type) {
      return (outputs.get(id) ?? []).filter((o) => o.type === type) as never;
    },
  };

  function record(id: string, produced: ConsensusOutput[]): void {
    (outputs.get(id) as ConsensusOutput[]).push(...produced);
    for (const o of produced) {
      cluster.timeline.push({ at: cluster.now, id, output: o });
      if (o.type !== 'send') continue;
      // Every message must survive the wire: JSON round trip and the schema the wire layer applies.
      const message = ConsensusMessage.parse(JSON.parse(JSON.stringify(o.message)));
      const env = { at: cluster.now, from: id, to: o.to, message };
      cluster.sent.push(env);
      cluster.pending.push(env);
    }
  }

  return cluster;
}

/** Builds a running cluster of `ids` (the first bootstraps, the others join in order). */
export function startCluster(
  ids: readonly string[],
  options: Partial<ConsensusOptions> = {},
  partitionCount = 16,
): TestCluster {
  const cluster = createTestCluster(options, partitionCount);
  const [first, ...rest] = ids;
  cluster.bootstrap(first as string);
  cluster.run(20);
  for (const id of rest) cluster.join(id);
  cluster.run(300);
  return cluster;
}
