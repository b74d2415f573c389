// The hand-over of a graceful leave (docs/architecture.md, "Copies", graceful leave): the node becomes
// `leaving`, which takes it out of both placement tables, keeps serving, and waits until every other member
// reports the leaving state and no partition still filling, so its successors hold complete copies before it
// exits.
import { sameMember } from '@tmem/protocol';
import { delay, now, type ReplicationContext } from './replication-context.ts';

/** Becomes `leaving` and waits (until `deadline`) until the other members hold complete copies. */
export async function handOver(ctx: ReplicationContext, deadline: number): Promise<void> {
  const { cluster, log } = ctx;
  let state = cluster.committed();
  if (state === null || state.members.length <= 1) return;
  if (!state.pools.some((p) => p.kind === 'persistent')) return;
  const me = state.members.find((m) => sameMember(m, ctx.self));
  if (me?.phase !== 'leaving') await cluster.setPhase('leaving');
  state = cluster.committed();
  if (state === null) return;
  const since = state.version;
  const others = state.members.filter((m) => !sameMember(m, ctx.self));
  const pending = new Set(others.map((m) => m.id));
  while (pending.size > 0 && now() < deadline && !ctx.closed) {
    await Promise.all(
      [...pending].map(async (id) => {
        try {
          const { stats } = await cluster.call(
            id,
            (rid) => ({ t: 'stats', id: rid }),
            'stats',
            ctx.peerTimeoutMs,
          );
          if ((stats.stateVersion ?? 0) >= since && (stats.fillingPartitions ?? 0) === 0) pending.delete(id);
        } catch {
          // Unreachable: asked again, unless it leaves the cluster meanwhile.
          if (!cluster.committed()?.members.some((m) => m.id === id)) pending.delete(id);
        }
      }),
    );
    if (pending.size > 0) await delay(100);
  }
  if (pending.size > 0) log.warn({ waiting: [...pending] }, 'leaving before every copy was confirmed');
  else log.info('every partition handed over');
}
