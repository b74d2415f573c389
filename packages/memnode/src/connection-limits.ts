// What one node grants its connections, so that no client (and nobody who can merely reach the port) can hold
// unbounded sockets, memory or time: a count per node and per identity, a deadline for the handshake, a small
// frame size until the handshake is done, an idle timeout, and a bound on replies buffered for a slow reader.

import { ErrorCode, TmemError } from '@tmem/protocol';
import { DEFAULT_MAX_POOLS } from './cluster/state-bound.ts';

/**
 * Limits on what one connection or identity may cost a node. Each is a node option and a CLI flag
 * (cli-limits.ts).
 */
export interface ConnectionLimits {
  /**
   * Open WebSocket connections, clients and peers together; one more is closed with 1013 (try again later).
   * Plain TCP connections are capped at twice this by the HTTP server, so silent sockets cannot pile up either.
   */
  maxConnections: number;
  /** Open client connections of one identity; one more is refused with LIMIT_EXCEEDED. Peers are not counted. */
  maxConnectionsPerIdentity: number;
  /**
   * Milliseconds from the TCP accept to the end of the handshake: the HTTP upgrade and then the `hello` must
   * arrive within it, or the connection is closed (1008).
   */
  handshakeTimeoutMs: number;
  /** Largest frame before the handshake is done (a hello is tens of bytes); larger ones close with 1009. */
  maxHelloBytes: number;
  /** A connection that sends nothing (no frame, no ping) for this long is closed (1000, 'idle'). 0: never. */
  idleTimeoutMs: number;
  /**
   * Reply bytes the node lets one connection have buffered or owed: its buffered replies plus each unanswered
   * page op weighed at its largest reply (reply-flow.ts). Past it the node holds that connection's frames and
   * stops reading it until replies drain or are answered, so a reader that never reads costs about this much.
   */
  maxBufferedReplyBytes: number;
  /**
   * Pools one identity may have in the cluster; one more is refused with LIMIT_EXCEEDED. Every pool is part of
   * the cluster state that every commit carries, so this also bounds what one identity adds to it.
   */
  maxPoolsPerIdentity: number;
  /**
   * Pools the whole cluster may hold, whoever owns them; one more is refused with LIMIT_EXCEEDED (details
   * `{limit: 'maxPools'}`). Bounds the cluster state that every commit carries and a joiner must receive in one
   * frame; a node lowers it to what half of its --max-frame-bytes holds (state-bound.ts has the arithmetic).
   */
  maxPools: number;
}

export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = {
  maxConnections: 4096,
  maxConnectionsPerIdentity: 256,
  handshakeTimeoutMs: 10_000,
  maxHelloBytes: 4096,
  idleTimeoutMs: 300_000,
  maxBufferedReplyBytes: 64 * 1024 * 1024,
  maxPoolsPerIdentity: 1024,
  maxPools: DEFAULT_MAX_POOLS,
};

/** Close codes of the limits, from RFC 6455 and the IANA registry. */
export const LimitCloseCode = {
  /** Closed after idleTimeoutMs without traffic. */
  Idle: 1000,
  /** A frame larger than allowed at this point. */
  TooBig: 1009,
  /** The node has maxConnections open: try again later. */
  TryAgainLater: 1013,
} as const;

/** A connection as the registry sees it. */
export interface TrackedConnection {
  /** Set by the session on every frame or ping; the idle sweep clears it. */
  active: boolean;
  /** Closes the connection as idle. */
  closeIdle(): void;
}

/** Counts a node's connections against its limits and closes the idle ones. */
export interface ConnectionRegistry {
  readonly limits: ConnectionLimits;
  /** Admits a new connection, or returns false when the node is full (the caller closes it with 1013). */
  admit(connection: TrackedConnection): boolean;
  /** Forgets a closed connection, and its identity claim if it made one. */
  release(connection: TrackedConnection): void;
  /** Counts a client connection against its identity; throws LIMIT_EXCEEDED when the identity is at its limit. */
  claimIdentity(connection: TrackedConnection, identity: string): void;
  /** Stops the idle sweep. */
  close(): void;
}

export function createConnectionRegistry(limits: ConnectionLimits): ConnectionRegistry {
  const open = new Set<TrackedConnection>();
  const identityOf = new Map<TrackedConnection, string>();
  const perIdentity = new Map<string, number>();

  // One timer for all connections rather than one per socket: a sweep every idleTimeoutMs closes those that
  // were silent for the whole period, so an idle connection goes after between one and two periods.
  const sweep =
    limits.idleTimeoutMs > 0
      ? setInterval(() => {
          for (const connection of open) {
            if (!connection.active) connection.closeIdle();
            connection.active = false;
          }
        }, limits.idleTimeoutMs)
      : undefined;
  sweep?.unref();

  return {
    limits,
    admit(connection) {
      if (open.size >= limits.maxConnections) return false;
      open.add(connection);
      return true;
    },
    release(connection) {
      open.delete(connection);
      const identity = identityOf.get(connection);
      if (identity === undefined) return;
      identityOf.delete(connection);
      const left = (perIdentity.get(identity) ?? 1) - 1;
      if (left === 0) perIdentity.delete(identity);
      else perIdentity.set(identity, left);
    },
    claimIdentity(connection, identity) {
      const count = perIdentity.get(identity) ?? 0;
      if (count >= limits.maxConnectionsPerIdentity) {
        throw new TmemError(
          ErrorCode.LimitExceeded,
          `identity already has ${count} connections to this node; close some or reuse one client`,
          { details: { limit: 'maxConnectionsPerIdentity', max: limits.maxConnectionsPerIdentity } },
        );
      }
      perIdentity.set(identity, count + 1);
      identityOf.set(connection, identity);
    },
    close() {
      if (sweep !== undefined) clearInterval(sweep);
    },
  };
}
