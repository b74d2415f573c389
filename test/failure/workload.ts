// The workload of the failure tests and the chaos script: several real clients hammering a small key space on
// an ephemeral and a persistent pool, every op recorded into a history for the checker.
//
// The hot key space is small on purpose, so every key is overwritten, read and flushed many times while a fault
// is in force: a lost or stale page shows up as a get that the history cannot explain. Every put writes a fresh
// value id (pageWithValue), so a get names the exact put it saw. Hot keys alone catch a lost page only when the
// next op on its key happens to be a get rather than an overwrite, so each client also keeps cold keys in its
// persistent pool: written once at the start, then only read (a preswap user's swapped-out pages). Every cold
// page on a node that fails is read again, so a lost one is always caught.
import { connect, type Pool, type TmemClient } from '@tmem/client';
import { waitFor } from '../harness/wait-for.ts';
import {
  createHistory,
  pageWithValue,
  type Anomaly,
  type CheckResult,
  type HistoryRecorder,
  type OpResults,
  type PendingOp,
  type PoolKind,
} from './history.ts';
import { seededRandom } from '../harness/random.ts';

/** Relative weights of the op types a worker picks from. */
export interface OpMix {
  put: number;
  get: number;
  flushPage: number;
  flushObject: number;
  /** A get of a cold key of the persistent pool. */
  coldGet: number;
}

/** Options of startWorkload. */
export interface WorkloadOptions {
  /** URLs clients connect through (the proxies of a proxied cluster). */
  seeds: readonly string[];
  /**
   * One entry per client: the local address it connects from (ProxiedCluster.clientAddress), or undefined to
   * let the system choose. @default three clients, system-chosen addresses
   */
  clientAddresses?: readonly (string | undefined)[];
  /** Ops each client keeps in flight at once, one per worker, so ops on one key overlap. @default 3 */
  workersPerClient?: number;
  /** Object ids per pool (`o0`, `o1`, ...). @default 4 */
  objects?: number;
  /**
   * Indexes per object: 0, 16, 32, ...: 16 apart, so each lies in its own stripe and partition, and the keys
   * spread over the ring. @default 4
   */
  indexesPerObject?: number;
  /** Cold keys per client (`cold0`, `cold1`, ... at index 0), persistent pool only. @default 16 */
  coldKeys?: number;
  /** @default 512 (the smallest page: the workload is about ops, not bytes) */
  pageSize?: number;
  /** Replication factor of the persistent pools. @default 2 */
  replication?: number;
  /** Timeout of every op (the client's timeoutMs). @default 3000 */
  timeoutMs?: number;
  /**
   * Pause of a worker between two ops, so the workload does not starve the nodes' heartbeats on a small machine
   * (a starved node looks like a failed one). @default 2
   */
  thinkMs?: number;
  /** Seeds the choice of ops, pools and keys (timing still differs between runs). @default 1 */
  seed?: number;
  /** @default { put: 40, get: 37, flushPage: 8, flushObject: 3, coldGet: 12 } */
  mix?: Partial<OpMix>;
}

/** One page handle of the key space (the same in every pool). */
export interface WorkloadKey {
  oid: string;
  index: number;
}

/** One client of the workload and the pools it owns. */
export interface WorkloadClient {
  /** `c0`, `c1`, ...: the client name in the history. */
  readonly name: string;
  readonly client: TmemClient;
  readonly pools: Readonly<Record<PoolKind, Pool>>;
}

/** A running workload. */
export interface Workload {
  readonly history: HistoryRecorder;
  readonly replication: number;
  readonly clients: readonly WorkloadClient[];
  /** The hot keys, the same in every pool. */
  readonly keys: readonly WorkloadKey[];
  /** The cold keys of every persistent pool. */
  readonly coldKeys: readonly WorkloadKey[];
  /** Ops settled so far, whatever their outcome. */
  settled(): number;
  /**
   * Resolves once `count` more ops have settled than when it was called: the workload made progress (ops that
   * time out count too, so this returns under any fault). Rejects after `timeoutMs`.
   */
  progress(count: number, timeoutMs?: number): Promise<void>;
  /** Stops issuing ops and resolves once every op in flight has settled. Idempotent. */
  stop(): Promise<void>;
  /**
   * The convergence check, after stop() and once faults are healed: `rounds` rounds of gets of every key of
   * every pool, one round after another, recorded with `finalRound` (see `not-converged` in history.ts).
   */
  finalReads(rounds?: number): Promise<void>;
  /** The pool kind of a pool id in the history (anomaly keys start with it). */
  poolKindOf(pool: string): PoolKind | undefined;
  /** Closes every client. Idempotent. */
  close(): Promise<void>;
}

const DEFAULT_MIX: OpMix = { put: 40, get: 37, flushPage: 8, flushObject: 3, coldGet: 12 };

/** Index spacing: one stripe (16 indexes) per key, so no two keys share a partition by construction. */
const STRIPE = 16;

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Connects the clients, creates each client's pools (one ephemeral, one persistent with `replication` copies:
 * the client has no way to open another client's pool, so each owns its pair and its workers share it), and
 * starts the workers. Resolves once every worker runs.
 */
export async function startWorkload(options: WorkloadOptions): Promise<Workload> {
  const addresses = options.clientAddresses ?? [undefined, undefined, undefined];
  const workersPerClient = options.workersPerClient ?? 3;
  const pageSize = options.pageSize ?? 512;
  const replication = options.replication ?? 2;
  const timeoutMs = options.timeoutMs ?? 3000;
  const thinkMs = options.thinkMs ?? 2;
  const seed = options.seed ?? 1;
  const mix: OpMix = { ...DEFAULT_MIX, ...options.mix };
  const mixTotal = mix.put + mix.get + mix.flushPage + mix.flushObject + mix.coldGet;
  const keys: WorkloadKey[] = [];
  for (let o = 0; o < (options.objects ?? 4); o++) {
    for (let i = 0; i < (options.indexesPerObject ?? 4); i++) keys.push({ oid: `o${o}`, index: i * STRIPE });
  }
  // Each cold key is its own object (index 0), so no flushObject of a hot object ever reaches it.
  const coldKeys: WorkloadKey[] = Array.from({ length: options.coldKeys ?? 16 }, (_, i) => ({
    oid: `cold${i}`,
    index: 0,
  }));
  const oids = [...new Set(keys.map((k) => k.oid))];

  const history = createHistory();
  const clients: WorkloadClient[] = [];
  const kinds = new Map<string, PoolKind>();
  let settledCount = 0;
  let stopping = false;
  let closing: Promise<void> | undefined;
  const workers: Promise<void>[] = [];

  try {
    for (const [i, localAddress] of addresses.entries()) {
      const client = await connect({
        seeds: [...options.seeds],
        identity: `workload-c${i}`,
        timeoutMs,
        ...(localAddress === undefined ? {} : { localAddress }),
      });
      // Registered before the pools, so a failure below still closes it.
      const entry = { name: `c${i}`, client, pools: {} as Record<PoolKind, Pool> };
      clients.push(entry);
      entry.pools.ephemeral = await client.createPool({ kind: 'ephemeral', pageSize });
      entry.pools.persistent = await client.createPool({ kind: 'persistent', pageSize, replication });
      for (const pool of Object.values(entry.pools)) kinds.set(String(pool.id), pool.kind);
    }
  } catch (error) {
    await Promise.all(clients.map((c) => c.client.close()));
    throw error;
  }

  /** Records `run`'s outcome on `op`; never throws, so a worker survives any failure. */
  async function settle<T>(op: PendingOp<T>, run: () => Promise<T>): Promise<void> {
    try {
      op.ok(await run());
    } catch (error) {
      op.fail(error);
    } finally {
      settledCount++;
    }
  }

  function target(client: WorkloadClient, kind: PoolKind, finalRound?: number) {
    return {
      client: client.name,
      poolKind: kind,
      pool: String(client.pools[kind].id),
      ...(finalRound === undefined ? {} : { finalRound }),
    };
  }

  async function get(client: WorkloadClient, kind: PoolKind, key: WorkloadKey, finalRound?: number) {
    const pool = client.pools[kind];
    const op = history.invoke({ ...target(client, kind, finalRound), type: 'get', ...key });
    await settle<OpResults['get']>(op, () => pool.get(key.oid, key.index));
  }

  async function put(client: WorkloadClient, kind: PoolKind, key: WorkloadKey): Promise<void> {
    const valueId = history.nextValueId();
    const page = pageWithValue(pageSize, valueId);
    const op = history.invoke({ ...target(client, kind), type: 'put', ...key, valueId });
    await settle<boolean>(op, () => client.pools[kind].put(key.oid, key.index, page));
  }

  /** One op picked by `random`: type by the mix, then pool kind and key uniformly. */
  async function oneOp(client: WorkloadClient, random: () => number): Promise<void> {
    const kind: PoolKind = random() < 0.5 ? 'ephemeral' : 'persistent';
    const key = keys[Math.floor(random() * keys.length)] as WorkloadKey;
    const pool = client.pools[kind];
    let pick = random() * mixTotal;
    if ((pick -= mix.put) < 0) {
      await put(client, kind, key);
    } else if ((pick -= mix.coldGet) < 0) {
      if (coldKeys.length === 0) return;
      await get(client, 'persistent', coldKeys[Math.floor(random() * coldKeys.length)] as WorkloadKey);
    } else if ((pick -= mix.get) < 0) {
      await get(client, kind, key);
    } else if ((pick -= mix.flushPage) < 0) {
      const op = history.invoke({ ...target(client, kind), type: 'flushPage', ...key });
      await settle<void>(op, () => pool.flushPage(key.oid, key.index));
    } else {
      const oid = oids[Math.floor(random() * oids.length)] as string;
      const op = history.invoke({ ...target(client, kind), type: 'flushObject', oid });
      await settle<void>(op, () => pool.flushObject(oid));
    }
  }

  async function worker(client: WorkloadClient, random: () => number): Promise<void> {
    while (!stopping) {
      await oneOp(client, random);
      if (thinkMs > 0 && !stopping) await pause(thinkMs);
    }
  }

  // The cold pages, before any worker starts: they are then only ever read.
  await Promise.all(clients.flatMap((client) => coldKeys.map((key) => put(client, 'persistent', key))));

  clients.forEach((client, c) => {
    for (let w = 0; w < workersPerClient; w++) {
      // Distinct streams per worker, fixed by the seed: the same seed issues the same ops in each worker.
      workers.push(worker(client, seededRandom(seed * 7919 + c * 131 + w)));
    }
  });

  const workload: Workload = {
    history,
    replication,
    clients,
    keys,
    coldKeys,
    settled: () => settledCount,
    async progress(count, progressTimeoutMs = 30_000) {
      const goal = settledCount + count;
      await waitFor(() => settledCount >= goal, {
        timeoutMs: progressTimeoutMs,
        what: `${count} more ops to settle (${settledCount} so far)`,
      });
    },
    async stop() {
      stopping = true;
      await Promise.all(workers);
    },
    async finalReads(rounds = 2) {
      if (!stopping) throw new Error('call stop() before finalReads(): final rounds run alone');
      for (let round = 1; round <= rounds; round++) {
        await Promise.all(
          clients.flatMap((client) => [
            ...(['ephemeral', 'persistent'] as const).flatMap((kind) =>
              keys.map((key) => get(client, kind, key, round)),
            ),
            ...coldKeys.map((key) => get(client, 'persistent', key, round)),
          ]),
        );
      }
    },
    poolKindOf: (pool) => kinds.get(pool),
    close() {
      stopping = true;
      closing ??= Promise.all(workers)
        .then(() => Promise.all(clients.map((c) => c.client.close())))
        .then(() => undefined);
      return closing;
    },
  };
  return workload;
}

/** The anomalies of a check, split by the kind of the pool each one is about. */
export function anomaliesByPoolKind(
  result: CheckResult,
  workload: Pick<Workload, 'poolKindOf'>,
): Record<PoolKind, Anomaly[]> {
  const split: Record<PoolKind, Anomaly[]> = { ephemeral: [], persistent: [] };
  for (const anomaly of result.anomalies) {
    const pool = anomaly.key.split('/')[0] ?? '';
    split[workload.poolKindOf(pool) ?? 'persistent'].push(anomaly);
  }
  return split;
}
