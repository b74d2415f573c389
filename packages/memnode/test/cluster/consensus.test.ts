import { describe, expect, it } from 'vitest';
import { createConsensus, type Consensus, type ConsensusOutput } from '../../src/cluster/consensus.ts';
import { ConsensusMessage, type Heartbeat } from '../../src/cluster/consensus-messages.ts';
import { applyChange, initialState, type ClusterState } from '../../src/cluster/cluster-state.ts';
import { partitionTableFor } from '../../src/cluster/partition-table.ts';
import { createRandom } from './sim.ts';
import { poolIdFor } from '../../src/cluster/pool-ids.ts';
import { TEST_POOL_ID_KEY, createTestCluster, startCluster, type TestCluster } from './test-cluster.ts';

const LEASE = 1000;
const MARGIN = 200;

function roles(cluster: TestCluster): Record<string, string> {
  return Object.fromEntries([...cluster.nodes].map(([id, c]) => [id, c.role]));
}

function sends(outputs: readonly ConsensusOutput[]) {
  return outputs.filter((o): o is Extract<ConsensusOutput, { type: 'send' }> => o.type === 'send');
}

describe('consensus: bootstrap and joins', () => {
  it('a bootstrapped node leads alone at once and commits its re-proposal in its own term', () => {
    const cluster = createTestCluster();
    const a = cluster.bootstrap('a');
    expect(a.role).toBe('follower');
    cluster.run(10);
    expect(a.role).toBe('leader');
    expect(a.term).toBe(1);
    // Re-proposal: the accepted state again, as version + 1, stamped with the new term.
    expect(a.committed).toMatchObject({ version: 2, term: 1 });
    expect(a.committed?.members.map((m) => m.id)).toEqual(['a']);
    expect(a.hasLease(cluster.now)).toBe(true);
  });

  it('a joiner waits without campaigning, forwards nothing, then follows once a leader adds it', () => {
    const cluster = startCluster(['a']);
    const joiner = cluster.start('b');
    expect(joiner.propose({ type: 'noop', changeId: 'x' }, cluster.now)).toEqual({
      ok: false,
      leaderId: null,
    });
    cluster.run(5000);
    expect(joiner.role).toBe('follower');
    expect(joiner.term).toBe(0);
    expect(cluster.sent.filter((e) => e.from === 'b')).toEqual([]);
    expect(joiner.nextTickAt()).toBe(Infinity);

    cluster.join('b');
    expect(joiner.committed?.members.map((m) => m.id)).toEqual(['a', 'b']);
    expect(joiner.leaderId).toBe('a');
    const result = joiner.propose({ type: 'noop', changeId: 'y' }, cluster.now);
    expect(result).toEqual({ ok: false, leaderId: 'a' });
    cluster.run(300);
    expect(joiner.hasLease(cluster.now)).toBe(true);
  });

  it('the leader probes a joiner first and fails the join when it never answers', () => {
    const cluster = startCluster(['a']);
    cluster.start('ghost');
    cluster.crash('ghost');
    cluster.clearOutputs();
    cluster.propose('a', { type: 'addMember', changeId: 'j', member: cluster.member('ghost') });
    cluster.run(1500);
    expect(cluster.outputsOf('a', 'changeFailed')).toEqual([
      { type: 'changeFailed', changeId: 'j', reason: 'unreachable' },
    ]);
    expect(cluster.nodes.get('a')?.committed?.members.map((m) => m.id)).toEqual(['a']);
  });

  it('a retried join of a member is answered member-exists, a removed incarnation stale-incarnation', () => {
    const cluster = startCluster(['a', 'b', 'c']);
    cluster.clearOutputs();
    cluster.propose('a', { type: 'addMember', changeId: 'again', member: cluster.member('b') });
    expect(cluster.outputsOf('a', 'changeDone')).toEqual([
      { type: 'changeDone', changeId: 'again', result: { ok: false, error: 'member-exists' } },
    ]);
    cluster.propose('a', { type: 'removeMember', changeId: 'bye', id: 'c', incarnation: 1 });
    cluster.run(200);
    expect(cluster.nodes.get('c')?.removed).toBe(true);
    cluster.clearOutputs();
    cluster.propose('a', { type: 'addMember', changeId: 'late', member: cluster.member('c', 1) });
    expect(cluster.outputsOf('a', 'changeDone')).toEqual([
      { type: 'changeDone', changeId: 'late', result: { ok: false, error: 'stale-incarnation' } },
    ]);
  });
});

describe('consensus: elections and votes', () => {
  it('elects exactly one new leader after the leader dies, in a higher term, with a re-proposal', () => {
    const cluster = startCluster(['a', 'b', 'c']);
    const before = cluster.nodes.get('b')?.accepted as ClusterState;
    cluster.crash('a');
    cluster.run(3000);
    const leader = cluster.leader();
    expect(leader).toBeDefined();
    expect(['b', 'c']).toContain(leader?.self.id);
    expect(leader?.term).toBeGreaterThan(1);
    const counts = Object.values(roles(cluster)).filter((r) => r === 'leader');
    expect(counts.length).toBe(2); // the crashed 'a' still thinks it leads; it processes nothing
    // The first thing the new leader accepted was its predecessor's state, re-proposed as version + 1.
    const firstAccepted = cluster
      .outputsOf(leader?.self.id as string, 'accepted')
      .find((o) => o.state.term === leader?.term);
    expect(firstAccepted?.state.version).toBe(before.version + 1);
    expect(firstAccepted?.state.members).toEqual(before.members);
  });

  it('grants one vote per term, only to an up-to-date candidate, and never while a leader is alive', () => {
    const random = createRandom(7);
    const state = initialState({ id: 'a', url: '', incarnation: 1, capacityBytes: 1 << 28 }, 16);
    const withB = applyChange(state, {
      type: 'addMember',
      changeId: 'b',
      member: { id: 'b', url: '', incarnation: 1, capacityBytes: 1 << 28 },
    }).state;
    const three = applyChange(withB, {
      type: 'addMember',
      changeId: 'c',
      member: { id: 'c', url: '', incarnation: 1, capacityBytes: 1 << 28 },
    }).state;
    const voter = createConsensus({ self: { id: 'a', incarnation: 1 }, initialState: three, random });
    const env = (from: string, term: number) => ({ term, from, fromIncarnation: 1, toIncarnation: 1 });
    const votes = (out: ConsensusOutput[]) =>
      sends(out)
        .map((s) => s.message)
        .filter((m) => m.type === 'vote');

    // Less up to date (older accepted version): refused, but the term is adopted.
    const stale = voter.receive(
      'b',
      { type: 'requestVote', ...env('b', 5), accepted: { term: 0, version: 1 } },
      0,
    );
    expect(votes(stale)).toMatchObject([{ granted: false, term: 5 }]);
    expect(voter.term).toBe(5);
    // Up to date: granted once...
    const yes = voter.receive(
      'b',
      { type: 'requestVote', ...env('b', 5), accepted: { term: 0, version: 3 } },
      0,
    );
    expect(votes(yes)).toMatchObject([{ granted: true, term: 5 }]);
    // ...and not to another candidate in the same term.
    const no = voter.receive(
      'c',
      { type: 'requestVote', ...env('c', 5), accepted: { term: 0, version: 3 } },
      0,
    );
    expect(votes(no)).toMatchObject([{ granted: false }]);
    // A pre-vote never changes the term.
    voter.receive('c', { type: 'preVote', ...env('c', 9), accepted: { term: 0, version: 3 } }, 2000);
    expect(voter.term).toBe(5);
    // Leader stickiness: after a heartbeat from the term-5 leader, a higher-term request is refused and
    // does not bump the term.
    const hb: Heartbeat = {
      type: 'heartbeat',
      ...env('b', 5),
      round: 1,
      leaseFrom: null,
      leaseMs: 0,
      committed: { term: 0, version: 3 },
      proposal: { term: 0, version: 3 },
    };
    voter.receive('b', hb, 3000);
    const sticky = voter.receive(
      'c',
      { type: 'requestVote', ...env('c', 6), accepted: { term: 0, version: 3 } },
      3100,
    );
    expect(votes(sticky)).toMatchObject([{ granted: false }]);
    expect(voter.term).toBe(5);
  });

  it('ignores messages meant for a previous incarnation and votes of unknown incarnations', () => {
    const cluster = startCluster(['a', 'b', 'c']);
    const b = cluster.nodes.get('b') as Consensus;
    const termBefore = b.term;
    const out = b.receive(
      'c',
      { type: 'requestVote', term: 50, from: 'c', fromIncarnation: 1, toIncarnation: 0, accepted: null },
      cluster.now,
    );
    expect(b.term).toBe(termBefore);
    expect(out).toEqual([]);
    // A restarted 'c' (incarnation 2) is no voter: a candidate never counts its vote.
    cluster.crash('a');
    cluster.crash('c');
    cluster.start('c', 2);
    cluster.run(4000);
    expect(b.role).not.toBe('leader');
  });

  it('a member cut off from the leader cannot depose it when it comes back (pre-vote)', () => {
    // A long failure timeout keeps the leader from removing c meanwhile.
    const cluster = startCluster(['a', 'b', 'c'], { failureTimeoutMs: 60_000 });
    const termBefore = cluster.nodes.get('a')?.term;
    cluster.cut('c', 'a');
    cluster.cut('c', 'b');
    cluster.run(4000);
    cluster.heal();
    cluster.run(1000);
    expect(cluster.sent.some((e) => e.from === 'c' && e.message.type === 'preVote')).toBe(true);
    expect(cluster.nodes.get('a')?.role).toBe('leader');
    expect(cluster.nodes.get('a')?.term).toBe(termBefore);
    expect(cluster.nodes.get('c')?.hasLease(cluster.now)).toBe(true);
  });
});

describe('consensus: found by the simulation', () => {
  const three = (() => {
    let s = initialState({ id: 'a', url: '', incarnation: 1, capacityBytes: 1 << 28 }, 16);
    for (const id of ['b', 'c']) {
      s = applyChange(s, {
        type: 'addMember',
        changeId: id,
        member: { id, url: '', incarnation: 1, capacityBytes: 1 << 28 },
      }).state;
    }
    return s;
  })();

  it('a pre-candidate refused by a member of a later term moves to that term', () => {
    const b = createConsensus({
      self: { id: 'b', incarnation: 1 },
      initialState: three,
      random: createRandom(3),
    });
    b.tick(0);
    const out = b.tick(5000);
    expect(sends(out).map((s) => s.message.type)).toEqual(['preVote', 'preVote']);
    b.receive(
      'c',
      {
        type: 'preVoteReply',
        term: 7,
        from: 'c',
        fromIncarnation: 1,
        toIncarnation: 1,
        forTerm: 1,
        granted: false,
      },
      5001,
    );
    // Otherwise its next pre-vote would ask for term 2 again, which c refuses forever.
    expect(b.term).toBe(7);
    expect(b.role).toBe('follower');
  });

  it('tells a campaigner that still counts on our previous incarnation what is committed now', () => {
    const s = { ...three, members: three.members.map((m) => (m.id === 'a' ? { ...m, incarnation: 2 } : m)) };
    const removedC = applyChange(s, { type: 'removeMember', changeId: 'x', id: 'c', incarnation: 1 }).state;
    const a2 = createConsensus({
      self: { id: 'a', incarnation: 2 },
      initialState: removedC,
      random: createRandom(4),
    });
    const out = a2.receive(
      'c',
      {
        type: 'preVote',
        term: 2,
        from: 'c',
        fromIncarnation: 1,
        toIncarnation: 1,
        accepted: { term: 0, version: 3 },
      },
      0,
    );
    expect(sends(out)).toEqual([
      {
        type: 'send',
        to: 'c',
        message: expect.objectContaining({ type: 'commit', toIncarnation: 1, state: removedC }) as unknown,
      },
    ]);
  });

  it('dates liveness by the round an ack answers, so a late ack does not revive a dead member', () => {
    const removalAt = (lateAck: boolean): number | undefined => {
      const cluster = startCluster(['a', 'b', 'c']);
      const lastAck = [...cluster.sent]
        .reverse()
        .find((e) => e.from === 'c' && e.message.type === 'ack' && e.message.round !== null);
      cluster.crash('c');
      const crashedAt = cluster.now;
      cluster.run(600);
      if (lateAck && lastAck) {
        cluster.nodes.get('a')?.receive('c', lastAck.message, cluster.now);
      }
      cluster.run(3000);
      return cluster.timeline.find(
        (t) =>
          t.at > crashedAt &&
          t.id === 'a' &&
          t.output.type === 'committed' &&
          !t.output.state.members.some((m) => m.id === 'c'),
      )?.at;
    };
    const plain = removalAt(false);
    expect(plain).toBeDefined();
    expect(removalAt(true)).toBe(plain);
  });

  it('takes a grant only when the heartbeat names its own committed state', () => {
    const cluster = startCluster(['a', 'b', 'c']);
    const b = cluster.nodes.get('b') as Consensus;
    cluster.cut('a', 'b');
    cluster.run(LEASE + 100);
    expect(b.hasLease(cluster.now)).toBe(false);
    const heartbeat = (committed: { term: number; version: number }): Heartbeat => ({
      type: 'heartbeat',
      term: b.term,
      from: 'a',
      fromIncarnation: 1,
      toIncarnation: 1,
      round: 10_000,
      leaseFrom: cluster.now,
      leaseMs: 500,
      committed,
      proposal: committed,
    });
    const mine = { term: b.committed?.term as number, version: b.committed?.version as number };
    b.receive('a', heartbeat({ term: mine.term + 5, version: mine.version + 5 }), cluster.now);
    expect(b.hasLease(cluster.now)).toBe(false);
    b.receive('a', heartbeat(mine), cluster.now);
    expect(b.hasLease(cluster.now)).toBe(true);
  });

  it('a leader that removes itself hands the committed state to the others at once', () => {
    const cluster = startCluster(['a', 'b', 'c']);
    cluster.propose('a', { type: 'removeMember', changeId: 'leave', id: 'a', incarnation: 1 });
    cluster.run(20);
    const a = cluster.nodes.get('a') as Consensus;
    expect(a.removed).toBe(true);
    expect(cluster.outputsOf('a', 'removed').length).toBe(1);
    for (const id of ['b', 'c']) {
      expect(cluster.nodes.get(id)?.committed?.members.map((m) => m.id)).toEqual(['b', 'c']);
    }
    cluster.crash('a');
    cluster.run(2000);
    expect(['b', 'c']).toContain(cluster.leader()?.self.id);
  });
});

describe('consensus: changes', () => {
  it('queues changes FIFO at the leader and reports results; followers answer with the leader id', () => {
    const cluster = startCluster(['a', 'b', 'c']);
    cluster.clearOutputs();
    const r1 = cluster.propose('a', {
      type: 'createPool',
      changeId: 'p1',
      kind: 'persistent',
      pageSize: 4096,
      owner: 'app',
      replication: 2,
    });
    const pool = poolIdFor(TEST_POOL_ID_KEY, 1);
    const r2 = cluster.propose('a', { type: 'destroyPool', changeId: 'p2', poolId: pool });
    const r3 = cluster.propose('a', { type: 'destroyPool', changeId: 'p3', poolId: 99 });
    expect([r1.ok, r2.ok, r3.ok]).toEqual([true, true, true]);
    cluster.run(300);
    expect(cluster.outputsOf('a', 'changeDone')).toEqual([
      {
        type: 'changeDone',
        changeId: 'p1',
        result: { ok: true, poolId: pool, version: expect.any(Number) as number },
      },
      { type: 'changeDone', changeId: 'p2', result: { ok: true } },
      { type: 'changeDone', changeId: 'p3', result: { ok: false, error: 'unknown-pool' } },
    ]);
    expect(cluster.propose('b', { type: 'noop', changeId: 'n' })).toEqual({ ok: false, leaderId: 'a' });
  });

  it('replaces a restarted member by a removal and then an add: one voter per committed state', () => {
    const cluster = startCluster(['a', 'b', 'c']);
    cluster.crash('c');
    const start = cluster.now;
    cluster.clearOutputs();
    cluster.join('c', 2, 5000);
    const committed = cluster.outputsOf('a', 'committed').map((o) => o.state);
    const memberKeys = (s: ClusterState) => s.members.map((m) => `${m.id}:${m.incarnation}`).join(' ');
    expect(committed.map(memberKeys)).toEqual(['a:1 b:1', 'a:1 b:1 c:2']);
    // The old incarnation held a lease until a heartbeat it never acked: its removal waits for it.
    expect(cluster.now - start).toBeGreaterThan(LEASE);
  });

  it('fails queued changes with leadership-lost and the in-flight one with outcome-unknown', () => {
    const cluster = startCluster(['a', 'b', 'c']);
    cluster.cut('a', 'b');
    cluster.cut('a', 'c');
    cluster.clearOutputs();
    cluster.propose('a', { type: 'noop', changeId: 'first' });
    cluster.propose('a', { type: 'noop', changeId: 'second' });
    cluster.run(3000);
    cluster.heal();
    cluster.run(500);
    expect(cluster.nodes.get('a')?.role).not.toBe('leader');
    expect(cluster.outputsOf('a', 'changeFailed')).toEqual([
      { type: 'changeFailed', changeId: 'first', reason: 'outcome-unknown' },
      { type: 'changeFailed', changeId: 'second', reason: 'leadership-lost' },
    ]);
  });

  it('emits accepted before the ack that reports it', () => {
    const cluster = startCluster(['a', 'b']);
    cluster.clearOutputs();
    cluster.propose('a', { type: 'noop', changeId: 'n' });
    const out = cluster.outputs.get('b') as ConsensusOutput[];
    const accepted = out.findIndex((o) => o.type === 'accepted');
    const ack = out.findIndex((o) => o.type === 'send' && o.message.type === 'ack');
    expect(accepted).toBeGreaterThanOrEqual(0);
    expect(ack).toBeGreaterThan(accepted);
  });
});

describe('consensus: leases', () => {
  it('grants leases through heartbeats; a member that stops hearing the leader loses its lease in time', () => {
    const cluster = startCluster(['a', 'b', 'c']);
    const b = cluster.nodes.get('b') as Consensus;
    expect(b.hasLease(cluster.now)).toBe(true);
    // Never more than leaseMs ahead: the grant is counted from b's own earlier ack.
    expect(b.leaseUntil - cluster.now).toBeLessThanOrEqual(LEASE);
    cluster.cut('a', 'b');
    const cutAt = cluster.now;
    cluster.clearOutputs();
    cluster.run(LEASE + 50);
    expect(b.hasLease(cluster.now)).toBe(false);
    expect(cluster.outputsOf('b', 'leaseLost').length).toBe(1);
    expect(b.leaseUntil).toBeLessThanOrEqual(cutAt + LEASE);
    expect(b.servingPartitions(cluster.now)).toEqual([]);
  });

  it('removes a dead member only after its lease has surely expired', () => {
    const cluster = startCluster(['a', 'b', 'c']);
    cluster.crash('c');
    const crashedAt = cluster.now;
    cluster.run(4000);
    const lastGrantAt = Math.max(
      ...cluster.sent
        .filter((e) => e.to === 'c' && e.message.type === 'heartbeat' && e.message.leaseMs > 0)
        .map((e) => e.at),
    );
    const removal = cluster.timeline.find(
      (t) =>
        t.at > crashedAt &&
        t.id === 'a' &&
        t.output.type === 'committed' &&
        !t.output.state.members.some((m) => m.id === 'c'),
    );
    expect(removal).toBeDefined();
    expect(removal?.at).toBeGreaterThanOrEqual(lastGrantAt + LEASE + MARGIN);
    expect(cluster.nodes.get('a')?.committed?.members.map((m) => m.id)).toEqual(['a', 'b']);
  });

  it('a deposed leader on the minority side stops granting and its followers stop serving', () => {
    const cluster = startCluster(['a', 'b', 'c', 'd', 'e']);
    // a (leader) and b on one side, c d e on the other.
    for (const x of ['a', 'b']) for (const y of ['c', 'd', 'e']) cluster.cut(x, y);
    const cutAt = cluster.now;
    cluster.run(3000);
    // a's own lease came from rounds a majority acked, all sent before the cut: no grant after it lapsed.
    const lateGrants = cluster.sent.filter(
      (e) =>
        e.from === 'a' && e.message.type === 'heartbeat' && e.message.leaseMs > 0 && e.at > cutAt + LEASE,
    );
    expect(lateGrants).toEqual([]);
    const b = cluster.nodes.get('b') as Consensus;
    expect(b.hasLease(cluster.now)).toBe(false);
    expect(b.leaseUntil).toBeLessThanOrEqual(cutAt + LEASE);
    expect(cluster.nodes.get('a')?.hasLease(cluster.now)).toBe(false);
    const majorityLeader = ['c', 'd', 'e']
      .map((id) => cluster.nodes.get(id))
      .find((c) => c?.role === 'leader');
    expect(majorityLeader).toBeDefined();
    cluster.heal();
    cluster.run(1000);
    expect(cluster.leader()?.self.id).toBe(majorityLeader?.self.id);
    expect(cluster.nodes.get('a')?.role).toBe('follower');
  });
});

describe('consensus: serving rule', () => {
  it('at most one member serves each partition, and every partition is served in a healthy cluster', () => {
    const cluster = startCluster(['a', 'b', 'c'], {}, 64);
    const served = new Map<number, string>();
    for (const [id, c] of cluster.nodes) {
      for (const p of c.servingPartitions(cluster.now)) {
        expect(served.has(p)).toBe(false);
        served.set(p, id);
        expect(c.isServingPrimary(cluster.now, p)).toBe(true);
      }
    }
    expect(served.size).toBe(64);
    const table = partitionTableFor(cluster.nodes.get('a')?.committed as ClusterState, 1);
    for (const [p, id] of served) expect(table.primary(p)?.id).toBe(id);
  });

  it('a member that accepted a state more than one version past its committed one serves nothing', () => {
    const cluster = startCluster(['a', 'b'], {}, 64);
    const b = cluster.nodes.get('b') as Consensus;
    expect(b.servingPartitions(cluster.now).length).toBeGreaterThan(0);
    const committed = b.committed as ClusterState;
    // Deliver two proposals to b without the commit in between (a heartbeat would carry it).
    const next = applyChange(committed, { type: 'noop', changeId: 'x' }).state;
    const after = applyChange(next, { type: 'noop', changeId: 'y' }).state;
    const env = { term: b.term, from: 'a', fromIncarnation: 1, toIncarnation: 1 };
    b.receive('a', { type: 'propose', ...env, state: { ...after, term: b.term } }, cluster.now);
    expect(b.accepted?.version).toBe(committed.version + 2);
    expect(b.servingPartitions(cluster.now)).toEqual([]);
  });
});

describe('consensus: messages', () => {
  it('every message a cluster run sends matches the wire schema', () => {
    const cluster = startCluster(['a', 'b', 'c']);
    cluster.crash('b');
    cluster.run(3000);
    const types = new Set(cluster.sent.map((e) => e.message.type));
    expect([...types].sort()).toEqual(
      ['ack', 'commit', 'heartbeat', 'preVote', 'preVoteReply', 'propose', 'requestVote', 'vote']
        .filter((t) => types.has(t as never))
        .sort(),
    );
    for (const e of cluster.sent) expect(() => ConsensusMessage.parse(e.message)).not.toThrow();
    expect(types.has('heartbeat') && types.has('ack') && types.has('propose')).toBe(true);
  });

  it('rejects a malformed message at the schema', () => {
    expect(() =>
      ConsensusMessage.parse({ type: 'heartbeat', term: -1, from: '', fromIncarnation: 1, toIncarnation: 1 }),
    ).toThrow();
  });
});

describe('consensus: options', () => {
  it('rejects nonsensical timing and a bootstrap state without self', () => {
    const random = createRandom(1);
    const state = initialState({ id: 'a', url: '', incarnation: 1, capacityBytes: 1 }, 4);
    expect(() => createConsensus({ self: { id: 'a', incarnation: 1 }, random, leaseMs: 0 })).toThrow(
      RangeError,
    );
    expect(() =>
      createConsensus({ self: { id: 'a', incarnation: 1 }, random, electionTimeoutMs: { min: 5, max: 1 } }),
    ).toThrow(RangeError);
    expect(() => createConsensus({ self: { id: 'b', incarnation: 1 }, random, initialState: state })).toThrow(
      RangeError,
    );
    expect(MARGIN).toBe(200);
  });
});
