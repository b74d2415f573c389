// The `tmem` command in a checkout of the repository (bin/tmem.js comes here when src/ exists; an installed
// package runs dist/ instead). The packages run from TypeScript source with no build step, but not through a loader
// hook: on Node 20 module hooks (tsx's `--import tsx`) run in a second thread with its own V8 heap for the
// life of the process, about 30 MiB of RSS on every memory node. Instead the CLI and the workspace sources it
// imports are bundled by esbuild (what tsx uses anyway) into one ESM file in node_modules/.cache/tmem/, with
// npm dependencies left as imports, and that file is imported here in-process.
//
// The bundle is rebuilt whenever any source file it was built from changed (size or mtime), so editing and
// re-running behaves as with tsx; an unchanged tree costs one stat per source file (a few ms). Concurrent
// starts each build a private file and rename it into place, so a reader never sees half a bundle. Stack
// traces point into the .ts sources through a source map. If esbuild is missing or the build fails, the CLI
// runs through tsx as before (and tsx reports any syntax error).
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import process from 'node:process';
import { URL, fileURLToPath, pathToFileURL } from 'node:url';

const packageDir = fileURLToPath(new URL('..', import.meta.url));
const entry = join(packageDir, 'src', 'cli.ts');
// Under the package, so npm packages resolve from the bundle exactly as they do from src/.
const cacheDir = join(packageDir, 'node_modules', '.cache', 'tmem');
const bundle = join(cacheDir, 'cli.mjs');
const manifestPath = join(cacheDir, 'cli.inputs.json');
/** Bump when the build options below change, so old bundles are not reused. */
const BUILD_FORMAT = 1;

function stamp(file) {
  const s = statSync(file);
  return `${s.size}:${s.mtimeMs}`;
}

/** True when the bundle exists and every file it was built from is as it was then. */
function fresh() {
  try {
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
    if (manifest.format !== BUILD_FORMAT || manifest.node !== process.version) return false;
    statSync(bundle);
    for (const [file, was] of Object.entries(manifest.inputs)) {
      if (stamp(resolve(packageDir, file)) !== was) return false;
    }
    return true;
  } catch {
    return false;
  }
}

/** The npm dependencies of the workspace packages: left as imports, only `@tmem/*` sources are bundled. */
function externals() {
  const names = new Set();
  for (const pkg of ['memnode', 'protocol']) {
    const json = JSON.parse(readFileSync(join(packageDir, '..', pkg, 'package.json'), 'utf8'));
    for (const name of Object.keys(json.dependencies ?? {})) if (!name.startsWith('@tmem/')) names.add(name);
  }
  return [...names];
}

async function build() {
  const esbuild = await import('esbuild');
  const tmp = `${bundle}.${process.pid}.tmp`;
  try {
    mkdirSync(cacheDir, { recursive: true });
    const result = await esbuild.build({
      entryPoints: [entry],
      outfile: tmp,
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: `node${process.versions.node}`,
      external: externals(),
      sourcemap: 'linked',
      metafile: true,
      logLevel: 'silent',
    });
    // The package manifests too: they decide what stays external.
    const inputs = {
      'package.json': stamp(join(packageDir, 'package.json')),
      '../protocol/package.json': stamp(join(packageDir, '..', 'protocol', 'package.json')),
    };
    for (const input of Object.keys(result.metafile.inputs)) {
      // esbuild names inputs relative to its working directory.
      const file = resolve(input);
      inputs[relative(packageDir, file)] = stamp(file);
    }
    // The map names the temporary file; point it at the final one.
    renameSync(`${tmp}.map`, `${bundle}.map`);
    writeFileSync(
      tmp,
      readFileSync(tmp, 'utf8').replace(/sourceMappingURL=.*$/m, 'sourceMappingURL=cli.mjs.map'),
    );
    renameSync(tmp, bundle);
    const manifestTmp = `${manifestPath}.${process.pid}.tmp`;
    writeFileSync(manifestTmp, JSON.stringify({ format: BUILD_FORMAT, node: process.version, inputs }));
    renameSync(manifestTmp, manifestPath);
  } finally {
    // esbuild's service is a child process; end it so it holds nothing for the node's lifetime.
    await esbuild.stop();
  }
}

let runBundle = fresh();
if (!runBundle) {
  try {
    await build();
    runBundle = true;
  } catch (error) {
    process.stderr.write(`tmem: could not bundle the sources (${String(error)}); running through tsx\n`);
    runBundle = false;
  }
}
if (runBundle) {
  process.setSourceMapsEnabled(true);
  await import(pathToFileURL(bundle).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import(pathToFileURL(entry).href);
}
