import { describeFailure } from './failure-suite.ts';
import { describeStep, injectStep, makeSchedule, recover, runSeed } from './chaos-schedule.ts';

// Every chaos run that ever found an anomaly, replayed as a regression test (the schedule is a pure function
// of (seed, run); process timing is not, so a replay strikes the same faults at about the same moments).
// Seeds 3 and 7 found reads of flushed pages before flushObject had to be done by every member at one state
// (a member that answered at an older state could since own pages it had not flushed). The first 30-minute
// run (seed 2026) found puts applied twice, each time after a connection died once the node had the put and
// the client sent it again: a page seen, flushed, then back (run 12); an older value back over a newer one
// (run 123); an ephemeral page taken by an exclusive get, then there again (run 187). Since then a write that
// reached a node is never sent again (it is in doubt).
//
// NOT here, because it is an open bug rather than a fixed one: seed 9001 run 5 (restart-empty, a one-way cut
// follower->coordinator, a lossy link) reads a persistent page back after an acknowledged flushObject. Its
// cause is not found (issue 7). It failed 2 of 3 full `npm test` runs on 2026-12-02 and passes when replayed
// alone: `npm run test:chaos -- --seed 9001 --run 5`. It comes back here with its fix.
const FOUND: ReadonlyArray<{ seed: number; run: number }> = [
  { seed: 2026, run: 12 },
  { seed: 2026, run: 123 },
  { seed: 2026, run: 187 },
  { seed: 3, run: 6 },
  { seed: 3, run: 7 },
  { seed: 3, run: 8 },
  { seed: 3, run: 10 },
  { seed: 3, run: 11 },
  { seed: 3, run: 12 },
  { seed: 3, run: 16 },
  { seed: 3, run: 19 },
  { seed: 3, run: 21 },
  { seed: 7, run: 3 },
];

/** Faults per chaos run (the chaos script's default, which found these). */
const FAULTS_PER_RUN = 3;

for (const { seed, run } of FOUND) {
  const schedule = makeSchedule(seed, run, FAULTS_PER_RUN);
  describeFailure(
    `chaos seed ${seed} run ${run}: ${schedule.map(describeStep).join(' ')}`,
    async (context) => {
      for (const step of schedule) {
        await injectStep(context, step);
        await recover(context);
      }
    },
    { seed: runSeed(seed, run) },
  );
}
