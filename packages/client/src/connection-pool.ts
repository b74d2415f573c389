// One connection per cluster member, opened when an op first needs it and closed when the member leaves.
import { ConnectionLostError, ErrorCode, TmemError, memberKey, type MemberInfo } from '@tmem/protocol';
import { now } from './deadline.ts';
import type { NodeConnection } from './node-connection.ts';

/**
 * How long a member whose connection failed stays suspect, in milliseconds: the state sync asks the other
 * members first, since the failed one may be dead and the cluster not yet know it.
 */
const SUSPECT_MS = 2000;

/** What the pool needs. */
export interface ConnectionPoolOptions {
  /** Opens a connection (handshake included) to a URL, with the client's hooks installed. */
  open: (url: string) => Promise<NodeConnection>;
}

/** The connections to the members of the cluster, keyed by member id and incarnation. */
export interface ConnectionPool {
  /**
   * The member's connection, opened on first use; concurrent callers share one attempt. Rejects with
   * CONNECTION_LOST (or the handshake's error) when the member cannot be reached, and with CONNECTION_LOST when
   * the node at the member's URL says it is another node.
   */
  get(member: MemberInfo): Promise<NodeConnection>;
  /** The member's open connection, without opening one. */
  peek(member: MemberInfo): NodeConnection | undefined;
  /**
   * Makes an open connection (made to a seed URL) the member's connection, when the node is that member and
   * the pool has no open connection to it yet. Returns true when the pool took it over.
   */
  adopt(member: MemberInfo, connection: NodeConnection): boolean;
  /** True when the pool owns `connection`. */
  owns(connection: NodeConnection): boolean;
  /** Closes the connections of members not in `members` (they left, or restarted as a new incarnation). */
  retain(members: readonly MemberInfo[]): void;
  /** Forgets a connection that closed; the next `get` opens a new one. */
  forget(connection: NodeConnection): void;
  /** Marks a member whose connection just failed. */
  suspect(member: MemberInfo): void;
  /** True for SUSPECT_MS after `suspect`, unless a connection to the member has opened since. */
  isSuspect(member: MemberInfo): boolean;
  /** Closes every connection with `error`; later `get`s reject with it. */
  close(error: TmemError): Promise<void>;
}

interface Entry {
  connection: NodeConnection | undefined;
  opening: Promise<NodeConnection> | undefined;
}

/** Creates an empty pool. */
export function createConnectionPool(options: ConnectionPoolOptions): ConnectionPool {
  const entries = new Map<string, Entry>();
  /** Connections to members that left, closing once their ops are answered; close() must reach them too. */
  const draining = new Set<NodeConnection>();
  const suspects = new Map<string, number>();
  let closedWith: TmemError | undefined;

  function entryOf(key: string): Entry {
    let entry = entries.get(key);
    if (entry === undefined) {
      entry = { connection: undefined, opening: undefined };
      entries.set(key, entry);
    }
    return entry;
  }

  function lost(message: string, details: Record<string, unknown>): ConnectionLostError {
    return new ConnectionLostError(message, { details });
  }

  async function openFor(member: MemberInfo, key: string, entry: Entry): Promise<NodeConnection> {
    let connection: NodeConnection;
    try {
      connection = await options.open(member.url);
    } catch (error) {
      // A member that cannot be reached is a lost connection for the op that needed it: retried after a refresh.
      if (error instanceof TmemError && error.code === ErrorCode.ClientClosed) throw error;
      throw new ConnectionLostError(`could not connect to member ${member.id} at ${member.url}`, {
        cause: error,
        details: { node: member.url, nodeId: member.id },
      });
    } finally {
      entry.opening = undefined;
    }
    let refusal: TmemError | undefined;
    if (closedWith !== undefined) {
      refusal = closedWith;
    } else if (connection.nodeId !== member.id) {
      refusal = lost(`the node at ${member.url} is ${connection.nodeId}, not member ${member.id}`, {
        node: member.url,
        nodeId: connection.nodeId,
        expected: member.id,
      });
    } else if (entries.get(key) !== entry) {
      refusal = lost(`member ${member.id} left the cluster while connecting`, { node: member.url });
    }
    if (refusal !== undefined) {
      await connection.close(refusal);
      throw refusal;
    }
    entry.connection = connection;
    suspects.delete(key);
    return connection;
  }

  return {
    get(member) {
      if (closedWith !== undefined) return Promise.reject(closedWith);
      const key = memberKey(member);
      const entry = entryOf(key);
      if (entry.connection?.isOpen) return Promise.resolve(entry.connection);
      entry.opening ??= openFor(member, key, entry);
      return entry.opening;
    },
    peek(member) {
      const connection = entries.get(memberKey(member))?.connection;
      return connection?.isOpen ? connection : undefined;
    },
    adopt(member, connection) {
      if (closedWith !== undefined || !connection.isOpen || connection.nodeId !== member.id) return false;
      const entry = entryOf(memberKey(member));
      if (entry.connection?.isOpen || entry.opening !== undefined) return false;
      entry.connection = connection;
      suspects.delete(memberKey(member));
      return true;
    },
    owns(connection) {
      for (const entry of entries.values()) if (entry.connection === connection) return true;
      return false;
    },
    retain(members) {
      const keep = new Set(members.map(memberKey));
      for (const [key, entry] of entries) {
        if (keep.has(key)) continue;
        entries.delete(key);
        suspects.delete(key);
        // A leaver answers its last ops before it goes (they were sent; failing them under the client would
        // leave writes in doubt); new ops follow the view to the member's successor.
        const connection = entry.connection;
        if (connection === undefined) continue;
        draining.add(connection);
        void connection
          .closeWhenIdle(lost(`member ${key} left the cluster`, { member: key }))
          .finally(() => draining.delete(connection));
      }
    },
    forget(connection) {
      for (const entry of entries.values()) {
        if (entry.connection === connection) entry.connection = undefined;
      }
    },
    suspect(member) {
      suspects.set(memberKey(member), now() + SUSPECT_MS);
    },
    isSuspect(member) {
      const until = suspects.get(memberKey(member));
      return until !== undefined && until > now();
    },
    async close(error) {
      closedWith ??= error;
      const all = [...entries.values()];
      entries.clear();
      await Promise.all([
        ...all.map(async (entry) => {
          await entry.opening?.catch(() => undefined);
          await entry.connection?.close(error);
        }),
        ...[...draining].map((connection) => connection.close(error)),
      ]);
    },
  };
}
