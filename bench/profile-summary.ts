// Summarises a V8 .cpuprofile (from --cpu-prof or the inspector): the top functions by self time with file:line
// and share of the total, and self time grouped by package (or by file inside this repository), as markdown.
// Run: npm run bench:profile-summary -- <file.cpuprofile>... [--top 25]
import { transformSync } from 'esbuild';
import { readFileSync } from 'node:fs';
import { SourceMap } from 'node:module';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

/** The parts of a .cpuprofile this summary reads. */
export interface CpuProfile {
  nodes: {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  }[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Where a frame's code lives: a package, a file of this repository, node's internals or a V8 pseudo-frame. */
export function groupOf(url: string, functionName: string): string {
  if (url === '') return functionName === '' ? '(anonymous native)' : functionName;
  if (url.startsWith('node:')) return 'node: (runtime internals)';
  const path = url.startsWith('file://') ? fileURLToPath(url) : url;
  const inModules = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(path);
  if (inModules) return inModules[1]!;
  return path.startsWith(ROOT) ? relative(ROOT, path) : path;
}

/** What this file uses of node:module's SourceMap; findEntry returns {} where nothing maps. */
interface LineMapper {
  findEntry(line: number, column: number): { originalLine?: number };
}

const sourceMaps = new Map<string, LineMapper | null>();

/**
 * The source line (1-based) of a frame in a TypeScript file. tsx compiles with esbuild and minified whitespace,
 * so a profile puts every function of a file on line 1; compiling the file again with tsx's options gives the
 * same code and a source map back to the line. esbuild comes with tsx. Undefined when that fails.
 */
function tsSourceLine(path: string, line: number, column: number): number | undefined {
  let map = sourceMaps.get(path);
  if (map === undefined) {
    try {
      const out = transformSync(readFileSync(path, 'utf8'), {
        loader: 'ts',
        format: 'esm',
        target: `node${process.versions.node}`,
        sourcemap: 'external',
        minifyWhitespace: true,
        keepNames: true,
        sourcefile: path,
      });
      const mapper: LineMapper = new SourceMap(
        JSON.parse(out.map) as ConstructorParameters<typeof SourceMap>[0],
      );
      map = mapper;
    } catch {
      map = null;
    }
    sourceMaps.set(path, map);
  }
  const original = map?.findEntry(line, column).originalLine;
  return original === undefined ? undefined : original + 1;
}

/** file:line of a frame, with the TypeScript source line where the code came through tsx. */
function whereOf(url: string, group: string, line: number, column: number): string {
  if (url === '') return '';
  if (url.startsWith('file://') && /\.[cm]?ts$/.test(url)) {
    const source = tsSourceLine(fileURLToPath(url), line, column);
    if (source !== undefined) return `${group}:${source}`;
  }
  return `${url.startsWith('node:') ? url : group}:${line + 1}`;
}

/** Self time in µs per profile node id (each sample is charged the time until the next sample). */
function selfTimes(profile: CpuProfile): Map<number, number> {
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  const times = new Map<number, number>();
  for (let i = 0; i < samples.length; i++) {
    const id = samples[i]!;
    const next = deltas[i + 1] ?? 0;
    times.set(id, (times.get(id) ?? 0) + Math.max(0, next));
  }
  return times;
}

/** Options of summarize(). */
export interface SummaryOptions {
  /** @default 25 */
  top?: number;
  /** The ops the profiled window ran, to state µs of CPU per op. */
  ops?: number;
}

/** The summary of one profile as markdown. */
export function summarize(profile: CpuProfile, options: SummaryOptions = {}): string {
  const top = options.top ?? 25;
  const times = selfTimes(profile);
  const byFunction = new Map<string, { name: string; where: string; group: string; us: number }>();
  const byGroup = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const node of profile.nodes) {
    const us = times.get(node.id) ?? 0;
    if (us === 0) continue;
    const { functionName, url, lineNumber, columnNumber } = node.callFrame;
    total += us;
    if (functionName === '(idle)') idle += us;
    const group = groupOf(url, functionName);
    const where = whereOf(url, group, lineNumber, columnNumber);
    const key = `${functionName} ${where}`;
    const entry = byFunction.get(key) ?? { name: functionName || '(anonymous)', where, group, us: 0 };
    entry.us += us;
    byFunction.set(key, entry);
    byGroup.set(group, (byGroup.get(group) ?? 0) + us);
  }
  const busy = total - idle;
  const pct = (us: number, of: number): string => (of > 0 ? `${((100 * us) / of).toFixed(1)}%` : '—');
  const perOp = (us: number): string => (options.ops ? (us / options.ops).toFixed(2) : '—');
  const lines = [
    `Sampled ${(total / 1000).toFixed(0)} ms, of which busy (not idle) ${(busy / 1000).toFixed(0)} ms` +
      (options.ops
        ? `, ${options.ops.toLocaleString('en-US')} ops: ${(busy / options.ops).toFixed(1)} µs busy per op.`
        : '.'),
    '',
    `| # | function | where | self ms | % of busy | µs/op |`,
    '| --: | --- | --- | --: | --: | --: |',
  ];
  const functions = [...byFunction.values()].filter((f) => f.name !== '(idle)').sort((a, b) => b.us - a.us);
  functions
    .slice(0, top)
    .forEach((f, i) =>
      lines.push(
        `| ${i + 1} | \`${f.name}\` | ${f.where} | ${(f.us / 1000).toFixed(1)} | ${pct(f.us, busy)} | ${perOp(f.us)} |`,
      ),
    );
  lines.push('', '| package or file | self ms | % of busy | µs/op |', '| --- | --: | --: | --: |');
  for (const [group, us] of [...byGroup].filter(([g]) => g !== '(idle)').sort((a, b) => b[1] - a[1])) {
    lines.push(`| ${group} | ${(us / 1000).toFixed(1)} | ${pct(us, busy)} | ${perOp(us)} |`);
  }
  return lines.join('\n');
}

/** Reads a .cpuprofile file. */
export function readProfile(path: string): CpuProfile {
  return JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
}

/** The op count the bench wrote beside a profile of its (`<name>.json` for `<name>-client.cpuprofile`). */
function sidecarOps(path: string): number | undefined {
  try {
    const sidecar = JSON.parse(
      readFileSync(path.replace(/-(client|node\d+)\.cpuprofile$/, '.json'), 'utf8'),
    ) as {
      ops?: number;
    };
    return sidecar.ops;
  } catch {
    return undefined;
  }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { top: { type: 'string', default: '25' }, ops: { type: 'string' } },
  });
  if (positionals.length === 0) {
    console.error('usage: tsx bench/profile-summary.ts <file.cpuprofile>... [--top 25] [--ops N]');
    process.exit(2);
  }
  for (const path of positionals) {
    const ops = values.ops === undefined ? sidecarOps(path) : Number(values.ops);
    console.log(`## ${path}\n\n${summarize(readProfile(path), { top: Number(values.top), ops })}\n`);
  }
}
