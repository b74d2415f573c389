import { describe, it, expect, vi } from 'vitest';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import {
  ClientFrame,
  DEFAULT_MAX_FRAME_BYTES,
  DEFAULT_PAGE_SIZE,
  ErrorCode,
  MAX_BATCH_OPS,
  MAX_IDENTITY_LENGTH,
  MAX_OID_BYTES,
  MAX_PAGE_SIZE,
  MIN_PAGE_SIZE,
  NodeFrame,
  PROTOCOL_VERSION,
  ProtocolError,
  U32_MAX,
  createCodec,
  zeroStoreCounters,
} from '../src/index.ts';
import type { ClusterState, NodeStats, PageOp, PageReply } from '../src/index.ts';

const codec = createCodec();
/** msgpackr alone: it writes every key it is given, where the fast encoder writes only those of the frame type. */
const referenceCodec = createCodec({ fastPath: false });
/** Packs anything, valid or not, the way a peer with its own msgpack library would. */
const raw = new Packr({ useRecords: false });
const utf8 = new TextEncoder();

const FRAME_ERROR_CODES: readonly string[] = [
  ErrorCode.MalformedFrame,
  ErrorCode.TruncatedFrame,
  ErrorCode.FrameTooLarge,
  ErrorCode.InvalidFrame,
];

function bytesOf(length: number, seed = 1): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(length);
  for (let i = 0; i < length; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

/** The code of the ProtocolError `fn` throws; fails the test if it returns or throws anything else. */
function protocolCode(fn: () => unknown): string {
  let thrown: unknown;
  try {
    fn();
  } catch (error) {
    thrown = error;
  }
  expect(thrown, 'expected a ProtocolError, but the call returned').toBeDefined();
  expect(thrown).toBeInstanceOf(ProtocolError);
  return (thrown as ProtocolError).code;
}

/**
 * Deep copy with every binary value as a plain Uint8Array, so Buffer and Uint8Array compare as bytes, and -0
 * as 0 (msgpack packs an integral -0 as the integer 0).
 */
function plain(value: unknown): unknown {
  if (Object.is(value, -0)) return 0;
  if (value instanceof Uint8Array) return new Uint8Array(value);
  if (Array.isArray(value)) return value.map(plain);
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  }
  return value;
}

// ---- hand-written msgpack, for encodings our encoder never produces (64-bit ints, float32) ----

function fixstr(s: string): Uint8Array {
  const b = utf8.encode(s);
  if (b.length > 31) throw new Error('fixstr only');
  return Uint8Array.from([0xa0 | b.length, ...b]);
}
function u64(n: bigint): Uint8Array {
  const b = new Uint8Array(9);
  b[0] = 0xcf;
  new DataView(b.buffer).setBigUint64(1, n);
  return b;
}
function i64(n: bigint): Uint8Array {
  const b = new Uint8Array(9);
  b[0] = 0xd3;
  new DataView(b.buffer).setBigInt64(1, n);
  return b;
}
function f32(n: number): Uint8Array {
  const b = new Uint8Array(5);
  b[0] = 0xca;
  new DataView(b.buffer).setFloat32(1, n);
  return b;
}
function f64(n: number): Uint8Array {
  const b = new Uint8Array(9);
  b[0] = 0xcb;
  new DataView(b.buffer).setFloat64(1, n);
  return b;
}
/** A msgpack map with string keys; each value is given as its encoded bytes. */
function rawMap(entries: Record<string, Uint8Array>): Uint8Array {
  const keys = Object.keys(entries);
  if (keys.length > 15) throw new Error('fixmap only');
  const parts: Uint8Array[] = [Uint8Array.of(0x80 | keys.length)];
  for (const k of keys) parts.push(fixstr(k), entries[k] as Uint8Array);
  return concat(...parts);
}
function concat(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// ---- one valid sample of every frame type ----

const oid = utf8.encode('inode:42');
const put = { t: 'put', id: 11, pool: 3, oid, index: 7, page: bytesOf(MIN_PAGE_SIZE) } as const;
const get = { t: 'get', id: 12, pool: 3, oid, index: 7 } as const;
const flushPage = { t: 'flushPage', id: 13, pool: 3, oid, index: 8 } as const;
const flushObject = { t: 'flushObject', id: 14, pool: 3, oid } as const;
const pageOps: PageOp[] = [put, get, flushPage, flushObject];

const clientSamples: ClientFrame[] = [
  { t: 'hello', id: 1, protocol: PROTOCOL_VERSION, identity: 'vm-17' },
  { t: 'newPool', id: 2, kind: 'ephemeral', pageSize: DEFAULT_PAGE_SIZE },
  { t: 'newPool', id: 3, kind: 'persistent', pageSize: MAX_PAGE_SIZE },
  { t: 'destroyPool', id: 4, pool: 9 },
  put,
  get,
  flushPage,
  flushObject,
  { t: 'stats', id: 15 },
  { t: 'batch', id: 16, ops: pageOps.map((op, i) => ({ ...op, id: 100 + i })) },
  { t: 'batch', id: 17, ops: [get], sv: 42 },
  { t: 'hello', id: 18, protocol: PROTOCOL_VERSION, identity: 'node-b', role: 'peer', nonce: 'n'.repeat(43) },
  { t: 'hello', id: 18, protocol: PROTOCOL_VERSION, identity: 'alice', token: 'alice.token' },
  {
    t: 'hello',
    id: 18,
    protocol: PROTOCOL_VERSION,
    identity: 'alice',
    session: '0123456789abcdef'.repeat(2),
  },
  { t: 'endSession', id: 30, session: 'f'.repeat(32) },
  { t: 'sessionsQuery', id: 31, sessions: [{ owner: 'alice', session: 'e'.repeat(32) }] },
  { t: 'peerAuth', id: 0, proof: 'p'.repeat(43) },
  { t: 'newPool', id: 19, kind: 'persistent', pageSize: DEFAULT_PAGE_SIZE, replication: 3 },
  { t: 'getState', id: 20, subscribe: true },
  { t: 'peer', id: 0, message: { type: 'heartbeat', term: 3 } },
  { t: 'propose', id: 21, change: { type: 'noop', changeId: 'c1' } },
  { ...put, id: 22, sum: 0xdeadbeef },
  { ...get, id: 23, replica: true },
  {
    t: 'replicate',
    id: 24,
    sv: 9,
    entries: [
      { pool: 3, oid, index: 7, version: 9 * 2 ** 21 + 1, page: bytesOf(DEFAULT_PAGE_SIZE, 1), sum: 7 },
      { pool: 3, oid, index: 8, version: 9 * 2 ** 21 + 2 },
      { pool: 3, oid, version: 9 * 2 ** 21 + 3 },
    ],
  },
  { t: 'fetch', id: 25, sv: 9, pool: 3, partitions: [0, 5, 1023] },
  { t: 'fetch', id: 26, sv: 9, pool: 3, partitions: [5], cursor: 77 },
  { t: 'peerGet', id: 27, sv: 9, pool: 3, oid, index: 7 },
  {
    t: 'handOff',
    id: 28,
    transition: 9,
    incarnation: 1_796_291_418_779,
    entries: [{ pool: 3, oid, index: 7, page: bytesOf(DEFAULT_PAGE_SIZE, 2), sum: 7 }],
  },
  { t: 'handOff', id: 29, transition: 9, incarnation: 1, entries: [], done: true },
];

const clusterState: ClusterState = {
  version: 7,
  term: 2,
  members: [
    { id: 'a', url: 'ws://127.0.0.1:1', incarnation: 1, capacityBytes: 2 ** 33 },
    { id: 'b', url: 'ws://127.0.0.1:2', incarnation: 5, capacityBytes: 1024 },
  ],
  pools: [
    { id: 3, kind: 'persistent', pageSize: 4096, owner: 'vm-17', replication: 2, compression: 'lz4' },
    { id: 9, kind: 'ephemeral', pageSize: 4096, owner: 'vm-17', replication: 1, session: 'a'.repeat(32) },
  ],
  nextPoolId: 4,
  partitionCount: 1024,
};

const stats: NodeStats = {
  nodeId: 'node-a',
  scope: 'node',
  // Above 2^32 on purpose: counters are not u32 and must survive the 64-bit encoding.
  capacityBytes: 2 ** 40,
  usedBytes: 123_456_789,
  recordBytes: 4_567_890,
  pools: 2,
  ephemeralPages: 10,
  persistentPages: 20,
  puts: 30,
  acceptedPuts: 25,
  refusedPuts: 5,
  duplicatePuts: 1,
  gets: 40,
  hits: 35,
  misses: 5,
  flushes: 3,
  evictions: 0,
  compressedPages: 3,
  compressedPageBytes: 3 * 4096,
  compressedBytes: 5000,
  compressedSlotBytes: 6144,
  incompressiblePuts: 1,
  corruptCompressedReads: 0,
  dedupSlots: 2,
  dedupedPages: 5,
  dedupSavedBytes: 5 * (4096 - 128),
  dedupHits: 6,
  dedupCollisions: 0,
};

const pageReplies: PageReply[] = [
  { t: 'ok', id: 100 },
  { t: 'accepted', id: 101 },
  { t: 'refused', id: 102, reason: 'full' },
  { t: 'hit', id: 103, page: bytesOf(MIN_PAGE_SIZE, 3) },
  { t: 'miss', id: 104 },
  { t: 'error', id: 105, code: ErrorCode.UnknownPool, message: 'no such pool', details: { pool: 9 } },
];

const nodeSamples: NodeFrame[] = [
  { t: 'welcome', id: 1, protocol: PROTOCOL_VERSION, nodeId: 'node-a' },
  { t: 'ok', id: 2 },
  { t: 'pool', id: 3, pool: 9, kind: 'persistent', pageSize: 4096 },
  { t: 'accepted', id: 4 },
  { t: 'refused', id: 5, reason: 'full' },
  { t: 'refused', id: 6, reason: 'frozen' },
  { t: 'refused', id: 7, reason: 'capped' },
  { t: 'refused', id: 8, reason: 'replicas' },
  { t: 'hit', id: 9, page: bytesOf(DEFAULT_PAGE_SIZE, 5) },
  { t: 'hit', id: 10, page: new Uint8Array(0) },
  { t: 'miss', id: 11 },
  { t: 'stats', id: 12, stats },
  {
    t: 'stats',
    id: 40,
    stats: {
      ...zeroStoreCounters(2 ** 30),
      nodeId: 'node-b',
      scope: 'identity',
      pools: 1,
      puts: 3,
      role: 'follower',
    },
  },
  { t: 'error', id: 13, code: ErrorCode.BadArgument, message: 'oid too long', details: { length: 300 } },
  { t: 'error', id: 0, code: ErrorCode.Internal, message: 'internal error on the node' },
  { t: 'batch', id: 14, replies: pageReplies },
  { t: 'batch', id: 15, replies: [] },
  { t: 'state', id: 16, state: clusterState, leaderId: 'a' },
  { t: 'state', id: 0, state: clusterState, leaderId: null },
  { t: 'changeResult', id: 17, ok: true, poolId: 3 },
  { t: 'changeResult', id: 18, ok: false, error: 'unknown-pool' },
  { t: 'hit', id: 19, page: bytesOf(DEFAULT_PAGE_SIZE, 5), sum: 0xffffffff },
  { t: 'replicated', id: 20, results: ['ok', 'full', 'unknown-pool', 'not-owner', 'corrupt'] },
  { t: 'fetched', id: 21, complete: true, entries: [{ pool: 3, oid, index: 1, version: 5 }], cursor: 9 },
  { t: 'fetched', id: 22, complete: false, entries: [], lost: [4] },
  { t: 'peerGot', id: 23, complete: true },
  { t: 'peerGot', id: 24, complete: false, lost: true, entry: { pool: 3, oid, version: 5 } },
  { t: 'handedOff', id: 25, stored: 3, skipped: 1 },
  { t: 'handedOff', id: 26, stored: 0, skipped: 0, behind: true },
  { t: 'sessionsLive', id: 27, live: [true, false] },
];

type Side = 'client' | 'node';
const decoders: Record<Side, (data: Uint8Array) => unknown> = {
  client: (d) => codec.decodeClientFrame(d),
  node: (d) => codec.decodeNodeFrame(d),
};
const allSamples: { side: Side; frame: ClientFrame | NodeFrame }[] = [
  ...clientSamples.map((frame) => ({ side: 'client' as const, frame })),
  ...nodeSamples.map((frame) => ({ side: 'node' as const, frame })),
];
const label = ({ side, frame }: { side: Side; frame: ClientFrame | NodeFrame }): string =>
  `${side} ${frame.t}#${frame.id}`;

describe('codec round trip', () => {
  it('the samples cover every frame type of both schemas', () => {
    const types = (frames: { t: string }[]) => new Set(frames.map((f) => f.t));
    expect(types(clientSamples)).toEqual(new Set(ClientFrame.options.map((o) => o.shape.t.value)));
    expect(types(nodeSamples)).toEqual(new Set(NodeFrame.options.map((o) => o.shape.t.value)));
    // Every op kind inside a batch, every reply kind inside a batch reply.
    const batch = clientSamples.find((f) => f.t === 'batch');
    expect(types(batch?.t === 'batch' ? batch.ops : [])).toEqual(new Set(pageOps.map((o) => o.t)));
    expect(types(pageReplies)).toEqual(new Set(['ok', 'accepted', 'refused', 'hit', 'miss', 'error']));
  });

  it.each(clientSamples.map((frame) => [`${frame.t}#${frame.id}`, frame] as const))(
    'client frame %s survives encode then decodeClientFrame',
    (_name, frame) => {
      const data = codec.encode(frame);
      expect(data).toBeInstanceOf(Uint8Array);
      expect(plain(codec.decodeClientFrame(data))).toEqual(plain(frame));
      // Also from a plain Uint8Array (a socket may hand over either).
      expect(plain(codec.decodeClientFrame(new Uint8Array(data)))).toEqual(plain(frame));
    },
  );

  it.each(nodeSamples.map((frame) => [`${frame.t}#${frame.id}`, frame] as const))(
    'node frame %s survives encode then decodeNodeFrame',
    (_name, frame) => {
      const data = codec.encode(frame);
      expect(data).toBeInstanceOf(Uint8Array);
      expect(plain(codec.decodeNodeFrame(data))).toEqual(plain(frame));
      expect(plain(codec.decodeNodeFrame(new Uint8Array(data)))).toEqual(plain(frame));
    },
  );

  it('a frame decodes from a view into the middle of a larger buffer', () => {
    const data = codec.encode(put);
    const backing = new Uint8Array(data.length + 64).fill(0xc1);
    backing.set(data, 32);
    const view = backing.subarray(32, 32 + data.length);
    expect(plain(codec.decodeClientFrame(view))).toEqual(plain(put));
  });

  it.each(allSamples.map((sample) => [label(sample), sample] as const))(
    '%s with a key its schema does not have is refused, not stripped',
    (_name, { side, frame }) => {
      // Written by msgpackr (the reference path), which sends every key it is given.
      const data = referenceCodec.encode({ ...frame, extra: 1 } as unknown as ClientFrame);
      expect(protocolCode(() => decoders[side](data))).toBe(ErrorCode.InvalidFrame);
    },
  );

  it('a key nested in a frame that its schema does not have is refused too', () => {
    const batch = clientSamples.find((f) => f.t === 'batch') as ClientFrame & { t: 'batch' };
    const op = { ...batch.ops[0], extra: 1 };
    const withOp = referenceCodec.encode({ ...batch, ops: [op] } as ClientFrame);
    expect(protocolCode(() => codec.decodeClientFrame(withOp))).toBe(ErrorCode.InvalidFrame);
    const state = nodeSamples.find((f) => f.t === 'state') as NodeFrame & { t: 'state' };
    const withPool = {
      ...state,
      state: {
        ...state.state,
        pools: [{ id: 1, kind: 'ephemeral', pageSize: 4096, owner: 'a', replication: 1, shared: 'x' }],
      },
    };
    expect(protocolCode(() => codec.decodeNodeFrame(referenceCodec.encode(withPool as NodeFrame)))).toBe(
      ErrorCode.InvalidFrame,
    );
  });

  it('client frames are not node frames and vice versa', () => {
    for (const t of ['hello', 'newPool', 'destroyPool', 'put', 'get', 'flushPage', 'flushObject'] as const) {
      const frame = clientSamples.find((f) => f.t === t) as ClientFrame;
      expect(protocolCode(() => codec.decodeNodeFrame(codec.encode(frame)))).toBe(ErrorCode.InvalidFrame);
    }
    for (const t of ['welcome', 'ok', 'pool', 'accepted', 'refused', 'hit', 'miss', 'error'] as const) {
      const frame = nodeSamples.find((f) => f.t === t) as NodeFrame;
      expect(protocolCode(() => codec.decodeClientFrame(codec.encode(frame)))).toBe(ErrorCode.InvalidFrame);
    }
    // `stats` and `batch` exist on both sides with different bodies.
    expect(protocolCode(() => codec.decodeNodeFrame(codec.encode({ t: 'stats', id: 1 })))).toBe(
      ErrorCode.InvalidFrame,
    );
    // The schemas are strict: a stats reply is not a stats request with a key to ignore.
    expect(protocolCode(() => codec.decodeClientFrame(codec.encode({ t: 'stats', id: 1, stats })))).toBe(
      ErrorCode.InvalidFrame,
    );
    expect(
      protocolCode(() => codec.decodeClientFrame(codec.encode({ t: 'batch', id: 1, replies: [] }))),
    ).toBe(ErrorCode.InvalidFrame);
  });

  it('an earlier encoded frame is not overwritten by later encodes (no shared output buffer)', () => {
    const first = codec.encode(put);
    const snapshot = Uint8Array.from(first);
    for (let i = 0; i < 50; i++) {
      codec.encode({ ...put, id: i, page: bytesOf(MAX_PAGE_SIZE, i) });
    }
    expect(Uint8Array.from(first)).toEqual(snapshot);
    expect(plain(codec.decodeClientFrame(first))).toEqual(plain(put));
  });

  it('a full batch of default-size pages fits the default frame limit', () => {
    const ops = Array.from({ length: MAX_BATCH_OPS }, (_, i) => ({
      ...put,
      id: i,
      index: i,
      page: new Uint8Array(DEFAULT_PAGE_SIZE),
    }));
    const data = codec.encode({ t: 'batch', id: 1, ops });
    expect(data.length).toBeLessThanOrEqual(DEFAULT_MAX_FRAME_BYTES);
    const decoded = codec.decodeClientFrame(data);
    expect(decoded.t === 'batch' && decoded.ops.length).toBe(MAX_BATCH_OPS);
  });
});

describe('decoded binary fields', () => {
  function binaries(frame: unknown): unknown[] {
    if (frame instanceof Uint8Array) return [frame];
    if (Array.isArray(frame)) return frame.flatMap(binaries);
    if (typeof frame === 'object' && frame !== null) return Object.values(frame).flatMap(binaries);
    return [];
  }

  it.each(['Buffer', 'Uint8Array'] as const)('are Uint8Arrays when the input is a %s', (kind) => {
    const wrap = (d: Uint8Array) => (kind === 'Buffer' ? Buffer.from(d) : new Uint8Array(d));
    const batch = clientSamples.find((f) => f.t === 'batch') as ClientFrame;
    const reply = nodeSamples.find((f) => f.t === 'batch' && f.replies.length > 0) as NodeFrame;
    const decoded = [
      codec.decodeClientFrame(wrap(codec.encode(put))),
      codec.decodeClientFrame(wrap(codec.encode(get))),
      codec.decodeClientFrame(wrap(codec.encode(flushObject))),
      codec.decodeClientFrame(wrap(codec.encode(batch))),
      codec.decodeNodeFrame(wrap(codec.encode({ t: 'hit', id: 1, page: bytesOf(MIN_PAGE_SIZE) }))),
      codec.decodeNodeFrame(wrap(codec.encode(reply))),
    ];
    const found = decoded.flatMap(binaries);
    // put: oid+page, get: oid, flushObject: oid, batch: 2+1+1+1, hit: page, batch reply: one hit page.
    expect(found).toHaveLength(2 + 1 + 1 + 5 + 1 + 1);
    for (const b of found) expect(b).toBeInstanceOf(Uint8Array);
    const p = decoded[0] as typeof put;
    expect(new Uint8Array(p.oid)).toEqual(oid);
    expect(new Uint8Array(p.page)).toEqual(put.page);
  });

  it('are views into the decoded bytes, as documented (callers copy what they keep)', () => {
    const data = new Uint8Array(codec.encode(put));
    const decoded = codec.decodeClientFrame(data);
    if (decoded.t !== 'put') throw new Error('expected a put');
    expect(decoded.page.buffer).toBe(data.buffer);
  });
});

describe('truncated frames', () => {
  it.each(allSamples.map((s) => [label(s), s] as const))(
    'every proper prefix of %s is TRUNCATED_FRAME',
    (_name, { side, frame }) => {
      const data = codec.encode(frame);
      const decode = decoders[side];
      const codes = new Map<string, number[]>();
      for (let n = 0; n < data.length; n++) {
        const code = protocolCode(() => decode(data.subarray(0, n)));
        codes.set(code, [...(codes.get(code) ?? []), n]);
      }
      expect([...codes.keys()]).toEqual([ErrorCode.TruncatedFrame]);
    },
  );

  it('a prefix that is a view into a longer buffer is still truncated (nothing reads past the view)', () => {
    const data = codec.encode(put);
    for (let n = 0; n < data.length; n += 7) {
      // The bytes after the view are the rest of the valid frame; reading them would "complete" it.
      const view = new Uint8Array(data).subarray(0, n);
      expect(protocolCode(() => codec.decodeClientFrame(view))).toBe(ErrorCode.TruncatedFrame);
    }
  });

  it('the empty frame is TRUNCATED_FRAME on both sides', () => {
    expect(protocolCode(() => codec.decodeClientFrame(new Uint8Array(0)))).toBe(ErrorCode.TruncatedFrame);
    expect(protocolCode(() => codec.decodeNodeFrame(new Uint8Array(0)))).toBe(ErrorCode.TruncatedFrame);
  });
});

describe('frame size limit', () => {
  const big = { ...put, page: bytesOf(MIN_PAGE_SIZE * 2) };

  it('decode rejects a frame over maxFrameBytes with FRAME_TOO_LARGE and names the sizes', () => {
    const small = createCodec({ maxFrameBytes: 128 });
    expect(small.maxFrameBytes).toBe(128);
    const data = codec.encode(big);
    let thrown: unknown;
    try {
      small.decodeClientFrame(data);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(ProtocolError);
    expect((thrown as ProtocolError).code).toBe(ErrorCode.FrameTooLarge);
    expect((thrown as ProtocolError).details).toMatchObject({ size: data.length, maxFrameBytes: 128 });
    expect(
      protocolCode(() => small.decodeNodeFrame(codec.encode({ t: 'hit', id: 1, page: bytesOf(512) }))),
    ).toBe(ErrorCode.FrameTooLarge);
  });

  it('the limit is inclusive on decode', () => {
    const data = codec.encode(big);
    const exact = createCodec({ maxFrameBytes: data.length });
    expect(plain(exact.decodeClientFrame(data))).toEqual(plain(big));
    const under = createCodec({ maxFrameBytes: data.length - 1 });
    expect(protocolCode(() => under.decodeClientFrame(data))).toBe(ErrorCode.FrameTooLarge);
  });

  it('the size is checked before parsing, so oversized garbage is FRAME_TOO_LARGE', () => {
    const small = createCodec({ maxFrameBytes: 16 });
    expect(protocolCode(() => small.decodeClientFrame(new Uint8Array(17).fill(0xd4)))).toBe(
      ErrorCode.FrameTooLarge,
    );
  });

  it('encode refuses to produce a frame over maxFrameBytes, inclusive limit', () => {
    const length = codec.encode(big).length;
    const small = createCodec({ maxFrameBytes: length - 1 });
    let thrown: unknown;
    try {
      small.encode(big);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(ProtocolError);
    expect((thrown as ProtocolError).code).toBe(ErrorCode.FrameTooLarge);
    expect((thrown as ProtocolError).details).toMatchObject({ size: length, maxFrameBytes: length - 1 });
    expect(createCodec({ maxFrameBytes: length }).encode(big).length).toBe(length);
    // A failed encode leaves the codec usable.
    expect(plain(small.decodeClientFrame(small.encode(get)))).toEqual(plain(get));
  });

  it('defaults to DEFAULT_MAX_FRAME_BYTES', () => {
    expect(createCodec().maxFrameBytes).toBe(DEFAULT_MAX_FRAME_BYTES);
    expect(createCodec({}).maxFrameBytes).toBe(DEFAULT_MAX_FRAME_BYTES);
  });
});

describe('malformed frames', () => {
  it('trailing bytes after a valid frame are MALFORMED_FRAME', () => {
    for (const { side, frame } of allSamples) {
      const data = codec.encode(frame);
      for (const tail of [[0x00], [0xc0], [0xc1], [0x81, 0xa1, 0x74, 0x01], [...data]]) {
        const withTail = concat(data, Uint8Array.from(tail));
        expect(
          protocolCode(() => decoders[side](withTail)),
          label({ side, frame }),
        ).toBe(ErrorCode.MalformedFrame);
      }
    }
  });

  it('trailing bytes on a large frame are rejected without serialising the decoded value', () => {
    // msgpackr's own trailing-bytes error JSON-stringifies the whole value: seconds of CPU for 16 MiB.
    const ops = Array.from({ length: 16 }, (_, i) => ({ ...put, id: i, page: bytesOf(MAX_PAGE_SIZE, i) }));
    const data = concat(codec.encode({ t: 'batch', id: 1, ops }), Uint8Array.of(0));
    const stringify = vi.spyOn(JSON, 'stringify');
    try {
      expect(protocolCode(() => codec.decodeClientFrame(data))).toBe(ErrorCode.MalformedFrame);
      expect(codec.peekRequestId(data)).toBe(0);
      expect(stringify).not.toHaveBeenCalled();
    } finally {
      stringify.mockRestore();
    }
  });

  it('bytes that are not msgpack are MALFORMED_FRAME', () => {
    // Unknown extension types, and two values where one is expected.
    for (const bytes of [
      [0xd4, 0x01, 0x00],
      [0xc7, 0x01, 0x05, 0x00],
      [0x00, 0x00],
    ]) {
      expect(protocolCode(() => codec.decodeClientFrame(Uint8Array.from(bytes)))).toBe(
        ErrorCode.MalformedFrame,
      );
      expect(protocolCode(() => codec.decodeNodeFrame(Uint8Array.from(bytes)))).toBe(
        ErrorCode.MalformedFrame,
      );
    }
    // msgpackr reads the never-used byte 0xc1 as a sentinel value, which no schema accepts.
    expect(protocolCode(() => codec.decodeClientFrame(Uint8Array.of(0xc1)))).toBe(ErrorCode.InvalidFrame);
  });

  it('deeply nested garbage is FRAME_TOO_COMPLEX, and the codec keeps working afterwards', () => {
    const deep = new Uint8Array(200_001).fill(0x91); // fixarray of one, nested 200k times
    deep[deep.length - 1] = 0xc0;
    expect(protocolCode(() => codec.decodeClientFrame(deep))).toBe(ErrorCode.FrameTooComplex);
    expect(codec.peekRequestId(deep)).toBe(0);
    expect(plain(codec.decodeClientFrame(codec.encode(put)))).toEqual(plain(put));
  });

  it('input that is not binary is MALFORMED_FRAME', () => {
    for (const input of ['\x81\xa1t\xa2ok', [0x81], null, undefined, { length: 1 }]) {
      expect(protocolCode(() => codec.decodeClientFrame(input as unknown as Uint8Array))).toBe(
        ErrorCode.MalformedFrame,
      );
    }
  });

  it('random bytes only ever raise a ProtocolError with a frame code', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 300 }),
        fc.constantFrom<Side>('client', 'node'),
        (data, side) => {
          let decoded: unknown;
          try {
            decoded = decoders[side](data);
          } catch (error) {
            expect(error).toBeInstanceOf(ProtocolError);
            expect(FRAME_ERROR_CODES).toContain((error as ProtocolError).code);
            return;
          }
          // Astronomically unlikely, but legitimate: the bytes happen to be a valid frame.
          expect((side === 'client' ? ClientFrame : NodeFrame).safeParse(decoded).success).toBe(true);
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('mutated, cut and extended valid frames only ever raise a ProtocolError or decode validly', () => {
    const encoded = allSamples.map((s) => ({ side: s.side, data: codec.encode(s.frame) }));
    fc.assert(
      fc.property(
        fc.constantFrom(...encoded),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }),
        fc.nat(),
        fc.uint8Array({ maxLength: 8 }),
        ({ side, data }, flips, cut, tail) => {
          const mutated = new Uint8Array(data);
          for (const [pos, byte] of flips) mutated[pos % mutated.length] = byte;
          const input = concat(mutated.subarray(0, cut % (mutated.length + 1)), tail);
          let decoded: unknown;
          try {
            decoded = decoders[side](input);
          } catch (error) {
            expect(error).toBeInstanceOf(ProtocolError);
            expect(FRAME_ERROR_CODES).toContain((error as ProtocolError).code);
            return;
          }
          expect((side === 'client' ? ClientFrame : NodeFrame).safeParse(decoded).success).toBe(true);
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('valid msgpack of the wrong shape is INVALID_FRAME', () => {
    fc.assert(
      fc.property(fc.anything(), (value) => {
        const data = raw.pack(value);
        for (const side of ['client', 'node'] as const) {
          const schema = side === 'client' ? ClientFrame : NodeFrame;
          if (schema.safeParse(value).success) {
            expect(() => decoders[side](data)).not.toThrow();
          } else {
            expect(protocolCode(() => decoders[side](data))).toBe(ErrorCode.InvalidFrame);
          }
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('a valid frame with one field replaced decodes exactly when the schema accepts it', () => {
    const interesting = fc.oneof(
      fc.anything(),
      fc.integer({ min: -2, max: 2 }),
      fc.constantFrom(U32_MAX, U32_MAX + 1, 2 ** 53, -1, 0.5, NaN, Infinity, MIN_PAGE_SIZE, 1000, 2 ** 17),
      fc.uint8Array({ maxLength: MAX_OID_BYTES + 2 }),
      fc.constantFrom(new Uint8Array(0), new Uint8Array(MAX_OID_BYTES), new Uint8Array(MAX_OID_BYTES + 1)),
      fc.constantFrom(...ClientFrame.options.map((o) => o.shape.t.value), 'welcome', 'nope', ''),
      fc.constantFrom('ephemeral', 'persistent', 'full', 'x'.repeat(MAX_IDENTITY_LENGTH + 1)),
    );
    const samples = allSamples.filter(({ frame }) => frame.t !== 'batch' && frame.t !== 'stats');
    fc.assert(
      fc.property(fc.constantFrom(...samples), fc.nat(), interesting, ({ side, frame }, which, value) => {
        const keys = Object.keys(frame);
        const key = keys[which % keys.length] as string;
        const mutated: Record<string, unknown> = { ...frame, [key]: value };
        const schema = side === 'client' ? ClientFrame : NodeFrame;
        const expected = schema.safeParse(mutated);
        const data = raw.pack(mutated);
        if (expected.success) {
          expect(plain(decoders[side](data))).toEqual(plain(expected.data));
        } else {
          expect(protocolCode(() => decoders[side](data))).toBe(ErrorCode.InvalidFrame);
        }
      }),
      { numRuns: 3000 },
    );
  });
});

describe('schema edges', () => {
  const invalidClient = (frame: unknown) =>
    expect(protocolCode(() => codec.decodeClientFrame(raw.pack(frame)))).toBe(ErrorCode.InvalidFrame);
  const validClient = (frame: unknown) =>
    expect(() => codec.decodeClientFrame(raw.pack(frame))).not.toThrow();
  const invalidNode = (frame: unknown) =>
    expect(protocolCode(() => codec.decodeNodeFrame(raw.pack(frame)))).toBe(ErrorCode.InvalidFrame);

  it('page sizes must be powers of two from MIN_PAGE_SIZE to MAX_PAGE_SIZE', () => {
    for (let size = MIN_PAGE_SIZE; size <= MAX_PAGE_SIZE; size *= 2) {
      validClient({ t: 'newPool', id: 1, kind: 'ephemeral', pageSize: size });
    }
    for (const size of [
      0,
      1,
      256,
      MIN_PAGE_SIZE / 2,
      MAX_PAGE_SIZE * 2,
      1000,
      4095,
      4097,
      3 * 1024,
      -512,
      512.5,
    ]) {
      invalidClient({ t: 'newPool', id: 1, kind: 'ephemeral', pageSize: size });
    }
    invalidClient({ t: 'newPool', id: 1, kind: 'ephemeral', pageSize: '4096' });
    invalidClient({ t: 'newPool', id: 1, kind: 'ephemeral' });
    invalidClient({ t: 'newPool', id: 1, kind: 'volatile', pageSize: 4096 });
  });

  it('object ids are 1..MAX_OID_BYTES bytes, binary only', () => {
    expect(MAX_OID_BYTES).toBeGreaterThanOrEqual(64);
    for (const frame of [put, get, flushPage, flushObject]) {
      for (const length of [1, 64, MAX_OID_BYTES]) validClient({ ...frame, oid: bytesOf(length) });
      for (const length of [0, MAX_OID_BYTES + 1, 4096]) invalidClient({ ...frame, oid: bytesOf(length) });
      invalidClient({ ...frame, oid: 'inode:42' });
      invalidClient({ ...frame, oid: [1, 2, 3] });
      invalidClient({ ...frame, oid: undefined });
    }
  });

  it('put pages are at most MAX_PAGE_SIZE bytes', () => {
    validClient({ ...put, page: new Uint8Array(MAX_PAGE_SIZE) });
    invalidClient({ ...put, page: new Uint8Array(MAX_PAGE_SIZE + 1) });
    invalidClient({ ...put, page: 'page' });
  });

  it('u32 fields take 0..U32_MAX integers only', () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ ...put }, 'index'],
      [{ ...put }, 'pool'],
      [{ ...put }, 'id'],
      [{ ...get }, 'index'],
      [{ ...flushPage }, 'index'],
      [{ t: 'destroyPool', id: 1, pool: 1 }, 'pool'],
      [{ t: 'hello', id: 1, protocol: 1, identity: 'a' }, 'protocol'],
      [{ t: 'stats', id: 1 }, 'id'],
    ];
    for (const [frame, field] of cases) {
      for (const ok of [0, 1, 0xffff, U32_MAX]) validClient({ ...frame, [field]: ok });
      for (const bad of [
        U32_MAX + 1,
        2 ** 53,
        -1,
        -(2 ** 31),
        1.5,
        0.1,
        NaN,
        Infinity,
        -Infinity,
        '1',
        null,
        true,
      ]) {
        invalidClient({ ...frame, [field]: bad });
      }
    }
    for (const [frame, field] of [
      [{ t: 'ok', id: 1 }, 'id'],
      [{ t: 'pool', id: 1, pool: 1, kind: 'ephemeral', pageSize: 4096 }, 'pool'],
    ] as const) {
      for (const bad of [U32_MAX + 1, -1, 1.5]) invalidNode({ ...frame, [field]: bad });
    }
  });

  it('64-bit integer encodings in u32 fields are rejected unless the value fits', () => {
    const stats64 = (id: Uint8Array) => rawMap({ t: fixstr('stats'), id });
    const index64 = (index: Uint8Array) =>
      rawMap({
        t: fixstr('get'),
        id: Uint8Array.of(1),
        pool: Uint8Array.of(1),
        oid: Uint8Array.of(0xc4, 1, 0x2a),
        index,
      });
    for (const bad of [
      u64(2n ** 32n),
      u64(2n ** 53n + 1n),
      u64(2n ** 64n - 1n),
      i64(-1n),
      i64(-(2n ** 63n)),
    ]) {
      expect(protocolCode(() => codec.decodeClientFrame(stats64(bad)))).toBe(ErrorCode.InvalidFrame);
      expect(protocolCode(() => codec.decodeClientFrame(index64(bad)))).toBe(ErrorCode.InvalidFrame);
      expect(protocolCode(() => codec.decodeNodeFrame(rawMap({ t: fixstr('ok'), id: bad })))).toBe(
        ErrorCode.InvalidFrame,
      );
    }
    // A small value in a wide encoding is still that value: accepted, and a plain number, not a bigint.
    expect(codec.decodeClientFrame(stats64(u64(5n)))).toEqual({ t: 'stats', id: 5 });
    expect(codec.decodeClientFrame(stats64(u64(BigInt(U32_MAX))))).toEqual({ t: 'stats', id: U32_MAX });
    expect(codec.decodeClientFrame(stats64(i64(7n)))).toEqual({ t: 'stats', id: 7 });
  });

  it('float encodings of ids are rejected unless the value is an integer', () => {
    const stats = (id: Uint8Array) => rawMap({ t: fixstr('stats'), id });
    for (const bad of [f64(1.5), f32(1.5), f64(-1), f64(NaN), f64(Infinity), f64(2 ** 32)]) {
      expect(protocolCode(() => codec.decodeClientFrame(stats(bad)))).toBe(ErrorCode.InvalidFrame);
    }
    expect(codec.decodeClientFrame(stats(f64(2)))).toEqual({ t: 'stats', id: 2 });
    expect(codec.decodeClientFrame(stats(f32(3)))).toEqual({ t: 'stats', id: 3 });
  });

  it('batches carry 1..MAX_BATCH_OPS page ops and nothing else', () => {
    const op = (i: number) => ({ ...get, id: i });
    validClient({ t: 'batch', id: 1, ops: [op(1)] });
    validClient({ t: 'batch', id: 1, ops: Array.from({ length: MAX_BATCH_OPS }, (_, i) => op(i)) });
    invalidClient({ t: 'batch', id: 1, ops: [] });
    invalidClient({ t: 'batch', id: 1, ops: Array.from({ length: MAX_BATCH_OPS + 1 }, (_, i) => op(i)) });
    invalidClient({ t: 'batch', id: 1 });
    invalidClient({ t: 'batch', id: 1, ops: op(1) });
    // Only page ops: no handshake, pool management, stats or nested batch inside a batch.
    for (const inner of clientSamples.filter(
      (f) => !['put', 'get', 'flushPage', 'flushObject'].includes(f.t),
    )) {
      invalidClient({ t: 'batch', id: 1, ops: [op(1), inner] });
    }
    // One bad op spoils the batch.
    invalidClient({ t: 'batch', id: 1, ops: [op(1), { ...get, index: -1 }] });
  });

  it('batch replies carry at most MAX_BATCH_OPS page replies', () => {
    const ok = (i: number) => ({ t: 'ok', id: i });
    expect(() =>
      codec.decodeNodeFrame(
        raw.pack({ t: 'batch', id: 1, replies: Array.from({ length: MAX_BATCH_OPS }, (_, i) => ok(i)) }),
      ),
    ).not.toThrow();
    invalidNode({ t: 'batch', id: 1, replies: Array.from({ length: MAX_BATCH_OPS + 1 }, (_, i) => ok(i)) });
    invalidNode({ t: 'batch', id: 1, replies: [{ t: 'welcome', id: 1, protocol: 1, nodeId: 'n' }] });
    invalidNode({ t: 'batch', id: 1, replies: [{ t: 'stats', id: 1, stats }] });
  });

  it('an unknown, missing or mistyped `t` is INVALID_FRAME', () => {
    for (const t of ['nope', '', 'PUT', 'Put', 'hello ', 1, null, true, ['put'], { t: 'put' }]) {
      invalidClient({ ...put, t });
      invalidNode({ t, id: 1 });
    }
    const noT: Record<string, unknown> = { ...put };
    delete noT.t;
    invalidClient(noT);
    invalidNode({ id: 1 });
  });

  it('top-level values that are not maps are INVALID_FRAME', () => {
    for (const value of [null, 1, 'put', [], [put], true, new Uint8Array(3), 1.5]) {
      invalidClient(value);
      invalidNode(value);
    }
  });

  it('hello identities are 1..MAX_IDENTITY_LENGTH characters', () => {
    const hello = { t: 'hello', id: 1, protocol: PROTOCOL_VERSION };
    validClient({ ...hello, identity: 'a' });
    validClient({ ...hello, identity: 'x'.repeat(MAX_IDENTITY_LENGTH) });
    invalidClient({ ...hello, identity: '' });
    invalidClient({ ...hello, identity: 'x'.repeat(MAX_IDENTITY_LENGTH + 1) });
    invalidClient({ ...hello, identity: 42 });
    invalidClient({ ...hello, protocol: '1', identity: 'a' });
  });

  it('replies with bad enums or missing fields are INVALID_FRAME', () => {
    invalidNode({ t: 'refused', id: 1, reason: 'tired' });
    invalidNode({ t: 'refused', id: 1 });
    invalidNode({ t: 'pool', id: 1, pool: 1, kind: 'volatile', pageSize: 4096 });
    invalidNode({ t: 'hit', id: 1 });
    invalidNode({ t: 'hit', id: 1, page: 'bytes' });
    invalidNode({ t: 'welcome', id: 1, protocol: 1 });
    invalidNode({ t: 'error', id: 1, code: 'X' });
    invalidNode({ t: 'error', id: 1, code: 'X', message: 'm', details: 'not a record' });
    invalidNode({ t: 'stats', id: 1, stats: { ...stats, hits: -1 } });
    invalidNode({ t: 'stats', id: 1, stats: { ...stats, hits: 1.5 } });
    const partial: Record<string, unknown> = { ...stats };
    delete partial.evictions;
    invalidNode({ t: 'stats', id: 1, stats: partial });
    invalidNode({ t: 'stats', id: 1, stats: { ...stats, scope: 'cluster' } });
    const unscoped: Record<string, unknown> = { ...stats };
    delete unscoped.scope;
    invalidNode({ t: 'stats', id: 1, stats: unscoped });
  });

  it('INVALID_FRAME details name the offending path, a few issues at most', () => {
    let thrown: unknown;
    try {
      codec.decodeClientFrame(raw.pack({ ...put, index: -1 }));
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(ProtocolError);
    const issues = (thrown as ProtocolError).details.issues as { path: string }[];
    expect(issues.map((i) => i.path)).toContain('index');
    const many = Array.from({ length: 20 }, (_, i) => ({ ...get, id: i, index: -1 }));
    try {
      codec.decodeClientFrame(raw.pack({ t: 'batch', id: 1, ops: many }));
    } catch (error) {
      thrown = error;
    }
    expect(((thrown as ProtocolError).details.issues as unknown[]).length).toBeLessThanOrEqual(5);
  });
});

describe('peekRequestId', () => {
  it('returns the id of a frame that decodes but fails validation', () => {
    expect(codec.peekRequestId(raw.pack({ t: 'nope', id: 42 }))).toBe(42);
    expect(codec.peekRequestId(raw.pack({ t: 'put', id: 7 }))).toBe(7);
    expect(codec.peekRequestId(raw.pack({ ...put, id: 99, index: -1 }))).toBe(99);
    expect(codec.peekRequestId(raw.pack({ id: U32_MAX }))).toBe(U32_MAX);
    expect(codec.peekRequestId(rawMap({ t: fixstr('x'), id: u64(9n) }))).toBe(9);
  });

  it('returns the id of a valid frame', () => {
    for (const { frame } of allSamples) expect(codec.peekRequestId(codec.encode(frame))).toBe(frame.id);
  });

  it('returns 0 when there is no usable id', () => {
    const cases: Uint8Array[] = [
      new Uint8Array(0),
      Uint8Array.of(0xc1),
      Uint8Array.of(0xc0),
      codec.encode(put).subarray(0, 10),
      concat(codec.encode(put), Uint8Array.of(0)),
      raw.pack([1, 2, 3]),
      raw.pack('id'),
      raw.pack(42),
      raw.pack({ t: 'put' }),
      raw.pack({ id: -1 }),
      raw.pack({ id: 1.5 }),
      raw.pack({ id: U32_MAX + 1 }),
      raw.pack({ id: '7' }),
      raw.pack({ id: null }),
      rawMap({ id: u64(2n ** 40n) }),
      rawMap({ id: i64(-5n) }),
    ];
    for (const data of cases) expect(codec.peekRequestId(data)).toBe(0);
  });

  it('never throws and always returns a u32', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 200 }),
          fc.anything().map((v) => raw.pack(v)),
        ),
        (data) => {
          const id = codec.peekRequestId(data);
          expect(Number.isInteger(id) && id >= 0 && id <= U32_MAX).toBe(true);
        },
      ),
      { numRuns: 2000 },
    );
  });
});
