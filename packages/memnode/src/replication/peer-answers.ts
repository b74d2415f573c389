// Answers to other members (docs/architecture.md, "Writes", "Reads", "Copies"): `replicate` applies forwarded
// entries newest-wins on an owner, `fetch` streams a snapshot of partitions to a filler in bounded chunks,
// and `peerGet` tells an asker the newest entry of one handle and whether this copy is complete. A member
// behind the asker's state waits a little for it, then refuses (STALE_STATE): its copy may miss a flush the
// asker's state already went through, so its answer must not count.
import {
  ErrorCode,
  TmemError,
  checksumMatches,
  partitionOf,
  type Fetch,
  type Fetched,
  type PeerGet,
  type PeerGot,
  type ReplicaEntry,
  type Replicate,
  type Replicated,
} from '@tmem/protocol';
import { COMPLETE, LOST, NOT_OWNER } from './completeness.ts';
import { handleKey, now, poolInfo, type ReplicationContext } from './replication-context.ts';
import type { Reads } from './reads.ts';

/** Bytes of page data per fetched chunk: small enough not to hold up the heartbeats on the same link. */
const FETCH_CHUNK_BYTES = 256 * 1024;
const FETCH_CHUNK_ENTRIES = 512;
/** A copy session nobody continued for this long is forgotten. */
const FETCH_SESSION_TTL_MS = 30_000;

interface FetchSession {
  entries: ReplicaEntry[];
  handles: Array<{ pool: number; oid: Uint8Array; index: number }>;
  touched: number;
}

/** This node's answers to its peers' replication requests. */
export interface PeerAnswers {
  onReplicate(frame: Replicate): Promise<Replicated>;
  /** `requester` tells the copy sessions of different peers apart. */
  onFetch(frame: Fetch, requester: string): Promise<Fetched>;
  onPeerGet(frame: PeerGet): Promise<PeerGot>;
  /** Forgets copy sessions nobody continued. */
  sweep(): void;
  /** Forgets every copy session (a new incarnation). */
  clearSessions(): void;
}

/** Creates the peer answers; `reads` repairs corrupt copies a fetch comes across. */
export function createPeerAnswers(ctx: ReplicationContext, reads: Reads): PeerAnswers {
  const { store, cluster, replicas } = ctx;
  const fetchSessions = new Map<string, FetchSession>();

  async function onReplicate(frame: Replicate): Promise<Replicated> {
    await ctx.waitForVersion(frame.sv, ctx.peerTimeoutMs / 2);
    const state = cluster.committed();
    const results = frame.entries.map((entry) => {
      if (state === null) return 'not-owner' as const;
      const pool = poolInfo(state, entry.pool);
      if (pool === undefined || pool.kind !== 'persistent') return 'unknown-pool' as const;
      if (entry.index === undefined) return 'ok' as const;
      const partition = partitionOf(entry.pool, entry.oid, entry.index, state.partitionCount);
      if (ctx.completeness.of(entry.pool, partition) === NOT_OWNER) return 'not-owner' as const;
      ctx.clock.observe(partition, entry.version);
      const result = replicas.apply(entry);
      if (entry.page !== undefined) ctx.maybeCorrupt(entry.pool, entry.oid, entry.index);
      return result;
    });
    return { t: 'replicated', id: frame.id, results };
  }

  async function onFetch(frame: Fetch, requester: string): Promise<Fetched> {
    await ctx.waitForVersion(frame.sv, ctx.peerTimeoutMs / 2);
    const state = cluster.committed();
    const lost = frame.partitions.filter((p) => ctx.completeness.of(frame.pool, p) === LOST);
    const complete = frame.partitions.every((p) => {
      const copy = ctx.completeness.of(frame.pool, p);
      return copy === COMPLETE || copy === LOST;
    });
    if (state === null || state.version < frame.sv) {
      // Behind the requester: not an answer about the copy (it must not count towards "no copy anywhere").
      throw new TmemError(ErrorCode.StaleState, 'this node is behind the requester; ask again', {
        details: { version: state?.version ?? 0 },
      });
    }
    if (!complete) {
      return {
        t: 'fetched',
        id: frame.id,
        complete: false,
        entries: [],
        ...(lost.length > 0 ? { lost } : {}),
      };
    }
    const key = `${requester}|${frame.pool}|${frame.partitions.join(',')}`;
    let session = frame.cursor === undefined ? undefined : fetchSessions.get(key);
    if (session === undefined && frame.cursor !== undefined) {
      // The session expired: the cursor means nothing in a new snapshot; the requester starts over.
      throw new TmemError(ErrorCode.NotServing, 'copy session expired; start again', {
        details: { version: state.version },
      });
    }
    if (session === undefined) {
      const wanted = new Set(frame.partitions);
      session = {
        entries: replicas.tombstonesIn(frame.pool, wanted),
        handles: store.handlesWhere(
          (pool, hash) => pool.id === frame.pool && wanted.has(hash % state.partitionCount),
        ),
        touched: now(),
      };
      fetchSessions.set(key, session);
    }
    session.touched = now();
    const total = session.entries.length + session.handles.length;
    let at = frame.cursor ?? 0;
    const entries: ReplicaEntry[] = [];
    let bytes = 0;
    while (at < total && entries.length < FETCH_CHUNK_ENTRIES && bytes < FETCH_CHUNK_BYTES) {
      const i = at++;
      if (i < session.entries.length) {
        entries.push(session.entries[i] as ReplicaEntry);
        continue;
      }
      const handle = session.handles[i - session.entries.length] as {
        pool: number;
        oid: Uint8Array;
        index: number;
      };
      let entry = replicas.newest(handle.pool, handle.oid, handle.index);
      if (entry?.page !== undefined && !checksumMatches(entry.page, entry.sum)) {
        const repaired = await reads.repairCorrupt(state, handle.pool, handle.oid, handle.index);
        entry = repaired.entry;
        if (entry === undefined && repaired.lost) {
          // No good copy anywhere: the page is lost, and a miss must never say otherwise.
          const p = partitionOf(handle.pool, handle.oid, handle.index, state.partitionCount);
          ctx.completeness.set(handle.pool, p, LOST);
          if (!lost.includes(p)) lost.push(p);
        } else if (entry === undefined) {
          // Somebody did not answer: this copy session cannot be trusted to be complete; the filler retries.
          throw new TmemError(ErrorCode.NotServing, 'a corrupt copy could not be repaired yet; retry', {
            details: { version: state.version },
          });
        }
      }
      if (entry === undefined) continue;
      bytes += entry.page?.length ?? 0;
      entries.push(entry);
    }
    if (at >= total) fetchSessions.delete(key);
    return {
      t: 'fetched',
      id: frame.id,
      complete: true,
      entries,
      ...(lost.length > 0 ? { lost } : {}),
      ...(at < total ? { cursor: at } : {}),
    };
  }

  async function onPeerGet(frame: PeerGet): Promise<PeerGot> {
    await ctx.waitForVersion(frame.sv, ctx.peerTimeoutMs / 2);
    const state = cluster.committed();
    if (state === null || state.version < frame.sv) {
      // Behind the asker: this copy may miss a flush the asker's state already went through.
      throw new TmemError(ErrorCode.StaleState, 'this node is behind the asker; ask again', {
        details: { version: state?.version ?? 0 },
      });
    }
    const partition = partitionOf(frame.pool, frame.oid, frame.index, state.partitionCount);
    const copy = ctx.completeness.of(frame.pool, partition);
    const key = handleKey(frame.pool, frame.oid, frame.index);
    let entry = replicas.newest(frame.pool, frame.oid, frame.index);
    if (entry?.page !== undefined && !checksumMatches(entry.page, entry.sum)) {
      // Dropped as corrupt: a hole in this copy until it is repaired, so no miss from here is authoritative.
      store.discard(frame.pool, frame.oid, frame.index);
      ctx.unrepaired.add(key);
      entry = undefined;
    }
    return {
      t: 'peerGot',
      id: frame.id,
      complete: copy === COMPLETE && !ctx.unrepaired.has(key),
      ...(copy === LOST ? { lost: true } : {}),
      ...(entry === undefined ? {} : { entry }),
    };
  }

  return {
    onReplicate,
    onFetch,
    onPeerGet,
    sweep() {
      const cutoff = now() - FETCH_SESSION_TTL_MS;
      for (const [key, session] of fetchSessions) if (session.touched < cutoff) fetchSessions.delete(key);
    },
    clearSessions() {
      fetchSessions.clear();
    },
  };
}
