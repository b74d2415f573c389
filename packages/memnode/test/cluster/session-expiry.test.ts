import { afterEach, describe, expect, it } from 'vitest';
import type { ClusterState } from '@tmem/protocol';
import { startSessionExpiry, type SessionExpiry } from '../../src/cluster/session-expiry.ts';
import type { ChangeRequest } from '../../src/cluster/cluster-member.ts';
import { initialState } from '../../src/cluster/cluster-state.ts';
import { createSessionLiveness } from '../../src/session-liveness.ts';
import { silentLogger } from '../../src/logger.ts';

const S1 = '1'.repeat(32);
const S2 = '2'.repeat(32);
const member = (id: string) => ({ id, url: `ws://${id}`, incarnation: 1, capacityBytes: 1 });

function state(): ClusterState {
  const base = initialState(member('a'), 64, 'f'.repeat(32));
  const pool = { kind: 'ephemeral', pageSize: 4096, replication: 1 } as const;
  return {
    ...base,
    members: [member('a'), member('b')],
    pools: [
      { ...pool, id: 1, owner: 'app', session: S1 },
      { ...pool, id: 2, owner: 'app', session: S2 },
      { ...pool, id: 3, owner: 'app', session: S1 },
    ],
  };
}

let expiry: SessionExpiry | undefined;
afterEach(() => expiry?.close());

/** A sweep on member 'a' of {a, b}, whose own clock is far past the grace; `answer` is b's. */
function sweepWith(options: {
  answer: (sessions: { session: string }[]) => Promise<boolean[]>;
  leader?: string;
  localSessions?: string[];
}) {
  const proposed: ChangeRequest[] = [];
  let t = 0;
  const liveness = createSessionLiveness({ graceMs: 1000, now: () => t });
  for (const session of options.localSessions ?? []) liveness.connected('app', session);
  t = 10_000;
  expiry = startSessionExpiry({
    member: {
      nodeId: 'a',
      committed: state,
      leaderId: () => options.leader ?? 'a',
      propose: (change) => {
        proposed.push(change);
        return Promise.resolve({ ok: true });
      },
      callMember: ((_id: string, build: (id: number) => { sessions: { session: string }[] }) =>
        options.answer(build(7).sessions).then((live) => ({ t: 'sessionsLive', id: 7, live }))) as never,
    },
    liveness,
    logger: silentLogger(),
  });
  return { proposed, sweep: () => (expiry as SessionExpiry).sweep() };
}

describe('the session sweep, wired', () => {
  it('ends the sessions no member reports live, naming the pools it saw', async () => {
    const { proposed, sweep } = sweepWith({
      answer: (keys) => Promise.resolve(keys.map((k) => k.session === S2)),
    });
    await sweep();
    expect(proposed).toEqual([{ type: 'endSession', owner: 'app', session: S1, pools: [1, 3] }]);
  });

  it('ends nothing when a member does not answer, or when a session is live on this node', async () => {
    const silent = sweepWith({ answer: () => Promise.reject(new Error('timeout')) });
    await silent.sweep();
    expect(silent.proposed).toEqual([]);
    expiry?.close();
    const local = sweepWith({
      answer: (keys) => Promise.resolve(keys.map(() => false)),
      localSessions: [S1],
    });
    await local.sweep();
    expect(local.proposed).toEqual([{ type: 'endSession', owner: 'app', session: S2, pools: [2] }]);
  });

  it('does nothing on a member that is not the coordinator', async () => {
    const follower = sweepWith({ answer: (keys) => Promise.resolve(keys.map(() => false)), leader: 'b' });
    await follower.sweep();
    expect(follower.proposed).toEqual([]);
  });
});
