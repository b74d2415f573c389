import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '@tmem/client';
import { ErrorCode, PROTOCOL_VERSION, TmemError } from '@tmem/protocol';
import { closeAllRawPeers, killAllNodes, openRawPeer, runCli, startNode } from '../harness/index.ts';

// Issue 9, finding 1: a client proves its identity with a token; the identity in the hello alone is nothing.

afterEach(() => closeAllRawPeers());
afterAll(() => killAllNodes());

/** Issues a token with the real `tmem token` command, as an operator would. */
async function issue(identity: string): Promise<{ token: string; line: string }> {
  const result = await runCli(['token', identity]);
  expect(result.code).toBe(0);
  const lines = result.stdout.split('\n').filter((line) => line !== '' && !line.startsWith('#'));
  expect(lines).toHaveLength(2);
  return { token: lines[0]!, line: lines[1]! };
}

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
    return undefined;
  } catch (error) {
    return error instanceof TmemError ? error.code : String(error);
  }
}

describe('client tokens', () => {
  it('only the holder of a token acts as its identity; a hello that merely names it is refused', async () => {
    const alice = await issue('alice');
    const bob = await issue('bob');
    const dir = mkdtempSync(join(tmpdir(), 'tmem-tokens-'));
    const tokensFile = join(dir, 'tokens');
    writeFileSync(tokensFile, `# issued for the test\n${alice.line}\n${bob.line}\n`);
    // The file holds hashes only: neither token appears in it.
    expect(alice.line).not.toContain(alice.token.split('.')[1]);
    const node = await startNode({ args: ['--replication', '1', '--tokens-file', tokensFile] });

    const client = await connect({ seeds: [node.url], token: alice.token });
    expect(client.identity).toBe('alice');
    const pool = await client.createPool({ kind: 'persistent' });
    expect(await pool.put('secret', 0, new Uint8Array(4096).fill(1))).toBe(true);

    // Naming alice without her token, with bob's token, or with a made-up one: UNAUTHORIZED, connection closed.
    for (const hello of [
      { identity: 'alice' },
      { identity: 'alice', token: bob.token },
      { identity: 'alice', token: `alice.${'A'.repeat(43)}` },
    ]) {
      const raw = await openRawPeer(node.url);
      const reply = await raw.request({ t: 'hello', id: 1, protocol: PROTOCOL_VERSION, ...hello });
      expect(reply).toMatchObject({ t: 'error', code: ErrorCode.Unauthorized });
      expect((await raw.waitClosed()).code).toBe(1008);
    }
    // Nothing before the hello reaches alice's pool either.
    const sneaky = await openRawPeer(node.url);
    const early = await sneaky.request({
      t: 'get',
      id: 2,
      pool: pool.id,
      oid: new Uint8Array([1]),
      index: 0,
    });
    expect(early).toMatchObject({ t: 'error', code: ErrorCode.HandshakeRequired });

    // The client library reports a bad token as UNAUTHORIZED at connect.
    expect(await codeOf(connect({ seeds: [node.url], identity: 'alice' }))).toBe(ErrorCode.Unauthorized);
    expect(await codeOf(connect({ seeds: [node.url], token: bob.token, identity: 'alice' }))).toBe(
      ErrorCode.BadArgument,
    );
    // Bob's own token works, and alice's pool looks to him exactly like a missing one.
    const asBob = await openRawPeer(node.url);
    const welcome = await asBob.request({
      t: 'hello',
      id: 1,
      protocol: PROTOCOL_VERSION,
      identity: 'bob',
      token: bob.token,
    });
    expect(welcome).toMatchObject({ t: 'welcome' });
    const get = {
      t: 'get',
      id: 3,
      pool: pool.id,
      oid: new TextEncoder().encode('secret'),
      index: 0,
    } as const;
    expect(await asBob.request(get)).toMatchObject({ t: 'error', code: ErrorCode.UnknownPool });
    await client.close();
  });

  it('a node refuses to start without --tokens-file or --open, and with an unreadable tokens file', async () => {
    const none = await runCli(['node', '--capacity', '8MiB', '--port', '0']);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/--tokens-file.*--open/);
    const dir = mkdtempSync(join(tmpdir(), 'tmem-tokens-'));
    writeFileSync(join(dir, 'bad'), 'alice not-a-hash\n');
    const bad = await runCli(['node', '--capacity', '8MiB', '--tokens-file', join(dir, 'bad')]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('line 1');
    expect(bad.stderr.split('\n').filter((line) => line !== '')).toHaveLength(1);
  });

  it('an open node says so in its log', async () => {
    const node = await startNode({ args: ['--replication', '1'], env: { TMEM_LOG_LEVEL: 'warn' } });
    expect(node.stderr()).toContain('open mode');
  });
});
