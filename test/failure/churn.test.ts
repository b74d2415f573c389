import { follower, join, leave } from './faults.ts';
import { describeFailure } from './failure-suite.ts';

// Membership changes under load: partitions move to a joiner and away from a leaver. Nothing fails, so not
// one accepted persistent page may be lost while its partition moves.

describeFailure('a join, then a graceful leave (SIGTERM), under load', async (context) => {
  await join(context);
  await leave(context, await follower(context));
});
