import { afterEach, describe, expect, it } from 'vitest';
import { connect, type TmemClient } from '@tmem/client';
import { killAllNodes, runCli, startNode } from '../harness/index.ts';

const PAGE = 4096;

function pageOf(seed: number): Uint8Array {
  const page = new Uint8Array(PAGE);
  for (let i = 0; i < PAGE; i++) page[i] = (seed * 31 + i) & 0xff;
  return page;
}

/** One sample of a scrape: its value, keyed by name and labels (without the `node` label every sample has). */
type Samples = Map<string, number>;

function key(name: string, labels: Record<string, string> = {}): string {
  const parts = Object.entries(labels)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}=${v}`);
  return `${name}{${parts.join(',')}}`;
}

/** Parses the Prometheus text format as prom-client writes it (no escaped quotes in our label values). */
function parseScrape(text: string, nodeId: string): Samples {
  const samples: Samples = new Map();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (match === null) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, k, v] of (match[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)) labels[k!] = v!;
    expect(labels['node']).toBe(nodeId);
    delete labels['node'];
    samples.set(key(match[1]!, labels), Number(match[3]));
  }
  return samples;
}

let client: TmemClient | undefined;

afterEach(async () => {
  await client?.close();
  client = undefined;
  await killAllNodes();
});

describe('the /metrics endpoint', () => {
  it('counts a known workload exactly, and its latency histogram counts every op', async () => {
    const node = await startNode({ args: ['--replication', '1', '--metrics-port', '0'], until: 'ready' });
    expect(node.metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    client = await connect({ seeds: [node.url] });

    const ephemeral = await client.createPool({ kind: 'ephemeral' });
    for (let i = 0; i < 10; i++) expect(await ephemeral.put('file', i, pageOf(i))).toBe(true);
    for (let i = 0; i < 4; i++) expect(await ephemeral.get('file', i)).toEqual(pageOf(i));
    for (let i = 0; i < 6; i++) expect(await ephemeral.get('other', i)).toBeNull();
    await ephemeral.flushPage('file', 0);
    await ephemeral.flushPage('file', 1);
    await ephemeral.flushObject('file');
    // A persistent pool takes the replicated (asynchronous) path: counted when its reply settles.
    const persistent = await client.createPool({ kind: 'persistent' });
    for (let i = 0; i < 3; i++) expect(await persistent.put('p', i, pageOf(i))).toBe(true);
    expect(await persistent.get('p', 0)).toEqual(pageOf(0));

    const response = await fetch(node.metricsUrl!);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/plain');
    const samples = parseScrape(await response.text(), node.nodeId);
    const ops = (kind: string, result: string) => samples.get(key('tmem_ops_total', { kind, result }));

    expect(ops('put', 'ok')).toBe(13);
    expect(ops('put', 'refused')).toBe(0);
    expect(ops('put', 'error')).toBe(0);
    expect(ops('get', 'hit')).toBe(5);
    expect(ops('get', 'miss')).toBe(6);
    expect(ops('get', 'error')).toBe(0);
    expect(ops('flushPage', 'ok')).toBe(2);
    expect(ops('flushObject', 'ok')).toBe(1);
    const total = 13 + 5 + 6 + 2 + 1;
    expect(samples.get(key('tmem_op_duration_seconds_count'))).toBe(total);
    expect(samples.get(key('tmem_op_duration_seconds_bucket', { le: '+Inf' }))).toBe(total);
    expect(samples.get(key('tmem_op_duration_seconds_sum'))).toBeGreaterThan(0);
    // The page store's own counts agree: 5 hits, 6 misses; no room was needed.
    expect(samples.get(key('tmem_store_hits_total'))).toBe(5);
    expect(samples.get(key('tmem_store_misses_total'))).toBe(6);
    expect(samples.get(key('tmem_store_evictions_total'))).toBe(0);
    // 10 ephemeral pages put, 2 flushed singly, the other 8 with their object; 3 persistent pages held.
    expect(samples.get(key('tmem_pages', { kind: 'ephemeral' }))).toBe(0);
    expect(samples.get(key('tmem_pages', { kind: 'persistent' }))).toBe(3);
    expect(samples.get(key('tmem_used_bytes'))).toBe(3 * PAGE);
    // Their records: 64 bytes each, and one object ('p', a one-byte oid) charged 96 + 1.
    expect(samples.get(key('tmem_record_bytes'))).toBe(3 * 64 + 97);
    expect(samples.get(key('tmem_pools'))).toBe(2);
    // A cluster of one: its leader, holding a lease.
    expect(samples.get(key('tmem_role', { role: 'leader' }))).toBe(1);
    expect(samples.get(key('tmem_role', { role: 'follower' }))).toBe(0);
    expect(samples.get(key('tmem_lease_held'))).toBe(1);
    expect(samples.get(key('tmem_state_version'))).toBeGreaterThan(0);
    expect(samples.get(key('tmem_replication_backlog'))).toBe(0);
  });

  it('counts refused puts by reason', async () => {
    const node = await startNode({
      capacity: '64KiB',
      args: ['--replication', '1', '--metrics-port', '0'],
      until: 'ready',
    });
    client = await connect({ seeds: [node.url] });
    const pool = await client.createPool({ kind: 'persistent' });
    let refused = 0;
    for (let i = 0; i < 20; i++) if (!(await pool.put('p', i, pageOf(i)))) refused++;
    expect(refused).toBeGreaterThan(0);
    const samples = parseScrape(await (await fetch(node.metricsUrl!)).text(), node.nodeId);
    expect(samples.get(key('tmem_ops_total', { kind: 'put', result: 'refused' }))).toBe(refused);
    expect(samples.get(key('tmem_refusals_total', { reason: 'full' }))).toBe(refused);
    expect(samples.get(key('tmem_ops_total', { kind: 'put', result: 'ok' }))).toBe(20 - refused);
  });

  it('is off without --metrics-port', async () => {
    const node = await startNode({ args: ['--replication', '1'] });
    expect(node.metricsUrl).toBeUndefined();
  });

  it('a metrics port in use stops the node with one line naming --metrics-port, and no stack trace', async () => {
    const holder = await startNode({ args: ['--replication', '1', '--metrics-port', '0'] });
    const { port } = new URL(holder.metricsUrl!);
    const run = await runCli(['node', '--open', '--capacity', '1MiB', '--metrics-port', port]);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    const lastLine = run.stderr.trim().split('\n').at(-1);
    expect(lastLine).toBe(
      `tmem node: cannot serve metrics on 127.0.0.1:${port}: the port is in use; pick another --metrics-port`,
    );
    expect(run.stderr).not.toMatch(/\n\s+at /);
  });
});
