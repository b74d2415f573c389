// Every frame a client (or peer) may send refuses a field its type does not have, on both decoders: the
// schemas are strict, so a sender never believes a field it sent was understood (a shared pool asked of a
// node that did not know the field would otherwise have become a private pool).
import { describe, it, expect } from 'vitest';
import { ClientFrame, ErrorCode, ProtocolError, createCodec } from '../src/index.ts';
import type { Codec } from '../src/index.ts';

const fast = createCodec();
const reference = createCodec({ fastPath: false });

const oid = new Uint8Array([1, 2, 3]);
const page = new Uint8Array(512);

/** One valid frame of every client frame type, with every optional field set where it has one. */
const FRAMES: Record<ClientFrame['t'], ClientFrame> = {
  hello: {
    t: 'hello',
    id: 1,
    protocol: 1,
    identity: 'app',
    role: 'client',
    token: 'x',
    session: '0123456789abcdef0123456789abcdef',
  },
  peerAuth: { t: 'peerAuth', id: 1, proof: 'p' },
  newPool: {
    t: 'newPool',
    id: 1,
    kind: 'ephemeral',
    pageSize: 4096,
    compression: 'lz4',
    shared: '0f8fad5b-d9cb-469f-a165-70867728950e',
  },
  destroyPool: { t: 'destroyPool', id: 1, pool: 7 },
  endSession: { t: 'endSession', id: 1, session: '0123456789abcdef0123456789abcdef' },
  sessionsQuery: {
    t: 'sessionsQuery',
    id: 1,
    sessions: [{ owner: 'app', session: '0123456789abcdef0123456789abcdef' }],
  },
  put: { t: 'put', id: 1, pool: 7, oid, index: 3, page, sum: 5 },
  get: { t: 'get', id: 1, pool: 7, oid, index: 3, replica: true },
  flushPage: { t: 'flushPage', id: 1, pool: 7, oid, index: 3 },
  flushObject: { t: 'flushObject', id: 1, pool: 7, oid },
  stats: { t: 'stats', id: 1 },
  batch: { t: 'batch', id: 1, ops: [{ t: 'get', id: 2, pool: 7, oid, index: 0 }], sv: 4 },
  getState: { t: 'getState', id: 1, subscribe: true },
  peer: { t: 'peer', id: 0, message: { type: 'x' } },
  propose: { t: 'propose', id: 1, change: { type: 'noop' }, forwarded: true },
  replicate: {
    t: 'replicate',
    id: 1,
    sv: 4,
    entries: [{ pool: 7, oid, index: 1, version: 9, page, sum: 2 }],
  },
  fetch: { t: 'fetch', id: 1, sv: 4, pool: 7, partitions: [1, 2], cursor: 3 },
  peerGet: { t: 'peerGet', id: 1, sv: 4, pool: 7, oid, index: 1 },
  handOff: {
    t: 'handOff',
    id: 1,
    transition: 4,
    incarnation: 1,
    entries: [{ pool: 7, oid, index: 1, page, sum: 2 }],
    done: true,
  },
};

function codeOf(codec: Codec, data: Uint8Array): string | undefined {
  try {
    codec.decodeClientFrame(data);
    return undefined;
  } catch (error) {
    if (!(error instanceof ProtocolError)) throw error;
    return error.code;
  }
}

describe('client frames refuse unknown fields', () => {
  it('the examples cover every client frame type', () => {
    const types = ClientFrame.options.map((schema) => schema.shape.t.value).sort();
    expect(Object.keys(FRAMES).sort()).toStrictEqual(types);
  });

  for (const [type, frame] of Object.entries(FRAMES)) {
    it(`${type}: valid as given, INVALID_FRAME with an unknown field on both decoders`, () => {
      const valid = fast.encode(frame);
      expect(codeOf(fast, valid)).toBeUndefined();
      expect(codeOf(reference, valid)).toBeUndefined();
      for (const extra of [{ later: 1 }, { shared: 'x' }, { owner: 'other' }]) {
        // `shared` is newPool's own field: on newPool the extra is an invalid value instead, refused the same.
        const data = reference.encode({ ...frame, ...extra });
        expect(codeOf(fast, data)).toBe(ErrorCode.InvalidFrame);
        expect(codeOf(reference, data)).toBe(ErrorCode.InvalidFrame);
      }
    });
  }

  it('an unknown field inside a batch op or a replica entry is refused on both decoders', () => {
    const op = { t: 'put', id: 2, pool: 7, oid, index: 0, page, later: true };
    const batch = reference.encode({ t: 'batch', id: 1, ops: [op] } as unknown as ClientFrame);
    expect(codeOf(fast, batch)).toBe(ErrorCode.InvalidFrame);
    expect(codeOf(reference, batch)).toBe(ErrorCode.InvalidFrame);
    const entry = { pool: 7, oid, version: 9, later: 1 };
    const replicate = reference.encode({
      t: 'replicate',
      id: 1,
      sv: 1,
      entries: [entry],
    } as unknown as ClientFrame);
    expect(codeOf(fast, replicate)).toBe(ErrorCode.InvalidFrame);
    expect(codeOf(reference, replicate)).toBe(ErrorCode.InvalidFrame);
  });

  it('newPool takes `shared` as a real field: a UUID in canonical lowercase form, nothing else', () => {
    const decoded = fast.decodeClientFrame(fast.encode(FRAMES.newPool));
    expect(decoded).toMatchObject({ t: 'newPool', shared: '0f8fad5b-d9cb-469f-a165-70867728950e' });
    for (const shared of [
      '0F8FAD5B-D9CB-469F-A165-70867728950E',
      '0f8fad5bd9cb469fa16570867728950e',
      '',
      7,
    ]) {
      const data = reference.encode({ ...FRAMES.newPool, shared } as ClientFrame);
      expect(codeOf(fast, data)).toBe(ErrorCode.InvalidFrame);
    }
  });
});
