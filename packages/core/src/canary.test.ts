/**
 * The canary rule on snapshots built in memory: each admission writes what the semaphore's
 * admission txn writes (`seatState`, the canary record), each release what its release txn writes.
 * The etcd side is tested against a real etcd in test/semaphore/canary.test.ts.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { groupAdmission } from './admission.js';
import { parseCanary, seatState } from './canary.js';
import { GroupFixture } from './fixture.js';
import { GroupKeys } from './keys.js';
import { canaryInputs, decide } from './snapshot.js';

const keys = new GroupKeys('/sluice/v1/', 'default');
const T0 = new Date('2026-12-01T15:00:00Z');
const MIN = 60_000;

/** A group with a canary setting, whose writes follow the semaphore's txns. */
class CanaryGroup extends GroupFixture {
  /** Admits `node` if decide() says so at `now`, writing the canary seat. Returns whether it did. */
  tryAdmit(node: string, now: Date): boolean {
    const snapshot = this.snapshot();
    const decision = decide(snapshot, node, now);
    if (decision.kind !== 'admit') return false;
    if (decision.canary) {
      const state = seatState(canaryInputs(snapshot), decision.canary, now);
      if (decision.canary.start) {
        for (const c of snapshot.canaries) if (c.node !== node) this.del(c.key);
      }
      this.put(keys.canaryState, JSON.stringify(state));
      const record = { v: 1, node, version: decision.canary.version, grantedAt: now.toISOString() };
      this.put(keys.canaryRecord(node), JSON.stringify(record));
    }
    this.admit(node);
    return true;
  }

  /** Every waiter in turn, until nobody more is admitted; who was, in order. */
  settle(nodes: readonly string[], now: Date): string[] {
    const admitted: string[] = [];
    for (let changed = true; changed; ) {
      changed = false;
      for (const node of nodes) {
        if (this.tryAdmit(node, now)) {
          admitted.push(node);
          changed = true;
        }
      }
    }
    return admitted;
  }

  /** `node` gives its slot back at `now` (`released`: its post-checks passed). */
  release(node: string, now: Date, outcome: 'released' | 'abandoned' = 'released'): void {
    const key = keys.canaryRecord(node);
    const canary = this.kvs.get(key);
    if (canary && JSON.parse(canary.value).outcome === undefined) {
      const ended = { ...JSON.parse(canary.value), outcome, endedAt: now.toISOString() };
      this.put(key, JSON.stringify(ended));
    }
    this.del(keys.queue(node));
    this.del(keys.holding(node));
  }
}

function group(count: number, soak: string, max: number): CanaryGroup {
  const g = new CanaryGroup(keys, T0);
  g.put(keys.max, String(max));
  g.put(keys.canary, JSON.stringify({ count, soak }));
  return g;
}

const at = (minutes: number) => new Date(T0.getTime() + minutes * MIN);

describe('the canary setting', () => {
  it('parses {"count":K,"soak":D} and fails closed on anything else, naming the key', () => {
    expect(parseCanary('{"count":2,"soak":"30m"}', keys.canary)).toEqual({
      ok: true,
      value: { count: 2, soakMs: 30 * MIN },
    });
    expect(parseCanary(undefined, keys.canary)).toEqual({ ok: true, value: null });
    for (const bad of [
      '{"count":0,"soak":"30m"}',
      '{"count":2}',
      '{"count":2,"soak":"soon"}',
      '{"count":2,"soak":"30m","extra":1}',
      '{"count":1.5,"soak":"1m"}',
      '{"count":2,"soak":"31d"}',
      '2',
      'count=2',
    ]) {
      const parsed = parseCanary(bad, keys.canary);
      expect(parsed.ok, bad).toBe(false);
      if (!parsed.ok) expect(parsed.error.message).toContain(keys.canary);
    }
  });

  it('a malformed canary setting or state admits nobody and is named in the blocker', () => {
    const g = group(1, '1m', 3);
    g.put(keys.canary, '{"count":"two"}');
    g.queue('a', { toVersion: '2.0' });
    expect(decide(g.snapshot(), 'a', T0)).toMatchObject({ reason: 'invalid-value' });
    expect(groupAdmission(g.snapshot(), T0).blocker).toMatchObject({
      kind: 'invalid-value',
      key: keys.canary,
    });
    g.put(keys.canary, '{"count":1,"soak":"1m"}');
    g.put(keys.canaryState, '{"v":1}');
    expect(decide(g.snapshot(), 'a', T0)).toMatchObject({ reason: 'invalid-value' });
    expect(groupAdmission(g.snapshot(), T0).blocker).toMatchObject({ key: keys.canaryState });
  });
});

describe('the canary rule', () => {
  it('lets exactly K nodes of a new version reboot, then nobody until they are back and soaked', () => {
    const g = group(2, '30m', 5);
    const nodes = ['a', 'b', 'c', 'd', 'e', 'f'];
    for (const n of nodes) g.queue(n, { toVersion: '2.0' });
    expect(g.settle(nodes, at(0))).toEqual(['a', 'b']);
    expect(decide(g.snapshot(), 'c', at(0))).toMatchObject({ kind: 'wait', reason: 'canary' });
    g.release('a', at(5));
    expect(g.settle(nodes, at(6))).toEqual([]);
    g.release('b', at(10));
    // Both back: the soak runs from the last one back, and the waiters know when it ends.
    const waiting = decide(g.snapshot(), 'c', at(11));
    expect(waiting).toMatchObject({ kind: 'wait', reason: 'canary', wakeAt: at(40) });
    expect(groupAdmission(g.snapshot(), at(11)).blocker).toMatchObject({
      kind: 'canary',
      failed: false,
      until: at(40).toISOString(),
    });
    expect(g.settle(nodes, at(39.9))).toEqual([]);
    // Soaked: the rest go as max allows, and none of them is a canary.
    expect(g.settle(nodes, at(40))).toEqual(['c', 'd', 'e', 'f']);
    expect(
      g
        .snapshot()
        .canaries.map((c) => c.node)
        .sort(),
    ).toEqual(['a', 'b']);
  });

  it('lets nodes of proven versions and with no version go until the seats are taken', () => {
    const g = group(2, '30m', 5);
    g.queue('a', { toVersion: '2.0' });
    g.queue('x'); // a manual reboot: no version
    g.queue('b', { toVersion: '2.0' });
    g.queue('y');
    expect(g.settle(['a', 'x'], at(0))).toEqual(['a', 'x']);
    // b takes the last seat; from then on y waits with everyone else.
    expect(g.settle(['b', 'y'], at(0))).toEqual(['b']);
    expect(decide(g.snapshot(), 'y', at(0))).toMatchObject({ reason: 'canary' });
  });

  it('a canary that fails its post-checks stops everyone until the canary is reset', () => {
    const g = group(1, '10m', 3);
    for (const n of ['a', 'b']) g.queue(n, { toVersion: '2.0' });
    expect(g.settle(['a', 'b'], at(0))).toEqual(['a']);
    const record = JSON.parse(g.kvs.get(keys.canaryRecord('a'))!.value);
    g.put(
      keys.canaryRecord('a'),
      JSON.stringify({ ...record, outcome: 'failed', problem: 'nginx down' }),
    );
    expect(decide(g.snapshot(), 'b', at(60))).toMatchObject({
      reason: 'canary-failed',
      detail: expect.stringContaining('a nginx down'),
    });
    expect(groupAdmission(g.snapshot(), at(60)).blocker).toMatchObject({
      kind: 'canary',
      failed: true,
    });
    // sluicectl canary reset deletes the state and the records: a new canary starts.
    g.del(keys.canaryState);
    g.del(keys.canaryRecord('a'));
    expect(g.settle(['b'], at(61))).toEqual(['b']);
    expect(JSON.parse(g.kvs.get(keys.canaryState)!.value)).toMatchObject({ version: '2.0' });
  });

  it('a lost canary halts the group whatever the loss budget', () => {
    const g = group(1, '10m', 3);
    g.put(keys.lossBudget, '2');
    for (const n of ['a', 'b']) g.queue(n, { toVersion: '2.0' });
    g.settle(['a', 'b'], at(0));
    g.del(keys.queue('a')); // a's lease ran out during its reboot
    expect(decide(g.snapshot(), 'b', at(1))).toMatchObject({
      reason: 'halted',
      detail: 'canary a lost during reboot',
    });
    expect(groupAdmission(g.snapshot(), at(1)).blocker).toMatchObject({ kind: 'halted' });
  });

  it('a canary forced off or given back unused: forced stops the group, unused frees its seat', () => {
    const g = group(1, '10m', 3);
    for (const n of ['a', 'b', 'c']) g.queue(n, { toVersion: '2.0' });
    expect(g.settle(['a', 'b', 'c'], at(0))).toEqual(['a']);
    g.release('a', at(1), 'abandoned');
    expect(g.settle(['b', 'c'], at(1))).toEqual(['b']);
    // An operator forces b's slot off: the marker goes without b's own release.
    g.del(keys.holding('b'));
    g.del(keys.queue('b'));
    expect(decide(g.snapshot(), 'c', at(2))).toMatchObject({
      reason: 'canary-failed',
      detail: expect.stringContaining('without its own release'),
    });
  });

  it('a new version starts a new canary once the last one is done; the proven one goes freely', () => {
    const g = group(1, '10m', 3);
    g.queue('a', { toVersion: '2.0' });
    g.settle(['a'], at(0));
    g.queue('b', { toVersion: '3.0' });
    // One canary at a time: 3.0 waits for 2.0's.
    expect(decide(g.snapshot(), 'b', at(1))).toMatchObject({ reason: 'canary' });
    g.release('a', at(2));
    expect(g.settle(['b'], at(12))).toEqual(['b']);
    expect(JSON.parse(g.kvs.get(keys.canaryState)!.value)).toMatchObject({
      version: '3.0',
      done: ['2.0'],
    });
    expect(g.snapshot().canaries.map((c) => c.node)).toEqual(['b']);
    // A late node of the proven 2.0 waits too: 3.0 has taken its seats, nobody else goes.
    g.queue('c', { toVersion: '2.0' });
    expect(decide(g.snapshot(), 'c', at(13))).toMatchObject({ reason: 'canary' });
    g.release('b', at(14));
    expect(g.settle(['c'], at(24))).toEqual(['c']);
  });

  it('without a canary setting the rule does nothing', () => {
    const g = new CanaryGroup(keys, T0);
    g.put(keys.max, '3');
    for (const n of ['a', 'b', 'c']) g.queue(n, { toVersion: '2.0' });
    expect(g.settle(['a', 'b', 'c'], at(0))).toEqual(['a', 'b', 'c']);
    expect(g.snapshot().canaries).toEqual([]);
  });

  it('never seats more than K, and admits nobody else between the Kth seat and the soak (property)', () => {
    const step = fc.record({
      node: fc.integer({ min: 0, max: 5 }),
      action: fc.constantFrom('queue', 'admit', 'admit', 'release', 'abandon'),
      version: fc.constantFrom('1', '1', '2', undefined),
      minutes: fc.constantFrom(0, 0, 1, 4, 12),
    });
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 2, max: 5 }),
        fc.array(step, { minLength: 40, maxLength: 120 }),
        (count, max, steps) => {
          const g = group(count, '10m', max);
          let now = T0.getTime();
          /** The model's own account of the canary: version, seats, and when it settles. */
          const seated = new Map<string, Set<string>>();
          const back = new Map<string, number>();
          let current: string | null = null;
          /** Nodes whose slot now is a canary seat. */
          const inSeat = new Set<string>();
          for (const s of steps) {
            const node = `n${s.node}`;
            now += s.minutes * MIN;
            const queued = g.kvs.has(keys.queue(node));
            const holding = g.kvs.has(keys.holding(node));
            if (s.action === 'queue' && !queued) {
              g.queue(node, s.version === undefined ? {} : { toVersion: s.version });
            } else if (s.action === 'admit' && queued && !holding) {
              const before = g.snapshot();
              const version = JSON.parse(g.kvs.get(keys.queue(node))!.value).toVersion;
              if (!g.tryAdmit(node, new Date(now))) continue;
              const state = JSON.parse(g.kvs.get(keys.canaryState)?.value ?? 'null');
              const seat = g
                .snapshot()
                .canaries.some((c) => c.node === node && c.record?.outcome === undefined);
              if (seat) {
                if (state.version !== current) {
                  current = state.version;
                  seated.set(current!, new Set());
                }
                seated.get(current!)!.add(node);
                inSeat.add(node);
                back.delete(node);
                // Never more than K seats of one canary (abandoned ones leave theirs).
                const taken = before.canaries.filter(
                  (c) => c.record?.version === current && c.record?.outcome !== 'abandoned',
                ).length;
                expect(taken).toBeLessThan(count);
              } else if (current !== null) {
                // Not a canary: the current canary had fewer than K seats, or was settled.
                const seats = [...seated.get(current)!];
                const settled =
                  seats.length > 0 &&
                  seats.every((n) => back.has(n)) &&
                  now >= Math.max(...seats.map((n) => back.get(n)!)) + 10 * MIN;
                expect(seats.length < count || settled).toBe(true);
                expect(
                  version === undefined || version === current || settled || seats.length < count,
                ).toBe(true);
              }
            } else if ((s.action === 'release' || s.action === 'abandon') && holding) {
              const outcome = s.action === 'release' ? 'released' : 'abandoned';
              g.release(node, new Date(now), outcome);
              if (current && inSeat.delete(node) && seated.get(current)?.has(node)) {
                if (outcome === 'released') back.set(node, now);
                else seated.get(current)!.delete(node);
              }
            }
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
