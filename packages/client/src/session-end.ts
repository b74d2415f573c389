// The end of a client's session at close(): every pool created in it is destroyed cluster-wide. Sent after the
// client's own connections closed (so the ops still waiting were rejected with CLIENT_CLOSED at once), over a
// connection of its own to one member after another until one answers; any member relays the change to the
// coordinator. A session that cannot be ended is left to the nodes' grace period, which ends it anyway.
import { ErrorCode, TmemError } from '@tmem/protocol';
import { now } from './deadline.ts';
import type { NodeConnection } from './node-connection.ts';
import type { Logger } from './options.ts';

/** What ending a session needs. */
export interface SessionEndOptions {
  session: string;
  /** Members of the client's view, then its seeds: tried in order. */
  urls: readonly string[];
  /** Opens a connection with the client's identity, token and session, within `connectTimeoutMs`. */
  open(url: string, connectTimeoutMs: number): Promise<NodeConnection>;
  /** Time the whole end may take, in milliseconds. */
  timeoutMs: number;
  logger: Logger;
}

/** Ends the session; resolves true once a node answered ok, false when none did within the timeout. */
export async function endSession(options: SessionEndOptions): Promise<boolean> {
  const deadline = now() + options.timeoutMs;
  let lastError: unknown;
  for (const url of new Set(options.urls)) {
    if (now() >= deadline) break;
    let connection: NodeConnection | undefined;
    try {
      connection = await options.open(url, Math.max(1, Math.ceil(deadline - now())));
      await connection.request({ t: 'endSession', session: options.session }, { deadline });
      return true;
    } catch (error) {
      lastError = error;
    } finally {
      await connection?.close(new TmemError(ErrorCode.ClientClosed, 'the session ended'));
    }
  }
  options.logger.warn(
    { error: lastError instanceof Error ? lastError.message : String(lastError) },
    "session not ended: its pools go after the nodes' session grace period",
  );
  return false;
}
