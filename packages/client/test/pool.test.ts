import { afterEach, describe, expect, it } from 'vitest';
import {
  BadPageSizeError,
  ConnectionLostError,
  ErrorCode,
  ProtocolError,
  TmemError,
  UnknownPoolError,
  type ObjectId,
  type Pool,
} from '../src/index.ts';
import { PAGE_SIZE, page, setup } from './helpers.ts';
import { closeAll, rejectionOf } from './support.ts';

afterEach(closeAll);

describe('pool ops', () => {
  it('puts, gets, flushes and destroys', async () => {
    const { pool } = await setup();
    expect(pool).toMatchObject({ kind: 'ephemeral', pageSize: PAGE_SIZE });
    expect(await pool.put('file', 0, page(1))).toBe(true);
    expect(await pool.put('file', 1, page(2))).toBe(true);
    expect(await pool.get('file', 0)).toEqual(page(1));
    expect(await pool.get('file', 2)).toBeNull();
    await pool.flushPage('file', 0);
    expect(await pool.get('file', 0)).toBeNull();
    await pool.flushObject('file');
    expect(await pool.get('file', 1)).toBeNull();
    await pool.destroy();
  });

  it('reports a refused put as false, not as an error', async () => {
    const { pool } = await setup(
      {},
      { onPageOp: (op) => (op.t === 'put' ? { t: 'refused', id: op.id, reason: 'full' } : undefined) },
    );
    expect(await pool.put('o', 0, page(1))).toBe(false);
  });

  it('uses DEFAULT_PAGE_SIZE when none is given', async () => {
    const { client } = await setup();
    const pool = await client.createPool({ kind: 'persistent' });
    expect(pool).toMatchObject({ kind: 'persistent', pageSize: 4096 });
  });
});

describe('arguments checked before anything is sent', () => {
  it('rejects bad page sizes, pages, oids, indexes and kinds without sending a frame', async () => {
    const { fake, client, pool } = await setup();
    const expectCode = async (
      promise: Promise<unknown>,
      code: string,
      cls: abstract new (...args: never[]) => TmemError = TmemError,
    ) => {
      const error = await rejectionOf(promise);
      expect(error).toBeInstanceOf(cls);
      expect(error).toMatchObject({ code });
    };
    for (const pageSize of [0, 256, 1000, 4095, 128 * 1024, 1.5, Number.NaN]) {
      await expectCode(
        client.createPool({ kind: 'ephemeral', pageSize }),
        ErrorCode.BadPageSize,
        BadPageSizeError,
      );
    }
    await expectCode(client.createPool({ kind: 'shared' as 'ephemeral' }), ErrorCode.BadArgument);
    // An option the client does not know is refused, not dropped (it never becomes a private pool).
    const unknown = { kind: 'ephemeral', weight: 2 } as { kind: 'ephemeral' };
    await expectCode(client.createPool(unknown), ErrorCode.BadArgument);
    // A shared pool is ephemeral and named by a UUID: anything else is refused before anything is sent.
    const uuid = '6f1c2b7e-8a44-4f0e-9d3b-2f5d7c1a9e40';
    await expectCode(client.createPool({ kind: 'persistent', shared: uuid }), ErrorCode.BadArgument);
    for (const shared of ['', 'pool-1', uuid.replaceAll('-', ''), 42 as unknown as string]) {
      await expectCode(client.createPool({ kind: 'ephemeral', shared }), ErrorCode.BadArgument);
    }
    for (const bad of [new Uint8Array(PAGE_SIZE - 1), new Uint8Array(PAGE_SIZE + 1), new Uint8Array(0)]) {
      await expectCode(pool.put('o', 0, bad), ErrorCode.BadPageSize, BadPageSizeError);
    }
    await expectCode(pool.put('o', 0, 'x'.repeat(PAGE_SIZE) as unknown as Uint8Array), ErrorCode.BadPageSize);
    const badOids: unknown[] = ['', new Uint8Array(0), new Uint8Array(257), 'é'.repeat(129), 42, null];
    for (const oid of badOids) {
      await expectCode(pool.put(oid as ObjectId, 0, page(0)), ErrorCode.BadArgument);
      await expectCode(pool.get(oid as ObjectId, 0), ErrorCode.BadArgument);
      await expectCode(pool.flushObject(oid as ObjectId), ErrorCode.BadArgument);
    }
    for (const index of [-1, 2 ** 32, 1.5, Number.NaN, Infinity]) {
      await expectCode(pool.put('o', index, page(0)), ErrorCode.BadArgument);
      await expectCode(pool.get('o', index), ErrorCode.BadArgument);
      await expectCode(pool.flushPage('o', index), ErrorCode.BadArgument);
    }
    await fake.barrier();
    // getState frames are the client's state sync, not ops.
    const sent = fake.received.map((r) => r.frame.t).filter((t) => t !== 'getState');
    expect(sent).toEqual(['hello', 'newPool']);
  });

  it('accepts the boundary values: 256-byte oids, index 2^32-1, Buffers as pages', async () => {
    const { pool } = await setup();
    const oid = new Uint8Array(256).fill(7);
    expect(await pool.put(oid, 2 ** 32 - 1, Buffer.alloc(PAGE_SIZE, 3))).toBe(true);
    expect(await pool.get(oid, 2 ** 32 - 1)).toEqual(page(3));
  });

  it('takes a page as an ArrayBuffer or any view of one, and names what it got otherwise', async () => {
    const { pool } = await setup();
    const bytes = page(5);
    const backing = new ArrayBuffer(PAGE_SIZE + 16);
    new Uint8Array(backing, 8, PAGE_SIZE).set(bytes);
    for (const [index, given] of [
      bytes.slice().buffer,
      new DataView(backing, 8, PAGE_SIZE),
      new Uint32Array(bytes.slice().buffer),
    ].entries()) {
      expect(await pool.put('views', index, given)).toBe(true);
      expect(await pool.get('views', index)).toEqual(bytes);
    }
    const error = await rejectionOf(pool.put('views', 9, { length: PAGE_SIZE } as unknown as Uint8Array));
    expect(error).toBeInstanceOf(BadPageSizeError);
    expect((error as Error).message).toContain('got Object');
  });
});

describe('error replies', () => {
  it.each(['ephemeral', 'persistent'] as const)(
    'maps UNKNOWN_POOL to UnknownPoolError, for page ops and destroy of a destroyed %s pool',
    async (kind) => {
      // A short timeout: a destroyed persistent pool is no longer in the view, and must not be waited for.
      const { client, pool } = await setup({ timeoutMs: 1000 });
      const other = await client.createPool({ kind, pageSize: PAGE_SIZE });
      await other.destroy();
      const ops: Array<(p: Pool) => Promise<unknown>> = [
        (p) => p.put('o', 0, page(0)),
        (p) => p.get('o', 0),
        (p) => p.flushPage('o', 0),
        (p) => p.flushObject('o'),
        (p) => p.destroy(),
      ];
      for (const op of ops) {
        const error = await rejectionOf(op(other));
        expect(error).toBeInstanceOf(UnknownPoolError);
        expect(error).toMatchObject({ code: ErrorCode.UnknownPool, details: { remote: true } });
      }
      expect(await pool.put('o', 0, page(0))).toBe(true);
    },
  );

  it('maps each error code of a batch to its op alone, and never retries error replies', async () => {
    const codes: Record<number, string> = {
      0: ErrorCode.BadPageSize,
      1: 'SOMETHING_NEW',
      2: ErrorCode.ConnectionLost,
      3: ErrorCode.DataLost,
    };
    const { fake, pool } = await setup(
      { retries: 3 },
      {
        onPageOp: (op) =>
          op.t === 'put' && codes[op.index] !== undefined
            ? { t: 'error', id: op.id, code: codes[op.index] as string, message: 'no' }
            : undefined,
      },
    );
    const before = fake.batches().length;
    const outcomes = await Promise.all(
      [0, 1, 2, 3, 4].map((i) => pool.put('o', i, page(i)).catch((e: unknown) => e)),
    );
    expect(outcomes[0]).toBeInstanceOf(BadPageSizeError);
    expect(outcomes[1]).toMatchObject({ code: ErrorCode.Internal });
    expect(outcomes[2]).toBeInstanceOf(ConnectionLostError);
    expect(outcomes[3]).toMatchObject({ code: ErrorCode.DataLost });
    expect(outcomes[4]).toBe(true);
    expect(fake.batches().length - before).toBe(1);
  });

  it('retries an op a node answered SHUTTING_DOWN (it was not applied; the node is leaving)', async () => {
    let refused = 0;
    const { fake, pool } = await setup(
      { retries: 0 },
      {
        onPageOp: (op) =>
          op.t === 'put' && refused++ === 0
            ? { t: 'error', id: op.id, code: ErrorCode.ShuttingDown, message: 'leaving' }
            : undefined,
      },
    );
    const before = fake.batches().length;
    expect(await pool.put('o', 0, page(0))).toBe(true);
    expect(refused).toBe(2);
    expect(fake.batches().length - before).toBe(2);
  });

  it('rejects every op of a batch the node refuses as a whole', async () => {
    const { pool } = await setup(
      {},
      {
        onFrame: (frame) =>
          frame.t === 'batch'
            ? { t: 'error', id: frame.id, code: ErrorCode.InvalidFrame, message: 'bad batch' }
            : undefined,
      },
    );
    const outcomes = await Promise.all([pool.get('o', 0), pool.flushObject('o')].map((p) => rejectionOf(p)));
    for (const error of outcomes) {
      expect(error).toBeInstanceOf(ProtocolError);
      expect(error).toMatchObject({ code: ErrorCode.InvalidFrame });
    }
  });

  it('maps an error reply to createPool', async () => {
    const { client } = await setup(
      {},
      {
        onFrame: (frame) =>
          frame.t === 'newPool' && frame.kind === 'persistent'
            ? { t: 'error', id: frame.id, code: ErrorCode.BadPageSize, message: 'not here' }
            : undefined,
      },
    );
    const error = await rejectionOf(client.createPool({ kind: 'persistent' }));
    expect(error).toBeInstanceOf(BadPageSizeError);
  });

  it('rejects a hit whose page is not the pool page size with INVALID_FRAME', async () => {
    const { pool } = await setup(
      {},
      { onPageOp: (op) => (op.t === 'get' ? { t: 'hit', id: op.id, page: new Uint8Array(3) } : undefined) },
    );
    const error = await rejectionOf(pool.get('o', 0));
    expect(error).toBeInstanceOf(ProtocolError);
    expect(error).toMatchObject({ code: ErrorCode.InvalidFrame });
  });
});
