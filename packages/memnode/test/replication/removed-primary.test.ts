// A primary removed from the cluster while one of its writes travels to the replica: the frame never arrives
// (the primary is cut off), the cluster removes the primary, which learns it, rejoins as a new incarnation
// with an empty store, and then sees the replica as no longer a member. Two nodes' replication are wired to
// each other in one process (the peer calls go straight to the other node's handlers); deterministic: each
// step waits for the condition it needs.
import { afterEach, describe, expect, it } from 'vitest';
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
import { waitFor } from '../cluster/wait-until.ts';

const PAGE_SIZE = 4096;
const POOL = { id: 1, kind: 'persistent' as const, pageSize: PAGE_SIZE, owner: 'app', replication: 2 };
const member = (id: string): MemberInfo => ({
  id,
  url: `ws://x/${id}`,
  incarnation: 1,
  capacityBytes: 1 << 24,
  phase: 'ready',
});
const stateAt = (version: number, ids: readonly string[], pools = [POOL]): ClusterState => ({
  version,
  term: 1,
  members: ids.map(member),
  pools,
  nextPoolId: 2,
  partitionCount: 8,
});

interface SimNode {
  readonly id: string;
  /** Null between a removal and the next join, as on a real node. */
  state: ClusterState | null;
  incarnation: number;
  readonly store: PageStore;
  readonly replication: Replication;
}

/** The link from one node to the other: frames pass, are held, or fail (no answer within the peer timeout). */
interface Link {
  held: number;
  hold(): void;
  /** Fails every held frame and every later one. */
  cut(): void;
  pass(): Promise<void>;
}

function createLink(): Link {
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

const nodes: SimNode[] = [];
afterEach(() => {
  for (const node of nodes.splice(0)) node.replication.close();
});

/** Nodes `a` and `b`; the replicate frames from `a` to `b` go through `link`. */
function startNodes(link: Link): { a: SimNode; b: SimNode } {
  const byId = new Map<string, SimNode>();
  let nextId = 1;
  const make = (id: string): SimNode => {
    const store = createPageStore({ capacityBytes: 1 << 24 });
    store.createPool({ id: POOL.id, kind: POOL.kind, pageSize: POOL.pageSize, owner: POOL.owner });
    let view: ServingView | null = null;
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
              if (id === 'a') await link.pass();
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
  for (const node of [a, b]) commit(node, stateAt(2, ['a', 'b']));
  return { a, b };
}

function commit(node: SimNode, next: ClusterState): void {
  const previous = node.state;
  node.state = next;
  node.replication.committed(previous, next);
}

/** What a removed node does (cluster-member.ts, 'removed'): a new incarnation, no state until it rejoins. */
function removed(node: SimNode): void {
  node.incarnation += 1;
  node.state = null;
  node.replication.reset();
}

/** A handle whose partition `a` is the primary of. */
function handleOnA(): { oid: Uint8Array; index: number } {
  const table = persistentTableFor(stateAt(2, ['a', 'b']), 2);
  const oid = new TextEncoder().encode('object');
  for (let index = 0; ; index++) {
    if (table.primary(partitionOf(POOL.id, oid, index, 8))?.id === 'a') return { oid, index };
  }
}

const page = (fill: number): Uint8Array => new Uint8Array(PAGE_SIZE).fill(fill).map((v, i) => v ^ (i & 7));

async function get(node: SimNode, oid: Uint8Array, index: number): Promise<PageReply> {
  return node.replication.get({ t: 'get', id: 99, pool: POOL.id, oid, index }, node.state?.version);
}

async function codeOf(reply: Promise<unknown>): Promise<string> {
  return reply.then(
    (value) => `answered ${(value as PageReply).t}`,
    (error: unknown) => (error as TmemError).code,
  );
}

describe('a primary removed while its write travels to the replica', () => {
  it('answers the put in doubt (TIMEOUT), not accepted: the replica that now serves never got it', async () => {
    const link = createLink();
    const { a, b } = startNodes(link);
    const { oid, index } = handleOnA();
    link.hold();
    const put = codeOf(a.replication.put({ t: 'put', id: 1, pool: POOL.id, oid, index, page: page(1) }, 2));
    await waitFor(() => link.held > 0, 'the page on its way to b');
    // The cluster removes a; b is the primary now. a learns it, and rejoins empty as a new incarnation.
    commit(b, stateAt(3, ['b']));
    commit(a, stateAt(3, ['b']));
    removed(a);
    // The held frame gets no answer; the stream then finds b no longer a member of a's (empty) state.
    link.cut();
    expect(await put).toBe(ErrorCode.Timeout);
    expect((await get(b, oid, index)).t).toBe('miss');
  });

  it('answers the flush in doubt (TIMEOUT), not ok: the replica that now serves still holds the page', async () => {
    const link = createLink();
    const { a, b } = startNodes(link);
    const { oid, index } = handleOnA();
    const first = await a.replication.put({ t: 'put', id: 1, pool: POOL.id, oid, index, page: page(2) }, 2);
    expect(first.t).toBe('accepted');
    link.hold();
    const flush = codeOf(a.replication.flushPage({ t: 'flushPage', id: 2, pool: POOL.id, oid, index }, 2));
    await waitFor(() => link.held > 0, 'the flush on its way to b');
    commit(b, stateAt(3, ['b']));
    commit(a, stateAt(3, ['b']));
    removed(a);
    link.cut();
    expect(await flush).toBe(ErrorCode.Timeout);
    expect((await get(b, oid, index)).t).toBe('hit');
  });

  it('still accepts a put whose replica left while the primary stays an owner holding it', async () => {
    const link = createLink();
    const { a } = startNodes(link);
    const { oid, index } = handleOnA();
    link.hold();
    const put = codeOf(a.replication.put({ t: 'put', id: 1, pool: POOL.id, oid, index, page: page(3) }, 2));
    await waitFor(() => link.held > 0, 'the page on its way to b');
    // b is removed instead; a stays the primary, and b's successor would copy the page from a.
    commit(a, stateAt(3, ['a']));
    link.cut();
    expect(await put).toBe('answered accepted');
    expect((await get(a, oid, index)).t).toBe('hit');
  });
});
