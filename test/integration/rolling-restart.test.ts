import { afterEach, describe, expect, it } from 'vitest';
import { connect, type Pool, type TmemClient } from '@tmem/client';
import {
  TmemError,
  partitionOf,
  partitionTableFor,
  toOidBytes,
  type ClusterState,
  type NodeStats,
} from '@tmem/protocol';
import {
  TEST_TIMING_ARGS,
  closeAllRawPeers,
  killAllNodes,
  openRawPeer,
  startCluster,
  startNode,
  waitFor,
  waitForMembers,
  type NodeProcess,
} from '../harness/index.ts';

// Rolling restarts with real processes (issue 8): every node of a 3-node cluster is stopped with SIGTERM (a
// graceful leave, which hands its ephemeral pages to their new primaries) and started again (a join, where the
// old primaries hand the joiner its partitions' pages), one after the other, while a client reads and writes.
// The cache stays warm, and no get ever returns anything but the last value put (or a miss). SIGKILL still
// loses the killed node's pages, silently.

const PAGE = 4096;
const clients: TmemClient[] = [];

afterEach(async () => {
  closeAllRawPeers();
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await killAllNodes();
});

/** A page that names its handle and the version that wrote it, filled so that any mix-up shows. */
function pageOf(key: string, version: number): Uint8Array {
  const page = new Uint8Array(PAGE);
  const view = new DataView(page.buffer);
  view.setUint32(0, version);
  const tag = new TextEncoder().encode(key);
  page.set(tag, 4);
  for (let i = 4 + tag.length; i < PAGE; i++) page[i] = (version * 31 + i) & 0xff;
  return page;
}

function versionIn(page: Uint8Array): number {
  return new DataView(page.buffer, page.byteOffset).getUint32(0);
}

/** Warm pages: WARM_OBJECTS objects of WARM_INDEXES pages, spread over many partitions. */
const WARM_OBJECTS = 300;
const WARM_INDEXES = 4;
const warmHandles = Array.from({ length: WARM_OBJECTS * WARM_INDEXES }, (_, i) => ({
  oid: `warm-${Math.floor(i / WARM_INDEXES)}`,
  index: i % WARM_INDEXES,
}));

async function putWarm(pool: Pool): Promise<void> {
  const accepted = await pool.putMany(
    warmHandles.map((h) => ({ oid: h.oid, index: h.index, page: pageOf(`${h.oid}/${h.index}`, 1) })),
  );
  expect(accepted.every(Boolean)).toBe(true);
}

/** Gets every warm page once (gets of an ephemeral pool are exclusive); any hit must be the page put. */
async function getWarm(pool: Pool): Promise<(Uint8Array | null)[]> {
  const pages = await pool.getMany(warmHandles.map((h) => ({ oid: h.oid, index: h.index })));
  pages.forEach((page, i) => {
    const h = warmHandles[i]!;
    if (page !== null) expect(page).toEqual(pageOf(`${h.oid}/${h.index}`, 1));
  });
  return pages;
}

async function statsOf(url: string): Promise<NodeStats | undefined> {
  try {
    const peer = await openRawPeer(url, 'test-observer');
    try {
      const reply = await peer.request({ t: 'stats', id: 2 });
      return reply.t === 'stats' ? reply.stats : undefined;
    } finally {
      peer.close();
    }
  } catch {
    return undefined;
  }
}

/**
 * A client workload over LIVE_OBJECTS objects of LIVE_INDEXES pages: puts, exclusive gets, flushPage and
 * flushObject, one op at a time per object, checked against what may be there. After a put that was accepted
 * only its value may come back; after a hit, a miss, a flush or a refusal nothing may (a page once gone never
 * returns); an op that failed widens the set by what it may have done. A miss is always allowed.
 */
const LIVE_OBJECTS = 48;
const LIVE_INDEXES = 4;

interface Workload {
  stop(): Promise<void>;
  readonly ops: number;
  readonly hits: number;
  /** Failed ops: `op key: code message`. */
  readonly errors: string[];
  readonly violations: string[];
}

/**
 * Errors an op may legitimately end with: a write in flight on a connection that closed under it is in doubt
 * (the client never sends a write twice), so it fails with CONNECTION_LOST; the client closes its connection to
 * a member as soon as its view drops it, a leaver's included. Reads are retried, so a get never fails.
 */
function unexpectedErrors(errors: readonly string[]): string[] {
  return errors.filter((e) => !/^(put|flushPage|flushObject) \S+: CONNECTION_LOST /.test(e));
}

function startWorkload(pool: Pool, workers = 6): Workload {
  /** Versions a get of each handle may return (null: a miss). */
  const allowed = new Map<string, Set<number | null>>();
  const busy = new Set<number>();
  let version = 1;
  let running = true;
  const result = { ops: 0, hits: 0, errors: [] as string[], violations: [] as string[] };
  const may = (key: string) => allowed.get(key) ?? new Set<number | null>([null]);

  async function step(): Promise<void> {
    let object = Math.floor(Math.random() * LIVE_OBJECTS);
    while (busy.has(object)) object = (object + 1) % LIVE_OBJECTS;
    busy.add(object);
    const oid = `live-${object}`;
    const index = Math.floor(Math.random() * LIVE_INDEXES);
    const key = `${oid}/${index}`;
    const before = may(key);
    const roll = Math.random();
    const op = roll < 0.5 ? 'put' : roll < 0.85 ? 'get' : roll < 0.93 ? 'flushPage' : 'flushObject';
    try {
      if (roll < 0.5) {
        const v = ++version;
        try {
          const accepted = await pool.put(oid, index, pageOf(key, v));
          allowed.set(key, new Set([accepted ? v : null]));
        } catch (error) {
          allowed.set(key, new Set([...before, v, null]));
          throw error;
        }
      } else if (roll < 0.85) {
        try {
          const page = await pool.get(oid, index);
          if (page !== null) {
            result.hits++;
            const v = versionIn(page);
            if (!before.has(v) || !pageOf(key, v).every((byte, i) => page[i] === byte)) {
              result.violations.push(`${key}: got version ${v}, allowed ${[...before].join(',')}`);
            }
          }
          allowed.set(key, new Set([null]));
        } catch (error) {
          allowed.set(key, new Set([...before, null]));
          throw error;
        }
      } else if (roll < 0.93) {
        try {
          await pool.flushPage(oid, index);
          allowed.set(key, new Set([null]));
        } catch (error) {
          allowed.set(key, new Set([...before, null]));
          throw error;
        }
      } else {
        const keys = Array.from({ length: LIVE_INDEXES }, (_, i) => `${oid}/${i}`);
        const befores = keys.map(may);
        try {
          await pool.flushObject(oid);
          for (const k of keys) allowed.set(k, new Set([null]));
        } catch (error) {
          keys.forEach((k, i) => allowed.set(k, new Set([...befores[i]!, null])));
          throw error;
        }
      }
      result.ops++;
    } catch (error) {
      const code = error instanceof TmemError ? error.code : 'NOT_A_TMEM_ERROR';
      result.errors.push(`${op} ${key}: ${code} ${(error as Error).message}`);
    } finally {
      busy.delete(object);
    }
  }

  const loops = Array.from({ length: workers }, async () => {
    while (running) await step();
  });
  return {
    async stop() {
      running = false;
      await Promise.all(loops);
    },
    get ops() {
      return result.ops;
    },
    get hits() {
      return result.hits;
    },
    errors: result.errors,
    violations: result.violations,
  };
}

/**
 * Failure detection slower than the other tests' 500 ms: on the loaded two-core machine a freshly started joiner
 * was seen to stall past 500 ms right after its join, be removed as failed, and take the pages just handed to it
 * along (safely: a member removed without `leaving` hands nothing over). This test is about the hand-over, so it
 * gives a slow node 2 s; a SIGKILLed node is then removed after about 2.5 s.
 */
const TIMING = [...TEST_TIMING_ARGS, '--failure-timeout-ms', '2000'];

function joinArgs(id: string, seeds: readonly NodeProcess[]): string[] {
  return [...TIMING, '--node-id', id, ...seeds.flatMap((n) => ['--join', n.url])];
}

/** Starts node `id` again, joining through `others`, and waits until it serves and every node agrees. */
async function restart(id: string, others: readonly NodeProcess[]): Promise<NodeProcess> {
  const fresh = await startNode({ until: 'ready', args: joinArgs(id, others) });
  await waitForMembers([...others, fresh]);
  return fresh;
}

/** Waits until the client routes by a view that has exactly `ids` (so its next ops go to those nodes). */
async function clientSees(c: TmemClient, ids: readonly string[]): Promise<void> {
  const want = [...ids].sort().join(',');
  await waitFor(
    () =>
      c
        .view()
        .members.map((m) => m.id)
        .sort()
        .join(',') === want,
    { what: `client view with ${want}`, timeoutMs: 20_000 },
  );
}

async function client(nodes: readonly NodeProcess[]): Promise<TmemClient> {
  const c = await connect({ seeds: nodes.map((n) => n.url), identity: 'app', timeoutMs: 15_000 });
  clients.push(c);
  return c;
}

/**
 * Three restarts start three node processes and wait for six membership changes: 45-65 s on the loaded two-core
 * machine, once 95 s, past the suite's 60 s default.
 */
const ROLLING_TIMEOUT_MS = 240_000;

describe('rolling restarts', () => {
  it(
    'SIGTERM and restart of every node in turn keeps the cache warm and never returns stale data',
    async () => {
      let nodes = await startCluster({ size: 3, args: ['--failure-timeout-ms', '2000'] });
      const everyNode = [...nodes];
      const c = await client(nodes);
      const pool = await c.createPool({ kind: 'ephemeral' });
      await putWarm(pool);
      const workload = startWorkload(pool);

      for (let i = 0; i < 3; i++) {
        const leaver = nodes.find((n) => n.nodeId === `n${i}`)!;
        const others = nodes.filter((n) => n !== leaver);
        expect(await leaver.stop()).toEqual({ code: 0, signal: null });
        await waitForMembers(others);
        const fresh = await restart(leaver.nodeId, others);
        everyNode.push(fresh);
        nodes = [...others, fresh];
        await clientSees(
          c,
          nodes.map((n) => n.nodeId),
        );
      }
      // Some of the workload's ops after the last restart, too.
      const opsAtEnd = workload.ops;
      await waitFor(() => workload.ops > opsAtEnd + 100, {
        what: 'the workload going on',
        timeoutMs: 20_000,
      });
      await workload.stop();

      const stats = await Promise.all(nodes.map((n) => statsOf(n.url)));
      const handedOver = stats.reduce((sum, s) => sum + (s?.handOffStored ?? 0), 0);
      const pages = await getWarm(pool);
      const kept = pages.filter((page) => page !== null).length;
      console.log(
        `rolling restart: ${kept} of ${pages.length} warm pages kept (${((100 * kept) / pages.length).toFixed(1)}%);` +
          ` workload ${workload.ops} ops, ${workload.hits} hits, ${workload.errors.length} errors;` +
          ` handed-over pages stored by the current nodes: ${handedOver}`,
      );
      expect(workload.violations).toEqual([]);
      expect(unexpectedErrors(workload.errors)).toEqual([]);
      expect(workload.hits).toBeGreaterThan(0);
      // On a failure, the story of every move, from every process that took part.
      const story = everyNode.flatMap((n) =>
        n
          .stderr()
          .split('\n')
          .filter((line) => /hand-over|handed-over|moving away|removed|rejoining|lapsed/.test(line))
          .map((line) => `${n.nodeId}: ${line}`),
      );
      expect(kept / pages.length, story.join('\n')).toBeGreaterThanOrEqual(0.9);
    },
    ROLLING_TIMEOUT_MS,
  );

  it(
    'SIGKILL of a node loses its pages silently (no error); the others keep theirs through its restart',
    async () => {
      let nodes = await startCluster({ size: 3, args: ['--failure-timeout-ms', '2000'] });
      const c = await client(nodes);
      const pool = await c.createPool({ kind: 'ephemeral' });
      const state: ClusterState = await waitForMembers(nodes);
      await putWarm(pool);
      const table = partitionTableFor(state, 1);
      const owners = warmHandles.map(
        (h) => table.primary(partitionOf(pool.id, toOidBytes(h.oid), h.index, state.partitionCount))!.id,
      );
      const workload = startWorkload(pool);

      const victim = nodes[1]!;
      await victim.kill();
      const survivors = nodes.filter((n) => n !== victim);
      await waitForMembers(survivors);
      const fresh = await restart(victim.nodeId, survivors);
      nodes = [...survivors, fresh];
      await clientSees(
        c,
        nodes.map((n) => n.nodeId),
      );
      await workload.stop();

      const pages = await getWarm(pool);
      const ofVictim = pages.filter((_, i) => owners[i] === victim.nodeId);
      const ofOthers = pages.filter((_, i) => owners[i] !== victim.nodeId);
      const keptOfOthers = ofOthers.filter((page) => page !== null).length;
      console.log(
        `SIGKILL: ${ofVictim.filter((p) => p !== null).length} of ${ofVictim.length} of the victim's pages kept,` +
          ` ${keptOfOthers} of ${ofOthers.length} of the others'`,
      );
      expect(ofVictim.length).toBeGreaterThan(100);
      expect(ofVictim.every((page) => page === null)).toBe(true);
      expect(keptOfOthers / ofOthers.length).toBeGreaterThanOrEqual(0.9);
      expect(workload.violations).toEqual([]);
      expect(unexpectedErrors(workload.errors)).toEqual([]);
    },
    ROLLING_TIMEOUT_MS,
  );
});
