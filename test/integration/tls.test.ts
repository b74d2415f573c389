import { writeFileSync } from 'node:fs';
import { connect as connectTcp } from 'node:net';
import { connect as connectTls } from 'node:tls';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect, type TmemClient } from '@tmem/client';
import { ErrorCode, TmemError } from '@tmem/protocol';
import type { ClusterStatus } from '@tmem/memnode';
import {
  TEST_CLUSTER_SECRET,
  closeAllRawPeers,
  createTestCertificates,
  TEST_TIMING_ARGS,
  killAllNodes,
  memberIdsAt,
  runCli,
  startCluster,
  startNode,
  tlsNodeArgs,
  trustTestCa,
  type TestCertificates,
} from '../harness/index.ts';

// Issue 9, TLS: nodes serve wss:// with a certificate and key from files, verify each other against --tls-ca,
// and clients verify them against their tls.ca option. The certificates are generated here, with openssl.

let certs: TestCertificates;
/** Another CA and a node certificate it signed: trusted by nothing the cluster runs with. */
let rogue: TestCertificates;
const clients = new Set<TmemClient>();

beforeAll(() => {
  certs = createTestCertificates('tmem-tls');
  rogue = createTestCertificates('tmem-rogue');
  // The harness's raw peers (startCluster's membership checks) verify the nodes like a client with the CA.
  trustTestCa(certs.ca);
});

afterEach(async () => {
  await Promise.all([...clients].map((client) => client.close()));
  clients.clear();
  closeAllRawPeers();
  await killAllNodes();
});

afterAll(() => {
  trustTestCa(undefined);
  certs.remove();
  rogue.remove();
});

async function connectWithCa(seeds: string[]): Promise<TmemClient> {
  const client = await connect({ seeds, tls: { ca: certs.ca }, timeoutMs: 10_000 });
  clients.add(client);
  return client;
}

/** The error `promise` rejects with; fails the test if it resolves. */
async function rejection(promise: Promise<unknown>): Promise<TmemError> {
  const outcome = await promise.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
  if (!('error' in outcome)) throw new Error('expected a rejection');
  expect(outcome.error).toBeInstanceOf(TmemError);
  return outcome.error as TmemError;
}

function page(fill: number, size = 4096): Uint8Array {
  return new Uint8Array(size).fill(fill);
}

describe('TLS', () => {
  it('a 3-node cluster joins over wss://; a client with the CA puts and gets in both pool kinds', async () => {
    const nodes = await startCluster({ args: tlsNodeArgs(certs) });
    for (const node of nodes) expect(node.url).toMatch(/^wss:\/\/127\.0\.0\.1:\d+$/);
    const client = await connectWithCa([nodes[0]!.url]);
    // Every member was learnt from the state, under its wss:// URL, and is reached over TLS.
    expect(
      client
        .view()
        .members.map((m) => m.url)
        .sort(),
    ).toEqual(nodes.map((n) => n.url).sort());

    const persistent = await client.createPool({ kind: 'persistent', replication: 2 });
    const ephemeral = await client.createPool({ kind: 'ephemeral' });
    const indexes = Array.from({ length: 64 }, (_, i) => i);
    // Enough pages that every node is a primary of some: each node's TLS listener carries ops.
    expect(await persistent.putMany(indexes.map((i) => ({ oid: 'p', index: i, page: page(i) })))).toEqual(
      indexes.map(() => true),
    );
    expect(await ephemeral.putMany(indexes.map((i) => ({ oid: 'e', index: i, page: page(i + 1) })))).toEqual(
      indexes.map(() => true),
    );
    const persistentPages = await persistent.getMany(indexes.map((i) => ({ oid: 'p', index: i })));
    const ephemeralPages = await ephemeral.getMany(indexes.map((i) => ({ oid: 'e', index: i })));
    for (const i of indexes) {
      expect(persistentPages[i]).toEqual(page(i));
      expect(ephemeralPages[i]).toEqual(page(i + 1));
    }
    const stats = await client.stats();
    expect(stats).toHaveLength(3);
    // Every node answered over wss://; the client's own ephemeral gets all reached a store (identity scope).
    expect(stats.reduce((sum, s) => sum + s.gets, 0)).toBeGreaterThanOrEqual(indexes.length);
  });

  it('a client without the CA is refused with CERTIFICATE_REJECTED naming the reason, not a hang', async () => {
    const node = await startNode({ args: tlsNodeArgs(certs), until: 'ready' });
    const started = Date.now();
    const error = await rejection(connect({ seeds: [node.url], connectTimeoutMs: 10_000 }));
    expect(error.code).toBe(ErrorCode.CertificateRejected);
    expect(error.details['reason']).toBe('UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    expect(error.details['node']).toBe(node.url);
    // Refused at the TLS handshake, long before the connect timeout.
    expect(Date.now() - started).toBeLessThan(5000);

    // Trusting another CA is no better.
    const other = await rejection(connect({ seeds: [node.url], tls: { ca: rogue.ca } }));
    expect(other.code).toBe(ErrorCode.CertificateRejected);
  });

  it('a plain ws:// client against a TLS node fails at once with CONNECTION_LOST and a wss:// hint', async () => {
    const node = await startNode({ args: tlsNodeArgs(certs), until: 'ready' });
    const plainUrl = node.url.replace(/^wss:/, 'ws:');
    const started = Date.now();
    const error = await rejection(connect({ seeds: [plainUrl], connectTimeoutMs: 10_000 }));
    expect(error.code).toBe(ErrorCode.NoNodes);
    const failures = error.details['failures'] as { code: string; message: string }[];
    expect(failures.map((f) => f.code)).toEqual([ErrorCode.ConnectionLost]);
    expect(failures[0]?.message).toContain('wss://');
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('a node whose seed presents a certificate its --tls-ca did not sign exits 1 without joining', async () => {
    const seed = await startNode({ args: tlsNodeArgs(rogue), until: 'ready' });
    const run = await runCli(
      ['node', '--open', '--capacity', '1MiB', ...tlsNodeArgs(certs), '--join', seed.url],
      { env: { TMEM_CLUSTER_SECRET: TEST_CLUSTER_SECRET } },
    );
    expect(run.code, run.stderr).toBe(1);
    // Refused at once, not retried until --join-timeout (60 s; runCli would kill it after 20 s).
    expect(run.stdout).not.toContain('"event":"ready"');
    const last = run.stderr.trim().split('\n').at(-1) ?? '';
    expect(last).toMatch(/^tmem node: this node does not trust seed wss:\/\//);
    expect(last).toContain('--tls-ca');
  });

  it('a joiner whose certificate the cluster does not trust never becomes a member', async () => {
    const seed = await startNode({ args: [...TEST_TIMING_ARGS, ...tlsNodeArgs(certs)], until: 'ready' });
    // It trusts the cluster (its seed verifies), but its own certificate comes from another CA: the seed's dial
    // back to it fails, so the join is never answered.
    const joiner = await startNode({
      args: [
        ...TEST_TIMING_ARGS,
        ...['--tls-cert', rogue.certFile, '--tls-key', rogue.keyFile, '--tls-ca', certs.caFile],
        ...['--join', seed.url, '--join-timeout', '4s'],
      ],
    });
    expect((await joiner.exited).code).toBe(1);
    // The seed never committed a state listing it: every state it committed (each logged at info) has one member.
    const committedMembers = seed
      .stderr()
      .split('\n')
      .filter((line) => line.includes('"msg":"committed"'))
      .map((line) => (JSON.parse(line) as { members: number }).members);
    expect(committedMembers.length).toBeGreaterThan(0);
    expect(committedMembers.every((members) => members === 1)).toBe(true);
    expect(await memberIdsAt(seed.url)).toEqual([seed.nodeId]);
    await expect(joiner.ready).rejects.toThrow();
    expect(seed.stderr()).toContain(`the TLS certificate of ${joiner.url} was rejected`);
  });

  it('a TLS node refuses ws:// seeds, and a plain node refuses wss:// seeds', async () => {
    const tlsJoin = await runCli(
      ['node', '--open', '--capacity', '1MiB', ...tlsNodeArgs(certs), '--join', 'ws://127.0.0.1:1'],
      { env: { TMEM_CLUSTER_SECRET: TEST_CLUSTER_SECRET } },
    );
    expect(tlsJoin.code).toBe(1);
    expect(tlsJoin.stderr.trim().split('\n')).toHaveLength(1);
    expect(tlsJoin.stderr).toContain('must be a wss:// URL');

    const plainJoin = await runCli(['node', '--open', '--capacity', '1MiB', '--join', 'wss://127.0.0.1:1'], {
      env: { TMEM_CLUSTER_SECRET: TEST_CLUSTER_SECRET },
    });
    expect(plainJoin.code).toBe(1);
    expect(plainJoin.stderr).toContain('must be a ws:// URL');
  });

  describe('the handshake deadline holds across the TLS handshake', () => {
    const deadlineArgs = () => [...tlsNodeArgs(certs), '--handshake-timeout-ms', '800'];

    it('a client that trickles its TLS hello a byte at a time is cut at the deadline', async () => {
      const node = await startNode({ args: deadlineArgs() });
      const socket = connectTcp(Number(new URL(node.url).port), '127.0.0.1');
      const started = Date.now();
      // A TLS handshake record header announcing 255 bytes, then one byte every 100 ms: the socket is never
      // idle, so only a deadline from accept ends it.
      socket.write(Buffer.from([0x16, 0x03, 0x01, 0x00, 0xff]));
      const trickle = setInterval(() => socket.write(Buffer.from([0x01])), 100);
      socket.on('error', () => undefined);
      await new Promise((resolve) => socket.once('close', resolve));
      clearInterval(trickle);
      const elapsedMs = Date.now() - started;
      expect(elapsedMs).toBeGreaterThanOrEqual(700);
      expect(elapsedMs).toBeLessThan(5000);
    });

    it('a client that completes TLS but never upgrades is cut at the deadline', async () => {
      const node = await startNode({ args: deadlineArgs() });
      const socket = connectTls({ port: Number(new URL(node.url).port), host: '127.0.0.1', ca: certs.ca });
      socket.on('error', () => undefined);
      await new Promise((resolve) => socket.once('secureConnect', resolve));
      const started = Date.now();
      await new Promise((resolve) => socket.once('close', resolve));
      expect(Date.now() - started).toBeLessThan(5000);
    });
  });

  describe('the CLI refuses TLS flags it cannot serve with: exit 1, one line, no stack', () => {
    const base = ['node', '--open', '--capacity', '1MiB'];
    const cases: [string, () => string[], RegExp][] = [
      ['a certificate without its key', () => ['--tls-cert', certs.certFile], /--tls-cert needs --tls-key/],
      ['a key without its certificate', () => ['--tls-key', certs.keyFile], /--tls-key needs --tls-cert/],
      ['a CA without a certificate', () => ['--tls-ca', certs.caFile], /--tls-ca needs --tls-cert/],
      [
        'an unreadable certificate',
        () => ['--tls-cert', join(certs.dir, 'missing.pem'), '--tls-key', certs.keyFile],
        /cannot read --tls-cert .*missing\.pem: ENOENT/,
      ],
      [
        'an unreadable CA',
        () => [...tlsNodeArgs(certs).slice(0, 4), '--tls-ca', certs.dir],
        /cannot read --tls-ca .*: EISDIR/,
      ],
      [
        'a file that is no certificate',
        () => ['--tls-cert', certs.keyFile, '--tls-key', certs.keyFile],
        /--tls-cert .* holds no valid PEM certificate/,
      ],
      [
        'a key that is not the certificate’s',
        () => ['--tls-cert', certs.certFile, '--tls-key', rogue.keyFile],
        /--tls-key .* is not the private key of the certificate/,
      ],
    ];
    for (const [what, args, message] of cases) {
      it(what, async () => {
        const run = await runCli([...base, ...args()]);
        expect(run.code).toBe(1);
        const lines = run.stderr.trim().split('\n');
        expect(lines, run.stderr).toHaveLength(1);
        expect(lines[0]).toMatch(/^tmem node: /);
        expect(lines[0]).toMatch(message);
        expect(run.stdout).toBe('');
      });
    }

    it('a key file that is not PEM', async () => {
      const garbage = join(certs.dir, 'garbage.key');
      writeFileSync(garbage, 'not a key\n');
      const run = await runCli([...base, '--tls-cert', certs.certFile, '--tls-key', garbage]);
      expect(run.code).toBe(1);
      expect(run.stderr.trim().split('\n')).toHaveLength(1);
      expect(run.stderr).toMatch(/--tls-key .* holds no valid PEM private key/);
    });
  });

  it('--help names every TLS flag', async () => {
    const node = await runCli(['node', '--help']);
    for (const flag of ['--tls-cert <file>', '--tls-key <file>', '--tls-ca <file>']) {
      expect(node.stdout).toContain(flag);
    }
    const status = await runCli(['status', '--help']);
    expect(status.stdout).toContain('--tls-ca <file>');
  });

  it('tmem status reads a TLS cluster with --tls-ca, and names the certificate problem without it', async () => {
    const nodes = await startCluster({ size: 2, args: tlsNodeArgs(certs) });
    const run = await runCli(['status', '--seed', nodes[1]!.url, '--tls-ca', certs.caFile, '--json']);
    expect(run.code, run.stderr).toBe(0);
    const status = JSON.parse(run.stdout) as ClusterStatus;
    expect(status.members.map((m) => m.id).sort()).toEqual(['n0', 'n1']);
    expect(status.members.every((m) => m.reachable)).toBe(true);

    const untrusted = await runCli(['status', '--seed', nodes[0]!.url]);
    expect(untrusted.code).toBe(1);
    expect(untrusted.stderr.trim().split('\n')).toHaveLength(1);
    expect(untrusted.stderr).toContain('UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    expect(untrusted.stderr).toContain('--tls-ca');
  });
});
