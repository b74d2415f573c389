import { Command, InvalidArgumentError, Option } from 'commander';
import { randomUUID } from 'node:crypto';
import { isIP } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { DEFAULT_MAX_FRAME_BYTES } from '@tmem/protocol';
import { advertisedUrlProblem } from './advertised-url.ts';
import { createNodeLogger } from './logger.ts';
import { createMemnode } from './memnode.ts';
import { describeStartupError } from './startup-errors.ts';
import { formatDuration, parseDuration } from './cli-durations.ts';
import { DEFAULT_SESSION_GRACE_MS } from './session-liveness.ts';
import { DEFAULT_JOIN_TIMEOUT_MS, waitUntilServing } from './join-watch.ts';
import { MAX_DEDUP_CAPACITY_BYTES, type PageStore } from './page-store.ts';
import { addLimitFlags, count, limitsFromFlags, type LimitFlags } from './cli-limits.ts';
import { TLS_CA_HELP, addTlsFlags, tlsFromFlags, type TlsFlags } from './cli-tls.ts';
import { loadCaFile, type NodeTls } from './tls-files.ts';
import { addHandOverFlags, handOverFromFlags, type HandOverFlags } from './cli-hand-over.ts';
import { issueToken, loadTokens, type ClientTokens } from './client-auth.ts';
import { loadSharedPoolAccess, type SharedPoolAccess } from './shared-pool-access.ts';
import {
  CAPACITY_RANGE,
  FRAME_SIZE_RANGE,
  SIZE_HELP,
  formatByteSize,
  parseSizeIn,
  type SizeRange,
} from './cli-sizes.ts';
import packageJson from '../package.json' with { type: 'json' };
import { DEFAULT_STATUS_TIMEOUT_MS, fetchClusterStatus, formatClusterStatus } from './status.ts';

/** A commander parser of a size flag in `range`. */
function byteSize(range: SizeRange): (text: string) => number {
  return (text) => {
    try {
      return parseSizeIn(text, range);
    } catch (error) {
      throw new InvalidArgumentError((error as Error).message);
    }
  };
}

function port(text: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0 || value > 65535) {
    throw new InvalidArgumentError('port must be an integer 0..65535 (0 picks a free port)');
  }
  return value;
}

function duration(text: string): number {
  try {
    return parseDuration(text);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

function positiveInt(text: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) throw new InvalidArgumentError('must be a positive integer');
  return value;
}

/** Identities of a comma-separated list, appended to those of earlier uses of the flag. */
function collectIdentities(text: string, previous: string[]): string[] {
  const identities = text
    .split(',')
    .map((identity) => identity.trim())
    .filter((identity) => identity !== '');
  if (identities.length === 0) throw new InvalidArgumentError('give at least one identity');
  return [...previous, ...identities];
}

function collectUrls(text: string, previous: string[]): string[] {
  const urls = text
    .split(',')
    .map((url) => url.trim())
    .filter((url) => url !== '');
  for (const url of urls) {
    if (!/^wss?:\/\/[^\s/]+/.test(url))
      throw new InvalidArgumentError(`"${url}" is not a ws:// or wss:// URL`);
  }
  return [...previous, ...urls];
}

function wsUrl(text: string): string {
  const url = text.trim();
  if (!/^wss?:\/\/[^\s/]+/.test(url))
    throw new InvalidArgumentError(`"${text}" is not a ws:// or wss:// URL`);
  return url;
}

function ipAddress(text: string): string {
  if (isIP(text) === 0) throw new InvalidArgumentError(`"${text}" is not an IPv4 or IPv6 address`);
  return text;
}

const RETURN_CHECK_MS = 2000;
const GARBAGE_ARRAY_BUFFER_BYTES = 64 * 1024 * 1024;

/**
 * Gives freed page memory back after mass flushes: first the spare slabs that stayed idle (spare-slabs.ts),
 * then the garbage they and other released slabs leave. Released slabs are ArrayBuffers the JS heap does not
 * weigh: V8 collects them only when its own heap or new external allocations call for a GC, so on a node that
 * goes quiet after a flush their memory would stay resident until traffic resumes. Every RETURN_CHECK_MS, if
 * ArrayBuffer memory exceeds what the store holds by more than GARBAGE_ARRAY_BUFFER_BYTES, one full GC runs
 * (tens of ms for a node's small heap; under traffic V8's own GCs keep the excess below the bound anyway).
 */
function returnFreedMemory(store: PageStore): void {
  // Exposing gc at runtime affects only new contexts: take it from one. No command-line flag needed.
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  setInterval(() => {
    store.releaseIdleSlabs();
    const { slabBytes, spareSlabBytes, metadataBytes } = store.memory();
    const held = slabBytes + spareSlabBytes + metadataBytes;
    if (process.memoryUsage().arrayBuffers - held > GARBAGE_ARRAY_BUFFER_BYTES) gc();
  }, RETURN_CHECK_MS).unref();
}

interface NodeCommandOptions extends LimitFlags, TlsFlags, HandOverFlags {
  port: number;
  host: string;
  capacity: number;
  nodeId?: string;
  maxFrameBytes: number;
  join: string[];
  joinTimeout: number;
  partitions: number;
  replication: number;
  heartbeatMs?: number;
  leaseMs?: number;
  electionTimeoutMs?: number;
  failureTimeoutMs?: number;
  sessionGraceMs: number;
  advertiseUrl?: string;
  sourceAddress?: string;
  batchReplyParts?: boolean;
  tokensFile?: string;
  open?: boolean;
  sharedPools?: string;
  adminIdentities: string[];
  insecurePeers?: boolean;
  metricsPort?: number;
  dedup?: boolean;
  spareSlabBytes?: number;
  identityMaxBytes?: number;
  identityMaxPages?: number;
}

/** Exits 1 with one line on stderr: for configuration the node cannot start with. */
function refuseToStart(message: string): never {
  process.stderr.write(`tmem node: ${message}\n`);
  process.exit(1);
}

/** The client tokens of --tokens-file, or undefined with --open; exactly one of the two must be given. */
function clientTokensOf(options: NodeCommandOptions): ClientTokens | undefined {
  if (options.open === true && options.tokensFile !== undefined) {
    refuseToStart('--open and --tokens-file exclude each other');
  }
  if (options.open === true) return undefined;
  if (options.tokensFile === undefined) {
    refuseToStart(
      'clients must be authenticated: pass --tokens-file FILE (lines from `tmem token <identity>`), or --open on a trusted local network',
    );
  }
  try {
    return loadTokens(options.tokensFile);
  } catch (error) {
    refuseToStart((error as Error).message);
  }
}

/** The shared-pool access of --shared-pools, or undefined without it. */
function sharedPoolsOf(options: NodeCommandOptions): SharedPoolAccess | undefined {
  if (options.sharedPools === undefined) return undefined;
  try {
    return loadSharedPoolAccess(options.sharedPools);
  } catch (error) {
    refuseToStart((error as Error).message);
  }
}

/** The node's TLS material from --tls-cert, --tls-key and --tls-ca, or undefined without them. */
function tlsOf(options: NodeCommandOptions): NodeTls | undefined {
  try {
    return tlsFromFlags(options);
  } catch (error) {
    refuseToStart((error as Error).message);
  }
}

/** One line on stderr and exit 1: a port in use is an operator's typo, not a crash worth a stack trace. */
function exitWith(message: string): never {
  process.stderr.write(`tmem node: ${message}\n`);
  process.exit(1);
}

async function runNode(options: NodeCommandOptions): Promise<void> {
  const tls = tlsOf(options);
  const addressProblem = advertisedUrlProblem({ ...options, tls: tls !== undefined });
  if (addressProblem !== undefined) {
    process.stderr.write(`tmem node: ${addressProblem}\n`);
    process.exit(1);
  }
  if (options.dedup === true && options.capacity > MAX_DEDUP_CAPACITY_BYTES) {
    refuseToStart(
      `--dedup allows a capacity of at most ${formatByteSize(MAX_DEDUP_CAPACITY_BYTES)}; lower --capacity or run more nodes`,
    );
  }
  const nodeId = options.nodeId ?? randomUUID();
  const clientTokens = clientTokensOf(options);
  const sharedPools = sharedPoolsOf(options);
  if (clientTokens === undefined && options.adminIdentities.length > 0) {
    refuseToStart('--admin-identities needs --tokens-file: with --open every client sees node-global stats');
  }
  const clusterSecret = process.env['TMEM_CLUSTER_SECRET'] || undefined;
  if (clusterSecret === undefined && options.join.length > 0 && options.insecurePeers !== true) {
    refuseToStart(
      'joining a cluster needs its secret: set TMEM_CLUSTER_SECRET (the same on every node), or pass --insecure-peers on a trusted loopback',
    );
  }
  const logger = createNodeLogger({ nodeId });
  const log = logger.child({ component: 'launcher' });
  const node = await createMemnode({
    nodeId,
    host: options.host,
    port: options.port,
    capacityBytes: options.capacity,
    dedup: options.dedup === true,
    ...(options.spareSlabBytes === undefined ? {} : { spareSlabBytes: options.spareSlabBytes }),
    identityQuota: {
      ...(options.identityMaxBytes === undefined ? {} : { maxBytes: options.identityMaxBytes }),
      ...(options.identityMaxPages === undefined ? {} : { maxPages: options.identityMaxPages }),
    },
    maxFrameBytes: options.maxFrameBytes,
    logger,
    join: options.join,
    partitionCount: options.partitions,
    ...(options.advertiseUrl === undefined ? {} : { advertiseUrl: options.advertiseUrl }),
    ...(options.sourceAddress === undefined ? {} : { sourceAddress: options.sourceAddress }),
    // From the environment, not a flag, so it never shows in `ps`.
    ...(clusterSecret === undefined ? {} : { clusterSecret }),
    insecurePeers: options.insecurePeers === true,
    // Fault injection for the failure tests only: this node corrupts its copies of pages of matching objects.
    ...(process.env['TMEM_TEST_CORRUPT_OID_PREFIX']
      ? { testCorruptOidPrefix: process.env['TMEM_TEST_CORRUPT_OID_PREFIX'] }
      : {}),
    defaultReplication: options.replication,
    ...(options.metricsPort === undefined ? {} : { metricsPort: options.metricsPort }),
    batchReplyParts: options.batchReplyParts ?? true,
    ...limitsFromFlags(options),
    ...handOverFromFlags(options),
    ...(clientTokens === undefined ? {} : { clientTokens }),
    ...(tls === undefined ? {} : { tls }),
    adminIdentities: options.adminIdentities,
    sessionGraceMs: options.sessionGraceMs,
    ...(sharedPools === undefined ? {} : { sharedPools }),
    timing: {
      ...(options.heartbeatMs === undefined ? {} : { heartbeatIntervalMs: options.heartbeatMs }),
      ...(options.leaseMs === undefined ? {} : { leaseMs: options.leaseMs }),
      ...(options.failureTimeoutMs === undefined ? {} : { failureTimeoutMs: options.failureTimeoutMs }),
      ...(options.electionTimeoutMs === undefined
        ? {}
        : { electionTimeoutMs: { min: options.electionTimeoutMs, max: options.electionTimeoutMs * 2 } }),
    },
  }).catch((error: unknown) => exitWith(describeStartupError(error, options)));
  // The one machine-readable line on stdout: launchers wait for it instead of sleeping.
  // `url` is where the node listens; `advertisedUrl` is what it tells peers and clients (a proxy, say).
  const advertisedUrl = options.advertiseUrl ?? node.url;
  // `metricsUrl` only with --metrics-port: where Prometheus scrapes this node.
  const metricsUrl = node.metricsUrl === undefined ? {} : { metricsUrl: node.metricsUrl };
  process.stdout.write(
    `${JSON.stringify({ event: 'listening', url: node.url, advertisedUrl, nodeId, ...metricsUrl })}\n`,
  );
  // The second line: a member of the cluster, holding a lease, answering ops. A join that cannot succeed
  // (refused secret, seeds dead past --join-timeout) ends the process instead.
  waitUntilServing(node.cluster, {
    seeds: options.join,
    hasSecret: Boolean(process.env['TMEM_CLUSTER_SECRET']),
    timeoutMs: options.joinTimeout,
  }).then(
    (serving) => {
      log.info(serving, 'ready');
      process.stdout.write(
        `${JSON.stringify({ event: 'ready', url: node.url, advertisedUrl, nodeId, ...serving })}\n`,
      );
    },
    (error: unknown) => exitWith((error as Error).message),
  );

  const stop = (reason: string, leave = true) => {
    log.info({ reason, leave }, 'stopping');
    node.close({ leave }).then(
      () => process.exit(0),
      (error: unknown) => {
        log.error({ err: error }, 'unclean stop');
        process.exit(1);
      },
    );
  };
  // A memory report on demand (`kill -USR2 <pid>`; bench/memory-probe.ts reads it): the process's view and the
  // page store's, so RSS can be split into runtime, JS heap, slabs and metadata without an inspector.
  process.on('SIGUSR2', () => log.info({ ...process.memoryUsage(), ...node.store.memory() }, 'memory'));
  returnFreedMemory(node.store);
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  // Started by a launcher with an IPC channel (tests, `npm run cluster`): when the parent dies, so do we,
  // so no orphan node outlives a killed test run. The launcher's other nodes go too, so there is no cluster
  // left to hand partitions to: stop without leaving.
  if (process.send !== undefined) process.once('disconnect', () => stop('parent exited', false));
}

interface StatusCommandOptions {
  seed?: string[];
  json?: boolean;
  timeoutMs: number;
  tlsCa?: string;
}

/** The first node of cluster.config.ts, so `tmem status` next to `npm run cluster` needs no flags. */
const DEFAULT_STATUS_SEED = 'ws://127.0.0.1:7401';

async function runStatus(options: StatusCommandOptions): Promise<void> {
  try {
    // From the environment, not a flag, so the token never shows in `ps`.
    const token = process.env['TMEM_TOKEN'] || undefined;
    const status = await fetchClusterStatus(options.seed ?? [DEFAULT_STATUS_SEED], {
      timeoutMs: options.timeoutMs,
      ...(options.tlsCa === undefined ? {} : { ca: loadCaFile(options.tlsCa) }),
      ...(token === undefined ? {} : { token }),
    });
    process.stdout.write(
      options.json ? `${JSON.stringify(status, null, 2)}\n` : `${formatClusterStatus(status)}\n`,
    );
  } catch (error) {
    // One line, no stack: the message names the seed and what to check.
    process.stderr.write(`tmem status: ${(error as Error).message.replace(/\s*\n\s*/g, ' ')}\n`);
    process.exitCode = 1;
  }
}

/** Builds the `tmem` command line. */
export function buildCli(): Command {
  const program = new Command('tmem')
    .description('transcendent memory: memory nodes and tools')
    .version(packageJson.version, '-V, --version', 'print the version of tmem');
  const node = program
    .command('node')
    .description('run a memory node')
    .addHelpText('after', SIZE_HELP)
    .option('-p, --port <port>', 'port to listen on; 0 picks a free one', port, 0)
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option(
      '--metrics-port <port>',
      'serve Prometheus metrics at /metrics on this port (0: a free one)',
      port,
    )
    .requiredOption(
      '-c, --capacity <size>',
      `bytes of page data to hold, e.g. 256MiB or 2GiB (${formatByteSize(CAPACITY_RANGE.min)} at least)`,
      byteSize(CAPACITY_RANGE),
    )
    .option(
      '--spare-slab-bytes <size>',
      'emptied slab memory kept mapped for reuse by later puts, each slab for 10 s (default: capacity / 4, at most 1GiB; 0: none)',
      byteSize({ min: 0, max: CAPACITY_RANGE.max }),
    )
    .option(
      '--identity-max-bytes <size>',
      "bytes one identity's pages may be charged on this node, records and oids included (default: no quota)",
      byteSize(CAPACITY_RANGE),
    )
    .option(
      '--identity-max-pages <n>',
      'pages one identity may hold on this node (default: no quota)',
      count(1),
    )
    .option('--node-id <id>', 'stable node id (default: random)')
    .addOption(
      new Option('--max-frame-bytes <size>', 'largest frame accepted from a peer')
        .argParser(byteSize(FRAME_SIZE_RANGE))
        .default(DEFAULT_MAX_FRAME_BYTES, formatByteSize(DEFAULT_MAX_FRAME_BYTES)),
    )
    .option(
      '-j, --join <urls>',
      'join the cluster through these nodes (repeat or comma-separate)',
      collectUrls,
      [],
    )
    .addOption(
      new Option(
        '--join-timeout <duration>',
        'give up (exit 1) when not a serving member this long after start, e.g. 30s or 2m',
      )
        .argParser(duration)
        .default(DEFAULT_JOIN_TIMEOUT_MS, formatDuration(DEFAULT_JOIN_TIMEOUT_MS)),
    )
    .option('--partitions <n>', 'partitions of a new cluster (fixed for its life)', positiveInt, 1024)
    .option(
      '--replication <n>',
      'copies of each persistent page, unless a pool says otherwise',
      positiveInt,
      2,
    )
    .option('--heartbeat-ms <ms>', 'coordinator heartbeat interval (default 100)', positiveInt)
    .option('--lease-ms <ms>', 'lease a heartbeat grants (default 1000)', positiveInt)
    .option(
      '--election-timeout-ms <ms>',
      'minimum election timeout; the maximum is twice it (default 600)',
      positiveInt,
    )
    .option(
      '--failure-timeout-ms <ms>',
      'silence after which a member is suspected (default 800)',
      positiveInt,
    )
    .option(
      '--session-grace-ms <ms>',
      "how long a disconnected client's session keeps its pools before they are destroyed cluster-wide (the same on every node)",
      positiveInt,
      DEFAULT_SESSION_GRACE_MS,
    )
    .option(
      '--advertise-url <url>',
      'URL to give peers and clients instead of the listening one, e.g. a proxy in front of this node',
      wsUrl,
    )
    .option(
      '--source-address <ip>',
      'local address of outgoing peer links, e.g. 127.0.0.2, so a proxy can tell nodes apart',
      ipAddress,
    )
    .option(
      '--dedup',
      "share one slot among identical pages of an identity's ephemeral pools (persistent pages are never shared)",
    )
    .option(
      '--no-batch-reply-parts',
      'answer each batch in one frame once its slowest op finished (for clients that do not understand `more`)',
    );
  node
    .option(
      '--tokens-file <path>',
      'client tokens: "<identity> <sha256>" lines from `tmem token`; a client must present one',
    )
    .option(
      '--open',
      'do not authenticate clients: any client may act as any identity (trusted networks only)',
    )
    .option(
      '--admin-identities <list>',
      'identities (comma-separated, repeatable; each with a token) whose `stats` are node-global; every other client sees only its own counters (needs --tokens-file)',
      (text: string, previous: string[]) => collectIdentities(text, previous),
      [] as string[],
    )
    .option(
      '--shared-pools <path>',
      'who may join which shared pool: "<uuid> <identity>[,<identity>...]" lines; without it an --open node lets anyone join any shared pool and an authenticating node nobody',
    );
  addHandOverFlags(addTlsFlags(addLimitFlags(node))).action((options: NodeCommandOptions) =>
    runNode(options),
  );
  program
    .command('token')
    .description(
      "issue a client token: prints the token for the client and the line for every node's tokens file",
    )
    .argument('<identity>', 'the identity the token proves')
    .action((identity: string) => {
      try {
        const { token, line } = issueToken(identity);
        process.stdout.write(
          `# the client's token (shown once; pass it as connect({ token })):\n${token}\n` +
            `# add this line to the --tokens-file of every node:\n${line}\n`,
        );
      } catch (error) {
        process.stderr.write(`tmem token: ${(error as Error).message}\n`);
        process.exitCode = 1;
      }
    });
  program
    .command('status')
    .description(
      'show the members of a cluster: role, state version, lease, partitions, pages, memory and hit ratios; ' +
        'against nodes with --tokens-file, set TMEM_TOKEN to a token of one of their --admin-identities',
    )
    .option(
      '-s, --seed <url>',
      `node to ask for the cluster state; repeat or comma-separate to try several in order (default: ${DEFAULT_STATUS_SEED})`,
      (text: string, previous?: string[]) => collectUrls(text, previous ?? []),
    )
    .option('--json', 'print the status as JSON instead of a table')
    .option('--timeout-ms <ms>', 'budget of each connection', positiveInt, DEFAULT_STATUS_TIMEOUT_MS)
    .option('--tls-ca <file>', TLS_CA_HELP)
    .action((options: StatusCommandOptions) => runStatus(options));
  return program;
}

await buildCli().parseAsync(process.argv);
