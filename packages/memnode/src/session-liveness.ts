// Which client sessions are live on this node: what the coordinator's sweep asks every member before it ends
// a session (cluster/session-sweep.ts). A session is live here while a client connection of it is open, and
// for the grace period after the last one closed, so a client that reconnects (to this node or another) within
// the grace keeps its pools.
//
// A node knows only what happened since it started: a session it has not seen is live while the node has been
// up for less than the grace (the client may have been connected to it before a restart), and not live after.

/** Default of `--session-grace-ms`: how long a disconnected client's session keeps its pools. */
export const DEFAULT_SESSION_GRACE_MS = 30_000;

/** Options of the liveness tracker. */
export interface SessionLivenessOptions {
  /** How long a session stays live after its last connection closed. @default DEFAULT_SESSION_GRACE_MS */
  graceMs?: number;
  /** The clock, in ms. @default performance.now */
  now?: () => number;
}

/** One node's connected sessions and when each last disconnected. */
export interface SessionLiveness {
  readonly graceMs: number;
  /** A connection of (owner, session) opened; returns the function to call once when it closes. */
  connected(owner: string, session: string): () => void;
  /** Whether (owner, session) is live on this node now (see the module comment). */
  isLive(owner: string, session: string): boolean;
  /** Sessions tracked: connected, or disconnected within the last grace and a quarter. */
  size(): number;
}

interface Entry {
  connections: number;
  /** When the last connection closed; meaningful only while `connections` is 0. */
  disconnectedAt: number;
}

/** Creates the tracker; its memory is bounded by open connections plus those that closed within the grace. */
export function createSessionLiveness(options: SessionLivenessOptions = {}): SessionLiveness {
  const graceMs = options.graceMs ?? DEFAULT_SESSION_GRACE_MS;
  const now = options.now ?? (() => performance.now());
  const startedAt = now();
  // Keyed by owner and session: a session id alone must not make another identity's session live.
  const entries = new Map<string, Entry>();
  const keyOf = (owner: string, session: string) => `${session}\u0000${owner}`;

  let prunedAt = startedAt;

  /**
   * Drops sessions disconnected for longer than the grace: they answer like unseen ones, not live. At most once
   * a quarter grace, so connection churn costs amortised O(1) per connect.
   */
  function prune(t: number): void {
    if (t - prunedAt < graceMs / 4) return;
    prunedAt = t;
    for (const [key, entry] of entries) {
      if (entry.connections === 0 && t - entry.disconnectedAt >= graceMs) entries.delete(key);
    }
  }

  return {
    graceMs,
    connected(owner, session) {
      const t = now();
      prune(t);
      const key = keyOf(owner, session);
      const entry = entries.get(key) ?? { connections: 0, disconnectedAt: t };
      entry.connections++;
      entries.set(key, entry);
      let released = false;
      return () => {
        if (released) return;
        released = true;
        entry.connections--;
        if (entry.connections === 0) entry.disconnectedAt = now();
      };
    },
    isLive(owner, session) {
      const t = now();
      const entry = entries.get(keyOf(owner, session));
      if (entry === undefined) return t - startedAt < graceMs;
      return entry.connections > 0 || t - entry.disconnectedAt < graceMs;
    },
    size() {
      return entries.size;
    },
  };
}
