import {
  BadPageSizeError,
  ErrorCode,
  ProtocolError,
  checkIndex,
  pageChecksum,
  toOidBytes,
  type Accepted,
  type Hit,
  type Miss,
  type ObjectId,
  type Refused,
  type PoolKind,
  type Compression,
} from '@tmem/protocol';
import type { RunMany } from './page-batch.ts';
import type { ReplyTo, RoutedRequest } from './requests.ts';

/** A page's bytes: a Uint8Array (a Buffer is one), an ArrayBuffer, or any view of one (DataView, typed arrays). */
export type PageData = Uint8Array | ArrayBuffer | ArrayBufferView;

/** One page to store with `putMany`. */
export interface PageEntry {
  oid: ObjectId;
  index: number;
  /** Exactly the pool's page size; copied at the call, so the caller may reuse it at once. */
  page: PageData;
}

/** One handle to read with `getMany`. */
export interface PageHandle {
  oid: ObjectId;
  index: number;
}

/** A pool of pages on the cluster. Every op validates its arguments before anything is sent. */
export interface Pool {
  /** The pool id the cluster assigned. */
  readonly id: number;
  /** Ephemeral pages may vanish at any time; persistent puts may be refused but accepted pages stay. */
  readonly kind: PoolKind;
  /** Bytes in every page of this pool. */
  readonly pageSize: number;
  /** How the nodes store its pages ('lz4'), or undefined: as written. Pages read back are the same either way. */
  readonly compression: Compression | undefined;
  /** The UUID of the shared pool this handle joined, or undefined for a private pool. */
  readonly shared: string | undefined;
  /**
   * Stores a copy of `page` (exactly pageSize bytes; the caller may reuse its buffer at once). Resolves true
   * when accepted, false when refused (the node is full; for a persistent page also when not enough owners
   * could store a copy): refused is an answer, and any older page at the handle is gone too.
   */
  put(oid: ObjectId, index: number, page: PageData): Promise<boolean>;
  /**
   * Reads a page into a new array the caller owns; null on a miss. Every page is checked against the checksum
   * it was put with: a corrupt ephemeral page reads as a miss; for a persistent page the other owners' copies
   * are read, and the read rejects with ChecksumError when none is good. Rejects with DataLostError when every
   * copy of an accepted persistent page was lost.
   */
  get(oid: ObjectId, index: number): Promise<Uint8Array | null>;
  /**
   * Stores many pages at once: results in entry order, true accepted, false refused. Every entry is validated
   * before anything is sent. Rejects with the first failure (a timeout, a lost connection): the other entries
   * may have been applied or not, like any op in doubt.
   */
  putMany(entries: readonly PageEntry[]): Promise<boolean[]>;
  /** Reads many pages at once: results in handle order, each page or null on a miss. Rejects like `get`. */
  getMany(handles: readonly PageHandle[]): Promise<(Uint8Array | null)[]>;
  /** Removes one page; resolves even when nothing was there. */
  flushPage(oid: ObjectId, index: number): Promise<void>;
  /**
   * Removes every page of an object from every member of the cluster (each flushes what it holds); resolves
   * once all have, even when nothing was there.
   */
  flushObject(oid: ObjectId): Promise<void>;
  /**
   * Destroys the pool and its pages on every member; later ops on it reject with UnknownPoolError. Retried while
   * no coordinator can commit it, but not after a lost connection. For a shared pool: leaves it (the objects
   * this identity put to last are flushed on every member; the pool is destroyed when its last sharer leaves).
   */
  destroy(): Promise<void>;
}

/** What the client tells its pools about a pool. */
export interface PoolInfo {
  id: number;
  kind: PoolKind;
  pageSize: number;
  compression?: Compression;
  /** A shared pool's UUID (absent: private). */
  shared?: string;
  /** The cluster that created the pool; its ops fail with ClusterChangedError in any other. */
  clusterId?: string;
  /** Version of the cluster state that created the pool (PoolCreated.version); absent from older nodes. */
  createdVersion?: number;
}

/** How an op is run by the client. */
export interface ExecuteOptions {
  /**
   * True for ops that are safe to send again after a lost connection. Topology answers (STALE_STATE,
   * NOT_SERVING, NO_COORDINATOR) are retried either way: the op was not applied.
   */
  retry: boolean;
  /**
   * Retry a lost connection only when the op was never sent (`details.sent === false`). For writes: one that
   * reached a node may have been applied, and sending it again could apply it twice, around a concurrent
   * flush (the application would see the page, see it flushed, then see it back). Such an op fails with
   * ConnectionLostError instead: in doubt.
   */
  onlyUnsent?: boolean;
  /** The pool's page size, for batch accounting. */
  pageSize?: number;
  /** The cluster the op's pool belongs to: in another one the op fails with ClusterChangedError. */
  clusterId?: string;
  /** When the op gives up, on the `now` clock; absent: `timeoutMs` from the call. */
  deadline?: number;
  /**
   * Kind of the pool of a page op: persistent pages are placed on the pool's ready owners, and a get reads
   * another owner's copy when the primary cannot be reached or its copy is corrupt. Absent: ephemeral.
   */
  kind?: PoolKind;
  /**
   * Version of the cluster state that created the op's pool: a view older than it does not show the pool yet
   * (the client refreshes), a view at least as new that lacks it means the pool is gone.
   */
  createdVersion?: number;
}

/** Runs one request on the member(s) that serve it, with the client's timeout and retry policy. */
export type Execute = <R extends RoutedRequest>(request: R, options: ExecuteOptions) => Promise<ReplyTo<R>>;

/**
 * An object id as bytes the client owns: ops are encoded when their batch leaves, which may be after the
 * caller has reused its buffer.
 */
function ownedOid(oid: ObjectId): Uint8Array<ArrayBuffer> {
  const bytes = toOidBytes(oid);
  // A string's bytes are already a fresh array; only the caller's own bytes need a copy.
  return typeof oid === 'string' ? (bytes as Uint8Array<ArrayBuffer>) : new Uint8Array(bytes);
}

type PutRequest = Extract<RoutedRequest, { t: 'put' }>;
type GetRequest = Extract<RoutedRequest, { t: 'get' }>;

/** The bytes of a page given as a Uint8Array (or Buffer), an ArrayBuffer or any ArrayBuffer view. */
export function pageBytes(page: unknown): Uint8Array | undefined {
  if (page instanceof Uint8Array) return page;
  if (page instanceof ArrayBuffer || page instanceof SharedArrayBuffer) return new Uint8Array(page);
  if (ArrayBuffer.isView(page)) return new Uint8Array(page.buffer, page.byteOffset, page.byteLength);
  return undefined;
}

/** What a value is, for an error message: `null`, `string`, `Array`, ... rather than just "object". */
function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value !== 'object') return typeof value;
  return value.constructor?.name ?? 'object';
}

function isAccepted(reply: Accepted | Refused): boolean {
  return reply.t === 'accepted';
}

/** Creates the Pool handle for a pool the cluster created; `runMany` carries putMany and getMany. */
export function createPoolHandle(info: PoolInfo, execute: Execute, runMany: RunMany): Pool {
  const { id, kind, pageSize, clusterId, compression, createdVersion } = info;
  const inCluster = clusterId === undefined ? {} : { clusterId };
  const pageOp: ExecuteOptions = {
    retry: true,
    pageSize,
    kind,
    ...inCluster,
    ...(createdVersion === undefined ? {} : { createdVersion }),
  };
  const writeOp: ExecuteOptions = { ...pageOp, onlyUnsent: true };

  function ownedPage(page: unknown): Uint8Array<ArrayBuffer> {
    const bytes = pageBytes(page);
    if (bytes === undefined || bytes.length !== pageSize) {
      throw new BadPageSizeError(
        `page must be ${pageSize} bytes (the pool's page size) as a Uint8Array, Buffer, ArrayBuffer or typed-array view; got ${bytes?.length ?? describeValue(page)}`,
        { details: { pageSize, length: bytes?.length } },
      );
    }
    // A copy, like the oid: `new Uint8Array(x)` copies even when x is a Buffer, whose slice() would not.
    return new Uint8Array(bytes);
  }

  /** The page a get's reply carries, as an array the caller owns; null on a miss. */
  function pageOf(reply: Hit | Miss): Uint8Array | null {
    if (reply.t === 'miss') return null;
    if (reply.page.length !== pageSize) {
      throw new ProtocolError(
        ErrorCode.InvalidFrame,
        `node returned a page of ${reply.page.length} bytes from a pool of ${pageSize}-byte pages`,
      );
    }
    // A copy: the decoded page is a view into the reply frame, shared with the other pages of its batch;
    // handing it out would keep that whole frame alive for as long as the caller keeps one page.
    return new Uint8Array(reply.page);
  }

  return {
    id,
    kind,
    pageSize,
    compression,
    shared: info.shared,
    async put(oid, index, page) {
      const owned = ownedPage(page);
      // Computed at the call: nodes check it on every copy and return it with every hit, so corruption anywhere
      // after this point, on the wire or in a node's memory, is detected.
      const sum = pageChecksum(owned);
      const reply = await execute(
        { t: 'put', pool: id, oid: ownedOid(oid), index: checkIndex(index), page: owned, sum },
        writeOp,
      );
      return isAccepted(reply);
    },
    async get(oid, index) {
      const reply = await execute(
        { t: 'get', pool: id, oid: ownedOid(oid), index: checkIndex(index) },
        pageOp,
      );
      return pageOf(reply);
    },
    async putMany(entries) {
      // Every entry is validated (and copied) before anything is sent.
      const requests: PutRequest[] = Array.from(entries, (entry) => {
        const owned = ownedPage(entry.page);
        return {
          t: 'put' as const,
          pool: id,
          oid: ownedOid(entry.oid),
          index: checkIndex(entry.index),
          page: owned,
          sum: pageChecksum(owned),
        };
      });
      return runMany(requests, writeOp, isAccepted);
    },
    async getMany(handles) {
      const requests: GetRequest[] = Array.from(handles, (handle) => ({
        t: 'get' as const,
        pool: id,
        oid: ownedOid(handle.oid),
        index: checkIndex(handle.index),
      }));
      return runMany(requests, pageOp, pageOf);
    },
    async flushPage(oid, index) {
      await execute({ t: 'flushPage', pool: id, oid: ownedOid(oid), index: checkIndex(index) }, writeOp);
    },
    async flushObject(oid) {
      await execute({ t: 'flushObject', pool: id, oid: ownedOid(oid) }, pageOp);
    },
    async destroy() {
      // Not retried after a lost connection: had the first attempt destroyed the pool, the retry would fail
      // with UNKNOWN_POOL.
      await execute({ t: 'destroyPool', pool: id }, { retry: false, ...inCluster });
    },
  };
}
