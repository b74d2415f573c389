// The packages as an application outside the repository gets them: built, packed with `npm pack`, installed
// from the tarballs into a scratch directory, then used from plain `node` (no tsx) and type-checked by tsc.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';

let scratch: string;
let node: ChildProcess | undefined;
let url: string;

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'tmem-packaging-'));
  const tarballs = join(scratch, 'tarballs');
  await mkdir(tarballs);
  // prepack builds each package (tsc -b), so this is the route a release takes.
  for (const pkg of ['protocol', 'client', 'memnode']) {
    await run(NPM, ['pack', '--pack-destination', tarballs], { cwd: join(ROOT, 'packages', pkg) });
  }
  const files = (await readdir(tarballs)).sort();
  expect(files).toEqual(['tmem-client-0.1.0.tgz', 'tmem-memnode-0.1.0.tgz', 'tmem-protocol-0.1.0.tgz']);
  await writeFile(
    join(scratch, 'package.json'),
    JSON.stringify({ name: 'app', private: true, type: 'module' }),
  );
  await run(
    NPM,
    ['install', '--no-audit', '--no-fund', '--prefer-offline', ...files.map((file) => join(tarballs, file))],
    { cwd: scratch },
  );

  // The packed `tmem` binary, run by plain node.
  node = spawn(
    join(scratch, 'node_modules', '.bin', 'tmem'),
    ['node', '--port', '0', '--capacity', '16MiB', '--open', '--replication', '1'],
    { cwd: scratch, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TMEM_CLUSTER_SECRET: 'x' } },
  );
  let stderr = '';
  node.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  url = await new Promise<string>((resolve, reject) => {
    node!.once('exit', (code) => reject(new Error(`tmem exited ${code}:\n${stderr}`)));
    createInterface({ input: node!.stdout! }).on('line', (line) => {
      try {
        const event = JSON.parse(line) as { event?: string; url?: string };
        if (event.event === 'ready' && event.url) resolve(event.url);
      } catch {
        // not our line
      }
    });
  });
}, 240_000);

afterAll(async () => {
  if (node && node.exitCode === null) {
    const exited = new Promise((resolve) => node!.once('exit', resolve));
    node.kill('SIGKILL');
    await exited;
  }
  await rm(scratch, { recursive: true, force: true });
});

describe('the packed packages in an application outside the repository', () => {
  it('plain node imports @tmem/client from dist/ and copies a page through the packed tmem node', async () => {
    await writeFile(
      join(scratch, 'app.mjs'),
      `import { connect, DEFAULT_PAGE_SIZE } from '@tmem/client';
const client = await connect({ seeds: [process.argv[2]] });
const pool = await client.createPool({ kind: 'ephemeral' });
const page = new Uint8Array(4096).map((_, i) => (i * 7) & 0xff);
const stored = await pool.put('file-1', 0, page);
const back = await pool.get('file-1', 0);
const same = back !== null && Buffer.compare(Buffer.from(back), Buffer.from(page)) === 0;
console.log(JSON.stringify({ stored, same, pageSize: DEFAULT_PAGE_SIZE }));
await client.close();
`,
    );
    const { stdout } = await run(process.execPath, ['app.mjs', url], { cwd: scratch });
    expect(JSON.parse(stdout.trim())).toEqual({ stored: true, same: true, pageSize: 4096 });
  });

  it('a TypeScript application type-checks against the packed declarations', async () => {
    await writeFile(
      join(scratch, 'app.ts'),
      `import { connect, type Pool, type TmemClient } from '@tmem/client';
import { createMemnode, type MemnodeOptions } from '@tmem/memnode';
const client: TmemClient = await connect({ seeds: ['ws://127.0.0.1:1'] });
const pool: Pool = await client.createPool({ kind: 'ephemeral' });
const found: Uint8Array | null = await pool.get('file-1', 0);
export { found, createMemnode };
export type { MemnodeOptions };
`,
    );
    await writeFile(
      join(scratch, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          noEmit: true,
          // No @types/node in the scratch app: the check is of the app against the packed declarations.
          types: [],
          skipLibCheck: true,
        },
        files: ['app.ts'],
      }),
    );
    const result = await run(process.execPath, [TSC, '-p', 'tsconfig.json'], { cwd: scratch }).then(
      () => ({ code: 0, out: '' }),
      (error: { code: number; stdout: string }) => ({ code: error.code, out: error.stdout }),
    );
    expect(result).toEqual({ code: 0, out: '' });
  });
});
