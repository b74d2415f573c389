// `npm run test:chaos -- --seed N --minutes M`: runs proxied clusters under randomized faults until the time is
// up, one run after another. Each run starts a fresh cluster and the workload, injects a seeded schedule of
// faults (each held until the cluster reacted, then healed), reads every key after the last heal, and checks the
// history against the contract. Prints one line per run and a summary table; on an anomaly it prints the seed,
// the run, its schedule and the offending ops, and exits 1. A run that cannot recover (the cluster never
// converges, the workload stalls) also exits 1: that is a liveness failure.
//
// Deterministic in its schedule: a seed gives the same faults, in the same order, on the same nodes by position,
// run after run (`--run R` replays one). The processes' timing is not reproducible, so a replay strikes the same
// way, not at the same instant.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import {
  FAULT_KINDS,
  describeStep,
  injectStep,
  makeSchedule,
  recover,
  runSeed,
  type FaultKind,
} from '../test/failure/chaos-schedule.ts';
import type { Anomaly } from '../test/failure/history.ts';
import { describeAnomalies, runScenario, type ScenarioResult } from '../test/failure/scenario.ts';

// Nodes log at info by default under the harness; the chaos script has no use for their chatter.
process.env['TMEM_LOG_LEVEL'] ??= 'warn';

/** Which pools' anomalies count (until replication lands, `ephemeral` keeps the script useful). */
type Checked = 'all' | 'ephemeral' | 'persistent';

interface ChaosOptions {
  seed: number;
  minutes: number;
  run?: number;
  nodes: number;
  replication: number;
  faults: number;
  check: Checked;
  verbose?: boolean;
}

function integer(min: number) {
  return (text: string): number => {
    const value = Number(text);
    if (!Number.isInteger(value) || value < min)
      throw new InvalidArgumentError(`must be an integer >= ${min}`);
    return value;
  };
}

function positiveNumber(text: string): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) throw new InvalidArgumentError('must be a number > 0');
  return value;
}

function checked(text: string): Checked {
  if (text === 'all' || text === 'ephemeral' || text === 'persistent') return text;
  throw new InvalidArgumentError("must be 'all', 'ephemeral' or 'persistent'");
}

/** Writes each node's stderr of an anomalous run into a fresh temporary directory; returns its path. */
function writeNodeLogs(
  seed: number,
  run: number,
  logs: ReadonlyArray<{ id: string; stderr: string }>,
): string {
  const dir = mkdtempSync(join(tmpdir(), `tmem-chaos-${seed}-${run}-`));
  for (const { id, stderr } of logs) writeFileSync(join(dir, `${id}.log`), stderr);
  return dir;
}

/** What one run left behind, for the summary. */
interface RunOutcome {
  run: number;
  ops: number;
  anomalies: Anomaly[];
  /** Set when the run could not finish (no convergence, a stalled workload). */
  error?: Error;
}

function counted(result: ScenarioResult, check: Checked): Anomaly[] {
  if (check === 'all') return [...result.anomalies.ephemeral, ...result.anomalies.persistent];
  return result.anomalies[check];
}

/** A plain text table, first column left-aligned, the others right-aligned. */
function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((row) => row[c]!.length)));
  const line = (row: readonly string[]) =>
    row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ');
  const rule = widths.map((w) => '-'.repeat(w)).join('  ');
  return [line(rows[0]!), rule, ...rows.slice(1).map(line)].join('\n');
}

async function chaos(options: ChaosOptions): Promise<void> {
  const started = Date.now();
  const deadline = started + options.minutes * 60_000;
  const injected = new Map<FaultKind, number>(FAULT_KINDS.map((kind) => [kind, 0]));
  const outcomes: RunOutcome[] = [];
  const say = (line: string) => process.stdout.write(`${line}\n`);
  say(
    `chaos: seed ${options.seed}, ${options.nodes} nodes, R=${options.replication}, ${options.faults} faults per run, ` +
      `checking ${options.check} pools, ${options.run === undefined ? `${options.minutes} min` : `run ${options.run} only`}`,
  );

  for (let run = options.run ?? 1; ; run++) {
    if (options.run !== undefined ? run > options.run : run > 1 && Date.now() >= deadline) break;
    const schedule = makeSchedule(options.seed, run, options.faults);
    say(`run ${run}: ${schedule.map(describeStep).join(' ')}`);
    const runStarted = Date.now();
    const outcome: RunOutcome = { run, ops: 0, anomalies: [] };
    try {
      const result = await runScenario(
        async (context) => {
          for (const step of schedule) {
            context.log(`-> ${describeStep(step)}`);
            await injectStep(context, step);
            injected.set(step.kind, (injected.get(step.kind) ?? 0) + 1);
            await recover(context);
          }
        },
        {
          nodes: options.nodes,
          replication: options.replication,
          seed: runSeed(options.seed, run),
          ...(options.verbose ? { log: (line: string) => say(`    ${line}`) } : {}),
        },
      );
      outcome.ops = result.check.stats.ops;
      outcome.anomalies = counted(result, options.check);
      say(
        `  ${outcome.ops} ops, ${result.failedNodes} node(s) failed, ${outcome.anomalies.length} anomalies ` +
          `(${((Date.now() - runStarted) / 1000).toFixed(1)} s)`,
      );
      if (outcome.anomalies.length > 0) {
        say(
          `  ANOMALY in seed ${options.seed} run ${run}; replay: npm run test:chaos -- --seed ${options.seed} --run ${run}`,
        );
        say(
          describeAnomalies(outcome.anomalies, 20)
            .split('\n')
            .map((l) => `  ${l}`)
            .join('\n'),
        );
        say(`  node logs: ${writeNodeLogs(options.seed, run, result.nodeLogs)}`);
      }
    } catch (error) {
      outcome.error = error as Error;
      say(`  RUN FAILED in seed ${options.seed} run ${run}: ${(error as Error).message}`);
      say(`  replay: npm run test:chaos -- --seed ${options.seed} --run ${run}`);
    }
    outcomes.push(outcome);
  }

  const anomalyKinds = new Map<string, number>();
  for (const outcome of outcomes) {
    for (const a of outcome.anomalies) anomalyKinds.set(a.kind, (anomalyKinds.get(a.kind) ?? 0) + 1);
  }
  const total = (pick: (o: RunOutcome) => number) => outcomes.reduce((sum, o) => sum + pick(o), 0);
  const rows: string[][] = [
    ['', 'count'],
    ['runs', String(outcomes.length)],
    ['runs that could not recover', String(outcomes.filter((o) => o.error !== undefined).length)],
    ['runs with anomalies', String(outcomes.filter((o) => o.anomalies.length > 0).length)],
    ...[...injected].map(([kind, n]) => [`faults: ${kind}`, String(n)]),
    ['faults: total', String([...injected.values()].reduce((a, b) => a + b, 0))],
    ['ops', String(total((o) => o.ops))],
    ['anomalies', String(total((o) => o.anomalies.length))],
    ...[...anomalyKinds].map(([kind, n]) => [`anomalies: ${kind}`, String(n)]),
  ];
  say(`\nchaos seed ${options.seed}: ${((Date.now() - started) / 60_000).toFixed(1)} min\n${table(rows)}`);
  const bad = outcomes.filter((o) => o.error !== undefined || o.anomalies.length > 0);
  if (bad.length > 0) {
    say(`\nFAILED: seed ${options.seed}, runs ${bad.map((o) => o.run).join(', ')}`);
    process.exitCode = 1;
  }
}

const program = new Command('chaos')
  .description('run proxied tmem clusters under seeded random faults and check every history')
  .option('--seed <n>', 'seed of the fault schedules, the workload and the proxies', integer(0), 1)
  .option('--minutes <m>', 'keep starting runs until this much time has passed', positiveNumber, 1)
  .option('--run <r>', 'replay only run r of the seed', integer(1))
  .option('--nodes <n>', 'nodes per cluster', integer(3), 3)
  .option('--replication <r>', 'replication factor of the persistent pools', integer(1), 2)
  .option('--faults <n>', 'faults per run, one after another', integer(1), 3)
  .option(
    '--check <pools>',
    "which pools' anomalies fail the run: all, ephemeral or persistent",
    checked,
    'all',
  )
  .option('--verbose', 'print what each fault does as it happens')
  .action((options: ChaosOptions) => chaos(options));

await program.parseAsync(process.argv);
// Exit explicitly: Node 20 was seen spinning at 100% CPU in its exit-time handle cleanup after every cluster was
// already gone, so a script that has printed its verdict must not wait for the event loop to drain.
process.exit(process.exitCode ?? 0);
