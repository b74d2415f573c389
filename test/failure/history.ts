/**
 * A history recorder and checker for tmem workloads under failure injection.
 *
 * ## Recording
 * `createHistory()` gives a recorder. A workload calls `invoke(op)` just before it sends an op and `ok(result)` or
 * `fail(error)` on the returned handle when the op settles. Every record carries the client, the pool kind, the
 * handle (pool, object id, index; `key` is `pool/oid/index` as a string), the op type, the value a put writes,
 * the invocation and completion times, and the outcome. Times come from one logical clock, a counter shared by
 * every op of the recorder: the workload runs in one process, so the order of the calls is the real-time order.
 *
 * Every put writes a unique value id (`nextValueId()`), embedded in its page by `pageWithValue` together with a
 * checksum of the rest of the page, so `valueOf` tells which put a page came from, and detects a torn or corrupt
 * page instead of misreading it.
 *
 * Outcomes: put → accepted | refused; get → hit(valueId) | miss | corrupt; flushes and destroy → ok. A failure
 * whose code says the op is in doubt (TIMEOUT, CONNECTION_LOST, CLIENT_CLOSED, or an error without a code) is
 * `indeterminate`; any other code is `error(code)`. An op still pending when the history is read is indeterminate
 * too, with no completion time.
 *
 * ## Checking
 * `checkHistory(history, { replication, failedNodes })` checks each handle on its own, against the ops that can
 * touch it: puts, gets and page flushes of that handle, object flushes of its object, destroys of its pool. Op A
 * *precedes* op B iff A completed before B was invoked; otherwise they are concurrent and may be ordered either
 * way. A single register per handle is the model, with these effects:
 * - an accepted put stores its value; a refused put removes whatever was there (put-put-get coherency: a refused
 *   duplicate put never leaves the old page readable), though gets concurrent with it may see its value first
 *   (the primary stores before the replicas refuse); flushes and destroy remove;
 * - a get observes the state; an exclusive get (private ephemeral pools by default, `exclusiveGets` on the op
 *   says otherwise) also removes the page it returns;
 * - an ephemeral page may vanish at any instant (eviction, a node leaving), so an ephemeral miss is always legal;
 *   a persistent page is never evicted.
 *
 * Each op takes effect at one instant inside its window. An op without a definite answer (indeterminate, or an
 * error: a client retries on a lost connection, so an earlier attempt may have been applied before the error)
 * may take effect at any instant after its invocation, even after its recorded completion (a timed-out put may
 * still land later), or never, and an in-doubt put may have been stored, refused (removing the old page, even
 * after a get saw its value), or lost. Its window is [invokedAt, ∞).
 *
 * The checks, every one sound (it reports only what no ordering of the ops inside their windows explains):
 * - `phantom`: a get returns a value that was never put on this handle, or whose put was invoked after the get
 *   completed.
 * - `corrupt`: a get returns a page whose checksum does not match (torn, truncated, bit-flipped).
 * - `refused-read`: a get returns the value of a refused put that completed before the get was invoked. (A get
 *   concurrent with the refused put may see it: the primary stores the page before its replicas refuse.)
 * - `stale-read`, `read-after-flush`, `resurrection`: a get returns value v after v was certainly gone. Let
 *   `seen(v)` be the earliest instant v is known to have been stored: the completion of v's put if accepted, or
 *   of any get that returned v. If an op E on the handle has a definite answer, was invoked after `seen(v)` and
 *   completed before the get was invoked, and E leaves the handle holding something other than v, then v was
 *   overwritten or removed before the get began and, its value id being unique, can never come back. E is an
 *   accepted or refused put of another value (`stale-read`), a flush or destroy (`read-after-flush`), a get that
 *   returned another value (`stale-read`: two observers disagree on the order of two writes) or a get that
 *   missed (`resurrection`: get-get coherency).
 * - `duplicate-exclusive-hit`: two exclusive gets return the same value; the first one removed it.
 * - `lost-write` (persistent only): a get misses although the handle certainly held a page before and nothing
 *   could have removed it since. The evidence is every accepted put, and every get of a non-exclusive pool that
 *   returned a value, that completed before the get was invoked; the miss is legal only if some op that can
 *   remove (a flush or destroy, a refused or in-doubt put, an exclusive get that hit or is in doubt) can be
 *   placed after all the evidence and before the get: it was invoked before the get completed and its window
 *   ends after the latest evidence was invoked. This holds whatever the failures: past R failed owners the
 *   contract answers with DATA_LOST, never a miss.
 * - `unexpected-data-lost`: a DATA_LOST error from a persistent get while fewer than `replication` nodes failed
 *   (checked only when `replication` is given), or from an ephemeral get at all (an ephemeral page that is gone
 *   is a miss).
 * - `not-converged`: about the convergence check, gets marked with `finalRound` (1, 2, ...) that a workload
 *   issues once every fault is healed, the cluster has settled and no other op is running. Such a get must have
 *   a definite answer (a hit, a miss, or DATA_LOST, which `unexpected-data-lost` judges), and each round must
 *   agree with the one before: a non-exclusive get returns what the previous round returned, an exclusive get
 *   misses (the previous round took the page). Convergence means in-doubt ops have settled by the first round,
 *   so only a definite op overlapping the two rounds excuses a difference. Every other check applies to final
 *   gets as to any get, so round 1 must also agree with the history (no lost write, no stale value).
 *
 * What it does NOT detect:
 * - anomalies that only a search over every combined ordering finds (full linearizability checking is
 *   NP-complete): each get is judged against the certain facts above, not against the choices other gets force
 *   on concurrent writes. For instance two overlapping observers that disagree on the order of two concurrent
 *   puts pass, while two sequential ones that disagree are caught.
 * - a refused put's value seen by a get concurrent with that put (allowed by design, see above);
 * - anything about errors other than DATA_LOST (availability) or about liveness, except for final-round gets;
 * - ephemeral eviction policy (LRU, weights, caps), statistics, isolation, the atomicity of an object flush
 *   across indices, and which nodes held a page (DATA_LOST past `replication` failures is taken as legitimate).
 * - a miss after an in-doubt flush, however late: the flush may still land, so the checker cannot blame the miss.
 *
 * An in-doubt op takes effect at most once: a retried put whose first attempt was seen, then flushed, and whose
 * second attempt lands again is reported (read-after-flush), as the application sees flushed data come back.
 *
 * Cost: O(n²) per handle in the ops touching that handle.
 */

/** The two kinds of pool; only persistent pages are guaranteed to stay. */
export type PoolKind = 'ephemeral' | 'persistent';

/** The op types the checker understands. */
export type OpType = 'put' | 'get' | 'flushPage' | 'flushObject' | 'destroyPool';

/** What every op says about its target. */
interface OpTarget {
  /** Which client issued the op (for reports only). */
  client: string;
  /** The kind of the op's pool. */
  poolKind: PoolKind;
  /** The pool id, as a string. */
  pool: string;
  /**
   * Whether a get from this pool removes the page it returns (contract invariant 4).
   * @default true for an ephemeral pool (private pools; pass false for a shared one), false for a persistent one
   */
  exclusiveGets?: boolean;
  /**
   * Marks a get of the convergence check (1 for the first round of reads after every fault was healed, 2 for
   * the next...); see `not-converged` in the module comment.
   */
  finalRound?: number;
}

/** A put of one page: `valueId` is unique across the history and embedded in the page by `pageWithValue`. */
export interface PutOp extends OpTarget {
  type: 'put';
  /** The object id, as a string (hex for binary ids). */
  oid: string;
  index: number;
  valueId: number;
}

/** A get of one page. */
export interface GetOp extends OpTarget {
  type: 'get';
  oid: string;
  index: number;
}

/** A flush of one page. */
export interface FlushPageOp extends OpTarget {
  type: 'flushPage';
  oid: string;
  index: number;
}

/** A flush of every index of one object. */
export interface FlushObjectOp extends OpTarget {
  type: 'flushObject';
  oid: string;
}

/** A destroy of a whole pool. */
export interface DestroyPoolOp extends OpTarget {
  type: 'destroyPool';
}

/** An op as the workload describes it at invocation. */
export type OpInput = PutOp | GetOp | FlushPageOp | FlushObjectOp | DestroyPoolOp;

/** How an op ended. */
export type Outcome =
  | { kind: 'accepted' }
  | { kind: 'refused' }
  | { kind: 'hit'; valueId: number }
  | { kind: 'miss' }
  | { kind: 'corrupt' }
  | { kind: 'ok' }
  | { kind: 'error'; code: string }
  /** The op may or may not have taken effect; `code` is why (TIMEOUT, CONNECTION_LOST, PENDING...). */
  | { kind: 'indeterminate'; code: string };

/** The kinds of outcome. */
export type OutcomeKind = Outcome['kind'];

/** One recorded op. */
export type OpRecord = OpInput & {
  /** Unique within the history, in invocation order. */
  id: number;
  /** `pool/oid/index` for page ops, `pool/oid` for an object flush, `pool` for a destroy. */
  key: string;
  /** Logical time of the invocation. */
  invokedAt: number;
  /** Logical time of the completion; absent while (or if forever) pending. */
  completedAt?: number;
  outcome: Outcome;
};

/** A whole recorded history, in invocation order. */
export type History = readonly OpRecord[];

/** What `ok` takes for each op type: accepted for a put, the page or null (miss) for a get, nothing otherwise. */
export interface OpResults {
  put: boolean;
  get: Uint8Array | null;
  flushPage: void;
  flushObject: void;
  destroyPool: void;
}

/** An invoked op, waiting for its outcome. Settling it twice throws: that is a bug in the workload. */
export interface PendingOp<T> {
  readonly id: number;
  /** The op answered: a put's accepted flag, a get's page (null on a miss), nothing for flushes and destroy. */
  ok(result: T): void;
  /** The op failed; in-doubt codes make it indeterminate, others an error. */
  fail(error: unknown): void;
}

/** Records ops from one process with a logical clock. */
export interface HistoryRecorder {
  /** Records the invocation of `op`; call just before sending it. */
  invoke<O extends OpInput>(op: O): PendingOp<OpResults[O['type']]>;
  /** A fresh value id for a put, unique within this recorder (starts at 1). */
  nextValueId(): number;
  /** A snapshot of the history so far; pending ops appear indeterminate (code PENDING) without a completion. */
  ops(): OpRecord[];
  /** A snapshot of the ops invoked and not settled yet (cheap: a fault injector polls it to strike mid-write). */
  pending(): OpRecord[];
}

/** Failure codes after which an op may or may not have taken effect. */
export const IN_DOUBT_CODES: ReadonlySet<string> = new Set(['TIMEOUT', 'CONNECTION_LOST', 'CLIENT_CLOSED']);

/** The error code of a persistent get whose every copy was lost. */
export const DATA_LOST = 'DATA_LOST';

const HEADER_BYTES = 8;

/** The smallest page that can carry a value id and its checksum. */
export const MIN_VALUE_PAGE_BYTES = HEADER_BYTES;

/** FNV-1a over the page except its checksum field (bytes 4..8). */
function pageChecksum(page: Uint8Array): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < page.length; i++) {
    if (i >= 4 && i < HEADER_BYTES) continue;
    hash = Math.imul(hash ^ (page[i] as number), 0x01000193);
  }
  return hash >>> 0;
}

/**
 * A page of `pageSize` bytes that carries `valueId` (u32, little-endian, bytes 0..4) and a checksum of every
 * other byte (bytes 4..8). The rest is pseudo-random bytes seeded by the value id, so the page is never
 * same-filled, differs from every other value's page everywhere, and a page torn from two values fails the
 * checksum.
 */
export function pageWithValue(pageSize: number, valueId: number): Uint8Array {
  if (!Number.isInteger(pageSize) || pageSize < HEADER_BYTES) {
    throw new RangeError(`page size ${pageSize} cannot carry a value; use at least ${HEADER_BYTES} bytes`);
  }
  if (!Number.isInteger(valueId) || valueId < 0 || valueId > 0xffffffff) {
    throw new RangeError(`value id ${valueId} is not a u32`);
  }
  const page = new Uint8Array(pageSize);
  const view = new DataView(page.buffer);
  view.setUint32(0, valueId, true);
  // xorshift32; the seed is never 0, which would be a fixed point.
  let x = (valueId ^ 0x9e3779b9) >>> 0 || 1;
  for (let i = HEADER_BYTES; i < pageSize; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    page[i] = x & 0xff;
  }
  view.setUint32(4, pageChecksum(page), true);
  return page;
}

/** The value id a page made by `pageWithValue` carries, or undefined if it is too short or fails its checksum. */
export function valueOf(page: Uint8Array): number | undefined {
  if (page.length < HEADER_BYTES) return undefined;
  const view = new DataView(page.buffer, page.byteOffset, page.byteLength);
  if (view.getUint32(4, true) !== pageChecksum(page)) return undefined;
  return view.getUint32(0, true);
}

function keyOf(op: OpInput): string {
  switch (op.type) {
    case 'destroyPool':
      return op.pool;
    case 'flushObject':
      return `${op.pool}/${op.oid}`;
    default:
      return `${op.pool}/${op.oid}/${op.index}`;
  }
}

function codeOfError(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'code' in error) {
    const code = error.code;
    if (typeof code === 'string') return code;
  }
  return undefined;
}

/** A new, empty history recorder. */
export function createHistory(): HistoryRecorder {
  const records: OpRecord[] = [];
  let clock = 0;
  let lastValueId = 0;
  const pending = new Set<number>();

  function settle(record: OpRecord, outcome: Outcome): void {
    if (!pending.delete(record.id)) {
      throw new Error(`op ${record.id} (${record.type} ${record.key}) settled twice; settle each op once`);
    }
    record.completedAt = ++clock;
    record.outcome = outcome;
  }

  return {
    invoke<O extends OpInput>(op: O): PendingOp<OpResults[O['type']]> {
      const record: OpRecord = {
        ...op,
        id: records.length,
        key: keyOf(op),
        invokedAt: ++clock,
        outcome: { kind: 'indeterminate', code: 'PENDING' },
      };
      records.push(record);
      pending.add(record.id);
      return {
        id: record.id,
        ok(result: OpResults[O['type']]): void {
          switch (record.type) {
            case 'put':
              settle(record, { kind: result === true ? 'accepted' : 'refused' });
              return;
            case 'get': {
              if (result === null || result === undefined) {
                settle(record, { kind: 'miss' });
                return;
              }
              const valueId = valueOf(result as Uint8Array);
              settle(record, valueId === undefined ? { kind: 'corrupt' } : { kind: 'hit', valueId });
              return;
            }
            default:
              settle(record, { kind: 'ok' });
          }
        },
        fail(error: unknown): void {
          const code = codeOfError(error);
          if (code === undefined) settle(record, { kind: 'indeterminate', code: 'UNKNOWN' });
          else if (IN_DOUBT_CODES.has(code)) settle(record, { kind: 'indeterminate', code });
          else settle(record, { kind: 'error', code });
        },
      };
    },
    nextValueId(): number {
      lastValueId += 1;
      if (lastValueId > 0xffffffff) throw new RangeError('value ids exhausted (u32)');
      return lastValueId;
    },
    ops(): OpRecord[] {
      return records.map((record) => ({ ...record, outcome: { ...record.outcome } }));
    },
    pending(): OpRecord[] {
      return [...pending].map((id) => {
        const record = records[id] as OpRecord;
        return { ...record, outcome: { ...record.outcome } };
      });
    },
  };
}

/** The kinds of contract violation the checker reports. */
export type AnomalyKind =
  | 'lost-write'
  | 'stale-read'
  | 'read-after-flush'
  | 'resurrection'
  | 'phantom'
  | 'corrupt'
  | 'refused-read'
  | 'duplicate-exclusive-hit'
  | 'unexpected-data-lost'
  | 'not-converged';

/** One contract violation. */
export interface Anomaly {
  kind: AnomalyKind;
  /** The handle key (`pool/oid/index`). */
  key: string;
  /** The ids of the ops involved: the offending get first, then its witnesses. */
  ops: number[];
  /** What happened, naming the ops. */
  message: string;
}

/** What the checker needs to know about the run. */
export interface CheckOptions {
  /**
   * The replication factor of the persistent pools. Without it, DATA_LOST from a persistent get is not judged.
   */
  replication?: number;
  /**
   * How many nodes failed (crashed, lost their memory) during the run.
   * @default 0
   */
  failedNodes?: number;
}

/** Counts of what was checked. */
export interface CheckStats {
  ops: number;
  /** Distinct page handles checked. */
  handles: number;
  byType: Record<OpType, number>;
  byOutcome: Record<OutcomeKind, number>;
  anomaliesByKind: Partial<Record<AnomalyKind, number>>;
}

/** The checker's verdict. */
export interface CheckResult {
  anomalies: Anomaly[];
  stats: CheckStats;
}

/** The object id field, which every record but a destroy has. */
interface Indexed {
  oid?: string;
}

function oidOf(op: OpRecord): string | undefined {
  return (op as Indexed).oid;
}

function isExclusive(op: OpRecord): boolean {
  return op.exclusiveGets ?? op.poolKind === 'ephemeral';
}

/** True when the op gave a definite answer; only then is its effect known to lie inside its window. */
function isDefinite(op: OpRecord): boolean {
  const kind = op.outcome.kind;
  return kind !== 'indeterminate' && kind !== 'error' && op.completedAt !== undefined;
}

/** The latest instant the op can take effect: its completion if definite, else never bounded. */
function windowEnd(op: OpRecord): number {
  return isDefinite(op) ? (op.completedAt as number) : Infinity;
}

/** Completion time for "completed before" tests: an unsettled op never completed. */
function completion(op: OpRecord): number {
  return op.completedAt ?? Infinity;
}

/** True when `op` can remove the page of its handle. */
function canRemove(op: OpRecord): boolean {
  switch (op.type) {
    case 'flushPage':
    case 'flushObject':
    case 'destroyPool':
      return true;
    case 'put':
      // A refused put removes the old page; an in-doubt one may have been refused.
      return op.outcome.kind !== 'accepted';
    case 'get':
      return isExclusive(op) && op.outcome.kind !== 'miss';
  }
}

function show(op: OpRecord): string {
  const outcome = op.outcome;
  let result: string = outcome.kind;
  if (outcome.kind === 'hit') result = `hit(${outcome.valueId})`;
  else if (outcome.kind === 'error' || outcome.kind === 'indeterminate')
    result = `${outcome.kind}(${outcome.code})`;
  const value = op.type === 'put' ? ` value ${op.valueId}` : '';
  const final = op.finalRound === undefined ? '' : ` (final round ${op.finalRound})`;
  const done = op.completedAt === undefined ? '∞' : String(op.completedAt);
  return `#${op.id} ${op.client} ${op.type}${value}${final} [${op.invokedAt}..${done}] → ${result}`;
}

/** Ops of one handle, with the puts by value id. */
interface HandleOps {
  key: string;
  ops: OpRecord[];
}

/**
 * Checks a history against the tmem contract; see the module comment for exactly what is and is not checked.
 * Throws if the history is malformed (two puts with the same value id): that is a bug in the workload.
 */
export function checkHistory(history: History | HistoryRecorder, options: CheckOptions = {}): CheckResult {
  const records =
    'ops' in history && typeof history.ops === 'function' ? history.ops() : (history as History);
  const failedNodes = options.failedNodes ?? 0;

  const putsByValue = new Map<number, OpRecord>();
  for (const op of records) {
    if (op.type !== 'put') continue;
    const other = putsByValue.get(op.valueId);
    if (other !== undefined) {
      throw new Error(
        `ops #${other.id} and #${op.id} both put value ${op.valueId}; give every put a fresh value id`,
      );
    }
    putsByValue.set(op.valueId, op);
  }

  const handles = groupByHandle(records);
  const anomalies: Anomaly[] = [];
  for (const handle of handles) checkHandle(handle, putsByValue, options.replication, failedNodes, anomalies);

  return { anomalies, stats: statsOf(records, handles.length, anomalies) };
}

/** Every page handle with the ops that touch it, including object flushes and pool destroys above it. */
function groupByHandle(records: History): HandleOps[] {
  const handles = new Map<string, HandleOps>();
  const wide: OpRecord[] = [];
  for (const op of records) {
    if (op.type === 'flushObject' || op.type === 'destroyPool') {
      wide.push(op);
      continue;
    }
    let handle = handles.get(op.key);
    if (handle === undefined) {
      handle = { key: op.key, ops: [] };
      handles.set(op.key, handle);
    }
    handle.ops.push(op);
  }
  for (const handle of handles.values()) {
    const first = handle.ops[0] as OpRecord;
    for (const op of wide) {
      if (op.pool !== first.pool) continue;
      if (op.type === 'flushObject' && op.oid !== oidOf(first)) continue;
      handle.ops.push(op);
    }
  }
  return [...handles.values()];
}

function checkHandle(
  handle: HandleOps,
  putsByValue: ReadonlyMap<number, OpRecord>,
  replication: number | undefined,
  failedNodes: number,
  anomalies: Anomaly[],
): void {
  const { key, ops } = handle;
  const report = (kind: AnomalyKind, involved: OpRecord[], message: string): void => {
    anomalies.push({ kind, key, ops: involved.map((op) => op.id), message });
  };
  const gets = ops.filter((op) => op.type === 'get');

  // Pass 1: hits that cannot be explained by any put at all. Their value tells nothing about the handle's
  // state, so later passes leave them out of their evidence.
  const suspect = new Set<number>();
  for (const get of gets) {
    const outcome = get.outcome;
    if (outcome.kind === 'corrupt') {
      report('corrupt', [get], `${show(get)} returned a page that fails its checksum`);
      suspect.add(get.id);
      continue;
    }
    if (outcome.kind === 'error' && outcome.code === DATA_LOST) {
      if (get.poolKind === 'ephemeral') {
        report('unexpected-data-lost', [get], `${show(get)}: an ephemeral page that is gone is a miss`);
      } else if (replication !== undefined && failedNodes < replication) {
        report(
          'unexpected-data-lost',
          [get],
          `${show(get)} with ${failedNodes} failed node(s), fewer than the replication factor ${replication}`,
        );
      }
      continue;
    }
    if (outcome.kind !== 'hit') continue;
    const put = putsByValue.get(outcome.valueId);
    if (put === undefined || put.key !== key) {
      const where = put === undefined ? 'never put' : `put on ${put.key} by #${put.id}`;
      report(
        'phantom',
        put === undefined ? [get] : [get, put],
        `${show(get)}: value ${outcome.valueId} ${where}`,
      );
      suspect.add(get.id);
    } else if (put.invokedAt > completion(get)) {
      report('phantom', [get, put], `${show(get)} before its put ${show(put)} was invoked`);
      suspect.add(get.id);
    } else if (put.outcome.kind === 'refused' && completion(put) < get.invokedAt) {
      report('refused-read', [get, put], `${show(get)} after ${show(put)}`);
      suspect.add(get.id);
    }
  }

  // seen(v): the earliest instant value v is known to have been stored (see the module comment).
  const seen = new Map<number, number>();
  const lower = (valueId: number, at: number): void => {
    seen.set(valueId, Math.min(seen.get(valueId) ?? Infinity, at));
  };
  for (const op of ops) {
    if (op.type === 'put' && op.outcome.kind === 'accepted') lower(op.valueId, windowEnd(op));
    if (op.type === 'get' && op.outcome.kind === 'hit' && !suspect.has(op.id)) {
      lower(op.outcome.valueId, completion(op));
    }
  }

  // Pass 2: values read after they were certainly gone.
  const firstExclusiveHit = new Map<number, OpRecord>();
  const byInvocation = [...gets].sort((a, b) => a.invokedAt - b.invokedAt);
  for (const get of byInvocation) {
    if (get.outcome.kind !== 'hit' || suspect.has(get.id)) continue;
    const valueId = get.outcome.valueId;
    const put = putsByValue.get(valueId) as OpRecord;
    if (isExclusive(get)) {
      const first = firstExclusiveHit.get(valueId);
      if (first !== undefined) {
        report('duplicate-exclusive-hit', [get, first], `${show(get)}, but ${show(first)} already took it`);
        continue;
      }
      firstExclusiveHit.set(valueId, get);
    }
    const since = seen.get(valueId) ?? Infinity;
    const witness = goneBefore(ops, get, put, valueId, since, suspect);
    if (witness === undefined) continue;
    const [kind, why] = witness.type === 'get' ? witnessGetKind(witness) : witnessWriteKind(witness);
    report(kind, [get, put, witness], `${show(get)}, but ${show(witness)} ${why} after ${show(put)}`);
  }

  // Pass 3: persistent misses that nothing can explain.
  for (const get of gets) {
    if (get.outcome.kind !== 'miss' || get.poolKind !== 'persistent') continue;
    const evidence = ops.filter(
      (op) =>
        op.id !== get.id &&
        completion(op) < get.invokedAt &&
        ((op.type === 'put' && op.outcome.kind === 'accepted') ||
          (op.type === 'get' && op.outcome.kind === 'hit' && !isExclusive(op) && !suspect.has(op.id))),
    );
    if (evidence.length === 0) continue;
    let latest = evidence[0] as OpRecord;
    for (const op of evidence) if (op.invokedAt > latest.invokedAt) latest = op;
    const explained = ops.some(
      (op) =>
        op.id !== get.id &&
        canRemove(op) &&
        op.invokedAt < completion(get) &&
        windowEnd(op) > latest.invokedAt,
    );
    if (!explained) {
      report(
        'lost-write',
        [get, latest],
        `${show(get)}, but ${show(latest)} and nothing can have removed it`,
      );
    }
  }

  checkConvergence(ops, gets, report);
}

/** A get's answer as the convergence check compares it: the value, a miss, or the error code. */
function answerOf(get: OpRecord): string | undefined {
  const outcome = get.outcome;
  switch (outcome.kind) {
    case 'hit':
      return `hit(${outcome.valueId})`;
    case 'miss':
      return 'miss';
    case 'error':
      return outcome.code === DATA_LOST ? DATA_LOST : undefined;
    default:
      return undefined;
  }
}

/** Pass 4 (`not-converged`): final-round gets answer, and each round agrees with the one before. */
function checkConvergence(
  ops: readonly OpRecord[],
  gets: readonly OpRecord[],
  report: (kind: AnomalyKind, involved: OpRecord[], message: string) => void,
): void {
  const finals = gets.filter((op) => op.finalRound !== undefined).sort((a, b) => a.invokedAt - b.invokedAt);
  for (const get of finals) {
    if (answerOf(get) === undefined && get.outcome.kind !== 'corrupt') {
      report('not-converged', [get], `${show(get)}: no definite answer after the faults were healed`);
    }
  }
  for (let i = 1; i < finals.length; i++) {
    const previous = finals[i - 1] as OpRecord;
    const next = finals[i] as OpRecord;
    const before = answerOf(previous);
    const after = answerOf(next);
    if (before === undefined || after === undefined) continue;
    if ((next.finalRound as number) <= (previous.finalRound as number)) continue;
    if (completion(previous) >= next.invokedAt) continue;
    const expected = isExclusive(previous) && before !== DATA_LOST ? 'miss' : before;
    if (after === expected) continue;
    // Only a definite op between the two rounds may have changed the handle: in-doubt ones settled before.
    const between = ops.find(
      (op) =>
        op.finalRound === undefined &&
        isDefinite(op) &&
        op.invokedAt < completion(next) &&
        completion(op) > previous.invokedAt,
    );
    if (between !== undefined) continue;
    report(
      'not-converged',
      [next, previous],
      `${show(next)}, but ${show(previous)} in the round before (expected ${expected})`,
    );
  }
}

/**
 * An op with a definite answer, invoked after `since` and completed before `get` was invoked, that leaves the
 * handle without `valueId`; undefined if there is none. Flushes are preferred as witnesses, then misses.
 */
function goneBefore(
  ops: readonly OpRecord[],
  get: OpRecord,
  put: OpRecord,
  valueId: number,
  since: number,
  suspect: ReadonlySet<number>,
): OpRecord | undefined {
  let best: OpRecord | undefined;
  let bestRank = Infinity;
  for (const op of ops) {
    if (op.id === get.id || op.id === put.id || !isDefinite(op)) continue;
    if (!(op.invokedAt > since && completion(op) < get.invokedAt)) continue;
    let rank: number;
    switch (op.type) {
      case 'flushPage':
      case 'flushObject':
      case 'destroyPool':
        rank = 0;
        break;
      case 'put':
        rank = 2;
        break;
      case 'get': {
        const outcome = op.outcome;
        if (outcome.kind === 'miss') rank = 1;
        else if (outcome.kind === 'hit' && outcome.valueId !== valueId && !suspect.has(op.id)) rank = 3;
        else continue;
        break;
      }
    }
    if (rank < bestRank) {
      best = op;
      bestRank = rank;
    }
  }
  return best;
}

function witnessGetKind(witness: OpRecord): [AnomalyKind, string] {
  return witness.outcome.kind === 'miss'
    ? ['resurrection', 'missed']
    : ['stale-read', 'had already seen another value'];
}

function witnessWriteKind(witness: OpRecord): [AnomalyKind, string] {
  if (witness.type === 'put') {
    return ['stale-read', witness.outcome.kind === 'accepted' ? 'overwrote it' : 'was refused, removing it,'];
  }
  return ['read-after-flush', 'removed it'];
}

function statsOf(records: History, handles: number, anomalies: readonly Anomaly[]): CheckStats {
  const byType: Record<OpType, number> = { put: 0, get: 0, flushPage: 0, flushObject: 0, destroyPool: 0 };
  const byOutcome: Record<OutcomeKind, number> = {
    accepted: 0,
    refused: 0,
    hit: 0,
    miss: 0,
    corrupt: 0,
    ok: 0,
    error: 0,
    indeterminate: 0,
  };
  for (const op of records) {
    byType[op.type] += 1;
    byOutcome[op.outcome.kind] += 1;
  }
  const anomaliesByKind: Partial<Record<AnomalyKind, number>> = {};
  for (const anomaly of anomalies) anomaliesByKind[anomaly.kind] = (anomaliesByKind[anomaly.kind] ?? 0) + 1;
  return { ops: records.length, handles, byType, byOutcome, anomaliesByKind };
}
