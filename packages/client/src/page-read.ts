// Reads one page from the owners of its partition and checks the checksum each hit carries.
//
// A persistent page has `replication` copies, one on each ready owner of its partition. The read goes to the
// primary; when the primary cannot be reached, or its copy is corrupt, the other owners are asked in order,
// each with `replica: true`, so an accepted page stays readable while at most R-1 of its owners are down. An
// ephemeral page has one copy, and ephemeral pages may vanish: a corrupt one reads as a miss.
import {
  ChecksumError,
  ErrorCode,
  checksumMatches,
  type Hit,
  type MemberInfo,
  type Miss,
  type PoolKind,
} from '@tmem/protocol';
import type { Logger } from './options.ts';
import type { PageRequest } from './requests.ts';
import { isTopologyError, isUnreachable } from './retry.ts';

/** A get as the pool layer issues it. */
export type GetRequest = Extract<PageRequest, { t: 'get' }>;

/** What one read needs from the router. */
export interface PageReadOptions {
  /** Kind of the page's pool: only persistent pages have other copies to read. */
  kind: PoolKind;
  /** Owners of the page's partition in the view the read is routed by, primary first; at least one. */
  owners: readonly MemberInfo[];
  /** Sends a get to one member, connecting first if needed, with the version the owners come from. */
  send: (member: MemberInfo, request: GetRequest) => Promise<Hit | Miss>;
  /** True for a member whose connection failed a moment ago. */
  isSuspect: (member: MemberInfo) => boolean;
  logger: Logger;
}

/**
 * Reads the page of `request`. Resolves with a hit whose page matches its checksum (a hit without one is not
 * checked), or a miss. Rejects like the send it made last when no owner could answer, with ChecksumError when
 * every copy that could be read was corrupt, and with any other error reply (DATA_LOST, UNKNOWN_POOL...) as
 * it came: those are answers, and another owner would give the same.
 */
export function readPage(request: GetRequest, options: PageReadOptions): Promise<Hit | Miss> {
  return options.kind === 'persistent' ? readCopies(request, options) : readOnly(request, options);
}

function corruptFields(request: GetRequest, member: MemberInfo): object {
  return { pool: request.pool, index: request.index, node: member.id, code: ErrorCode.ChecksumMismatch };
}

/** An ephemeral page: its one owner's answer, a corrupt copy read as the miss it may as well have been. */
async function readOnly(request: GetRequest, options: PageReadOptions): Promise<Hit | Miss> {
  const owner = options.owners[0] as MemberInfo;
  const reply = await options.send(owner, request);
  if (reply.t === 'hit' && !checksumMatches(reply.page, reply.sum)) {
    options.logger.warn(corruptFields(request, owner), 'corrupt ephemeral page dropped; read as a miss');
    return { t: 'miss', id: reply.id };
  }
  return reply;
}

/** A persistent page: the primary's copy, else the first good copy of another owner. */
async function readCopies(request: GetRequest, options: PageReadOptions): Promise<Hit | Miss> {
  const { owners, send, isSuspect, logger: log } = options;
  const primary = owners[0] as MemberInfo;
  // A member whose connection just failed is asked last: it is probably down, and opening a connection to it
  // could take the op's whole time, while the other owners hold the same page.
  const order = [...owners.filter((m) => !isSuspect(m)), ...owners.filter((m) => isSuspect(m))];
  const corrupt: string[] = [];
  const failures: unknown[] = [];
  let primaryFailure: unknown;
  for (const member of order) {
    const isPrimary = member === primary;
    let reply: Hit | Miss;
    try {
      reply = await send(member, isPrimary ? request : { ...request, replica: true });
    } catch (error) {
      // Passed over: an owner nobody could reach, a replica that does not serve the read now, and, once a
      // corrupt copy was found, any owner that cannot answer at all. A primary that is up but does not serve
      // (STALE_STATE, NOT_SERVING) is a topology answer for the retry loop: the state is about to move.
      const passOver = isUnreachable(error) || (isTopologyError(error) && (!isPrimary || corrupt.length > 0));
      if (!passOver) throw error;
      if (isPrimary) primaryFailure = error;
      failures.push(error);
      continue;
    }
    if (reply.t === 'hit' && !checksumMatches(reply.page, reply.sum)) {
      corrupt.push(member.id);
      log.warn(corruptFields(request, member), 'corrupt copy of a persistent page; reading another owner');
      continue;
    }
    // A miss is no copy: once a corrupt copy was found, only a good one from another owner will do.
    if (reply.t === 'miss' && corrupt.length > 0) continue;
    return reply;
  }
  if (corrupt.length > 0) {
    throw new ChecksumError(
      `every copy of page ${request.index} of pool ${request.pool} that could be read was corrupt (${corrupt.join(', ')}); the page must be recovered from elsewhere`,
      {
        details: { pool: request.pool, index: request.index, corrupt, unanswered: failures.length },
        cause: failures[0],
      },
    );
  }
  // The primary's failure first: the retry loop reports it when the op runs out of time.
  throw primaryFailure ?? failures[0];
}
