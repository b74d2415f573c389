import { afterAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type TmemClient } from '@tmem/client';
import type { ClusterStatus } from '@tmem/memnode';
import { zeroStoreCounters, type NodeStats } from '@tmem/protocol';
import { killAllNodes, runCli, startNode } from '../harness/index.ts';

// Issue 9, finding 9: `stats` was node-global, so one identity saw another's pools, pages, bytes, gets and
// hits. Now a client sees its own counters; admin identities (--admin-identities), peers and the metrics
// endpoint see the node's.

const PAGE = 4096;
const clients: TmemClient[] = [];

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await killAllNodes();
});

/** Issues a token with the real `tmem token` command, as an operator would. */
async function issue(identity: string): Promise<{ token: string; line: string }> {
  const result = await runCli(['token', identity]);
  expect(result.code).toBe(0);
  const lines = result.stdout.split('\n').filter((line) => line !== '' && !line.startsWith('#'));
  return { token: lines[0]!, line: lines[1]! };
}

async function client(url: string, token?: string, identity?: string): Promise<TmemClient> {
  const c = await connect({
    seeds: [url],
    ...(token === undefined ? {} : { token }),
    ...(identity === undefined ? {} : { identity }),
  });
  clients.push(c);
  return c;
}

async function statsOf(c: TmemClient): Promise<NodeStats> {
  const all = await c.stats();
  expect(all).toHaveLength(1);
  return all[0]!;
}

/** Pages that are never same-filled and never compressed: each is charged PAGE bytes. */
const page = (): Uint8Array => randomBytes(PAGE);

/** The page-store counters a workload moves, in the order a failure prints them. */
const COUNTERS = [
  'pools',
  'ephemeralPages',
  'persistentPages',
  'usedBytes',
  'puts',
  'acceptedPuts',
  'refusedPuts',
  'duplicatePuts',
  'gets',
  'hits',
  'misses',
  'flushes',
  'evictions',
] as const;

/** The page-store counters of a NodeStats. */
function counters(stats: Pick<NodeStats, (typeof COUNTERS)[number]>): Record<string, number> {
  return Object.fromEntries(COUNTERS.map((key) => [key, stats[key]]));
}

const ZERO = counters(zeroStoreCounters());

describe('per-identity stats', () => {
  it('shows each identity only its own counters, an admin the whole node, and tmem status an admin token', async () => {
    const [alice, bob, carol, ops] = await Promise.all(['alice', 'bob', 'carol', 'ops'].map(issue));
    const dir = mkdtempSync(join(tmpdir(), 'tmem-idstats-'));
    const tokensFile = join(dir, 'tokens');
    writeFileSync(tokensFile, [alice, bob, carol, ops].map((t) => t!.line).join('\n') + '\n');
    const node = await startNode({
      args: ['--replication', '1', '--tokens-file', tokensFile, '--admin-identities', 'ops'],
      until: 'ready',
    });

    // alice: a persistent pool, 10 puts, 3 hits and a miss, one flush.
    const asAlice = await client(node.url, alice!.token);
    const alicePool = await asAlice.createPool({ kind: 'persistent' });
    for (let i = 0; i < 10; i++) expect(await alicePool.put('a', i, page())).toBe(true);
    for (let i = 0; i < 3; i++) expect(await alicePool.get('a', i)).not.toBeNull();
    expect(await alicePool.get('a', 99)).toBeNull();
    await alicePool.flushPage('a', 9);

    // carol has done nothing: she sees nothing of alice's pool, pages or ops.
    const asCarol = await client(node.url, carol!.token);
    const carolStats = await statsOf(asCarol);
    expect(carolStats.scope).toBe('identity');
    expect(counters(carolStats)).toEqual(ZERO);
    expect(carolStats.capacityBytes).toBe(64 * 1024 * 1024);
    expect(carolStats).not.toHaveProperty('copiedPages');
    expect(carolStats).not.toHaveProperty('replicationBacklog');
    expect(carolStats).not.toHaveProperty('identities');

    // bob: an ephemeral pool, 2 puts, one exclusive get.
    const asBob = await client(node.url, bob!.token);
    const bobPool = await asBob.createPool({ kind: 'ephemeral' });
    expect(await bobPool.put('b', 0, page())).toBe(true);
    expect(await bobPool.put('b', 1, page())).toBe(true);
    expect(await bobPool.get('b', 0)).not.toBeNull();

    const aliceStats = await statsOf(asAlice);
    expect(aliceStats.scope).toBe('identity');
    expect(counters(aliceStats)).toEqual({
      ...ZERO,
      pools: 1,
      persistentPages: 9,
      usedBytes: 9 * PAGE,
      puts: 10,
      acceptedPuts: 10,
      gets: 4,
      hits: 3,
      misses: 1,
      flushes: 1,
    });
    expect(aliceStats).toMatchObject({ nodeId: node.nodeId, role: 'leader', leaseHeld: true });
    expect(counters(await statsOf(asBob))).toEqual({
      ...ZERO,
      pools: 1,
      ephemeralPages: 1,
      usedBytes: PAGE,
      puts: 2,
      acceptedPuts: 2,
      gets: 1,
      hits: 1,
    });

    // The admin identity sees the node: both pools, every page and op.
    const asOps = await client(node.url, ops!.token);
    const nodeStats = await statsOf(asOps);
    expect(nodeStats.scope).toBe('node');
    expect(counters(nodeStats)).toEqual({
      ...ZERO,
      pools: 2,
      persistentPages: 9,
      ephemeralPages: 1,
      usedBytes: 10 * PAGE,
      puts: 12,
      acceptedPuts: 12,
      gets: 5,
      hits: 4,
      misses: 1,
      flushes: 1,
    });
    expect(nodeStats).toHaveProperty('copiedPages');
    // And what each identity holds, charged most first: each page its bytes and a 64-byte record, each object
    // ('a', 'b': one-byte oids) 96 bytes and its oid. carol and ops hold no pools: not listed.
    const use = { evictions: 0, refusedPuts: 0 };
    expect(nodeStats.identities).toEqual([
      { identity: 'alice', pools: 1, pages: 9, usedBytes: 9 * PAGE, recordBytes: 9 * 64 + 97, ...use },
      { identity: 'bob', pools: 1, pages: 1, usedBytes: PAGE, recordBytes: 64 + 97, ...use },
    ]);

    // tmem status with the admin's token: the node's counters.
    const status = await runCli(['status', '--seed', node.url, '--json'], {
      env: { TMEM_TOKEN: ops!.token },
    });
    expect(status.code, status.stderr).toBe(0);
    const parsed = JSON.parse(status.stdout) as ClusterStatus;
    expect(parsed.members).toHaveLength(1);
    expect(parsed.members[0]!.stats).toMatchObject({ scope: 'node', pools: 2, usedBytes: 10 * PAGE });
    const asOpsStatus = await runCli(['status', '--seed', node.url], { env: { TMEM_TOKEN: ops!.token } });
    expect(asOpsStatus.stdout).toContain('identities, charged most first:');
    expect(asOpsStatus.stdout).toContain('alice: 1 pool, 9 pages, ');
    expect(asOpsStatus.stdout).toContain('bob: 1 pool, 1 page, ');
    // With bob's: his own, and the table says so.
    const asBobStatus = await runCli(['status', '--seed', node.url], { env: { TMEM_TOKEN: bob!.token } });
    expect(asBobStatus.code, asBobStatus.stderr).toBe(0);
    expect(asBobStatus.stdout).toContain('--admin-identities');
    const bobJson = await runCli(['status', '--seed', node.url, '--json'], {
      env: { TMEM_TOKEN: bob!.token },
    });
    expect((JSON.parse(bobJson.stdout) as ClusterStatus).members[0]!.stats).toMatchObject({
      scope: 'identity',
      pools: 1,
      usedBytes: PAGE,
    });
    // An under-replicated pool (2 copies asked, 1 ready member) shows in its owner's stats only.
    const carolPool = await asCarol.createPool({ kind: 'persistent', replication: 2 });
    expect(await statsOf(asCarol)).toMatchObject({
      pools: 1,
      underReplicated: 1,
      underReplicatedPools: [{ pool: carolPool.id, replication: 2, readyMembers: 1 }],
    });
    expect(await statsOf(asAlice)).toMatchObject({ underReplicated: 0, underReplicatedPools: [] });
    expect(await statsOf(asOps)).toMatchObject({ pools: 3, underReplicated: 1 });

    // Without a token an authenticating node admits no status tool.
    const anonymous = await runCli(['status', '--seed', node.url]);
    expect(anonymous.code).toBe(1);
    expect(anonymous.stderr).toContain('token');
  });

  it('gives every client of an open node the node-global stats', async () => {
    const node = await startNode({ args: ['--replication', '1'], until: 'ready' });
    const first = await client(node.url, undefined, 'open-a');
    const pool = await first.createPool({ kind: 'ephemeral' });
    expect(await pool.put('x', 0, page())).toBe(true);
    const second = await client(node.url, undefined, 'open-b');
    expect(await statsOf(second)).toMatchObject({ scope: 'node', pools: 1, puts: 1, usedBytes: PAGE });
  });

  it('refuses --admin-identities without tokens, or naming an identity without a token', async () => {
    const open = await runCli([
      'node',
      '--capacity',
      '16MiB',
      '--port',
      '0',
      '--open',
      '--admin-identities',
      'ops',
    ]);
    expect(open.code).toBe(1);
    expect(open.stderr).toContain('--admin-identities needs --tokens-file');
    const { line } = await issue('alice');
    const dir = mkdtempSync(join(tmpdir(), 'tmem-idstats-'));
    const tokensFile = join(dir, 'tokens');
    writeFileSync(tokensFile, `${line}\n`);
    const unknown = await runCli([
      'node',
      '--capacity',
      '16MiB',
      '--port',
      '0',
      '--tokens-file',
      tokensFile,
      '--admin-identities',
      'ops',
    ]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('admin identities without a token in the tokens file: ops');
  });
});
