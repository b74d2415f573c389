// The refusals of state changes a client asked for, as the typed errors its request is answered with.
import { COMPRESSIONS, ErrorCode, MAX_SHARERS_PER_POOL, TmemError, UnknownPoolError } from '@tmem/protocol';

/** The error a client's request is answered with when the cluster refused its change (a ChangeError). */
export function changeError(error: string): TmemError {
  switch (error) {
    case 'unknown-pool':
      return new UnknownPoolError('pool does not exist');
    case 'bad-page-size':
      return new TmemError(ErrorCode.BadPageSize, 'page size must be a power of two from 512 to 65536');
    case 'bad-replication':
      return new TmemError(
        ErrorCode.BadArgument,
        'replication must be 1 for ephemeral pools, 1..16 otherwise',
      );
    case 'bad-compression':
      return new TmemError(ErrorCode.BadArgument, `compression must be one of ${COMPRESSIONS.join(', ')}`);
    case 'pool-limit':
      return new TmemError(
        ErrorCode.LimitExceeded,
        'this identity has as many pools as a node allows; destroy some first',
        { details: { limit: 'maxPoolsPerIdentity' } },
      );
    case 'cluster-pool-limit':
      return new TmemError(
        ErrorCode.LimitExceeded,
        'the cluster holds as many pools as it allows; destroy some first',
        { details: { limit: 'maxPools' } },
      );
    case 'shared-mismatch':
      return new TmemError(
        ErrorCode.BadArgument,
        'the shared pool exists with another page size or compression; join it with the ones it has',
        { details: { reason: 'shared-mismatch' } },
      );
    case 'sharer-limit':
      return new TmemError(
        ErrorCode.LimitExceeded,
        `the shared pool has ${MAX_SHARERS_PER_POOL} sharers, as many as a pool may; one must leave first`,
        { details: { limit: 'maxSharersPerPool' } },
      );
    case 'no-pool-ids':
      // Every u32 id given out, or a state without a pool-id key (founded by a node that predates it).
      return new TmemError(ErrorCode.LimitExceeded, 'the cluster has no pool ids left to give', {
        details: { limit: 'poolIds' },
      });
    default:
      return new TmemError(ErrorCode.NoCoordinator, `change refused: ${error}`);
  }
}
