import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  checkHistory,
  createHistory,
  pageWithValue,
  valueOf,
  type AnomalyKind,
  type CheckOptions,
  type OpInput,
  type OpRecord,
  type PoolKind,
} from './history.ts';

const PAGE = 512;

describe('pageWithValue / valueOf', () => {
  it('round-trips every value id at every page size', () => {
    for (let size = 512; size <= 65536; size *= 2) {
      for (const valueId of [0, 1, 2, 0x7fffffff, 0xffffffff]) {
        expect(valueOf(pageWithValue(size, valueId))).toBe(valueId);
      }
    }
  });

  it('pages are never same-filled and differ between values', () => {
    const a = pageWithValue(PAGE, 1);
    const b = pageWithValue(PAGE, 2);
    expect(new Set(a.subarray(8)).size).toBeGreaterThan(100);
    let same = 0;
    for (let i = 8; i < PAGE; i++) if (a[i] === b[i]) same++;
    expect(same).toBeLessThan(PAGE / 16);
  });

  it('detects torn, truncated, bit-flipped and zero pages', () => {
    const a = pageWithValue(PAGE, 7);
    const b = pageWithValue(PAGE, 8);
    const torn = new Uint8Array(PAGE);
    torn.set(a.subarray(0, PAGE / 2));
    torn.set(b.subarray(PAGE / 2), PAGE / 2);
    expect(valueOf(torn)).toBeUndefined();
    expect(valueOf(a.subarray(0, PAGE - 1))).toBeUndefined();
    expect(valueOf(a.subarray(0, 4))).toBeUndefined();
    expect(valueOf(new Uint8Array(PAGE))).toBeUndefined();
    fc.assert(
      fc.property(fc.integer({ min: 0, max: PAGE * 8 - 1 }), (bit) => {
        const flipped = a.slice();
        flipped[bit >> 3] = (flipped[bit >> 3] as number) ^ (1 << (bit & 7));
        return valueOf(flipped) === undefined;
      }),
    );
  });

  it('reads a page that is a view into a larger buffer', () => {
    const buffer = new Uint8Array(PAGE * 3);
    buffer.set(pageWithValue(PAGE, 42), PAGE);
    expect(valueOf(buffer.subarray(PAGE, PAGE * 2))).toBe(42);
  });

  it('rejects pages too small for the header and value ids that are not u32', () => {
    expect(() => pageWithValue(4, 1)).toThrow(RangeError);
    expect(() => pageWithValue(PAGE, -1)).toThrow(RangeError);
    expect(() => pageWithValue(PAGE, 2 ** 32)).toThrow(RangeError);
  });
});

describe('createHistory', () => {
  it('records invocation and completion on one increasing clock, with keys and outcomes', () => {
    const history = createHistory();
    const target = { client: 'c1', poolKind: 'persistent', pool: '3' } as const;
    const put = history.invoke({
      ...target,
      type: 'put',
      oid: 'o',
      index: 5,
      valueId: history.nextValueId(),
    });
    const get = history.invoke({ ...target, type: 'get', oid: 'o', index: 5 });
    const flush = history.invoke({ ...target, type: 'flushObject', oid: 'o' });
    const destroy = history.invoke({ ...target, type: 'destroyPool' });
    put.ok(true);
    get.ok(pageWithValue(PAGE, 1));
    flush.fail(Object.assign(new Error('late'), { code: 'TIMEOUT' }));
    destroy.fail({ code: 'UNKNOWN_POOL' });
    const ops = history.ops();
    expect(ops.map((op) => [op.id, op.key, op.invokedAt, op.completedAt])).toEqual([
      [0, '3/o/5', 1, 5],
      [1, '3/o/5', 2, 6],
      [2, '3/o', 3, 7],
      [3, '3', 4, 8],
    ]);
    expect(ops.map((op) => op.outcome)).toEqual([
      { kind: 'accepted' },
      { kind: 'hit', valueId: 1 },
      { kind: 'indeterminate', code: 'TIMEOUT' },
      { kind: 'error', code: 'UNKNOWN_POOL' },
    ]);
  });

  it('classifies outcomes: refused, miss, corrupt, in-doubt codes, errors without a code, pending', () => {
    const history = createHistory();
    const target = { client: 'c', poolKind: 'ephemeral', pool: 'p', oid: 'o', index: 0 } as const;
    history.invoke({ ...target, type: 'put', valueId: 1 }).ok(false);
    history.invoke({ ...target, type: 'get' }).ok(null);
    history.invoke({ ...target, type: 'get' }).ok(new Uint8Array(PAGE));
    history.invoke({ ...target, type: 'get' }).fail({ code: 'CONNECTION_LOST' });
    history.invoke({ ...target, type: 'get' }).fail(new TypeError('bug'));
    history.invoke({ ...target, type: 'get' }).fail({ code: 'DATA_LOST' });
    history.invoke({ ...target, type: 'flushPage' }).ok();
    history.invoke({ ...target, type: 'get' });
    const ops = history.ops();
    expect(ops.map((op) => op.outcome)).toEqual([
      { kind: 'refused' },
      { kind: 'miss' },
      { kind: 'corrupt' },
      { kind: 'indeterminate', code: 'CONNECTION_LOST' },
      { kind: 'indeterminate', code: 'UNKNOWN' },
      { kind: 'error', code: 'DATA_LOST' },
      { kind: 'ok' },
      { kind: 'indeterminate', code: 'PENDING' },
    ]);
    expect(ops.at(-1)?.completedAt).toBeUndefined();
  });

  it('refuses to settle an op twice, and snapshots are copies', () => {
    const history = createHistory();
    const op = history.invoke({ client: 'c', poolKind: 'ephemeral', pool: 'p', type: 'destroyPool' });
    op.ok();
    expect(() => op.ok()).toThrow(/settled twice/);
    const snapshot = history.ops();
    (snapshot[0] as OpRecord).outcome = { kind: 'refused' };
    expect(history.ops()[0]?.outcome).toEqual({ kind: 'ok' });
  });

  it('lists the ops still pending', () => {
    const history = createHistory();
    const target = { client: 'c', poolKind: 'persistent', pool: 'p', oid: 'o', index: 0 } as const;
    history.invoke({ ...target, type: 'put', valueId: 1 }).ok(true);
    const get = history.invoke({ ...target, type: 'get' });
    expect(history.pending().map((op) => [op.id, op.outcome.kind])).toEqual([[get.id, 'indeterminate']]);
    get.ok(null);
    expect(history.pending()).toEqual([]);
  });

  it('hands out unique value ids', () => {
    const history = createHistory();
    expect([history.nextValueId(), history.nextValueId(), history.nextValueId()]).toEqual([1, 2, 3]);
  });
});

/** A small script language for synthetic histories on one pool; the order of calls is real time. */
function scenario(poolKind: PoolKind, options: { exclusiveGets?: boolean } = {}) {
  const history = createHistory();
  const target = (client: string) => ({ client, poolKind, pool: 'p', ...options });
  const at = (where: { oid?: string; index?: number } = {}) => ({
    oid: where.oid ?? 'o',
    index: where.index ?? 0,
  });
  const settle = <T>(op: { ok(result: T): void; fail(error: unknown): void; id: number }) => ({
    id: op.id,
    timeout: () => op.fail({ code: 'TIMEOUT' }),
    error: (code: string) => op.fail({ code }),
  });
  return {
    history,
    put(valueId: number, where: { oid?: string; index?: number; client?: string } = {}) {
      const op = history.invoke({ ...target(where.client ?? 'w'), type: 'put', ...at(where), valueId });
      return { ...settle(op), accepted: () => op.ok(true), refused: () => op.ok(false) };
    },
    get(where: { oid?: string; index?: number; client?: string; round?: number } = {}) {
      const op = history.invoke({
        ...target(where.client ?? 'r'),
        type: 'get',
        ...at(where),
        ...(where.round === undefined ? {} : { finalRound: where.round }),
      });
      return {
        ...settle(op),
        hit: (valueId: number) => op.ok(pageWithValue(PAGE, valueId)),
        miss: () => op.ok(null),
        page: (page: Uint8Array) => op.ok(page),
        dataLost: () => op.fail({ code: 'DATA_LOST' }),
      };
    },
    flushPage(where: { oid?: string; index?: number } = {}) {
      const op = history.invoke({ ...target('f'), type: 'flushPage', ...at(where) });
      return { ...settle(op), ok: () => op.ok() };
    },
    flushObject(oid = 'o') {
      const op = history.invoke({ ...target('f'), type: 'flushObject', oid });
      return { ...settle(op), ok: () => op.ok() };
    },
    destroy() {
      const op = history.invoke({ ...target('f'), type: 'destroyPool' });
      return { ...settle(op), ok: () => op.ok() };
    },
    /** The anomaly kinds, each with the op ids it names. */
    check(checkOptions: CheckOptions = {}) {
      return checkHistory(history, checkOptions).anomalies.map((a) => ({ kind: a.kind, ops: a.ops }));
    },
  };
}

describe('checkHistory: legal histories produce no anomaly', () => {
  it('put then get, on both kinds', () => {
    for (const kind of ['ephemeral', 'persistent'] as const) {
      const s = scenario(kind);
      s.put(1).accepted();
      s.get().hit(1);
      expect(s.check()).toEqual([]);
    }
  });

  it('a later put overwrites: the get returns the newer value', () => {
    const s = scenario('persistent');
    s.put(1).accepted();
    s.put(2).accepted();
    s.get().hit(2);
    s.get().hit(2);
    expect(s.check()).toEqual([]);
  });

  it('concurrent puts may be ordered either way', () => {
    for (const seen of [1, 2]) {
      const s = scenario('persistent');
      const a = s.put(1);
      const b = s.put(2);
      b.accepted();
      a.accepted();
      s.get().hit(seen);
      expect(s.check()).toEqual([]);
    }
  });

  it('a get concurrent with an overwrite may return the old or the new value', () => {
    for (const seen of [1, 2]) {
      const s = scenario('persistent');
      s.put(1).accepted();
      const put = s.put(2);
      const get = s.get();
      get.hit(seen);
      put.accepted();
      expect(s.check()).toEqual([]);
    }
  });

  it('a refused duplicate put removes the old page: a later persistent get misses', () => {
    const s = scenario('persistent');
    s.put(1).accepted();
    s.put(2).refused();
    s.get().miss();
    expect(s.check()).toEqual([]);
  });

  it('a refused put may be seen by a get concurrent with it', () => {
    const s = scenario('persistent');
    const put = s.put(1);
    s.get().hit(1);
    put.refused();
    expect(s.check()).toEqual([]);
  });

  it('a timed-out put may have stored, been refused (removing the old page), or done nothing', () => {
    for (const outcome of ['new', 'old', 'miss'] as const) {
      const s = scenario('persistent');
      s.put(1).accepted();
      s.put(2).timeout();
      const get = s.get();
      if (outcome === 'new') get.hit(2);
      else if (outcome === 'old') get.hit(1);
      else get.miss();
      expect(s.check()).toEqual([]);
    }
  });

  it('a timed-out put may land long after its timeout, even after a miss', () => {
    const s = scenario('ephemeral');
    s.put(1).timeout();
    s.get().miss();
    s.get().hit(1);
    expect(s.check()).toEqual([]);
  });

  it('an op still pending when the history is read is in doubt', () => {
    const s = scenario('persistent');
    s.put(1);
    s.get().miss();
    s.get().hit(1);
    expect(s.check()).toEqual([]);
  });

  it('a put that failed with an error is in doubt too (a retry may have applied an earlier attempt)', () => {
    const s = scenario('persistent');
    s.put(1).accepted();
    s.put(2).error('NOT_SERVING');
    s.get().hit(2);
    s.get().hit(2);
    expect(s.check()).toEqual([]);
  });

  it('ephemeral pages may vanish at any time: misses are always legal', () => {
    const s = scenario('ephemeral');
    s.put(1).accepted();
    s.get().miss();
    s.put(2).accepted();
    s.get().miss();
    expect(s.check()).toEqual([]);
  });

  it('exclusive gets: after a hit the page is gone, and a re-put makes it readable again', () => {
    const s = scenario('ephemeral');
    s.put(1).accepted();
    s.get().hit(1);
    s.get().miss();
    s.put(2).accepted();
    s.get().hit(2);
    expect(s.check()).toEqual([]);
  });

  it('shared ephemeral pools (non-exclusive) may return the same value to many gets', () => {
    const s = scenario('ephemeral', { exclusiveGets: false });
    s.put(1).accepted();
    s.get().hit(1);
    s.get({ client: 'other' }).hit(1);
    expect(s.check()).toEqual([]);
  });

  it('flushes: a get after a flush misses; a timed-out flush may or may not have removed', () => {
    const s = scenario('persistent');
    s.put(1).accepted();
    s.flushPage().ok();
    s.get().miss();
    s.put(2).accepted();
    s.flushObject().timeout();
    s.get().hit(2);
    s.get().miss();
    expect(s.check()).toEqual([]);
  });

  it('a get concurrent with a flush may return the page or miss', () => {
    for (const seen of ['hit', 'miss'] as const) {
      const s = scenario('persistent');
      s.put(1).accepted();
      const flush = s.flushPage();
      const get = s.get();
      if (seen === 'hit') get.hit(1);
      else get.miss();
      flush.ok();
      expect(s.check()).toEqual([]);
    }
  });

  it('flushing another object or index, or destroying another pool, leaves this handle alone', () => {
    const s = scenario('persistent');
    s.put(1).accepted();
    s.put(2, { index: 1 }).accepted();
    s.flushObject('other').ok();
    s.flushPage({ index: 1 }).ok();
    s.history.invoke({ client: 'f', poolKind: 'persistent', pool: 'q', type: 'destroyPool' }).ok();
    s.get().hit(1);
    s.get({ index: 1 }).miss();
    expect(s.check()).toEqual([]);
  });

  it('DATA_LOST is the expected answer once `replication` nodes failed, and is not judged without options', () => {
    const s = scenario('persistent');
    s.put(1).accepted();
    s.get().dataLost();
    expect(s.check({ replication: 2, failedNodes: 2 })).toEqual([]);
    expect(s.check({ replication: 2, failedNodes: 3 })).toEqual([]);
    expect(s.check()).toEqual([]);
  });

  it('a miss is legal when a remover can be ordered after the last evidence', () => {
    const s = scenario('persistent');
    const flush = s.flushPage();
    s.put(1).accepted();
    s.get().hit(1);
    s.get().miss();
    flush.ok();
    expect(s.check()).toEqual([]);
  });

  it('gets that fail with other errors are not judged', () => {
    const s = scenario('persistent');
    s.put(1).accepted();
    s.get().error('NO_NODES');
    s.get().timeout();
    s.get().hit(1);
    expect(s.check()).toEqual([]);
  });
});

describe('checkHistory: each anomaly is found and names its ops', () => {
  it('lost-write: an accepted persistent put, then a miss', () => {
    const s = scenario('persistent');
    const put = s.put(1);
    put.accepted();
    const get = s.get();
    get.miss();
    expect(s.check()).toEqual([{ kind: 'lost-write', ops: [get.id, put.id] }]);
  });

  it('lost-write: a get that saw the page proves a concurrent flush came before it', () => {
    const s = scenario('persistent');
    const put = s.put(1);
    s.flushPage().ok();
    put.accepted();
    // Without this hit the flush could be ordered after the put, and the miss would be legal.
    const seen = s.get();
    seen.hit(1);
    const get = s.get();
    get.miss();
    expect(s.check()).toEqual([{ kind: 'lost-write', ops: [get.id, seen.id] }]);
  });

  it('a put in doubt may be seen and then removed (seen while its replicas refuse), so a later miss is legal', () => {
    const s = scenario('persistent');
    s.put(1).timeout();
    s.get().hit(1);
    s.get().miss();
    expect(s.check()).toEqual([]);
  });

  it('lost-write: a remover that completed before the last accepted put does not explain a miss', () => {
    const s = scenario('persistent');
    s.put(1).accepted();
    s.flushPage().ok();
    s.put(2).refused();
    const put = s.put(3);
    put.accepted();
    const get = s.get();
    get.miss();
    expect(s.check()).toEqual([{ kind: 'lost-write', ops: [get.id, put.id] }]);
  });

  it('lost-write holds even past R failures: the contract answers DATA_LOST, never a miss', () => {
    const s = scenario('persistent');
    s.put(1).accepted();
    s.get().miss();
    expect(s.check({ replication: 2, failedNodes: 5 }).map((a) => a.kind)).toEqual(['lost-write']);
  });

  it('stale-read: put-put-get returns the older value', () => {
    for (const kind of ['ephemeral', 'persistent'] as const) {
      const s = scenario(kind);
      const old = s.put(1);
      old.accepted();
      const newer = s.put(2);
      newer.accepted();
      const get = s.get();
      get.hit(1);
      expect(s.check()).toEqual([{ kind: 'stale-read', ops: [get.id, old.id, newer.id] }]);
    }
  });

  it('stale-read: a refused duplicate put left the old page readable', () => {
    const s = scenario('persistent');
    const old = s.put(1);
    old.accepted();
    const refused = s.put(2);
    refused.refused();
    const get = s.get();
    get.hit(1);
    expect(s.check()).toEqual([{ kind: 'stale-read', ops: [get.id, old.id, refused.id] }]);
  });

  it('stale-read: two sequential observers disagree on the order of two concurrent puts', () => {
    const s = scenario('persistent');
    const a = s.put(1);
    const b = s.put(2);
    a.accepted();
    b.accepted();
    const first = s.get();
    first.hit(1);
    const second = s.get();
    second.hit(2);
    const third = s.get();
    third.hit(1);
    const anomalies = s.check();
    expect(anomalies.map((x) => x.kind)).toEqual(['stale-read', 'stale-read']);
    expect(anomalies.map((x) => x.ops[0])).toEqual([second.id, third.id]);
  });

  it('stale-read: a value first seen by a get, then overwritten, then read again (its put in doubt)', () => {
    const s = scenario('persistent');
    const put = s.put(1);
    put.timeout();
    s.get().hit(1);
    const newer = s.put(2);
    newer.accepted();
    const get = s.get();
    get.hit(1);
    expect(s.check()).toEqual([{ kind: 'stale-read', ops: [get.id, put.id, newer.id] }]);
  });

  it('read-after-flush: flushPage, flushObject and destroyPool each mean gone', () => {
    const flushes = [
      (s: ReturnType<typeof scenario>) => s.flushPage(),
      (s: ReturnType<typeof scenario>) => s.flushObject(),
      (s: ReturnType<typeof scenario>) => s.destroy(),
    ];
    for (const flushWith of flushes) {
      const s = scenario('persistent');
      const put = s.put(1);
      put.accepted();
      const flush = flushWith(s);
      flush.ok();
      const get = s.get();
      get.hit(1);
      expect(s.check()).toEqual([{ kind: 'read-after-flush', ops: [get.id, put.id, flush.id] }]);
    }
  });

  it('read-after-flush: a value seen after its timed-out put, then flushed, comes back', () => {
    const s = scenario('ephemeral', { exclusiveGets: false });
    s.put(1).timeout();
    s.get().hit(1);
    s.flushPage().ok();
    s.get().hit(1);
    expect(s.check().map((a) => a.kind)).toEqual(['read-after-flush']);
  });

  it('resurrection: an ephemeral get misses, then a later get returns the value put before the miss', () => {
    const s = scenario('ephemeral');
    const put = s.put(1);
    put.accepted();
    const miss = s.get();
    miss.miss();
    const get = s.get();
    get.hit(1);
    expect(s.check()).toEqual([{ kind: 'resurrection', ops: [get.id, put.id, miss.id] }]);
  });

  it('resurrection is not reported when the put may land after the miss', () => {
    const s = scenario('ephemeral');
    const put = s.put(1);
    s.get().miss();
    put.accepted();
    s.get().hit(1);
    expect(s.check()).toEqual([]);
  });

  it('phantom: a value never put, put on another handle, or put only after the get completed', () => {
    const s = scenario('ephemeral', { exclusiveGets: false });
    const never = s.get();
    never.hit(99);
    const elsewhere = s.put(1, { index: 7 });
    elsewhere.accepted();
    const wrong = s.get();
    wrong.hit(1);
    const early = s.get();
    early.hit(2);
    const late = s.put(2);
    late.accepted();
    expect(s.check()).toEqual([
      { kind: 'phantom', ops: [never.id] },
      { kind: 'phantom', ops: [wrong.id, elsewhere.id] },
      { kind: 'phantom', ops: [early.id, late.id] },
    ]);
  });

  it('corrupt: a torn page', () => {
    const s = scenario('persistent');
    s.put(1).accepted();
    s.put(2).accepted();
    const torn = pageWithValue(PAGE, 2);
    torn.set(pageWithValue(PAGE, 1).subarray(PAGE / 2), PAGE / 2);
    const get = s.get();
    get.page(torn);
    expect(s.check()).toEqual([{ kind: 'corrupt', ops: [get.id] }]);
  });

  it('refused-read: a get after a refused put returns its value', () => {
    const s = scenario('persistent');
    const put = s.put(1);
    put.refused();
    const get = s.get();
    get.hit(1);
    expect(s.check()).toEqual([{ kind: 'refused-read', ops: [get.id, put.id] }]);
  });

  it('duplicate-exclusive-hit: two gets of a private ephemeral pool return the same page, even concurrently', () => {
    const s = scenario('ephemeral');
    s.put(1).accepted();
    const first = s.get();
    const second = s.get({ client: 'other' });
    second.hit(1);
    first.hit(1);
    expect(s.check()).toEqual([{ kind: 'duplicate-exclusive-hit', ops: [second.id, first.id] }]);
  });

  it('persistent pools may opt in to exclusive gets', () => {
    const s = scenario('persistent', { exclusiveGets: true });
    s.put(1).accepted();
    s.get().hit(1);
    s.get().miss();
    const again = s.get();
    again.hit(1);
    expect(s.check().map((a) => a.kind)).toEqual(['duplicate-exclusive-hit']);
  });

  it('unexpected-data-lost: fewer than R nodes failed, or any DATA_LOST from an ephemeral pool', () => {
    const s = scenario('persistent');
    s.put(1).accepted();
    const get = s.get();
    get.dataLost();
    expect(s.check({ replication: 2, failedNodes: 1 })).toEqual([
      { kind: 'unexpected-data-lost', ops: [get.id] },
    ]);
    expect(s.check({ replication: 2 })).toEqual([{ kind: 'unexpected-data-lost', ops: [get.id] }]);
    const e = scenario('ephemeral');
    e.get().dataLost();
    expect(e.check().map((a) => a.kind)).toEqual(['unexpected-data-lost']);
  });

  it('rejects a history where two puts share a value id', () => {
    const s = scenario('persistent');
    s.put(1).accepted();
    s.put(1, { index: 1 }).accepted();
    expect(() => s.check()).toThrow(/both put value 1/);
  });

  it('reports stats', () => {
    const s = scenario('persistent');
    s.put(1).accepted();
    s.put(2).accepted();
    s.get().hit(1);
    s.get({ index: 1 }).timeout();
    const { stats } = checkHistory(s.history);
    expect(stats).toMatchObject({
      ops: 4,
      handles: 2,
      byType: { put: 2, get: 2, flushPage: 0 },
      byOutcome: { accepted: 2, hit: 1, indeterminate: 1 },
      anomaliesByKind: { 'stale-read': 1 },
    });
  });
});

describe('checkHistory: convergence after heal (final rounds)', () => {
  it('legal: two rounds agree on a persistent page; an exclusive round 1 leaves round 2 a miss', () => {
    const p = scenario('persistent');
    p.put(1).accepted();
    p.put(2).timeout();
    p.get({ round: 1 }).hit(2);
    p.get({ round: 2 }).hit(2);
    p.get({ index: 1, round: 1 }).miss();
    p.get({ index: 1, round: 2 }).miss();
    expect(p.check()).toEqual([]);

    const e = scenario('ephemeral');
    e.put(1).accepted();
    e.get({ round: 1 }).hit(1);
    e.get({ round: 2 }).miss();
    expect(e.check()).toEqual([]);
  });

  it('legal: DATA_LOST in both rounds once R nodes failed', () => {
    const s = scenario('persistent');
    s.put(1).accepted();
    s.get({ round: 1 }).dataLost();
    s.get({ round: 2 }).dataLost();
    expect(s.check({ replication: 2, failedNodes: 2 })).toEqual([]);
  });

  it('legal: a definite op between the rounds may change the page', () => {
    const s = scenario('persistent');
    s.put(1).accepted();
    s.get({ round: 1 }).hit(1);
    s.put(2).accepted();
    s.get({ round: 2 }).hit(2);
    expect(s.check()).toEqual([]);
  });

  it('not-converged: a final get without a definite answer (timeout, or an error other than DATA_LOST)', () => {
    const s = scenario('persistent');
    s.put(1).accepted();
    const late = s.get({ round: 1 });
    late.timeout();
    const failed = s.get({ round: 2 });
    failed.error('NO_NODES');
    // An ordinary get that times out is not judged: only the final rounds must answer.
    s.get().timeout();
    expect(s.check()).toEqual([
      { kind: 'not-converged', ops: [late.id] },
      { kind: 'not-converged', ops: [failed.id] },
    ]);
  });

  it('not-converged: round 2 returns another value than round 1 (a late in-doubt put is no excuse)', () => {
    const s = scenario('persistent');
    s.put(1).accepted();
    s.put(2).timeout();
    const first = s.get({ round: 1 });
    first.hit(1);
    const second = s.get({ round: 2 });
    second.hit(2);
    expect(s.check()).toEqual([{ kind: 'not-converged', ops: [second.id, first.id] }]);
  });

  it('not-converged: a persistent page seen in round 1 misses in round 2', () => {
    const s = scenario('persistent');
    // In doubt, the put may have been refused after round 1 saw it: no lost write. Only the convergence
    // check, which assumes in-doubt ops settled before round 1, catches the page vanishing between rounds.
    s.put(1).timeout();
    const first = s.get({ round: 1 });
    first.hit(1);
    const second = s.get({ round: 2 });
    second.miss();
    expect(s.check()).toEqual([{ kind: 'not-converged', ops: [second.id, first.id] }]);
  });

  it('not-converged: an exclusive round 2 hits after round 1 missed', () => {
    const s = scenario('ephemeral');
    s.put(1).timeout();
    const first = s.get({ round: 1 });
    first.miss();
    const second = s.get({ round: 2 });
    second.hit(1);
    expect(s.check()).toEqual([{ kind: 'not-converged', ops: [second.id, first.id] }]);
  });

  it('not-converged: DATA_LOST in round 1, a miss in round 2', () => {
    const s = scenario('persistent');
    s.put(1).accepted();
    const first = s.get({ round: 1 });
    first.dataLost();
    const second = s.get({ round: 2 });
    second.miss();
    const kinds = s.check({ replication: 2, failedNodes: 2 });
    expect(kinds).toContainEqual({ kind: 'not-converged', ops: [second.id, first.id] });
  });
});

// ---- Property: histories produced by a correct, sequential model never show an anomaly. ----

/** Pools of the model: private ephemeral (exclusive gets), shared ephemeral, persistent. */
const POOLS = [
  { pool: 'E', poolKind: 'ephemeral', exclusiveGets: true },
  { pool: 'S', poolKind: 'ephemeral', exclusiveGets: false },
  { pool: 'P', poolKind: 'persistent', exclusiveGets: false },
] as const;

type Fate = 'answered' | 'timeout-applied' | 'timeout-refused' | 'timeout-lost' | 'pending';

interface Command {
  op: 'put' | 'get' | 'flushPage' | 'flushObject' | 'destroyPool' | 'evict';
  pool: 0 | 1 | 2;
  oid: 'a' | 'b';
  index: 0 | 1;
  client: number;
  refuse: boolean;
  fate: Fate;
  /** How long before its linearization point the op is invoked, and after it completed (time units). */
  before: number;
  after: number;
}

/** One of `choices`, each with its relative weight. */
function weighted<T>(choices: [T, number][]): fc.Arbitrary<T> {
  return fc.oneof(...choices.map(([value, weight]) => ({ arbitrary: fc.constant(value), weight })));
}

/** Mostly short windows (ops overlap their neighbours a little), sometimes long ones (many concurrent ops). */
const windowArb = fc.oneof({ arbitrary: fc.nat(6), weight: 3 }, { arbitrary: fc.nat(30), weight: 1 });

const commandArb: fc.Arbitrary<Command> = fc.record({
  op: weighted<Command['op']>([
    ['put', 30],
    ['get', 35],
    ['flushPage', 5],
    ['flushObject', 4],
    ['evict', 5],
    ['destroyPool', 1],
  ]),
  pool: fc.constantFrom(0 as const, 1 as const, 2 as const),
  oid: weighted<'a' | 'b'>([
    ['a', 3],
    ['b', 1],
  ]),
  index: fc.constantFrom(0 as const, 1 as const),
  client: fc.nat(3),
  refuse: fc.nat(4).map((n) => n === 0),
  fate: weighted<Fate>([
    ['answered', 24],
    ['timeout-applied', 2],
    ['timeout-refused', 1],
    ['timeout-lost', 2],
    ['pending', 1],
  ]),
  before: windowArb,
  after: windowArb,
});

/** What a generated run yields: the recorded history and the options to check it with. */
interface Run {
  ops: OpRecord[];
  options: CheckOptions;
}

/**
 * Runs `commands` against a correct in-memory tmem, one at a time (command i takes effect at time 10 i), and
 * records them with windows around those instants: the order of effects is a valid linearization of the history.
 * In-doubt ops may take effect after their recorded timeout, or never.
 */
function runModel(commands: readonly Command[], finalRounds = 0): Run {
  const state = new Map<string, number | 'lost'>();
  const destroyed = new Set<string>();
  let lostData = false;
  type Settle = (pending: { ok(result: unknown): void; fail(error: unknown): void }) => void;
  const planned: { input: OpInput; invokedAt: number; completedAt: number | undefined; settle: Settle }[] =
    [];

  commands.forEach((command, i) => {
    const at = i * 10;
    const spec = POOLS[command.pool];
    const key = `${spec.pool}/${command.oid}/${command.index}`;
    const target = { client: `c${command.client}`, ...spec };
    // In-doubt ops time out at any moment after their invocation, before or after their effect.
    const invokedAt = at - command.before;
    const answeredAt = at + command.after;
    const timedOutAt = invokedAt + command.after * 2;

    if (command.op === 'evict') {
      // Not an op: an ephemeral page vanishing, or (sometimes) every copy of a persistent page lost.
      if (spec.poolKind === 'ephemeral') state.delete(key);
      else if (command.refuse && typeof state.get(key) === 'number') {
        state.set(key, 'lost');
        lostData = true;
      }
      return;
    }

    let input: OpInput;
    switch (command.op) {
      case 'put':
        input = { ...target, type: 'put', oid: command.oid, index: command.index, valueId: i + 1 };
        break;
      case 'get':
        input = { ...target, type: 'get', oid: command.oid, index: command.index };
        break;
      case 'flushPage':
        input = { ...target, type: 'flushPage', oid: command.oid, index: command.index };
        break;
      case 'flushObject':
        input = { ...target, type: 'flushObject', oid: command.oid };
        break;
      case 'destroyPool':
        input = { ...target, type: 'destroyPool' };
        break;
    }

    const plan = (completedAt: number | undefined, settle: Settle): void => {
      planned.push({ input, invokedAt, completedAt, settle });
    };
    const fail = (code: string, completedAt: number): void => plan(completedAt, (p) => p.fail({ code }));
    const inDoubt = (): void => {
      if (command.fate === 'pending') plan(undefined, () => undefined);
      else fail('TIMEOUT', timedOutAt);
    };

    if (destroyed.has(spec.pool)) {
      fail('UNKNOWN_POOL', answeredAt);
      return;
    }
    const answered = command.fate === 'answered';
    // What an in-doubt op did: applied, refused (puts), or never arrived.
    const applied =
      answered || command.fate === 'timeout-applied' || (command.fate === 'pending' && command.refuse);
    const refusedInDoubt = command.fate === 'timeout-refused';

    switch (command.op) {
      case 'put': {
        const refused = answered ? command.refuse : refusedInDoubt;
        if (refused) state.delete(key);
        else if (applied) state.set(key, i + 1);
        if (answered) plan(answeredAt, (p) => p.ok(!refused));
        else inDoubt();
        return;
      }
      case 'get': {
        const current = state.get(key);
        const reached = answered || applied;
        if (reached && typeof current === 'number' && spec.exclusiveGets) state.delete(key);
        if (!answered) inDoubt();
        else if (current === 'lost') fail('DATA_LOST', answeredAt);
        else plan(answeredAt, (p) => p.ok(current === undefined ? null : pageWithValue(PAGE, current)));
        return;
      }
      case 'flushPage':
      case 'flushObject':
      case 'destroyPool': {
        if (applied || refusedInDoubt) {
          for (const k of [...state.keys()]) {
            const [pool, oid, index] = k.split('/');
            if (pool !== spec.pool) continue;
            if (command.op !== 'destroyPool' && oid !== command.oid) continue;
            if (command.op === 'flushPage' && index !== String(command.index)) continue;
            state.delete(k);
          }
          if (command.op === 'destroyPool') destroyed.add(spec.pool);
        }
        if (answered) plan(answeredAt, (p) => p.ok(undefined));
        else inDoubt();
        return;
      }
    }
  });

  // The convergence check: after every command took effect, rounds of reads of every handle, one after another.
  const end = commands.length * 10 + 1000;
  for (let round = 1; round <= finalRounds; round++) {
    for (const spec of POOLS) {
      if (destroyed.has(spec.pool)) continue;
      for (const oid of ['a', 'b'] as const) {
        for (const index of [0, 1] as const) {
          const current = state.get(`${spec.pool}/${oid}/${index}`);
          if (typeof current === 'number' && spec.exclusiveGets) state.delete(`${spec.pool}/${oid}/${index}`);
          const invokedAt = end + round * 100;
          planned.push({
            input: { client: 'final', ...spec, type: 'get', oid, index, finalRound: round },
            invokedAt,
            completedAt: invokedAt + 50,
            settle: (p) =>
              current === 'lost'
                ? p.fail({ code: 'DATA_LOST' })
                : p.ok(current === undefined ? null : pageWithValue(PAGE, current)),
          });
        }
      }
    }
  }

  // Replay invocations and completions in time order; on a tie an invocation goes first, which only makes
  // ops concurrent and so never changes which linearizations are possible.
  const events: { time: number; phase: 0 | 1; op: number }[] = [];
  planned.forEach((p, op) => {
    events.push({ time: p.invokedAt, phase: 0, op });
    if (p.completedAt !== undefined) events.push({ time: p.completedAt, phase: 1, op });
  });
  events.sort((a, b) => a.time - b.time || a.phase - b.phase || a.op - b.op);
  const history = createHistory();
  const handles: { ok(result: unknown): void; fail(error: unknown): void }[] = [];
  for (const event of events) {
    const p = planned[event.op] as (typeof planned)[number];
    if (event.phase === 0) handles[event.op] = history.invoke(p.input);
    else p.settle(handles[event.op] as (typeof handles)[number]);
  }
  return { ops: history.ops(), options: { replication: 2, failedNodes: lostData ? 2 : 0 } };
}

const commandsArb = fc.array(commandArb, { minLength: 8, maxLength: 60, size: 'max' });
const runArb = commandsArb.map((commands) => runModel(commands));
/** Runs that end with two rounds of final reads (the convergence check after heal). */
const convergedRunArb = commandsArb.map((commands) => runModel(commands, 2));

function explain(run: Run, anomalies: unknown): string {
  return JSON.stringify({ anomalies, ops: run.ops }, null, 1);
}

/** Whether a definite op certainly leaves handle `key` without an earlier page (a put, a flush, a destroy). */
function supersedes(op: OpRecord, key: string): boolean {
  const [pool, oid] = key.split('/');
  switch (op.type) {
    case 'put':
      return op.key === key && (op.outcome.kind === 'accepted' || op.outcome.kind === 'refused');
    case 'flushPage':
      return op.key === key && op.outcome.kind === 'ok';
    case 'flushObject':
      return op.pool === pool && op.oid === oid && op.outcome.kind === 'ok';
    case 'destroyPool':
      return op.pool === pool && op.outcome.kind === 'ok';
    case 'get':
      return false;
  }
}

describe('checkHistory: properties', () => {
  it('histories of a correct sequential model, with random concurrency windows, have no anomaly', () => {
    fc.assert(
      fc.property(runArb, (run) => {
        const { anomalies } = checkHistory(run.ops, run.options);
        if (anomalies.length > 0) throw new Error(explain(run, anomalies));
      }),
      { numRuns: 400 },
    );
  });

  it('turning one get result into a value already superseded before the get began is always caught', () => {
    let mutated = 0;
    fc.assert(
      fc.property(runArb, fc.nat(), (run, pick) => {
        // Candidates: (get G, value u) where u's put P was accepted, and a definite put/flush/destroy E of the
        // handle was invoked after P completed and completed before G was invoked.
        const candidates: [OpRecord, number][] = [];
        for (const get of run.ops) {
          if (get.type !== 'get' || (get.outcome.kind !== 'hit' && get.outcome.kind !== 'miss')) continue;
          for (const put of run.ops) {
            if (put.type !== 'put' || put.key !== get.key || put.outcome.kind !== 'accepted') continue;
            const superseded = run.ops.some(
              (e) =>
                e.id !== put.id &&
                supersedes(e, get.key) &&
                e.invokedAt > (put.completedAt as number) &&
                (e.completedAt as number) < get.invokedAt,
            );
            if (superseded) candidates.push([get, put.valueId]);
          }
        }
        if (candidates.length === 0) return;
        const [get, valueId] = candidates[pick % candidates.length] as [OpRecord, number];
        const ops = run.ops.map((op) =>
          op.id === get.id ? { ...op, outcome: { kind: 'hit' as const, valueId } } : op,
        );
        mutated++;
        const { anomalies } = checkHistory(ops, run.options);
        const named = anomalies.filter((a) => a.ops.includes(get.id));
        if (named.length === 0) throw new Error(explain({ ...run, ops }, anomalies));
        const kinds: AnomalyKind[] = [
          'stale-read',
          'read-after-flush',
          'resurrection',
          'duplicate-exclusive-hit',
        ];
        expect(kinds).toContain(named[0]?.kind);
      }),
      { numRuns: 400 },
    );
    expect(mutated).toBeGreaterThan(120);
  });

  it('turning a persistent hit into a miss, with nothing that could remove the page, is a lost write', () => {
    let mutated = 0;
    fc.assert(
      fc.property(runArb, (run) => {
        const removers = new Set(
          run.ops
            .filter((op) => op.type !== 'get' && !(op.type === 'put' && op.outcome.kind === 'accepted'))
            .map((op) => (op.type === 'destroyPool' ? op.pool : op.type === 'flushObject' ? op.key : op.key)),
        );
        const get = run.ops.find((op) => {
          if (op.type !== 'get' || op.poolKind !== 'persistent' || op.outcome.kind !== 'hit') return false;
          const put = run.ops.find(
            (p) => p.type === 'put' && p.valueId === (op.outcome as { valueId: number }).valueId,
          );
          const [pool, oid] = op.key.split('/');
          return (
            put?.outcome.kind === 'accepted' &&
            (put.completedAt as number) < op.invokedAt &&
            !removers.has(op.key) &&
            !removers.has(`${pool}/${oid}`) &&
            !removers.has(pool as string)
          );
        });
        if (get === undefined) return;
        mutated++;
        const ops = run.ops.map((op) =>
          op.id === get.id ? { ...op, outcome: { kind: 'miss' as const } } : op,
        );
        const { anomalies } = checkHistory(ops, run.options);
        expect(anomalies.filter((a) => a.kind === 'lost-write' && a.ops[0] === get.id)).toHaveLength(1);
      }),
      { numRuns: 300 },
    );
    expect(mutated).toBeGreaterThan(20);
  });
});

describe('checkHistory: convergence properties', () => {
  it('a correct model followed by two rounds of final reads has no anomaly', () => {
    fc.assert(
      fc.property(convergedRunArb, (run) => {
        const { anomalies } = checkHistory(run.ops, run.options);
        if (anomalies.length > 0) throw new Error(explain(run, anomalies));
      }),
      { numRuns: 300 },
    );
  });

  it('changing the answer of one round-2 read is always caught as not-converged', () => {
    let mutated = 0;
    fc.assert(
      fc.property(convergedRunArb, fc.nat(), (run, pick) => {
        const seconds = run.ops.filter((op) => op.finalRound === 2);
        const get = seconds[pick % Math.max(1, seconds.length)];
        if (get === undefined) return;
        const other =
          get.outcome.kind === 'miss'
            ? { kind: 'hit' as const, valueId: 0xfffffff0 }
            : { kind: 'miss' as const };
        const ops = run.ops.map((op) => (op.id === get.id ? { ...op, outcome: other } : op));
        mutated++;
        const { anomalies } = checkHistory(ops, run.options);
        const caught = anomalies.some((a) => a.kind === 'not-converged' && a.ops[0] === get.id);
        if (!caught) throw new Error(explain({ ...run, ops }, anomalies));
      }),
      { numRuns: 300 },
    );
    expect(mutated).toBeGreaterThan(200);
  });
});
