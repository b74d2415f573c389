import { flap, follower, oneWay, partitionMinority, slowLinks } from './faults.ts';
import { describeFailure } from './failure-suite.ts';

// Network faults between the processes, through a fault proxy in front of every node; clients reach every
// node unless a fault says otherwise. A node cut off long enough is removed and rejoins empty, so it counts
// as failed: still fewer than R nodes, so no accepted persistent page may be lost.

describeFailure(
  'majority/minority partition: the coordinator and one follower cut off from the other three',
  async (context) => {
    const leader = await context.cluster.leader();
    await partitionMinority(context, [leader, await follower(context)]);
  },
  // Five nodes so the minority holds two; R = 3 so two failed nodes are still fewer than R.
  { nodes: 5, replication: 3 },
);

describeFailure('asymmetric partition: the coordinator to one follower only', async (context) => {
  await oneWay(context, await context.cluster.leader(), await follower(context));
});

describeFailure('slow links: 80 ms each way, up to 40 ms jitter, to and from one node', async (context) => {
  await slowLinks(context, await follower(context), 80, 40);
});

describeFailure('a flapping node: cut off until removed, back until rejoined, twice', async (context) => {
  await flap(context, await follower(context), 2);
});
