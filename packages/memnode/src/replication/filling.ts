// Filling (docs/architecture.md, "Copies"): the partitions this node gained are copied from their primary
// when that is another node, else from any member with a complete copy, with `fetch` sessions applied
// newest-wins; a partition is complete only if the copy ran through without the store losing pages meanwhile
// (`copyEpoch`). A partition nobody holds a complete copy of (every member answered) is lost. A filling
// member whose copies are all made asks to become ready.
import {
  ErrorCode,
  TmemError,
  partitionOf,
  persistentTableFor,
  replicaTargets,
  sameMember,
  type ClusterState,
  type MemberInfo,
  type MemberRef,
  type PoolInfo,
} from '@tmem/protocol';
import { COMPLETE, FILLING, LOST } from './completeness.ts';
import { delay, poolInfo, type ReplicationContext } from './replication-context.ts';

/** How one copy session ended. */
type FetchOutcome = 'copied' | 'no-copy' | 'interrupted';

/** The copying of gained partitions. */
export interface Filling {
  /** Copies every filling partition in the background (one loop at a time), then asks to become ready. */
  start(): void;
  /** Asks to become ready if this node is filling and has nothing left to copy. */
  maybeReady(): void;
}

/** Creates the filling over the shared state. */
export function createFilling(ctx: ReplicationContext): Filling {
  const { cluster, log, replicas } = ctx;
  let filling = false;
  let proposingReady = false;

  /**
   * Copies (pool, partitions) from `source`: `copied` when it had complete copies and everything was applied,
   * `no-copy` when the source said it holds no complete copy, `interrupted` when this node lost pages while
   * copying (a wipe, a drop, a new incarnation) or is closing. Only `no-copy` is evidence about the source: an
   * interrupted copy says nothing about whether a complete copy exists, so it must never count towards "lost".
   */
  async function fetchFrom(
    source: MemberInfo,
    pool: number,
    partitions: number[],
    sv: number,
  ): Promise<FetchOutcome> {
    let cursor: number | undefined;
    // A wipe, a drop or a new incarnation while copying removes pages this copy already brought in: then
    // the copy is not complete, whatever the source says.
    const epoch = ctx.copyEpoch;
    for (;;) {
      if (ctx.closed || epoch !== ctx.copyEpoch) return 'interrupted';
      const reply = await cluster.call(
        source.id,
        (id) => ({ t: 'fetch', id, sv, pool, partitions, ...(cursor === undefined ? {} : { cursor }) }),
        'fetched',
        ctx.peerTimeoutMs * 2,
      );
      if (!reply.complete) return 'no-copy';
      const state = cluster.committed();
      for (const entry of reply.entries) {
        const partition = partitionOf(
          entry.pool,
          entry.oid,
          entry.index ?? 0,
          state?.partitionCount ?? ctx.partitionCount,
        );
        if (ctx.completeness.of(pool, partition) !== FILLING) continue;
        ctx.clock.observe(partition, entry.version);
        const result = replicas.apply(entry);
        if (result === 'ok' && entry.page !== undefined) {
          ctx.copiedPages++;
          ctx.maybeCorrupt(entry.pool, entry.oid, entry.index as number);
        }
        if (result === 'full') {
          throw new TmemError(ErrorCode.NotServing, 'no room for a copied page; the copy stays incomplete', {
            details: { pool, partition },
          });
        }
      }
      for (const p of reply.lost ?? [])
        if (ctx.completeness.of(pool, p) === FILLING) ctx.completeness.set(pool, p, LOST);
      if (reply.cursor === undefined) break;
      cursor = reply.cursor;
    }
    if (epoch !== ctx.copyEpoch) return 'interrupted';
    for (const p of partitions)
      if (ctx.completeness.of(pool, p) === FILLING) ctx.completeness.set(pool, p, COMPLETE);
    return 'copied';
  }

  /**
   * Where to copy a partition from: its primary when that is another node (every write the primary stored
   * before it learned of this node is in its store, every later one is forwarded here), else any other member
   * with a complete copy (this node is the primary: nobody else is writing).
   */
  function sourcesFor(state: ClusterState, pool: PoolInfo, partition: number): MemberInfo[] {
    const primary = persistentTableFor(state, pool.replication).primary(partition);
    const byRef = (ref: MemberRef | undefined) => state.members.find((m) => sameMember(m, ref));
    if (primary !== undefined && !sameMember(primary, ctx.self)) {
      const member = byRef(primary);
      return member === undefined ? [] : [member];
    }
    // The other owners first (they received every write), then the rest, leaving members last: a leaving
    // member receives no writes any more, so its copy is only the source of last resort (the hand-over of a
    // partition that had one copy).
    const owners = replicaTargets(state, pool.replication, partition);
    const rank = (m: MemberInfo): number =>
      owners.some((o) => sameMember(o, m)) ? 0 : m.phase === 'leaving' ? 2 : 1;
    return state.members.filter((m) => !sameMember(m, ctx.self)).sort((a, b) => rank(a) - rank(b));
  }

  async function fillOnce(): Promise<boolean> {
    const state = cluster.committed();
    if (state === null) return false;
    let progress = false;
    for (const [poolId, partitions] of ctx.completeness.partitionsIn(FILLING)) {
      const pool = poolInfo(state, poolId);
      if (pool === undefined) continue;
      // Partitions with the same single source (their primary) go in one copy session.
      const bySource = new Map<string, number[]>();
      const searching: number[] = [];
      for (const p of partitions) {
        const sources = sourcesFor(state, pool, p);
        const primary = persistentTableFor(state, pool.replication).primary(p);
        if (sources.length === 1 && !sameMember(primary, ctx.self)) {
          const id = (sources[0] as MemberInfo).id;
          bySource.set(id, [...(bySource.get(id) ?? []), p]);
        } else {
          searching.push(p);
        }
      }
      for (const [sourceId, parts] of bySource) {
        const source = state.members.find((m) => m.id === sourceId) as MemberInfo;
        try {
          if ((await fetchFrom(source, poolId, parts, state.version)) === 'copied') progress = true;
        } catch (error) {
          log.debug({ source: sourceId, err: (error as Error).message }, 'copy failed; retrying');
        }
      }
      for (const p of searching) {
        let answered = 0;
        const sources = sourcesFor(state, pool, p);
        for (const source of sources) {
          try {
            const outcome = await fetchFrom(source, poolId, [p], state.version);
            if (outcome === 'copied') {
              progress = true;
              break;
            }
            if (outcome === 'interrupted') break;
            answered++;
          } catch (error) {
            log.debug({ source: source.id, err: (error as Error).message }, 'copy failed; trying another');
          }
        }
        if (answered === sources.length && ctx.completeness.of(poolId, p) === FILLING) {
          // Every other member answered and none has a complete copy: the partition is lost.
          log.error({ pool: poolId, partition: p }, 'every copy of a persistent partition was lost');
          ctx.completeness.set(poolId, p, LOST);
          progress = true;
        }
      }
    }
    return progress;
  }

  async function fillLoop(): Promise<void> {
    if (filling) return;
    filling = true;
    try {
      while (!ctx.closed && ctx.completeness.counts().filling > 0) {
        const progress = await fillOnce();
        if (!progress) await delay(100);
      }
    } finally {
      filling = false;
    }
    maybeReady();
  }

  function maybeReady(): void {
    const state = cluster.committed();
    const me = state?.members.find((m) => sameMember(m, ctx.self));
    if (ctx.closed || proposingReady || me?.phase !== 'filling' || ctx.completeness.counts().filling > 0) {
      return;
    }
    proposingReady = true;
    cluster
      .setPhase('ready', (state as ClusterState).version)
      .then(() => log.info('copies made; ready'))
      .catch((error: unknown) =>
        log.warn({ err: (error as Error).message }, 'could not become ready; retrying'),
      )
      .finally(() => {
        proposingReady = false;
        if (
          !ctx.closed &&
          cluster.committed()?.members.find((m) => sameMember(m, ctx.self))?.phase === 'filling'
        ) {
          setTimeout(maybeReady, 200).unref();
        }
      });
  }

  return {
    start() {
      void fillLoop();
    },
    maybeReady,
  };
}
