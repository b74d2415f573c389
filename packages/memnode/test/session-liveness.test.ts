import { describe, expect, it } from 'vitest';
import { createSessionLiveness } from '../src/session-liveness.ts';

const S = '0123456789abcdef0123456789abcdef';

describe('session liveness', () => {
  it('keeps a session live while connected and for the grace after its last connection closed', () => {
    let t = 0;
    const live = createSessionLiveness({ graceMs: 1000, now: () => t });
    t = 5000; // up for longer than the grace: an unseen session is not live
    expect(live.isLive('app', S)).toBe(false);
    const first = live.connected('app', S);
    const second = live.connected('app', S);
    expect(live.isLive('app', S)).toBe(true);
    // The same session id under another identity is another session.
    expect(live.isLive('other', S)).toBe(false);
    first();
    first(); // released twice: counted once
    t += 5000;
    expect(live.isLive('app', S)).toBe(true);
    second();
    t += 999;
    expect(live.isLive('app', S)).toBe(true);
    t += 1;
    expect(live.isLive('app', S)).toBe(false);
  });

  it('counts every session live while the node has been up for less than the grace', () => {
    let t = 100;
    const live = createSessionLiveness({ graceMs: 1000, now: () => t });
    expect(live.isLive('app', S)).toBe(true);
    t = 1099;
    expect(live.isLive('app', S)).toBe(true);
    t = 1100;
    expect(live.isLive('app', S)).toBe(false);
  });

  it('forgets sessions disconnected for longer than the grace, so its memory stays bounded', () => {
    let t = 0;
    const live = createSessionLiveness({ graceMs: 1000, now: () => t });
    for (let i = 0; i < 100; i++) live.connected('app', i.toString(16).padStart(32, '0'))();
    expect(live.size()).toBe(100);
    t = 2000;
    live.connected('app', S);
    expect(live.size()).toBe(1);
  });
});
