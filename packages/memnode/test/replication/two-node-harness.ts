// Two nodes' replication wired to each other in one process: the peer calls go straight to the other node's
// handlers, and the replicate frames pass through a control the test drives (a Link that can fail them, a Gate
// that holds them until opened). Deterministic: nothing here waits on time, each test step waits for the
// condition it needs. Every node started is closed after each test, also when the test fails.
import { afterEach } from 'vitest';
import {
  ErrorCode,
  TmemError,
  partitionOf,
  persistentTableFor,
  type ClusterState,
  type MemberInfo,
  type PageReply,
} from '@tmem/protocol';
import { silentLogger } from '../../src/logger.ts';
import { createPageStore, type PageStore } from '../../src/page-store.ts';
import { createReplication, type Replication } from '../../src/replication/replication.ts';
import { createServingView, type ServingView } from '../../src/serving-view.ts';

/** The page size of {@link POOL}. */
export const PAGE_SIZE = 4096;

/** The one persistent pool, two copies of each page: on two nodes both hold every partition. */
export const POOL = { id: 1, kind: 'persistent' as const, pageSize: PAGE_SIZE, owner: 'app', replication: 2 };

/** A ready member of incarnation 1. */
export const member = (id: string): MemberInfo => ({
  id,
  url: `ws://x/${id}`,
  incarnation: 1,
  capacityBytes: 1 << 24,
  phase: 'ready',
});

/** A cluster state of `version` with members `ids` (@default both nodes) and `pools` (@default {@link POOL}). */
export const stateAt = (
  version: number,
  ids: readonly string[] = ['a', 'b'],
  pools = [POOL],
): ClusterState => ({
  version,
  term: 1,
  members: ids.map(member),
  pools,
  nextPoolId: 2,
  partitionCount: 8,
});

/** One node of the pair, with the committed state and incarnation its replication reads. */
export interface SimNode {
  readonly id: string;
  /** Null between a removal and the next join, as on a real node. */
  state: ClusterState | null;
  incarnation: number;
  readonly store: PageStore;
  readonly replication: Replication;
}

/** What a replicate frame waits on before it reaches the other node; it fails the frame by throwing. */
export interface FrameControl {
  pass(): Promise<void>;
}

/** The link from one node to the other: frames pass, are held, or fail (no answer within the peer timeout). */
export interface Link extends FrameControl {
  held: number;
  hold(): void;
  /** Fails every held frame and every later one. */
  cut(): void;
}

/** A link that passes every frame until `hold` or `cut`. */
export function createLink(): Link {
  let fail: ((error: Error) => void) | null = null;
  let holding: Promise<void> | null = null;
  let broken = false;
  const lost = () => new TmemError(ErrorCode.ConnectionLost, 'no answer');
  return {
    held: 0,
    hold() {
      holding = new Promise((_resolve, reject) => (fail = reject));
      // Unobserved until a frame waits on it.
      holding.catch(() => undefined);
    },
    cut() {
      broken = true;
      fail?.(lost());
    },
    async pass() {
      if (broken) throw lost();
      if (holding === null) return;
      this.held++;
      await holding;
    },
  };
}

/** A gate on the replicate frames from one node to the other: held frames wait until `open`. */
export interface Gate extends FrameControl {
  held: number;
  close(): void;
  open(): void;
}

/** A gate that is open until `close`. */
export function createGate(): Gate {
  let release: (() => void) | null = null;
  let closed: Promise<void> | null = null;
  return {
    held: 0,
    close() {
      closed = new Promise((resolve) => (release = resolve));
    },
    open() {
      release?.();
      closed = null;
    },
    async pass() {
      if (closed === null) return;
      this.held++;
      await closed;
    },
  };
}

const nodes: SimNode[] = [];
afterEach(() => {
  for (const node of nodes.splice(0)) node.replication.close();
});

/** Options of {@link startNodes}. */
export interface StartNodesOptions {
  /**
   * Only the replicate frames this node sends go through the control; the other node's pass freely.
   * @default both nodes' frames go through it
   */
  controlledFrom?: string;
}

/** Nodes `a` and `b`, both at state 2 with {@link POOL} created; replicate frames go through `control`. */
export function startNodes(
  control: FrameControl,
  options: StartNodesOptions = {},
): { a: SimNode; b: SimNode } {
  const byId = new Map<string, SimNode>();
  let nextId = 1;
  const make = (id: string): SimNode => {
    const store = createPageStore({ capacityBytes: 1 << 24 });
    store.createPool({ id: POOL.id, kind: POOL.kind, pageSize: POOL.pageSize, owner: POOL.owner });
    let view: ServingView | null = null;
    const controlled = options.controlledFrom === undefined || options.controlledFrom === id;
    // The node's committed state and incarnation; createReplication reads them before `node` exists.
    const box: { state: ClusterState | null; incarnation: number } = {
      state: stateAt(1, ['a', 'b'], []),
      incarnation: 1,
    };
    const replication = createReplication({
      store,
      logger: silentLogger(),
      cluster: {
        nodeId: id,
        incarnation: () => box.incarnation,
        committed: () => box.state,
        accepted: () => box.state,
        checkLease(stateVersion) {
          if (box.state === null) throw new TmemError(ErrorCode.NotServing, 'not a member');
          if (stateVersion !== undefined && stateVersion !== box.state.version) {
            throw new TmemError(ErrorCode.StaleState, `node is at ${box.state.version}`);
          }
        },
        servingView() {
          const state = box.state as ClusterState;
          if (view?.committed !== state) {
            view = createServingView(state, state, { id, incarnation: box.incarnation });
          }
          return view;
        },
        async call(memberId, build, _expect, _timeoutMs) {
          const peer = byId.get(memberId) as SimNode;
          const frame = build(nextId++);
          switch (frame.t) {
            case 'replicate':
              if (controlled) await control.pass();
              return (await peer.replication.onReplicate(frame)) as never;
            case 'fetch':
              return (await peer.replication.onFetch(frame, id)) as never;
            case 'peerGet':
              return (await peer.replication.onPeerGet(frame)) as never;
            default:
              throw new Error(`unexpected peer frame ${frame.t}`);
          }
        },
        setPhase: () => Promise.resolve(),
      },
    });
    const node: SimNode = {
      id,
      get state() {
        return box.state;
      },
      set state(next) {
        box.state = next;
      },
      get incarnation() {
        return box.incarnation;
      },
      set incarnation(next) {
        box.incarnation = next;
      },
      store,
      replication,
    };
    byId.set(id, node);
    nodes.push(node);
    return node;
  };
  const a = make('a');
  const b = make('b');
  // Both see the pool created (an empty pool is complete at once on its owners).
  for (const node of [a, b]) commit(node, stateAt(2));
  return { a, b };
}

/** The node commits `next`, as its cluster member would. */
export function commit(node: SimNode, next: ClusterState): void {
  const previous = node.state;
  node.state = next;
  node.replication.committed(previous, next);
}

/** What a removed node does (cluster-member.ts, 'removed'): a new incarnation, no state until it rejoins. */
export function removed(node: SimNode): void {
  node.incarnation += 1;
  node.state = null;
  node.replication.reset();
}

/** A handle whose partition `a` is the primary of. */
export function handleOnA(): { oid: Uint8Array; index: number } {
  const table = persistentTableFor(stateAt(2), 2);
  const oid = new TextEncoder().encode('object');
  for (let index = 0; ; index++) {
    if (table.primary(partitionOf(POOL.id, oid, index, 8))?.id === 'a') return { oid, index };
  }
}

/** A page of {@link PAGE_SIZE} bytes told apart by `fill`. */
export const page = (fill: number): Uint8Array =>
  new Uint8Array(PAGE_SIZE).fill(fill).map((v, i) => v ^ (i & 7));

/** Reads a page of {@link POOL} from `node`, at the node's own state version. */
export async function get(node: SimNode, oid: Uint8Array, index: number): Promise<PageReply> {
  return node.replication.get({ t: 'get', id: 99, pool: POOL.id, oid, index }, node.state?.version);
}

/** `answered <reply type>` for a reply, the error code for a failure. */
export async function codeOf(reply: Promise<unknown>): Promise<string> {
  return reply.then(
    (value) => `answered ${(value as PageReply).t}`,
    (error: unknown) => (error as TmemError).code,
  );
}
