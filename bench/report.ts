// Turns a run into what people read: the markdown tables (throughput, the redis-benchmark reference, memory,
// the targets met or not) and an SVG chart of throughput against ops in flight.
import type { RedisBenchmarkResult } from './anchors.ts';
import { CASES, type Case } from './cases.ts';
import { median, type Sample } from './drive.ts';
import type { StoreSnapshot, SystemId } from './systems.ts';

/** Every sample of one case on one system. */
export interface CaseResult {
  system: { id: SystemId; label: string; batchNote: string };
  case: Case;
  samples: Sample[];
}

/** What each round of one put case added to a tmem system's nodes (after minus before). */
export interface StorageResult {
  system: { id: SystemId; label: string };
  case: Case;
  snapshots: StoreSnapshot[];
}

/** RSS measured around the memory fill. */
export interface MemoryResult {
  payloadBytes: number;
  /** A node that holds nothing, started with 3 GiB of capacity. */
  emptyNodeRssBytes: number;
  emptyNodeCapacity: string;
  tmemRssBytes: number;
  redisRssBytes: number;
}

/** Everything one run measured. */
export interface RunResult {
  startedAt: Date;
  settings: string;
  machine: string;
  results: CaseResult[];
  redisBenchmark: RedisBenchmarkResult[];
  /** Per tmem system and put case: what the node held after it (the compression table). */
  storage: StorageResult[];
  memory: MemoryResult | undefined;
  notes: string[];
}

const MiB = 1024 * 1024;

function int(x: number): string {
  return Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '—';
}

function fixed(x: number, digits: number): string {
  return Number.isFinite(x) ? x.toFixed(digits) : '—';
}

function find(run: RunResult, system: SystemId, caseId: string): CaseResult | undefined {
  return run.results.find((r) => r.system.id === system && r.case.id === caseId);
}

/** Median of one field over a result's rounds, NaN when there is no such result. */
function med(result: CaseResult | undefined, field: keyof Sample): number {
  return result ? median(result.samples.map((s) => s[field])) : NaN;
}

function throughputTable(run: RunResult): string[] {
  const lines = [
    '| case | system | ops/s (median) | min | max | p50 µs | p99 µs | server CPU µs/op | client CPU µs/op | vs ioredis |',
    '| --- | --- | --: | --: | --: | --: | --: | --: | --: | --: |',
  ];
  for (const result of run.results) {
    const ops = result.samples.map((s) => s.opsPerSec);
    const ioredis = med(find(run, 'ioredis', result.case.id), 'opsPerSec');
    lines.push(
      `| ${result.case.label} | ${result.system.label} | ${int(median(ops))} | ${int(Math.min(...ops))} | ` +
        `${int(Math.max(...ops))} | ${int(med(result, 'p50Us'))} | ${int(med(result, 'p99Us'))} | ` +
        `${fixed(med(result, 'serverCpuUsPerOp'), 1)} | ${fixed(med(result, 'clientCpuUsPerOp'), 1)} | ${fixed(median(ops) / ioredis, 2)} |`,
    );
  }
  return lines;
}

/**
 * Compression (issue 11): per page kind, what tmem-1 and tmem-1-lz4 charged for the pages the batched put wrote
 * (pages × 4 KiB ÷ bytes charged, the memory saved; same-filled pages cost 128 B either way) and the throughput
 * of the batched put and get against tmem-1's.
 */
function compressionTable(run: RunResult): string[] {
  const rows = run.storage.filter((s) => s.case.batched && s.case.op === 'put');
  if (rows.length === 0) return [];
  const lines = [
    '| pages | system | pages written | saved (page bytes ÷ charged) | lz4 ratio of compressed pages | put ops/s | vs tmem-1 | get ops/s | vs tmem-1 |',
    '| --- | --- | --: | --: | --: | --: | --: | --: | --: |',
  ];
  for (const row of rows) {
    const last = row.snapshots[row.snapshots.length - 1] as StoreSnapshot;
    const saved = median(row.snapshots.map((s) => (s.pages * 4096) / s.usedBytes));
    const ratio =
      last.compressedPages === 0 ? '—' : fixed((last.compressedPages * 4096) / last.compressedBytes, 2);
    const getId = row.case.id.replace('put', 'get');
    const put = med(find(run, row.system.id, row.case.id), 'opsPerSec');
    const get = med(find(run, row.system.id, getId), 'opsPerSec');
    const putBase = med(find(run, 'tmem-1', row.case.id), 'opsPerSec');
    const getBase = med(find(run, 'tmem-1', getId), 'opsPerSec');
    lines.push(
      `| ${row.case.content} | ${row.system.label} | ${int(last.pages)} | ${fixed(saved, 2)} | ${ratio} | ` +
        `${int(put)} | ${fixed(put / putBase, 2)} | ${int(get)} | ${fixed(get / getBase, 2)} |`,
    );
  }
  return lines;
}

function redisBenchmarkLine(run: RunResult): string[] {
  if (run.redisBenchmark.length === 0) return [];
  const cell = (test: string): string => {
    const xs = run.redisBenchmark.map((r) => r[test] ?? NaN);
    return `${int(median(xs))} ${test}/s (min ${int(Math.min(...xs))}, max ${int(Math.max(...xs))})`;
  };
  return [
    `Reference, \`redis-benchmark -c8 -P32 -d 4096 -t set,get\` on the same redis-server, median of ` +
      `${run.redisBenchmark.length} rounds: ${cell('SET')}, ${cell('GET')}.`,
  ];
}

function memoryTable(memory: MemoryResult): string[] {
  const payload = `${fixed(memory.payloadBytes / MiB, 0)} MiB`;
  return [
    '| memory | RSS MiB | payload | RSS ÷ payload |',
    '| --- | --: | --: | --: |',
    `| tmem node, empty, capacity ${memory.emptyNodeCapacity} | ${fixed(memory.emptyNodeRssBytes / MiB, 0)} | 0 | — |`,
    `| tmem node (ephemeral pool) after the fill | ${fixed(memory.tmemRssBytes / MiB, 0)} | ${payload} | ` +
      `${fixed(memory.tmemRssBytes / memory.payloadBytes, 2)} |`,
    `| redis-server after the fill | ${fixed(memory.redisRssBytes / MiB, 0)} | ${payload} | ` +
      `${fixed(memory.redisRssBytes / memory.payloadBytes, 2)} |`,
  ];
}

interface Target {
  target: string;
  measured: string;
  met: boolean | undefined;
}

/** The targets of issue 7, each computed from this run's medians (undefined: not measured in this run). */
export function targets(run: RunResult): Target[] {
  const ops = (system: SystemId, id: string): number => med(find(run, system, id), 'opsPerSec');
  const ratio = (id: string): number => ops('tmem-1', id) / ops('ioredis', id);
  const check = (value: number, ok: (v: number) => boolean): boolean | undefined =>
    Number.isFinite(value) ? ok(value) : undefined;
  const list: Target[] = [];
  for (const op of ['put', 'get'] as const) {
    const r = ratio(`${op}-8x32`);
    list.push({
      target: `batched ${op} (8 × 32) ≥ 1.5× ioredis`,
      measured: `${fixed(r, 2)}×`,
      met: check(r, (v) => v >= 1.5),
    });
  }
  for (const op of ['put', 'get'] as const) {
    const test = op === 'put' ? 'SET' : 'GET';
    const reference = median(run.redisBenchmark.map((b) => b[test] ?? NaN));
    const r = ops('tmem-1', `${op}-8x32`) / reference;
    list.push({
      target: `stretch: batched ${op} ≥ 0.8× redis-benchmark ${test}`,
      measured: `${fixed(r, 2)}×`,
      met: check(r, (v) => v >= 0.8),
    });
  }
  for (const op of ['put', 'get'] as const) {
    const r = ratio(`${op}-64`);
    list.push({
      target: `${op}, 64 in flight ≥ 1.2× ioredis`,
      measured: `${fixed(r, 2)}×`,
      met: check(r, (v) => v >= 1.2),
    });
  }
  for (const op of ['put', 'get'] as const) {
    const tmem = med(find(run, 'tmem-1', `${op}-1`), 'p50Us');
    const redis = med(find(run, 'ioredis', `${op}-1`), 'p50Us');
    list.push({
      target: `${op}, 1 in flight: p50 ≤ ioredis p50`,
      measured: `${int(tmem)} µs vs ${int(redis)} µs`,
      met: check(tmem - redis, (v) => v <= 0),
    });
  }
  for (const op of ['put', 'get'] as const) {
    const tmem = med(find(run, 'tmem-1', `${op}-8x32`), 'serverCpuUsPerOp');
    const redis = med(find(run, 'ioredis', `${op}-8x32`), 'serverCpuUsPerOp');
    list.push({
      target: `node CPU per batched ${op} ≤ 1.5× redis-server's`,
      measured: `${fixed(tmem, 1)} vs ${fixed(redis, 1)} µs/op (${fixed(tmem / redis, 2)}×)`,
      met: check(tmem / redis, (v) => v <= 1.5),
    });
  }
  const memory = run.memory;
  const fill = memory ? `${fixed(memory.payloadBytes / MiB, 0)} MiB` : '';
  const rss = memory ? memory.tmemRssBytes / memory.payloadBytes : NaN;
  list.push({
    target: `memory ≤ 1.05× payload (at 1 GiB; this run: ${fill || 'not run'})`,
    measured: `${fixed(rss, 2)}×`,
    met: check(rss, (v) => v <= 1.05),
  });
  const empty = memory ? memory.emptyNodeRssBytes / MiB : NaN;
  list.push({
    target: 'empty node RSS ≤ 80 MiB',
    measured: `${fixed(empty, 0)} MiB`,
    met: check(empty, (v) => v <= 80),
  });
  const persistent = ops('tmem-3', 'put-8x32') / ops('tmem-1', 'put-8x32');
  list.push({
    target: 'persistent batched put, R=2 on 3 nodes ≥ 0.5× one-node ephemeral',
    measured: `${fixed(persistent, 2)}×`,
    met: check(persistent, (v) => v >= 0.5),
  });
  return list;
}

/** Issue 8's target for metrics: a node scraped every second keeps at least 95% of the unscraped node's rate. */
export function metricsTargets(run: RunResult): Target[] {
  const ops = (system: SystemId, id: string): number => med(find(run, system, id), 'opsPerSec');
  const cpu = (system: SystemId, id: string): number => med(find(run, system, id), 'serverCpuUsPerOp');
  return ['put-8x32', 'get-8x32', 'put-64', 'get-64'].map((id) => {
    const r = ops('tmem-1-metrics', id) / ops('tmem-1', id);
    const label = CASES.find((c) => c.id === id)?.label ?? id;
    return {
      target: `${label}: scraped node ≥ 0.95× the unscraped one`,
      measured: `${fixed(r, 2)}× (node CPU ${fixed(cpu('tmem-1-metrics', id), 1)} vs ${fixed(cpu('tmem-1', id), 1)} µs/op)`,
      met: Number.isFinite(r) ? r >= 0.95 : undefined,
    };
  });
}

/** The whole report as markdown. */
export function markdown(run: RunResult): string {
  const targetTable = (list: Target[]): string[] => [
    '| target | measured | met |',
    '| --- | --: | --- |',
    ...list.map(
      (t) =>
        `| ${t.target} | ${t.measured} | ${t.met === undefined ? 'not measured' : t.met ? 'met' : 'not met'} |`,
    ),
  ];
  const batchNotes = [...new Map(run.results.map((r) => [r.system.id, r.system])).values()].map(
    (s) => `- ${s.label}, "8 × 32 batched": ${s.batchNote}.`,
  );
  return [
    `# tmem benchmark, ${run.startedAt.toISOString()}`,
    '',
    run.machine,
    '',
    run.settings,
    '',
    '## Throughput and latency (4 KiB pages, random unless the case names text or zero pages)',
    '',
    ...throughputTable(run),
    '',
    ...redisBenchmarkLine(run),
    '',
    ...(run.storage.some((s) => s.case.batched)
      ? ['## Compression and dedup (issue 11)', '', ...compressionTable(run), '']
      : []),
    ...(run.memory ? ['## Memory', '', ...memoryTable(run.memory), ''] : []),
    '## Targets (issue 7)',
    '',
    ...targetTable(targets(run)),
    '',
    '## Metrics cost (issue 8)',
    '',
    ...targetTable(metricsTargets(run)),
    '',
    '## Notes',
    '',
    ...batchNotes,
    ...run.notes.map((n) => `- ${n}`),
    '',
  ].join('\n');
}

const COLORS: Record<SystemId, string> = {
  'tmem-1': '#1f77b4',
  'tmem-1-lz4': '#ff7f0e',
  'tmem-1-dedup': '#8c564b',
  'tmem-1-metrics': '#17becf',
  'tmem-3': '#2ca02c',
  ioredis: '#d62728',
  memcached: '#9467bd',
};

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/**
 * Throughput (median ops/s) against ops in flight, one panel for put and one for get. Lines join each system's
 * single-call cases (1, 64, 256 in flight); a diamond at 256 is its batched case (8 × 32).
 */
export function svg(run: RunResult): string {
  const width = 420;
  const height = 300;
  const pad = { left: 70, right: 20, top: 30, bottom: 40 };
  const xs = [1, 64, 256];
  const xAt = (i: number): number => pad.left + (i * (width - pad.left - pad.right)) / (xs.length - 1);
  const top = Math.max(1, ...run.results.map((r) => median(r.samples.map((s) => s.opsPerSec))));
  const yAt = (v: number): number =>
    Math.round((height - pad.bottom - (v / top) * (height - pad.top - pad.bottom)) * 10) / 10;
  const systems = [...new Map(run.results.map((r) => [r.system.id, r.system])).values()];
  const panels = (['put', 'get'] as const).map((op, p) => {
    const parts: string[] = [`<g transform="translate(${p * width},0)">`];
    parts.push(`<text x="${width / 2}" y="18" text-anchor="middle" font-weight="bold">${op} 4 KiB</text>`);
    for (let t = 0; t <= 4; t++) {
      const v = (top * t) / 4;
      parts.push(
        `<line x1="${pad.left}" x2="${width - pad.right}" y1="${yAt(v)}" y2="${yAt(v)}" stroke="#ddd"/>`,
        `<text x="${pad.left - 6}" y="${yAt(v) + 4}" text-anchor="end" font-size="11">${int(v)}</text>`,
      );
    }
    xs.forEach((x, i) =>
      parts.push(
        `<text x="${xAt(i)}" y="${height - pad.bottom + 16}" text-anchor="middle" font-size="11">${x}</text>`,
      ),
    );
    parts.push(
      `<text x="${width / 2}" y="${height - 6}" text-anchor="middle" font-size="11">ops in flight</text>`,
    );
    for (const system of systems) {
      const color = COLORS[system.id];
      const points = ['1', '64', '256']
        .map((n, i) => ({ i, v: med(find(run, system.id, `${op}-${n}`), 'opsPerSec') }))
        .filter((pt) => Number.isFinite(pt.v));
      if (points.length > 0) {
        const path = points.map((pt) => `${xAt(pt.i)},${yAt(pt.v)}`).join(' ');
        parts.push(`<polyline points="${path}" fill="none" stroke="${color}" stroke-width="2"/>`);
        for (const pt of points)
          parts.push(`<circle cx="${xAt(pt.i)}" cy="${yAt(pt.v)}" r="3" fill="${color}"/>`);
      }
      const batched = med(find(run, system.id, `${op}-8x32`), 'opsPerSec');
      if (Number.isFinite(batched)) {
        const x = xAt(2);
        const y = yAt(batched);
        parts.push(
          `<path d="M${x - 6},${y} L${x},${y - 6} L${x + 6},${y} L${x},${y + 6} Z" fill="none" stroke="${color}" stroke-width="2"/>`,
        );
      }
    }
    parts.push('</g>');
    return parts.join('\n');
  });
  const legendStep = Math.min(200, (2 * width - 20) / Math.max(1, systems.length));
  const legend = systems.map(
    (s, i) =>
      `<rect x="${20 + i * legendStep}" y="${height + 8}" width="12" height="12" fill="${COLORS[s.id]}"/>` +
      `<text x="${36 + i * legendStep}" y="${height + 18}" font-size="10">${escapeXml(s.label)}</text>`,
  );
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${2 * width}" height="${height + 50}" font-family="sans-serif">`,
    '<rect width="100%" height="100%" fill="white"/>',
    ...panels,
    ...legend,
    `<text x="20" y="${height + 42}" font-size="11">median ops/s; lines: concurrent single calls; ◇ at 256: 8 batches × 32 (batch API / pipeline)</text>`,
    '</svg>',
    '',
  ].join('\n');
}
