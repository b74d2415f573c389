// The per-identity lines of `tmem status`: what each identity holds over the cluster, from the node-scope stats
// of the members that answered (admins, peers; an identity's own token shows only its own counters, and no list).

import { byChargedBytes, type IdentityUse, type NodeStats } from '@tmem/protocol';
import { formatByteSize } from './cli-sizes.ts';

/** Identities `tmem status` prints, charged most first; --json carries every member's full list. */
export const STATUS_LISTED_IDENTITIES = 10;

/**
 * Each identity's use summed over `members`: pages, bytes, evictions and refusals add up (each node holds its
 * own share); pools do not (a pool exists on every member), so they are the most any member reports.
 */
export function identityTotals(members: readonly { stats?: NodeStats }[]): IdentityUse[] {
  const totals = new Map<string, IdentityUse>();
  for (const { stats } of members) {
    for (const use of stats?.identities ?? []) {
      const total = totals.get(use.identity);
      if (total === undefined) {
        totals.set(use.identity, { ...use });
        continue;
      }
      total.pools = Math.max(total.pools, use.pools);
      total.pages += use.pages;
      total.usedBytes += use.usedBytes;
      total.recordBytes += use.recordBytes;
      total.evictions += use.evictions;
      total.refusedPuts += use.refusedPuts;
    }
  }
  return [...totals.values()].sort(byChargedBytes);
}

/** The status lines: one per identity, charged most first, or none when no member listed identities. */
export function identityLines(members: readonly { stats?: NodeStats }[]): string[] {
  const totals = identityTotals(members);
  if (totals.length === 0) return [];
  const lines = totals
    .slice(0, STATUS_LISTED_IDENTITIES)
    .map(
      (u) =>
        `  ${u.identity}: ${u.pools} pool${u.pools === 1 ? '' : 's'}, ${u.pages} page${u.pages === 1 ? '' : 's'}, ` +
        `${formatByteSize(u.usedBytes + u.recordBytes)} charged (${formatByteSize(u.recordBytes)} of records), ` +
        `${u.evictions} evicted, ${u.refusedPuts} refused`,
    );
  const more = totals.length - lines.length;
  return [
    'identities, charged most first:',
    ...lines,
    ...(more > 0 ? [`  and ${more} more (--json lists each member's)`] : []),
  ];
}
