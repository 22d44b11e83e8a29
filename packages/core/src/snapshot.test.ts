import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { GroupFixture } from './fixture.js';
import { GroupKeys } from './keys.js';
import type { QueueRecord } from './records.js';
import { decide, mustHalt, rankOf } from './snapshot.js';
import { groupStatus } from './status.js';

const keys = new GroupKeys('/sluice/v1/', 'default');
const NOW = new Date('2026-11-25T03:00:00Z');

function record(node: string, state: QueueRecord['state'] = 'waiting'): string {
  return JSON.stringify({
    v: 1,
    node,
    hostname: `${node}.example`,
    state,
    since: NOW.toISOString(),
    enqueuedAt: NOW.toISOString(),
    reason: 'update',
  });
}

describe('rank and admission', () => {
  it('ranks by create revision and admits the first max', () => {
    const s = new GroupFixture(keys, NOW);
    s.put(keys.max, '2');
    for (const n of ['a', 'b', 'c']) s.queue(n);
    const snap = s.snapshot();
    expect(['a', 'b', 'c'].map((n) => rankOf(snap, n))).toEqual([0, 1, 2]);
    expect(decide(snap, 'a', NOW).kind).toBe('admit');
    expect(decide(snap, 'b', NOW).kind).toBe('admit');
    expect(decide(snap, 'c', NOW)).toMatchObject({ kind: 'wait', reason: 'queue', rank: 2 });
    expect(decide(snap, 'zz', NOW)).toMatchObject({ kind: 'wait', reason: 'not-queued' });
  });

  it('says which changes can alter a queue wait: only fewer places ahead than max', () => {
    const s = new GroupFixture(keys, NOW);
    s.put(keys.max, '1');
    for (const n of ['a', 'b', 'c']) s.queue(n);
    s.admit('a');
    expect(decide(s.snapshot(), 'c', NOW)).toMatchObject({
      kind: 'wait',
      reason: 'queue',
      wake: { aheadBelow: 1 },
    });
    // Holders above max after a decrease stand ahead too: their draining is what wakes it.
    s.put(keys.max, '2');
    s.admit('b');
    s.put(keys.max, '1');
    expect(decide(s.snapshot(), 'c', NOW)).toMatchObject({ wake: { aheadBelow: 1 } });
    // Not queued: nothing to sleep on.
    expect(decide(s.snapshot(), 'zz', NOW)).not.toHaveProperty('wake');
  });

  it('admits no node whose expected slot would outlast the open window, and wakes it at the next', () => {
    const s = new GroupFixture(keys, NOW);
    s.put(keys.max, '1');
    // Open 02:00-03:20 UTC every day; NOW is 03:00, so 20 minutes are left.
    s.put(keys.windows, 'daily 02:00+80m UTC');
    s.queue('slow', { expectedSlotMs: 30 * 60_000 });
    expect(decide(s.snapshot(), 'slow', NOW)).toMatchObject({
      kind: 'wait',
      reason: 'window-closing',
      wakeAt: new Date('2026-11-26T02:00:00Z'),
    });
    s.del(keys.queue('slow'));
    s.queue('quick', { expectedSlotMs: 15 * 60_000 });
    expect(decide(s.snapshot(), 'quick', NOW)).toMatchObject({ kind: 'admit' });
  });

  it('keeps a re-put key in its place', () => {
    const s = new GroupFixture(keys, NOW);
    s.queue('a');
    s.queue('b');
    s.put(keys.queue('a'), record('a'), '99');
    expect(rankOf(s.snapshot(), 'a')).toBe(0);
  });

  it('says holding for a node with its marker', () => {
    const s = new GroupFixture(keys, NOW);
    s.queue('a');
    s.admit('a');
    expect(decide(s.snapshot(), 'a', NOW)).toEqual({ kind: 'holding' });
  });

  it('waits while paused, with the reason', () => {
    const s = new GroupFixture(keys, NOW);
    s.put(keys.paused, 'freeze');
    s.queue('a');
    expect(decide(s.snapshot(), 'a', NOW)).toMatchObject({
      reason: 'paused',
      detail: 'group is paused: freeze',
    });
  });

  it('fails closed on an invalid max, naming the key', () => {
    const s = new GroupFixture(keys, NOW);
    s.put(keys.max, 'abc');
    s.queue('a');
    const d = decide(s.snapshot(), 'a', NOW);
    expect(d).toMatchObject({ kind: 'wait', reason: 'invalid-value' });
    expect(d.kind === 'wait' && d.detail).toContain(keys.max);
    expect(s.snapshot().errors.map((e) => e.key)).toEqual([keys.max]);
  });

  it('fails closed on an invalid window spec', () => {
    const s = new GroupFixture(keys, NOW);
    s.put(keys.windows, 'Funday 25:00+1h');
    s.queue('a');
    expect(decide(s.snapshot(), 'a', NOW)).toMatchObject({ kind: 'wait', reason: 'invalid-value' });
  });

  it('waits for a closed window and says when it opens', () => {
    const s = new GroupFixture(keys, NOW);
    s.put(keys.windows, 'Thu 04:00+1h UTC');
    s.queue('a');
    const d = decide(s.snapshot(), 'a', NOW); // Wednesday 03:00 UTC
    expect(d).toMatchObject({ kind: 'wait', reason: 'window-closed' });
    expect(d.kind === 'wait' && d.wakeAt?.toISOString()).toBe('2026-11-26T04:00:00.000Z');
    expect(decide(s.snapshot(), 'a', new Date('2026-11-26T04:30:00Z')).kind).toBe('admit');
  });

  it('counts a lost holder in its old place and halts the group', () => {
    const s = new GroupFixture(keys, NOW);
    s.put(keys.max, '2');
    s.queue('a');
    s.queue('b');
    s.queue('c');
    s.admit('a');
    s.del(keys.queue('a')); // a's hold lease expired
    const snap = s.snapshot();
    expect(snap.holding[0]).toMatchObject({ node: 'a', orphan: true });
    expect(rankOf(snap, 'b')).toBe(1);
    expect(rankOf(snap, 'c')).toBe(2);
    expect(mustHalt(snap)).toBe(true);
    expect(decide(snap, 'b', NOW)).toMatchObject({
      kind: 'wait',
      reason: 'halted',
      detail: 'node a lost during reboot',
    });
    // With a loss budget of 1 the rollout goes on, with the lost slot still occupied.
    s.put(keys.lossBudget, '1');
    const budget = s.snapshot();
    expect(mustHalt(budget)).toBe(false);
    expect(decide(budget, 'b', NOW).kind).toBe('admit');
    expect(decide(budget, 'c', NOW)).toMatchObject({ kind: 'wait', reason: 'queue' });
  });

  it('treats a marker whose queue key was re-created as lost', () => {
    const s = new GroupFixture(keys, NOW);
    s.queue('a');
    s.admit('a');
    s.del(keys.queue('a'));
    s.queue('a'); // the node came back and queued again
    const snap = s.snapshot();
    expect(snap.holding[0]?.orphan).toBe(true);
    expect(decide(snap, 'a', NOW)).toMatchObject({ kind: 'wait', reason: 'halted' });
  });

  it('never admits more than max in any reachable state (property)', () => {
    // Random histories of enqueue, release, lease expiry and operator clean-up with a fixed max.
    // After every step each node acts on decide(), as agents do on every watch event. In every
    // state the holding markers (live and lost holders) must not exceed max.
    const nodes = ['n0', 'n1', 'n2', 'n3'];
    const op = fc.record({
      t: fc.constantFrom('queue', 'release', 'expire', 'clear'),
      n: fc.constantFrom(...nodes),
    });
    const regression = [
      { t: 'queue', n: 'n0' },
      { t: 'expire', n: 'n0' },
      { t: 'queue', n: 'n1' },
    ];
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 3 }), fc.array(op, { maxLength: 40 }), (max, ops) => {
        const s = new GroupFixture(keys, NOW);
        s.put(keys.max, String(max));
        s.put(keys.lossBudget, '8');
        for (const { t, n } of ops) {
          const q = keys.queue(n);
          const h = keys.holding(n);
          if (t === 'queue' && !s.kvs.has(q)) s.queue(n);
          if (t === 'release' && s.kvs.has(h) && s.kvs.has(q)) {
            s.del(q);
            s.del(h);
          }
          if (t === 'expire') s.del(q);
          if (t === 'clear' && s.kvs.has(h) && !s.kvs.has(q)) s.del(h);
          for (const node of nodes) {
            if (decide(s.snapshot(), node, NOW).kind === 'admit') s.admit(node);
            const holders = [...s.kvs.keys()].filter((k) => k.startsWith(keys.holdingPrefix));
            expect(holders.length).toBeLessThanOrEqual(max);
          }
        }
      }),
      { numRuns: 1000, examples: [[1, regression]] },
    );
  });
});

describe('groupStatus', () => {
  it('lists holders, lost holders and waiters with positions', () => {
    const s = new GroupFixture(keys, NOW);
    s.put(keys.max, '3');
    s.queue('a');
    s.queue('b');
    s.queue('c');
    s.queue('d');
    s.admit('a');
    s.admit('b');
    s.del(keys.queue('b'));
    const status = groupStatus(s.snapshot(), NOW, new Map([['8', 3500]]));
    expect(status.max).toBe(3);
    // One of three slots is free, but the lost holder halts the group: nobody can be admitted.
    expect(status.available).toBe(0);
    expect(status.blocker).toMatchObject({ kind: 'halted', lost: ['b'] });
    expect(status.holders.map((h) => [h.node, h.state, h.leaseSecondsLeft])).toEqual([
      ['a', 'holding', 3500],
      ['b', 'lost', null],
    ]);
    expect(status.waiting.map((w) => [w.node, w.position])).toEqual([
      ['c', 1],
      ['d', 2],
    ]);
    expect(status.window).toEqual({
      open: true,
      nextChange: null,
      spec: null,
      canonical: null,
      blackouts: null,
      blackout: null,
    });
  });
});
