/**
 * Failure domains (`domain-max`): the admission rule on snapshots built in memory. The etcd side
 * (the paged read, the serialising `admitted` key) is tested against a real etcd in
 * test/semaphore/domains.test.ts.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { GroupFixture } from './fixture.js';
import { GroupKeys } from './keys.js';
import { decide } from './snapshot.js';
import { groupStatus } from './status.js';

const keys = new GroupKeys('/sluice/v1/', 'default');
const NOW = new Date('2026-12-01T15:00:00Z');

/** Each node acts on decide(), in turn, until nobody more is admitted. Returns who was, in order. */
function settle(s: GroupFixture, nodes: readonly string[]): string[] {
  const admitted: string[] = [];
  for (let changed = true; changed; ) {
    changed = false;
    for (const node of nodes) {
      if (decide(s.snapshot(), node, NOW).kind === 'admit') {
        s.admit(node);
        admitted.push(node);
        changed = true;
      }
    }
  }
  return admitted;
}

function release(s: GroupFixture, node: string): void {
  s.del(keys.queue(node));
  s.del(keys.holding(node));
}

describe('domain-max', () => {
  it('lets nodes of other domains pass one blocked by its domain, which goes first once it frees', () => {
    const s = new GroupFixture(keys, NOW);
    s.put(keys.max, '2');
    s.put(keys.domainMax, '1');
    s.queue('a', { domain: 'rack-1' });
    s.queue('b', { domain: 'rack-1' });
    s.queue('c', { domain: 'rack-2' });
    s.queue('d', { domain: 'rack-3' });
    // a takes rack-1's only slot; b waits for its rack, and c (behind it) passes it.
    expect(settle(s, ['d', 'c', 'b', 'a']).sort()).toEqual(['a', 'c']);
    expect(decide(s.snapshot(), 'b', NOW)).toMatchObject({ kind: 'wait', reason: 'domain-full' });
    expect(decide(s.snapshot(), 'd', NOW)).toMatchObject({ kind: 'wait', reason: 'queue' });
    const status = groupStatus(s.snapshot(), NOW);
    expect(status.domainMax).toBe(1);
    expect(status.waiting.find((w) => w.node === 'b')?.heldBack).toContain('rack-1 has 1 of 1');
    expect(status.domains).toEqual([
      { domain: 'rack-1', holders: 1, waiting: 1, full: true },
      { domain: 'rack-2', holders: 1, waiting: 0, full: true },
      { domain: 'rack-3', holders: 0, waiting: 1, full: false },
    ]);
    // rack-1 frees up: b kept its place, so it goes before d, which was behind it all along.
    release(s, 'a');
    expect(settle(s, ['d', 'c', 'b', 'a'])).toEqual(['b']);
    release(s, 'c');
    expect(settle(s, ['d', 'c', 'b', 'a'])).toEqual(['d']);
  });

  it('counts a lost holder in its domain, and nodes without a domain against max only', () => {
    const s = new GroupFixture(keys, NOW);
    s.put(keys.max, '3');
    s.put(keys.domainMax, '1');
    s.put(keys.lossBudget, '1');
    s.queue('lost', { domain: 'z1' });
    s.admit('lost');
    s.del(keys.queue('lost'));
    s.queue('a', { domain: 'z1' });
    s.queue('free');
    s.queue('b', { domain: 'z2' });
    expect(settle(s, ['a', 'free', 'b'])).toEqual(['free', 'b']);
    expect(decide(s.snapshot(), 'a', NOW)).toMatchObject({ reason: 'domain-full' });
  });

  it('admits no node with a domain at domain-max 0, and fails closed on a bad value', () => {
    const s = new GroupFixture(keys, NOW);
    s.put(keys.max, '2');
    s.put(keys.domainMax, '0');
    s.queue('a', { domain: 'z1' });
    s.queue('b');
    expect(settle(s, ['a', 'b'])).toEqual(['b']);
    s.put(keys.domainMax, 'one');
    s.queue('c');
    const d = decide(s.snapshot(), 'c', NOW);
    expect(d).toMatchObject({ kind: 'wait', reason: 'invalid-value' });
    expect(d.kind === 'wait' && d.detail).toContain(keys.domainMax);
    expect(groupStatus(s.snapshot(), NOW).blocker).toMatchObject({
      kind: 'invalid-value',
      key: keys.domainMax,
    });
  });

  it('never exceeds max nor domain-max, and leaves no slot unused that a waiter could take (property)', () => {
    const nodes = ['n0', 'n1', 'n2', 'n3', 'n4', 'n5'];
    const domainOf = fc.constantFrom<string | undefined>('d0', 'd1', 'd2', undefined);
    const op = fc.record({
      // Weighted towards queueing, so that queues form behind full domains.
      t: fc.constantFrom(
        'queue',
        'queue',
        'queue',
        'release',
        'release',
        'expire',
        'clear',
        'max',
        'domain-max',
      ),
      n: fc.constantFrom(...nodes),
      d: domainOf,
      v: fc.integer({ min: 0, max: 4 }),
    });
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 0, max: 2 }),
        fc.array(op, { maxLength: 40 }),
        (max0, domainMax0, ops) => {
          const s = new GroupFixture(keys, NOW);
          let max = max0;
          let domainMax = domainMax0;
          s.put(keys.max, String(max));
          s.put(keys.domainMax, String(domainMax));
          s.put(keys.lossBudget, '8');
          const domains = new Map<string, string | undefined>();
          for (const { t, n, d, v } of ops) {
            const q = keys.queue(n);
            const h = keys.holding(n);
            if (t === 'queue' && !s.kvs.has(q) && !s.kvs.has(h)) {
              domains.set(n, d);
              s.queue(n, d === undefined ? {} : { domain: d });
            }
            if (t === 'release' && s.kvs.has(h) && s.kvs.has(q)) release(s, n);
            if (t === 'expire') s.del(q);
            if (t === 'clear' && s.kvs.has(h) && !s.kvs.has(q)) s.del(h);
            // Limits only rise here: holders admitted before a decrease drain, as documented.
            if (t === 'max' && v > max) {
              max = v;
              s.put(keys.max, String(max));
            }
            if (t === 'domain-max' && v > domainMax && v <= 3) {
              domainMax = v;
              s.put(keys.domainMax, String(domainMax));
            }
            settle(s, nodes);
            // The independent count: markers, and the domain each node was queued with.
            const holders = nodes.filter((node) => s.kvs.has(keys.holding(node)));
            expect(holders.length).toBeLessThanOrEqual(max);
            const perDomain = new Map<string, number>();
            for (const node of holders) {
              const domain = domains.get(node);
              if (domain) perDomain.set(domain, (perDomain.get(domain) ?? 0) + 1);
            }
            for (const count of perDomain.values()) expect(count).toBeLessThanOrEqual(domainMax);
            // Work-conserving: while a slot is free, no live waiter whose domain has room waits.
            if (holders.length < max) {
              for (const node of nodes) {
                if (!s.kvs.has(keys.queue(node)) || s.kvs.has(keys.holding(node))) continue;
                const domain = domains.get(node);
                const room = !domain || (perDomain.get(domain) ?? 0) < domainMax;
                expect(room, `${node} waits with a free slot and room in ${domain}`).toBe(false);
              }
            }
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});
