// Two nodes' replication wired to each other in one process (the peer calls go straight to the other node's
// handlers), so that a write can be held on its way to the replica while the primary misses a committed state
// and copies its partitions again. Deterministic: each step waits for the condition it needs.
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
const MEMBERS = [member('a'), member('b')];
const stateAt = (version: number, pools = [POOL]): ClusterState => ({
  version,
  term: 1,
  members: MEMBERS,
  pools,
  nextPoolId: 2,
  partitionCount: 8,
});

interface SimNode {
  readonly id: string;
  state: ClusterState;
  readonly store: PageStore;
  readonly replication: Replication;
}

/** A gate on the replicate frames from one node to the other: held frames wait until `open`. */
interface Gate {
  held: number;
  close(): void;
  open(): void;
  pass(): Promise<void>;
}

function createGate(): Gate {
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

function startNodes(gate: Gate): { a: SimNode; b: SimNode } {
  const byId = new Map<string, SimNode>();
  let nextId = 1;
  const make = (id: string): SimNode => {
    const store = createPageStore({ capacityBytes: 1 << 24 });
    store.createPool({ id: POOL.id, kind: POOL.kind, pageSize: POOL.pageSize, owner: POOL.owner });
    let view: ServingView | null = null;
    // The node's committed state; createReplication reads it before `node` exists.
    const box = { state: stateAt(1, []) };
    const replication = createReplication({
      store,
      logger: silentLogger(),
      cluster: {
        nodeId: id,
        incarnation: () => 1,
        committed: () => box.state,
        accepted: () => box.state,
        checkLease(stateVersion) {
          if (stateVersion !== undefined && stateVersion !== box.state.version) {
            throw new TmemError(ErrorCode.StaleState, `node is at ${box.state.version}`);
          }
        },
        servingView() {
          if (view?.committed !== box.state) {
            view = createServingView(box.state, box.state, { id, incarnation: 1 });
          }
          return view;
        },
        async call(memberId, build, _expect, _timeoutMs) {
          const peer = byId.get(memberId) as SimNode;
          const frame = build(nextId++);
          switch (frame.t) {
            case 'replicate':
              await gate.pass();
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

function commit(node: SimNode, next: ClusterState): void {
  const previous = node.state;
  node.state = next;
  node.replication.committed(previous, next);
}

/** A handle whose partition `a` is the primary of. */
function handleOnA(): { oid: Uint8Array; index: number } {
  const table = persistentTableFor(stateAt(2), 2);
  const oid = new TextEncoder().encode('object');
  for (let index = 0; ; index++) {
    if (table.primary(partitionOf(POOL.id, oid, index, 8))?.id === 'a') return { oid, index };
  }
}

const page = (fill: number): Uint8Array => new Uint8Array(PAGE_SIZE).fill(fill).map((v, i) => v ^ (i & 7));

async function get(node: SimNode, oid: Uint8Array, index: number): Promise<PageReply> {
  return node.replication.get({ t: 'get', id: 99, pool: POOL.id, oid, index }, node.state.version);
}

describe('a primary that misses a committed state while a put travels', () => {
  it('keeps the accepted page, not an older copy its new fill took from the replica', async () => {
    const gate = createGate();
    const { a, b } = startNodes(gate);
    const { oid, index } = handleOnA();
    const older = page(1);
    const newer = page(2);
    const first = await a.replication.put({ t: 'put', id: 1, pool: 1, oid, index, page: older }, 2);
    expect(first.t).toBe('accepted');

    gate.close();
    const second = a.replication.put({ t: 'put', id: 2, pool: 1, oid, index, page: newer }, 2);
    await waitFor(() => gate.held > 0, 'the newer page on its way to b');
    // b sees versions 3 and 4; a misses version 3, drops its copies and copies them again from b, which
    // still holds the older page.
    commit(b, stateAt(3));
    commit(b, stateAt(4));
    commit(a, stateAt(4));
    expect(a.store.peek(POOL.id, oid, index)).toBeNull();
    await waitFor(() => a.replication.describe().fillingPartitions === 0, 'a copied again');
    gate.open();
    expect((await second).t).toBe('accepted');

    const reply = await get(a, oid, index);
    expect(reply.t).toBe('hit');
    expect(reply.t === 'hit' && Buffer.from(reply.page).equals(Buffer.from(newer))).toBe(true);
  });

  it('keeps a first page of a handle that its new fill could not find on the replica yet', async () => {
    const gate = createGate();
    const { a, b } = startNodes(gate);
    const { oid, index } = handleOnA();
    gate.close();
    const put = a.replication.put({ t: 'put', id: 1, pool: 1, oid, index, page: page(3) }, 2);
    await waitFor(() => gate.held > 0, 'the page on its way to b');
    commit(b, stateAt(3));
    commit(b, stateAt(4));
    commit(a, stateAt(4));
    await waitFor(() => a.replication.describe().fillingPartitions === 0, 'a copied again');
    gate.open();
    expect((await put).t).toBe('accepted');
    expect((await get(a, oid, index)).t).toBe('hit');
  });

  it('does not take back a page it flushed while the flush travels', async () => {
    const gate = createGate();
    const { a, b } = startNodes(gate);
    const { oid, index } = handleOnA();
    expect((await a.replication.put({ t: 'put', id: 1, pool: 1, oid, index, page: page(4) }, 2)).t).toBe(
      'accepted',
    );
    gate.close();
    const flush = a.replication.flushPage({ t: 'flushPage', id: 2, pool: 1, oid, index }, 2);
    await waitFor(() => gate.held > 0, 'the flush on its way to b');
    commit(b, stateAt(3));
    commit(b, stateAt(4));
    commit(a, stateAt(4));
    await waitFor(() => a.replication.describe().fillingPartitions === 0, 'a copied again');
    gate.open();
    expect((await flush).t).toBe('ok');
    expect((await get(a, oid, index)).t).toBe('miss');
  });
});
