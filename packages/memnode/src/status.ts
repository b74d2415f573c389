// What `tmem status` and `npm run cluster` show: the committed cluster state as one node sees it, plus the
// statistics of every member asked directly. A member that does not answer is reported, never fatal.
import Table from 'cli-table3';
import { WebSocket, type RawData } from 'ws';
import {
  ConnectionLostError,
  ErrorCode,
  PROTOCOL_VERSION,
  ProtocolError,
  TimeoutError,
  TmemError,
  certificateRejection,
  createCodec,
  errorFromWire,
  memberKey,
  partitionTableFor,
  type ClientFrame,
  type ClusterState,
  type MemberInfo,
  type NodeFrame,
  type NodeStats,
} from '@tmem/protocol';
import { identityLines } from './status-identities.ts';

/** Per-node budget of fetchClusterStatus when none is given, in milliseconds. */
export const DEFAULT_STATUS_TIMEOUT_MS = 3000;
/** Identity the status tool sends in its handshake. */
export const STATUS_IDENTITY = 'tmem-status';

/** Options of fetchClusterStatus. */
export interface FetchClusterStatusOptions {
  /**
   * Budget of each connection, in milliseconds: opening it, the handshake and the one request on it. The seed
   * is asked first and the members then in parallel, so a call takes at most about twice this per seed tried.
   * @default DEFAULT_STATUS_TIMEOUT_MS (3000)
   */
  timeoutMs?: number;
  /**
   * PEM CA certificates a wss:// node's certificate must chain to (`--tls-ca`).
   * @default Node's bundled root CAs
   */
  ca?: Buffer;
  /**
   * A client token (`tmem token <identity>`) for clusters that authenticate clients; the hello names the
   * token's identity. Node-global stats need an identity the nodes list in --admin-identities; any other
   * identity gets its own counters only (`stats.scope` says which). Without a token the tool says it is
   * `tmem-status`, which only an open node admits.
   * @default none
   */
  token?: string;
}

/** How each session is dialled: its budget, the CA it verifies wss:// nodes with, and the token it presents. */
interface SessionDial {
  timeoutMs: number;
  ca: Buffer | undefined;
  /** The token its hello presents (FetchClusterStatusOptions.token). */
  token: string | undefined;
}

/** A member's role in the coordination protocol, as it reports it (NodeStats.role). */
export type MemberRole = NonNullable<NodeStats['role']>;

/**
 * One member of the cluster as the status shows it. Fields taken from the member's own answer are absent when
 * it is unreachable (or, for the cluster fields, when it is a node too old to report them).
 */
export interface MemberStatus {
  id: string;
  url: string;
  /** Incarnation the committed state lists; the process answering may run a newer one (`stats.incarnation`). */
  incarnation: number;
  /** Capacity the member announced when it joined, in bytes. */
  capacityBytes: number;
  /** Persistent placement phase in the committed state: filling (copying), ready, or leaving (handing over). */
  phase: 'filling' | 'ready' | 'leaving';
  /** True when the seed names this member as the coordinator. */
  leader: boolean;
  /** True when the member answered `stats` at its URL, as the member with this id, within the timeout. */
  reachable: boolean;
  /** Its role as the member itself reports it (the seed's opinion is `leader`). */
  role?: MemberRole;
  /** Version of the latest cluster state the member has committed. */
  stateVersion?: number;
  /** True when the member answered with a committed version older than the seed's: it has not caught up. */
  behind: boolean;
  /** Whether the member holds a lease now (it serves page ops only then). */
  leaseHeld?: boolean;
  /** Partitions the member serves as primary right now; compare with `partitions`, what it should own. */
  servingPartitions?: number;
  /** Partitions this member should be the primary owner of (first owner in partitionTableFor(state, 1)). */
  partitions: number;
  /** Pages the member holds, ephemeral and persistent. */
  pages?: number;
  /** The member's own statistics; absent when it is unreachable. */
  stats?: NodeStats;
  /** Why the member is unreachable; absent when it is reachable. */
  error?: string;
}

/** The cluster as the status shows it. */
export interface ClusterStatus {
  /** URL of the seed whose cluster state this is. */
  seed: string;
  /** Version of the committed cluster state. */
  version: number;
  /** Coordinator term that committed it. */
  term: number;
  /** The coordinator as far as the seed knows; null during an election. */
  leaderId: string | null;
  partitionCount: number;
  /**
   * Pools that exist cluster-wide: the most any reachable member reports (every member holds every pool; the
   * state a node gives a client lists only that client's own pools). Null when no member answered.
   */
  pools: number | null;
  /** Members in the order of the state (sorted by id). */
  members: MemberStatus[];
  /**
   * Persistent pools that ask for more copies than there are ready members (their puts are refused with reason
   * 'replicas'): the most any reachable member reports, 0 when none does.
   */
  underReplicated: number;
  /** Those pools one by one (at most MAX_LISTED_UNDER_REPLICATED), from the member that reported the most. */
  underReplicatedPools: NonNullable<NodeStats['underReplicatedPools']>;
}

// One codec for every connection: it keeps no per-connection state.
const codec = createCodec();

/** How long a closing socket may wait for the node's close frame before it is torn down, in milliseconds. */
const CLOSE_GRACE_MS = 500;

/** One short-lived connection of the status tool: opened by openSession, handshaken by hello(). */
interface Session {
  readonly url: string;
  /** Sends a frame and resolves with the reply carrying its id; rejects once the session failed. */
  request(frame: ClientFrame): Promise<NodeFrame>;
  /** Closes the socket (gracefully when open) and resolves once it is closed. Idempotent. */
  close(): Promise<void>;
}

/**
 * Opens a WebSocket to `url`. Everything on it (open, handshake, requests) must be done within `timeoutMs`:
 * after that every pending and later request rejects with TimeoutError.
 */
function openSession(url: string, dial: SessionDial): Session {
  const { timeoutMs } = dial;
  let socket: WebSocket;
  try {
    socket = new WebSocket(url, {
      perMessageDeflate: false,
      handshakeTimeout: timeoutMs,
      ...(dial.ca === undefined ? {} : { ca: dial.ca }),
    });
  } catch (error) {
    // An unparsable URL throws synchronously; report it like any other node that cannot be reached.
    const failure = new TmemError(ErrorCode.BadArgument, `"${url}" is not a ws:// URL`, { cause: error });
    return { url, request: () => Promise.reject(failure), close: () => Promise.resolve() };
  }
  let failure: TmemError | undefined;
  const pending = new Map<
    number,
    { resolve: (frame: NodeFrame) => void; reject: (error: TmemError) => void }
  >();
  let rejectOpened: (error: TmemError) => void = () => undefined;
  const opened = new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    rejectOpened = reject;
  });
  // A node that never listens is reported through the request waiting for it, not as an unhandled rejection.
  opened.catch(() => undefined);

  function fail(error: TmemError): void {
    if (failure !== undefined) return;
    failure = error;
    clearTimeout(timer);
    rejectOpened(error);
    for (const { reject } of pending.values()) reject(error);
    pending.clear();
    if (socket.readyState === WebSocket.OPEN) socket.close(1000);
    else if (socket.readyState === WebSocket.CONNECTING) socket.terminate();
  }

  const timer = setTimeout(() => fail(new TimeoutError(timeoutMs, { details: { url } })), timeoutMs);

  socket.on('error', (error) => {
    fail(
      certificateRejection(url, error, '--tls-ca') ??
        new ConnectionLostError(`connection failed: ${error.message}`, { cause: error, details: { url } }),
    );
  });
  socket.on('close', (code) => {
    fail(new ConnectionLostError(`node closed the connection (code ${code})`, { details: { url, code } }));
  });
  socket.on('message', (data: RawData, isBinary: boolean) => {
    let frame: NodeFrame;
    try {
      if (!isBinary) throw new ProtocolError(ErrorCode.MalformedFrame, 'node sent a text frame');
      frame = codec.decodeNodeFrame(data as Buffer);
    } catch (error) {
      fail(
        error instanceof TmemError
          ? error
          : new ProtocolError(ErrorCode.MalformedFrame, 'undecodable frame', { cause: error }),
      );
      return;
    }
    // Id 0: a push (state subscription) or an error about a frame the node could not read.
    if (frame.id === 0) {
      if (frame.t === 'error') fail(errorFromWire(frame));
      return;
    }
    const waiter = pending.get(frame.id);
    pending.delete(frame.id);
    waiter?.resolve(frame);
  });

  return {
    url,
    async request(frame) {
      await opened;
      if (failure !== undefined) throw failure;
      return new Promise<NodeFrame>((resolve, reject) => {
        pending.set(frame.id, { resolve, reject });
        socket.send(codec.encode(frame));
      });
    },
    async close() {
      clearTimeout(timer);
      if (failure === undefined) failure = new TmemError(ErrorCode.ClientClosed, 'status connection closed');
      rejectOpened(failure);
      if (socket.readyState === WebSocket.CLOSED) return;
      const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      if (socket.readyState === WebSocket.CONNECTING) {
        socket.terminate();
      } else if (socket.readyState === WebSocket.OPEN) {
        socket.close(1000);
      }
      // A node that never answers the close frame must not hold the caller.
      const force = setTimeout(() => socket.terminate(), CLOSE_GRACE_MS);
      await closed;
      clearTimeout(force);
    },
  };
}

/** The identity a token proves: what precedes its last dot (client-auth.ts issueToken). */
function identityOfToken(token: string): string {
  const dot = token.lastIndexOf('.');
  if (dot < 1) throw new TmemError(ErrorCode.BadArgument, 'not a token from `tmem token <identity>`');
  return token.slice(0, dot);
}

/** Performs the handshake and resolves with the node id the node answers with. */
async function hello(session: Session, token: string | undefined): Promise<string> {
  const reply = await session.request({
    t: 'hello',
    id: 1,
    protocol: PROTOCOL_VERSION,
    identity: token === undefined ? STATUS_IDENTITY : identityOfToken(token),
    ...(token === undefined ? {} : { token }),
  });
  if (reply.t === 'welcome') return reply.nodeId;
  throw unexpected(reply, 'welcome');
}

function unexpected(reply: NodeFrame, wanted: string): TmemError {
  if (reply.t === 'error') return errorFromWire(reply);
  return new ProtocolError(ErrorCode.InvalidFrame, `expected ${wanted}, node answered ${reply.t}`);
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Asks one seed for the committed state. */
async function stateFrom(
  seed: string,
  dial: SessionDial,
  sessions: Session[],
): Promise<{ state: ClusterState; leaderId: string | null }> {
  const session = openSession(seed, dial);
  sessions.push(session);
  await hello(session, dial.token);
  const reply = await session.request({ t: 'getState', id: 2, subscribe: false });
  if (reply.t !== 'state') throw unexpected(reply, 'state');
  return { state: reply.state, leaderId: reply.leaderId };
}

/** Asks one member, at its own URL, for its statistics; never rejects. */
async function statsOf(
  member: MemberInfo,
  dial: SessionDial,
  sessions: Session[],
): Promise<{ stats: NodeStats } | { error: string }> {
  const session = openSession(member.url, dial);
  sessions.push(session);
  try {
    const nodeId = await hello(session, dial.token);
    // Another process may listen at the URL now (the member died, something else took the port).
    if (nodeId !== member.id) return { error: `${member.url} answers as node ${nodeId}` };
    const reply = await session.request({ t: 'stats', id: 2 });
    if (reply.t !== 'stats') throw unexpected(reply, 'stats');
    return { stats: reply.stats };
  } catch (error) {
    return { error: messageOf(error) };
  }
}

/**
 * Reads the cluster state from the first seed that answers (in order), then asks every member for its
 * statistics in parallel over a connection of its own. Rejects with NO_NODES when no seed gives a state (not
 * reachable, no handshake, or still joining); an unreachable member only shows as `reachable: false`. Every
 * socket it opened is closed before it settles.
 */
export async function fetchClusterStatus(
  seeds: string | readonly string[],
  options: FetchClusterStatusOptions = {},
): Promise<ClusterStatus> {
  const seedList = typeof seeds === 'string' ? [seeds] : [...seeds];
  const timeoutMs = options.timeoutMs ?? DEFAULT_STATUS_TIMEOUT_MS;
  if (seedList.length === 0) throw new TmemError(ErrorCode.BadArgument, 'give at least one seed URL');
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new TmemError(ErrorCode.BadArgument, `timeoutMs must be a positive number, got ${timeoutMs}`);
  }
  if (options.token !== undefined) identityOfToken(options.token);
  const dial: SessionDial = { timeoutMs, ca: options.ca, token: options.token };
  const sessions: Session[] = [];
  try {
    const failures: { seed: string; message: string }[] = [];
    let found: { seed: string; state: ClusterState; leaderId: string | null } | undefined;
    let lastError: unknown;
    for (const seed of seedList) {
      try {
        found = { seed, ...(await stateFrom(seed, dial, sessions)) };
        break;
      } catch (error) {
        lastError = error;
        failures.push({ seed, message: messageOf(error) });
      }
    }
    if (found === undefined) {
      const reasons = failures.map((f) => `${f.seed} (${f.message})`).join(', ');
      throw new TmemError(
        ErrorCode.NoNodes,
        `no cluster state from ${reasons}; check the seed URL and that a node runs there`,
        { cause: lastError, details: { failures } },
      );
    }
    const { seed, state, leaderId } = found;

    const table = partitionTableFor(state, 1);
    const primaries = new Map<string, number>();
    for (let p = 0; p < state.partitionCount; p++) {
      const owner = table.primary(p);
      if (owner !== undefined) primaries.set(memberKey(owner), (primaries.get(memberKey(owner)) ?? 0) + 1);
    }

    const members = await Promise.all(
      state.members.map(async (member): Promise<MemberStatus> => {
        const answer = await statsOf(member, dial, sessions);
        const stats = 'stats' in answer ? answer.stats : undefined;
        return {
          id: member.id,
          url: member.url,
          incarnation: member.incarnation,
          capacityBytes: member.capacityBytes,
          phase: member.phase ?? 'ready',
          leader: member.id === leaderId,
          reachable: stats !== undefined,
          ...(stats?.role === undefined ? {} : { role: stats.role }),
          ...(stats?.stateVersion === undefined ? {} : { stateVersion: stats.stateVersion }),
          behind: stats?.stateVersion !== undefined && stats.stateVersion < state.version,
          ...(stats?.leaseHeld === undefined ? {} : { leaseHeld: stats.leaseHeld }),
          ...(stats?.servingPartitions === undefined ? {} : { servingPartitions: stats.servingPartitions }),
          partitions: primaries.get(memberKey(member)) ?? 0,
          ...(stats === undefined ? {} : { pages: stats.ephemeralPages + stats.persistentPages }),
          ...answer,
        };
      }),
    );
    const reachable = members.flatMap((m) => (m.stats === undefined ? [] : [m.stats]));
    const shortest = reachable.reduce<NodeStats | undefined>(
      (most, stats) => ((stats.underReplicated ?? 0) > (most?.underReplicated ?? 0) ? stats : most),
      undefined,
    );
    return {
      seed,
      version: state.version,
      term: state.term,
      leaderId,
      partitionCount: state.partitionCount,
      pools: reachable.length === 0 ? null : Math.max(...reachable.map((stats) => stats.pools)),
      members,
      underReplicated: shortest?.underReplicated ?? 0,
      underReplicatedPools: shortest?.underReplicatedPools ?? [],
    };
  } finally {
    await Promise.all(sessions.map((session) => session.close()));
  }
}

/** The shortest prefix length (at least 8) that keeps every id distinct, so UUIDs stay readable. */
function shortIdLength(ids: readonly string[]): number {
  const longest = Math.max(0, ...ids.map((id) => id.length));
  for (let length = 8; length < longest; length++) {
    if (new Set(ids.map((id) => id.slice(0, length))).size === ids.length) return length;
  }
  return longest;
}

const MIB = 1024 * 1024;

function mib(bytes: number): string {
  return (bytes / MIB).toFixed(1);
}

function hitsMisses(stats: NodeStats): string {
  const lookups = stats.hits + stats.misses;
  const ratio = lookups === 0 ? '' : ` (${Math.round((stats.hits / lookups) * 100)}%)`;
  return `${stats.hits}/${stats.misses}${ratio}`;
}

/** Copy progress of persistent partitions: phase, partitions still copying or lost, pages copied in. */
function copies(member: MemberStatus): string {
  const { stats } = member;
  const parts: string[] = [member.phase];
  if (stats?.fillingPartitions) parts.push(`${stats.fillingPartitions} copying`);
  if (stats?.lostPartitions) parts.push(`${stats.lostPartitions} LOST`);
  // Pages copied in say how far a fill has come; once nothing is copying they are history, not status.
  if (stats?.copiedPages && stats.fillingPartitions) parts.push(`${stats.copiedPages} pages in`);
  if (stats?.replicationBacklog) parts.push(`${stats.replicationBacklog} queued`);
  return parts.join(', ');
}

/**
 * An incarnation as people read it. Nodes draw it from the clock when they start (epoch milliseconds), so it
 * is shown as that time of day; a small number (set by hand) is shown as it is.
 */
function startedAt(incarnation: number): string {
  return incarnation >= 1e12 ? new Date(incarnation).toISOString().slice(11, 19) : String(incarnation);
}

function yesNo(value: boolean | undefined): string {
  return value === undefined ? '?' : value ? 'yes' : 'no';
}

/** Renders a status as a summary line and a table of members, for people (not for parsing: use the JSON). */
export function formatClusterStatus(status: ClusterStatus): string {
  const idLength = shortIdLength(status.members.map((m) => m.id));
  const short = (id: string) => id.slice(0, idLength);
  const table = new Table({
    head: [
      'id',
      'url',
      'started\n(UTC)',
      'role',
      'state',
      'lease',
      'partitions\nserving/own',
      'copies',
      'pages',
      'memory MiB\nused/cap',
      'hits/misses',
    ],
    colAligns: ['left', 'left', 'right', 'left', 'left', 'left', 'right', 'left', 'right', 'right', 'right'],
    // No colours: the output is also read from logs and pipes.
    style: { head: [], border: [], compact: true },
  });
  for (const member of status.members) {
    const { stats } = member;
    // A process that rejoined under the same id runs a newer incarnation than the state still lists.
    const incarnation =
      stats?.incarnation === undefined || stats.incarnation === member.incarnation
        ? startedAt(member.incarnation)
        : `${startedAt(member.incarnation)} (runs ${startedAt(stats.incarnation)})`;
    table.push(
      stats === undefined
        ? [
            short(member.id),
            member.url,
            incarnation,
            'unreachable',
            '-',
            '-',
            `- / ${member.partitions}`,
            member.phase,
            '-',
            `- / ${mib(member.capacityBytes)}`,
            '-',
          ]
        : [
            short(member.id),
            member.url,
            incarnation,
            member.role ?? (member.leader ? 'leader' : '?'),
            member.stateVersion === undefined
              ? '?'
              : `v${member.stateVersion}${member.behind ? ' (behind)' : ''}`,
            yesNo(member.leaseHeld),
            `${member.servingPartitions ?? '?'} / ${member.partitions}`,
            copies(member),
            member.pages ?? '-',
            `${mib(stats.usedBytes)} / ${mib(stats.capacityBytes)}`,
            hitsMisses(stats),
          ],
    );
  }
  const unreachable = status.members.filter((m) => !m.reachable);
  const behind = status.members.filter((m) => m.behind).length;
  const summary = [
    `cluster state v${status.version} (term ${status.term})`,
    `${status.members.length} member${status.members.length === 1 ? '' : 's'}`,
    ...(unreachable.length > 0 ? [`${unreachable.length} unreachable`] : []),
    ...(behind > 0 ? [`${behind} behind v${status.version}`] : []),
    `leader ${status.leaderId === null ? 'none (election)' : short(status.leaderId)}`,
    `${status.partitionCount} partitions`,
    status.pools === null ? 'pools unknown' : `${status.pools} pool${status.pools === 1 ? '' : 's'}`,
  ].join(', ');
  const reasons = unreachable.map((m) => `${short(m.id)} unreachable: ${m.error ?? 'no answer'}`);
  return [
    summary,
    table.toString(),
    ...reasons,
    ...scopeLines(status),
    ...compressionLines(status),
    ...dedupLines(status),
    ...identityLines(status.members),
    ...underReplicatedLines(status),
  ].join('\n');
}

/** A note when the counters are one identity's own: the token's identity is not an admin of those nodes. */
function scopeLines(status: ClusterStatus): string[] {
  if (!status.members.some((m) => m.stats?.scope === 'identity')) return [];
  return [
    "pages, memory and hits are this token's identity's own: list it in the nodes' --admin-identities for the whole node's",
  ];
}

/** Compressed pages over the members that answered, once any member holds some. */
function compressionLines(status: ClusterStatus): string[] {
  let pages = 0;
  let pageBytes = 0;
  let packedBytes = 0;
  let slotBytes = 0;
  for (const { stats } of status.members) {
    if (stats === undefined) continue;
    pages += stats.compressedPages;
    pageBytes += stats.compressedPageBytes;
    packedBytes += stats.compressedBytes;
    slotBytes += stats.compressedSlotBytes;
  }
  if (pages === 0) return [];
  return [
    `compressed: ${pages} pages, ${mib(pageBytes)} MiB as written in ${mib(slotBytes)} MiB of slots ` +
      `(saved ${(pageBytes / slotBytes).toFixed(2)}x; lz4 ratio ${(pageBytes / packedBytes).toFixed(2)}x)`,
  ];
}

/** Deduplicated pages over the members that answered, once any member holds some. */
function dedupLines(status: ClusterStatus): string[] {
  let slots = 0;
  let pages = 0;
  let saved = 0;
  for (const { stats } of status.members) {
    if (stats === undefined) continue;
    slots += stats.dedupSlots;
    pages += stats.dedupedPages;
    saved += stats.dedupSavedBytes;
  }
  if (pages === 0) return [];
  return [`dedup: ${pages} pages share ${slots} slots (saved ${mib(saved)} MiB)`];
}

/** The UNDER-REPLICATED warning: which persistent pools refuse puts because too few members are ready. */
function underReplicatedLines(status: ClusterStatus): string[] {
  if (status.underReplicated === 0) return [];
  const listed = status.underReplicatedPools.map(
    (p) => `pool ${p.pool} wants ${p.replication} copies, ${p.readyMembers} ready`,
  );
  const more = status.underReplicated - listed.length;
  return [
    `UNDER-REPLICATED: ${status.underReplicated} persistent pool${status.underReplicated === 1 ? '' : 's'} ` +
      `refuse${status.underReplicated === 1 ? 's' : ''} puts (reason replicas) until enough members are ready: ` +
      [...listed, ...(more > 0 ? [`${more} more`] : [])].join('; '),
  ];
}
