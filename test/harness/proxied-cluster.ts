// A cluster of real node processes with a fault proxy in front of every node, so a test can break the link
// between any two processes, clients included, one pair and one direction at a time.
//
// How the pairs are told apart: every node advertises its proxy's URL (`--advertise-url`), so peers and
// clients only ever reach it through the proxy, and makes its own outgoing links from its own loopback address
// (`--source-address 127.0.1.N`); clients connect from 127.0.2.N (the client's `localAddress`). The proxy in
// front of node B sees a connection from 127.0.1.A and applies the faults set for A -> B and B -> A there:
// bytes from A travel toTarget on A's links to B and fromTarget on B's links to A.
import { partitionOf, persistentTableFor, toOidBytes, type ClusterState } from '@tmem/protocol';
import { TEST_TIMING_ARGS, stateOf, viewOf, waitForMembers } from './cluster.ts';
import { startFaultProxy, type Fault, type FaultProxy } from './fault-proxy.ts';
import { startNode, type NodeProcess } from './node-process.ts';
import { waitFor } from './wait-for.ts';

/** Where a node's process is in its life. */
export type NodeStatus = 'up' | 'paused' | 'killed' | 'left';

/** One node of a proxied cluster: a stable id, source address and proxy, and the process running now. */
export interface ProxiedNode {
  /** Node id (`n0`, `n1`, ...), kept by restarts. */
  readonly id: string;
  /** Loopback address its outgoing peer links come from. */
  readonly sourceAddress: string;
  /** The proxy in front of it; every peer and client reaches it through this. */
  readonly proxy: FaultProxy;
  /** The URL it advertises: its proxy's. */
  readonly url: string;
  /** The process running now (the last one, once killed or gone). */
  readonly process: NodeProcess;
  /** The URL the process listens on, bypassing the proxy: for observing it, never for the workload. */
  readonly directUrl: string;
  readonly status: NodeStatus;
}

/** A node, or its id. */
export type NodeRef = ProxiedNode | string;

/** The endpoint that stands for every client of the cluster, as one group. Node ids are `n0`, `n1`, ... */
export const CLIENTS = 'clients';

/** One side of a link: a node, its id, or CLIENTS. */
export type Endpoint = NodeRef;

/** Options of startProxiedCluster. */
export interface ProxiedClusterOptions {
  /** @default 3 */
  size?: number;
  /** Extra `tmem node` arguments for every node, after TEST_TIMING_ARGS. */
  args?: string[];
  /** @default '64MiB' */
  capacity?: string;
  /** Seeds the proxies' drop and jitter draws, so a chaos run can be replayed. @default 1 */
  seed?: number;
}

/** A running proxied cluster and the faults a test can inject into it. */
export interface ProxiedCluster {
  /** Every node ever started (killed and departed ones too), in start order. */
  readonly nodes: readonly ProxiedNode[];
  node(ref: NodeRef): ProxiedNode;
  /** Nodes whose process runs and is not paused. */
  live(): ProxiedNode[];
  /** The advertised (proxy) URLs of the live nodes: seeds for clients and joiners. */
  seeds(): string[];
  /** The source address of client `i` (0-based); pass it to connect() as `localAddress`. */
  clientAddress(i: number): string;
  /**
   * Every address a client connection may come from: the ones clientAddress() handed out, plus 127.0.0.1 for
   * a client without a `localAddress`. Faults toward 'clients' apply to all of them.
   */
  clientSources(): string[];
  /** The coordinator all live nodes agree on. */
  leader(): Promise<ProxiedNode>;
  /** The committed state of a live node (read directly, not through a proxy). */
  state(): Promise<ClusterState>;
  /**
   * Ids of the owners of a persistent page handle (primary first) under `state`, for R copies; with R = 1, the
   * owner of an ephemeral page.
   */
  ownersOf(state: ClusterState, pool: number, oid: string, index: number, replication: number): string[];
  /**
   * Waits until every node in `refs` (default: the live ones) reports the same committed state whose members
   * are exactly those nodes.
   */
  waitForMembers(refs?: readonly NodeRef[], timeoutMs?: number): Promise<ClusterState>;

  /** Cuts every link between a node (or 'clients') of `a` and one of `b`, both ways. Adds to earlier faults. */
  partition(a: readonly Endpoint[], b: readonly Endpoint[]): void;
  /** Cuts a node off from every other node and from every client. */
  isolate(ref: NodeRef): void;
  /** Bytes from `from` to `to` vanish; the other direction still flows (an asymmetric partition). */
  oneWay(from: Endpoint, to: Endpoint): void;
  /** Delays every byte to and from a node by `ms` (plus a seeded `0..jitterMs`), in each direction. */
  slow(ref: NodeRef, ms: number, jitterMs?: number): void;
  /** Resets a link to or from a node at each chunk with `probability` (a lossy link: connections keep dying). */
  lossy(ref: NodeRef, probability: number): void;
  /** Lifts every link fault (connections that lost bytes are reset). Processes stay as they are. */
  heal(): void;

  /** SIGKILL; resolves once the process exited. */
  kill(ref: NodeRef): Promise<void>;
  /** SIGSTOP: the process keeps its sockets but does nothing. */
  pause(ref: NodeRef): void;
  /** SIGCONT. */
  resume(ref: NodeRef): void;
  /**
   * A fresh process with the same id, source address and proxy (so the same advertised URL) and an empty store,
   * joining through the live nodes. Kills the old one first if it still runs. Resolves once it listens.
   */
  restart(ref: NodeRef): Promise<ProxiedNode>;
  /** Starts a new node (next id) behind its own proxy, joining through the live nodes; resolves once it listens. */
  join(): Promise<ProxiedNode>;
  /** SIGTERM (a graceful leave); resolves once the process exited. */
  leave(ref: NodeRef): Promise<void>;
  /** Resolves once no proxy holds delayed bytes: whatever was sent has arrived or was dropped. */
  drained(): Promise<void>;
  /** Kills every process and closes every proxy. Idempotent. */
  close(): Promise<void>;
}

/** The loopback address of node number `n` (0-based). */
function nodeAddress(n: number): string {
  if (n > 253) throw new RangeError('at most 254 nodes per proxied cluster');
  return `127.0.1.${n + 1}`;
}

/** The loopback address of client number `i` (0-based). */
function clientAddressOf(i: number): string {
  if (!Number.isInteger(i) || i < 0 || i > 253) throw new RangeError(`client number ${i} is not in 0..253`);
  return `127.0.2.${i + 1}`;
}

/** Where a client without a localAddress comes from. */
const DEFAULT_CLIENT_SOURCE = '127.0.0.1';

interface NodeRecord {
  id: string;
  number: number;
  sourceAddress: string;
  proxy: FaultProxy;
  process: NodeProcess;
  status: NodeStatus;
}

/**
 * Starts `size` node processes, each behind its own fault proxy and with its own source address: the first
 * founds the cluster, the others join through its proxy. Resolves once all agree on the full member list.
 * Processes and proxies are registered with killAllNodes() and closeAllFaultProxies() too.
 */
export async function startProxiedCluster(options: ProxiedClusterOptions = {}): Promise<ProxiedCluster> {
  const size = options.size ?? 3;
  // A node of the failure suite may be cut off while it joins for longer than the production default of
  // --join-timeout (60 s) on a loaded machine; it must keep trying, as the scenario expects, not exit.
  const baseArgs = [...TEST_TIMING_ARGS, '--join-timeout', '10m', ...(options.args ?? [])];
  const seed = options.seed ?? 1;
  const records: NodeRecord[] = [];
  const views = new Map<NodeRecord, ProxiedNode>();
  const clientAddresses = new Set<string>();

  // The fault model: links are (from, to) pairs of endpoint names, node ids or 'clients'.
  const blocked = new Set<string>();
  const delays = new Map<string, { ms: number; jitterMs: number }>();
  const losses = new Map<string, number>();
  let closed = false;

  function view(record: NodeRecord): ProxiedNode {
    let node = views.get(record);
    if (node === undefined) {
      node = {
        get id() {
          return record.id;
        },
        get sourceAddress() {
          return record.sourceAddress;
        },
        get proxy() {
          return record.proxy;
        },
        get url() {
          return record.proxy.url;
        },
        get process() {
          return record.process;
        },
        get directUrl() {
          return record.process.url;
        },
        get status() {
          return record.status;
        },
      };
      views.set(record, node);
    }
    return node;
  }

  function recordOf(ref: NodeRef): NodeRecord {
    const id = typeof ref === 'string' ? ref : ref.id;
    const record = records.find((r) => r.id === id);
    if (record === undefined) throw new Error(`no node ${id} in this cluster`);
    return record;
  }

  function endpointName(endpoint: Endpoint): string {
    return endpoint === CLIENTS ? CLIENTS : recordOf(endpoint).id;
  }

  function sourcesOf(name: string): string[] {
    return name === CLIENTS ? [...clientAddresses, DEFAULT_CLIENT_SOURCE] : [recordOf(name).sourceAddress];
  }

  /** The fault on bytes flowing from endpoint `from` to endpoint `to`. */
  function faultOn(from: string, to: string, salt: number): Fault {
    if (blocked.has(`${from}>${to}`)) return { kind: 'blackhole' };
    const loss = Math.max(losses.get(from) ?? 0, losses.get(to) ?? 0);
    if (loss > 0) return { kind: 'drop', probability: loss, seed: seed + salt };
    const delay = [delays.get(from), delays.get(to)].reduce(
      (worst, d) => (d !== undefined && (worst === undefined || d.ms > worst.ms) ? d : worst),
      undefined,
    );
    if (delay !== undefined)
      return { kind: 'delay', ms: delay.ms, jitterMs: delay.jitterMs, seed: seed + salt };
    return { kind: 'none' };
  }

  /** Sets, on every proxy, the faults of every source it can see, from the model. */
  function apply(): void {
    if (closed) return;
    for (const target of records) {
      const others = [...records.filter((r) => r !== target).map((r) => r.id), CLIENTS];
      others.forEach((source, i) => {
        const salt = target.number * 1000 + i * 2;
        const toTarget = faultOn(source, target.id, salt);
        const fromTarget = faultOn(target.id, source, salt + 1);
        for (const address of sourcesOf(source)) {
          target.proxy.setFault('toTarget', toTarget, { from: address });
          target.proxy.setFault('fromTarget', fromTarget, { from: address });
        }
      });
    }
  }

  function nodeArgs(record: Pick<NodeRecord, 'id' | 'sourceAddress' | 'proxy'>, join: readonly string[]) {
    return [
      ...baseArgs,
      '--node-id',
      record.id,
      '--advertise-url',
      record.proxy.url,
      '--source-address',
      record.sourceAddress,
      ...join.flatMap((url) => ['--join', url]),
    ];
  }

  /** Starts the record's node process behind its proxy; resolves once it listens. */
  async function launch(record: Pick<NodeRecord, 'id' | 'sourceAddress' | 'proxy'>, join: readonly string[]) {
    const child = await startNode({
      ...(options.capacity === undefined ? {} : { capacity: options.capacity }),
      args: nodeArgs(record, join),
    });
    // The node already advertises the proxy; from now on the proxy leads to it.
    record.proxy.retarget(child.url);
    return child;
  }

  let nextNumber = 0;

  async function addNode(join: readonly string[]): Promise<NodeRecord> {
    // Numbered at the call, so nodes started together still get distinct ids and addresses.
    const number = nextNumber++;
    // No target yet: the node's port is known only once it listens, and it must know the proxy's URL first.
    const proxy = await startFaultProxy();
    const id = `n${number}`;
    const sourceAddress = nodeAddress(number);
    const child = await launch({ id, sourceAddress, proxy }, join).catch(async (error: unknown) => {
      await proxy.close();
      throw error;
    });
    const record: NodeRecord = { id, number, sourceAddress, proxy, process: child, status: 'up' };
    records.push(record);
    records.sort((a, b) => a.number - b.number);
    apply();
    return record;
  }

  function liveRecords(): NodeRecord[] {
    return records.filter((r) => r.status === 'up');
  }

  function seedsFor(except?: NodeRecord): string[] {
    return liveRecords()
      .filter((r) => r !== except)
      .map((r) => r.proxy.url);
  }

  const cluster: ProxiedCluster = {
    get nodes() {
      return records.map(view);
    },
    node: (ref) => view(recordOf(ref)),
    live: () => liveRecords().map(view),
    seeds: () => seedsFor(),
    clientAddress(i) {
      const address = clientAddressOf(i);
      if (!clientAddresses.has(address)) {
        clientAddresses.add(address);
        apply();
      }
      return address;
    },
    clientSources: () => [...clientAddresses, DEFAULT_CLIENT_SOURCE],
    async leader() {
      return waitFor(
        async () => {
          const live = liveRecords();
          const leaders = await Promise.all(live.map(async (r) => (await viewOf(r.process.url))?.leaderId));
          const id = leaders[0];
          const record = records.find((r) => r.id === id);
          return id && leaders.every((l) => l === id) && record?.status === 'up' ? view(record) : undefined;
        },
        { what: 'one coordinator agreed by every live node', timeoutMs: 20_000, intervalMs: 100 },
      );
    },
    async state() {
      return waitFor(
        async () => {
          for (const r of liveRecords()) {
            const state = await stateOf(r.process.url);
            if (state !== undefined) return state;
          }
          return undefined;
        },
        { what: 'a committed state from a live node', intervalMs: 100 },
      );
    },
    ownersOf(state, pool, oid, index, replication) {
      const partition = partitionOf(pool, toOidBytes(oid), index, state.partitionCount);
      return persistentTableFor(state, replication)
        .owners(partition)
        .map((m) => m.id);
    },
    waitForMembers(refs, timeoutMs = 30_000) {
      const chosen = refs === undefined ? liveRecords() : refs.map(recordOf);
      return waitForMembers(
        chosen.map((r) => r.process),
        timeoutMs,
      );
    },

    partition(a, b) {
      for (const x of a.map(endpointName)) {
        for (const y of b.map(endpointName)) {
          if (x === y) continue;
          blocked.add(`${x}>${y}`);
          blocked.add(`${y}>${x}`);
        }
      }
      apply();
    },
    isolate(ref) {
      const id = recordOf(ref).id;
      cluster.partition([id], [...records.filter((r) => r.id !== id).map((r) => r.id), CLIENTS]);
    },
    oneWay(from, to) {
      blocked.add(`${endpointName(from)}>${endpointName(to)}`);
      apply();
    },
    slow(ref, ms, jitterMs = 0) {
      delays.set(recordOf(ref).id, { ms, jitterMs });
      apply();
    },
    lossy(ref, probability) {
      losses.set(recordOf(ref).id, probability);
      apply();
    },
    heal() {
      blocked.clear();
      delays.clear();
      losses.clear();
      apply();
    },

    async kill(ref) {
      const record = recordOf(ref);
      await record.process.kill();
      record.status = 'killed';
    },
    pause(ref) {
      const record = recordOf(ref);
      if (record.status !== 'up') throw new Error(`cannot pause ${record.id}: it is ${record.status}`);
      record.process.signal('SIGSTOP');
      record.status = 'paused';
    },
    resume(ref) {
      const record = recordOf(ref);
      if (record.status !== 'paused') throw new Error(`cannot resume ${record.id}: it is ${record.status}`);
      record.process.signal('SIGCONT');
      record.status = 'up';
    },
    async restart(ref) {
      const record = recordOf(ref);
      if (record.status === 'up' || record.status === 'paused') await cluster.kill(record.id);
      record.process = await launch(record, seedsFor(record));
      record.status = 'up';
      return view(record);
    },
    async join() {
      return view(await addNode(seedsFor()));
    },
    async leave(ref) {
      const record = recordOf(ref);
      await record.process.stop();
      record.status = 'left';
    },
    async drained() {
      await waitFor(() => records.every((r) => r.proxy.stats().queued === 0), {
        what: 'every proxy to deliver what it delayed',
      });
    },
    async close() {
      if (closed) return;
      closed = true;
      await Promise.all(records.map((r) => r.process.kill()));
      await Promise.all(records.map((r) => r.proxy.close()));
    },
  };

  try {
    const first = await addNode([]);
    await Promise.all(Array.from({ length: size - 1 }, () => addNode([first.proxy.url])));
    await cluster.waitForMembers();
  } catch (error) {
    await cluster.close();
    throw error;
  }
  return cluster;
}
