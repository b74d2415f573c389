import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect, type TmemClient } from '@tmem/client';
import { PROTOCOL_VERSION, type PoolInfo } from '@tmem/protocol';
import {
  closeAllRawPeers,
  killAllNodes,
  openRawPeer,
  startCluster,
  viewOf,
  waitFor,
  type NodeProcess,
} from '../harness/index.ts';

// Client sessions: the pools a client creates belong to its session, which ends when it closes or, once it went
// away, after the nodes' grace period; then its pools are destroyed on every node and their pages freed.

/** Short, so expiry is quick to see; long enough that a loaded machine still reconnects within it. */
const GRACE_MS = 1500;

let nodes: NodeProcess[] = [];
const clients: TmemClient[] = [];
let next = 0;
/** A fresh identity per test, so no test sees another's pools. */
const newIdentity = () => `sessions-${process.pid}-${++next}`;

beforeAll(async () => {
  nodes = await startCluster({ args: ['--replication', '2', '--session-grace-ms', String(GRACE_MS)] });
});
afterEach(async () => {
  closeAllRawPeers();
  await Promise.all(clients.splice(0).map((client) => client.close()));
});
afterAll(() => killAllNodes());

async function client(identity: string, session?: string): Promise<TmemClient> {
  const made = await connect({
    seeds: [nodes[0]!.url],
    identity,
    ...(session === undefined ? {} : { session }),
  });
  clients.push(made);
  return made;
}

let requestId = 100;

/** The pools of `identity` in the committed state of the node at `url`, as that identity sees them. */
async function poolsAt(url: string, identity: string): Promise<PoolInfo[]> {
  const raw = await openRawPeer(url, identity);
  try {
    const reply = await raw.request({ t: 'getState', id: ++requestId, subscribe: false });
    if (reply.t !== 'state') throw new Error(`no state: ${reply.t}`);
    return reply.state.pools;
  } finally {
    raw.close();
  }
}

/** What the node at `url` holds for `identity` (node-scope stats: the nodes run open). */
async function heldAt(
  url: string,
  identity: string,
): Promise<{ pools: number; pages: number; usedBytes: number }> {
  const raw = await openRawPeer(url, 'sessions-observer');
  try {
    const reply = await raw.request({ t: 'stats', id: ++requestId });
    if (reply.t !== 'stats') throw new Error(`no stats: ${reply.t}`);
    const use = reply.stats.identities?.find((i) => i.identity === identity);
    return { pools: use?.pools ?? 0, pages: use?.pages ?? 0, usedBytes: use?.usedBytes ?? 0 };
  } finally {
    raw.close();
  }
}

/** Pool ids of `identity` on every node, once all nodes agree. */
async function agreedPoolIds(identity: string): Promise<number[]> {
  return waitFor(
    async () => {
      const all = await Promise.all(nodes.map((n) => poolsAt(n.url, identity)));
      const ids = all.map((pools) => JSON.stringify(pools.map((p) => p.id).sort((a, b) => a - b)));
      return ids.every((x) => x === ids[0]) ? (JSON.parse(ids[0]!) as number[]) : undefined;
    },
    { what: `the nodes to agree on the pools of ${identity}` },
  );
}

/** Waits until no node lists a pool of `identity` or holds any of its pages. */
async function waitForNothingHeld(identity: string, timeoutMs = 10_000): Promise<void> {
  await waitFor(
    async () => {
      for (const node of nodes) {
        if ((await poolsAt(node.url, identity)).length > 0) return false;
        const held = await heldAt(node.url, identity);
        if (held.pools + held.pages + held.usedBytes > 0) return false;
      }
      return true;
    },
    { timeoutMs, intervalMs: 100, what: `every node to drop the pools and pages of ${identity}` },
  );
}

const page = (fill: number) => new Uint8Array(4096).fill(fill);

/** A client with one ephemeral and one persistent pool, with pages in both, spread over the nodes. */
async function clientWithPages(identity: string) {
  const app = await client(identity);
  const cache = await app.createPool({ kind: 'ephemeral' });
  const store = await app.createPool({ kind: 'persistent' });
  const entries = Array.from({ length: 32 }, (_, index) => ({
    oid: `o${index}`,
    index,
    page: page(index + 1),
  }));
  expect(await cache.putMany(entries)).toEqual(entries.map(() => true));
  expect(await store.putMany(entries)).toEqual(entries.map(() => true));
  return { app, cache, store, entries };
}

describe('client sessions', () => {
  it('destroys the pools of a client that went away after the grace period, on every node, pages freed', async () => {
    const identity = newIdentity();
    const { app, cache, store } = await clientWithPages(identity);
    const session = app.session;
    expect(session).toMatch(/^[0-9a-f]{32}$/);
    expect((await poolsAt(nodes[0]!.url, identity)).map((p) => p.session)).toEqual([session, session]);
    // Pages are held on more than one node before.
    const before = await Promise.all(nodes.map((n) => heldAt(n.url, identity)));
    expect(before.filter((held) => held.pages > 0).length).toBeGreaterThan(1);
    // Gone without ending its session (as a process that died would).
    const closedAt = Date.now();
    await app.close({ keepPools: true });
    expect(await agreedPoolIds(identity)).toEqual([cache.id, store.id].sort((a, b) => a - b));
    await waitForNothingHeld(identity);
    // Not before the grace period: the sweep asks the members, which count it live for the grace.
    expect(Date.now() - closedAt).toBeGreaterThanOrEqual(GRACE_MS);
  });

  it('keeps the pools of a session continued within the grace period, with their pages', async () => {
    const identity = newIdentity();
    const { app, cache, store, entries } = await clientWithPages(identity);
    // A canary session closed at the same moment: once its pools are gone, a sweep ran past the grace period.
    const canary = await client(newIdentity());
    await canary.createPool({ kind: 'ephemeral' });
    await app.close({ keepPools: true });
    await canary.close({ keepPools: true });

    const again = await client(identity, app.session);
    expect(again.session).toBe(app.session);
    const pools = again.sessionPools();
    expect(pools.map((p) => p.id).sort((a, b) => a - b)).toEqual([cache.id, store.id].sort((a, b) => a - b));
    await waitForNothingHeld(canary.identity);
    expect(await agreedPoolIds(identity)).toEqual([cache.id, store.id].sort((a, b) => a - b));
    const kept = pools.find((p) => p.id === store.id)!;
    expect(kept.kind).toBe('persistent');
    expect(await kept.getMany(entries)).toEqual(entries.map((e) => e.page));
    // The continued session ends like any other.
    await again.close();
    await waitForNothingHeld(identity, GRACE_MS);
  });

  it('ends the session at close(): its pools are gone at once, other sessions and identities keep theirs', async () => {
    const identity = newIdentity();
    const other = await client(identity);
    const kept = await other.createPool({ kind: 'ephemeral' });
    const stranger = await client(newIdentity());
    const theirs = await stranger.createPool({ kind: 'ephemeral' });
    const { app } = await clientWithPages(identity);
    await app.close();
    // The coordinator answered once the end committed: its state no longer holds the pools.
    const leaderId = (await viewOf(nodes[0]!.url))?.leaderId;
    const leader = nodes.find((n) => n.nodeId === leaderId);
    expect(leader).toBeDefined();
    expect((await poolsAt(leader!.url, identity)).map((p) => p.id)).toEqual([kept.id]);
    await waitFor(async () => (await agreedPoolIds(identity)).length === 1, { timeoutMs: GRACE_MS });
    expect(await agreedPoolIds(stranger.identity)).toEqual([theirs.id]);
    // The pages went with them, well within the grace period.
    await waitFor(
      async () => {
        const held = await Promise.all(nodes.map((n) => heldAt(n.url, identity)));
        return held.every((h) => h.pages === 0 && h.pools <= 1);
      },
      { timeoutMs: GRACE_MS, what: 'the pages of the closed session to be freed' },
    );
  });

  it('never expires pools created without a session, and lets no identity end another identity’s session', async () => {
    const identity = newIdentity();
    const raw = await openRawPeer(nodes[1]!.url);
    const hello = await raw.request({ t: 'hello', id: 1, protocol: PROTOCOL_VERSION, identity });
    expect(hello.t).toBe('welcome');
    const made = await raw.request({ t: 'newPool', id: 2, kind: 'ephemeral', pageSize: 4096 });
    expect(made.t).toBe('pool');
    raw.close();
    // A victim's session, which another identity names in an endSession of its own.
    const victim = await client(newIdentity());
    const victimPool = await victim.createPool({ kind: 'ephemeral' });
    const mallory = await openRawPeer(nodes[2]!.url, newIdentity());
    const ended = await mallory.request({ t: 'endSession', id: 3, session: victim.session });
    expect(ended.t).toBe('ok');
    // A malformed session id is a typed error and ends nothing.
    const bad = await mallory.request({ t: 'endSession', id: 4, session: 'not-a-session' } as never);
    expect(bad).toMatchObject({ t: 'error', code: 'INVALID_FRAME' });
    // A canary session gone away: once it expired, a sweep ran past the grace period.
    const canary = await client(newIdentity());
    await canary.createPool({ kind: 'ephemeral' });
    await canary.close({ keepPools: true });
    await waitForNothingHeld(canary.identity);
    expect(await agreedPoolIds(identity)).toHaveLength(1);
    expect(await agreedPoolIds(victim.identity)).toEqual([victimPool.id]);
  });
});
