import { crash, pauseBeyondLease, restartEmpty, victimFor } from './faults.ts';
import { describeFailure } from './failure-suite.ts';

// Processes that die or stop while the workload writes: the node's memory is gone (or must be treated as
// gone), so persistent pages survive only through their other copies. One node of three fails each time,
// fewer than R = 2: no accepted persistent page may be lost and DATA_LOST is never the answer.

describeFailure('SIGKILL of a primary mid-write', async (context) => {
  await crash(context, await victimFor(context, 'primary'), 'primary');
});

describeFailure('SIGKILL of a replica mid-write', async (context) => {
  await crash(context, await victimFor(context, 'replica', 0.99), 'replica');
});

describeFailure('SIGKILL of the coordinator mid-write', async (context) => {
  await crash(context, await victimFor(context, 'coordinator'), 'coordinator');
});

describeFailure(
  'restart with empty memory (SIGKILL, then a fresh process with the same id)',
  async (context) => {
    await restartEmpty(context, await victimFor(context, 'primary'));
  },
);

describeFailure('SIGSTOP longer than the lease, then SIGCONT', async (context) => {
  await pauseBeyondLease(context, await victimFor(context, 'primary'));
});
