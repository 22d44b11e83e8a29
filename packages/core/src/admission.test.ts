import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { describeBlocker, groupAdmission } from './admission.js';
import { GroupFixture } from './fixture.js';
import { GroupKeys } from './keys.js';
import { decide } from './snapshot.js';

const keys = new GroupKeys('/sluice/v1/', 'default');
const NOW = new Date('2026-12-01T15:00:00Z');

describe('groupAdmission', () => {
  it('counts free slots, and names the one blocker when there are none', () => {
    const s = new GroupFixture(keys, NOW);
    s.put(keys.max, '2');
    s.queue('a');
    s.admit('a');
    s.queue('b');
    expect(groupAdmission(s.snapshot(), NOW)).toEqual({
      admittable: 1,
      blocker: null,
      holders: 1,
      overMax: 0,
    });

    s.put(keys.paused, JSON.stringify({ reason: 'BIOS', by: 'ann@ops', since: NOW.toISOString() }));
    const paused = groupAdmission(s.snapshot(), NOW);
    expect(paused.admittable).toBe(0);
    expect(paused.blocker).toEqual({
      kind: 'paused',
      reason: 'BIOS',
      by: 'ann@ops',
      since: NOW.toISOString(),
    });
    expect(describeBlocker(paused.blocker!)).toBe(
      'paused by ann@ops since 2026-12-01T15:00:00.000Z: BIOS',
    );

    // An invalid loss budget admits nobody either, even with a slot free and no pause.
    s.del(keys.paused);
    s.put(keys.lossBudget, 'lots');
    const invalid = groupAdmission(s.snapshot(), NOW);
    expect(invalid.admittable).toBe(0);
    expect(invalid.blocker).toMatchObject({ kind: 'invalid-value', key: keys.lossBudget });
  });

  it('calls a lost holder a halt, before and after the pause is written', () => {
    const s = new GroupFixture(keys, NOW);
    s.put(keys.max, '3');
    s.queue('a');
    s.admit('a');
    s.del(keys.queue('a'));
    expect(groupAdmission(s.snapshot(), NOW).blocker).toMatchObject({
      kind: 'halted',
      lost: ['a'],
    });
    s.put(keys.paused, JSON.stringify({ reason: 'node a lost during reboot', by: 'sluice' }));
    expect(groupAdmission(s.snapshot(), NOW).blocker).toMatchObject({
      kind: 'halted',
      reason: 'node a lost during reboot',
    });
    // The lost node cleared with --force: still halted until someone resumes.
    s.del(keys.holding('a'));
    expect(groupAdmission(s.snapshot(), NOW).blocker).toMatchObject({ kind: 'halted', lost: [] });
  });

  it('says when a closed window opens, and counts holders over max after a decrease', () => {
    const s = new GroupFixture(keys, NOW);
    s.put(keys.windows, 'Mon-Sun 22:00-23:00 UTC');
    expect(groupAdmission(s.snapshot(), NOW).blocker).toEqual({
      kind: 'window-closed',
      opensAt: '2026-12-01T22:00:00.000Z',
    });
    s.del(keys.windows);
    s.put(keys.max, '3');
    for (const n of ['a', 'b', 'c']) {
      s.queue(n);
      s.admit(n);
    }
    s.put(keys.max, '1');
    expect(groupAdmission(s.snapshot(), NOW)).toEqual({
      admittable: 0,
      blocker: { kind: 'full', holders: 3, max: 1 },
      holders: 3,
      overMax: 2,
    });
  });

  it('agrees with decide() for the first waiter in any group', () => {
    const op = fc.oneof(
      fc.record({ t: fc.constant('queue' as const), n: fc.integer({ min: 0, max: 5 }) }),
      fc.record({ t: fc.constant('admit' as const) }),
      fc.record({ t: fc.constant('release' as const), n: fc.integer({ min: 0, max: 5 }) }),
      fc.record({ t: fc.constant('lose' as const), n: fc.integer({ min: 0, max: 5 }) }),
      fc.record({ t: fc.constant('max' as const), v: fc.constantFrom('0', '1', '2', '3', 'x') }),
      fc.record({ t: fc.constant('pause' as const), on: fc.boolean() }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 30 }), (ops) => {
        const s = new GroupFixture(keys, NOW);
        for (const o of ops) {
          const snap = s.snapshot();
          if (o.t === 'queue' && !snap.queue.some((e) => e.node === `n${o.n}`)) s.queue(`n${o.n}`);
          if (o.t === 'admit') {
            const first = snap.queue.find((e) => !e.holding);
            if (first && decide(snap, first.node, NOW).kind === 'admit') s.admit(first.node);
          }
          if (o.t === 'release') {
            s.del(keys.queue(`n${o.n}`));
            s.del(keys.holding(`n${o.n}`));
          }
          if (o.t === 'lose' && snap.queue.some((e) => e.node === `n${o.n}` && e.holding)) {
            s.del(keys.queue(`n${o.n}`));
          }
          if (o.t === 'max') s.put(keys.max, o.v);
          if (o.t === 'pause') {
            if (o.on) s.put(keys.paused, 'maintenance');
            else s.del(keys.paused);
          }
        }
        const snap = s.snapshot();
        const first = snap.queue.find((e) => !e.holding);
        if (!first) return;
        const decision = decide(snap, first.node, NOW);
        const admission = groupAdmission(snap, NOW);
        expect(decision.kind === 'admit').toBe(admission.admittable > 0);
        if (decision.kind === 'wait') {
          const expected = { queue: 'full', paused: 'paused', halted: 'halted' } as const;
          const kind = expected[decision.reason as keyof typeof expected] ?? decision.reason;
          // A group paused while it also has lost holders is reported as halted.
          if (!(decision.reason === 'paused' && admission.blocker?.kind === 'halted')) {
            expect(admission.blocker?.kind).toBe(kind);
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});
