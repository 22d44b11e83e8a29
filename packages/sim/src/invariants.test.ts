import { describe, expect, it } from 'vitest';
import {
  checkInvariants,
  openIntervals,
  type RebootEntry,
  type TimelineData,
} from './invariants.js';
import {
  effectiveMax,
  type MarkerInterval,
  type RecordState,
  type TimelineEvent,
} from './timeline.js';

const ROOT = '/p/groups/g/';
const keys = {
  max: `${ROOT}max`,
  paused: `${ROOT}paused`,
  holdingPrefix: `${ROOT}holding/`,
  queuePrefix: `${ROOT}queue/`,
};

/**
 * A timeline from a script of events, one revision each (at revision × 100 ms). A `holding/x`
 * put gets a queue key first when x has none (one revision before it), and a `holding/x` delete
 * deletes the queue key with it, as a release does.
 */
function timeline(script: [string, 'put' | 'delete', string?][], initialMax = '2'): TimelineData {
  const created = new Map<string, number>();
  const events: TimelineEvent[] = [];
  for (const [name, type, value] of script) {
    const revision = events.length + 1;
    const key = ROOT + name;
    if (name.startsWith('holding/') && type === 'put') {
      const queueKey = `${ROOT}queue/${name.slice(8)}`;
      if (!created.has(queueKey)) {
        created.set(queueKey, revision);
        events.push({
          revision,
          at: revision * 100,
          key: queueKey,
          type: 'put',
          value: '{}',
          createRevision: revision,
        });
      }
      const place = created.get(queueKey)!;
      const r = events.length + 1;
      events.push({
        revision: r,
        at: r * 100,
        key,
        type,
        value: JSON.stringify({ createRevision: place }),
        createRevision: r,
      });
      continue;
    }
    if (name.startsWith('holding/') && type === 'delete') {
      // A release deletes the queue key and the marker in one txn.
      const queueKey = `${ROOT}queue/${name.slice(8)}`;
      created.delete(queueKey);
      events.push({
        revision,
        at: revision * 100,
        key: queueKey,
        type,
        value: null,
        createRevision: 0,
      });
    }
    if (type === 'put' && !created.has(key)) created.set(key, revision);
    if (type === 'delete') created.delete(key);
    events.push({
      revision,
      at: revision * 100,
      key,
      type,
      value: type === 'put' ? (value ?? '{}') : null,
      createRevision: type === 'put' ? created.get(key)! : 0,
    });
  }
  const maxChanges: { revision: number; at: number; raw: string | null; value: number }[] = [
    { revision: 0, at: 0, raw: initialMax, value: effectiveMax(initialMax) },
  ];
  const pausedChanges = [{ revision: 0, at: 0, raw: null as string | null }];
  const windowChanges = [{ revision: 0, at: 0, raw: null as string | null }];
  const budgetChanges = [{ revision: 0, at: 0, raw: null as string | null }];
  const markers: MarkerInterval[] = [];
  const records = new Map<string, RecordState[]>();
  for (const e of events) {
    if (e.key.startsWith(keys.queuePrefix)) {
      const node = e.key.slice(keys.queuePrefix.length);
      const parsed = e.value === null ? null : (JSON.parse(e.value) as Record<string, string>);
      const list = records.get(node) ?? [];
      records.set(node, list);
      list.push({
        at: e.at,
        revision: e.revision,
        state: parsed === null ? null : (parsed.state ?? 'unreadable'),
        ...(parsed?.token ? { token: parsed.token } : {}),
      });
    } else if (e.key === `${ROOT}windows`) {
      windowChanges.push({ revision: e.revision, at: e.at, raw: e.value });
    } else if (e.key === `${ROOT}loss-budget`) {
      budgetChanges.push({ revision: e.revision, at: e.at, raw: e.value });
    } else if (e.key === keys.max) {
      maxChanges.push({
        revision: e.revision,
        at: e.at,
        raw: e.value,
        value: effectiveMax(e.value),
      });
    } else if (e.key === keys.paused) {
      pausedChanges.push({ revision: e.revision, at: e.at, raw: e.value });
    } else if (e.key.startsWith(keys.holdingPrefix)) {
      const node = e.key.slice(keys.holdingPrefix.length);
      if (e.type === 'put') {
        markers.push({
          node,
          createdRevision: e.revision,
          createdAt: e.at,
          deletedRevision: null,
          deletedAt: null,
        });
      } else {
        const open = markers.find((m) => m.node === node && m.deletedRevision === null)!;
        open.deletedRevision = e.revision;
        open.deletedAt = e.at;
      }
    }
  }
  const at = <T extends { revision: number }>(list: T[], revision: number) =>
    list.filter((c) => c.revision <= revision).at(-1) ?? list[0]!;
  return {
    startRevision: 0,
    initial: [],
    events,
    maxChanges,
    pausedChanges,
    markers,
    records,
    keys,
    windowChanges,
    maxAt: (r) => at(maxChanges, r).value,
    maxAtTime: (t) => maxChanges.filter((c) => c.at <= t).at(-1)!.value,
    pausedAt: (r) => at(pausedChanges, r).raw,
    windowsAt: (r) => at(windowChanges, r).raw,
    lossBudgetAt: (r) => Number(at(budgetChanges, r).raw ?? '0'),
  };
}

/**
 * A queue key of `node` that is deleted without its marker (its lease ran out): the holder is
 * lost. Appends both events to a script's timeline, at the next revisions.
 */
function lose(t: TimelineData, node: string): void {
  const events = t.events as TimelineEvent[];
  const revision = events.length + 1;
  events.push({
    revision,
    at: revision * 100,
    key: `${ROOT}queue/${node}`,
    type: 'delete',
    value: null,
    createRevision: 0,
  });
}

/** A reboot of `node` down at `downAt` ms for 1 s, on the marker created at `admission`. */
function reboot(node: string, downAt: number, admission: number | null): RebootEntry {
  return {
    node,
    seq: 1,
    downAt,
    upAt: downAt + 1000,
    versionBefore: '1',
    versionAfter: '2',
    slotSeen: admission !== null,
    slotSeenAfterMs: 0,
    admissionRevision: admission,
  };
}

const stages = (...nodes: string[]) => nodes.map((node) => ({ node, version: '2', at: 0 }));

describe('checkInvariants', () => {
  it('accepts max holders and flags one more', () => {
    const ok = timeline([
      ['holding/a', 'put'],
      ['holding/b', 'put'],
      ['holding/a', 'delete'],
      ['holding/c', 'put'],
    ]);
    expect(
      checkInvariants({ reboots: [], stages: [], maxSets: [], timeline: ok, complete: false }).ok,
    ).toBe(true);
    const over = timeline([
      ['holding/a', 'put'],
      ['holding/b', 'put'],
      ['holding/c', 'put'],
    ]);
    const report = checkInvariants({
      reboots: [],
      stages: [],
      maxSets: [],
      timeline: over,
      complete: false,
    });
    expect(report.violations.map((v) => [v.check, v.node, v.revision])).toEqual([
      ['rank', 'c', 6],
      ['slots', 'c', 6],
    ]);
  });

  it('lets holders admitted under a higher max drain, and admits nobody while they hold', () => {
    const input = { reboots: [], stages: [], maxSets: [], complete: false };
    // max 3: a, b, c hold; max lowered to 1 while they do (no violation: they drain); d gets
    // in once all three are gone.
    const drained = timeline(
      [
        ['holding/a', 'put'],
        ['holding/b', 'put'],
        ['holding/c', 'put'],
        ['max', 'put', '1'],
        ['holding/a', 'delete'],
        ['holding/b', 'delete'],
        ['holding/c', 'delete'],
        ['holding/d', 'put'],
      ],
      '3',
    );
    expect(checkInvariants({ ...input, timeline: drained }).violations).toEqual([]);
    // d is admitted while a, admitted under 3, still holds ahead of it; then e as well.
    const early = timeline(
      [
        ['holding/a', 'put'],
        ['max', 'put', '1'],
        ['holding/d', 'put'],
        ['holding/e', 'put'],
      ],
      '3',
    );
    const found = checkInvariants({ ...input, timeline: early }).violations;
    expect(found.map((v) => `${v.check}:${v.node}`)).toEqual(['rank:d', 'rank:e', 'slots:e']);
  });

  it('flags an admission while paused', () => {
    const t = timeline([
      ['paused', 'put', 'maintenance'],
      ['holding/a', 'put'],
    ]);
    const report = checkInvariants({
      reboots: [],
      stages: [],
      maxSets: [],
      timeline: t,
      complete: false,
    });
    expect(report.violations.map((v) => v.check)).toEqual(['paused']);
  });

  it('flags a reboot without a slot, too many down at once, and a second reboot', () => {
    const t = timeline(
      [
        ['holding/a', 'put'],
        ['holding/b', 'put'],
      ],
      '1',
    );
    const report = checkInvariants({
      reboots: [
        reboot('a', 1000, 1),
        reboot('b', 1100, 2),
        reboot('c', 1200, null),
        { ...reboot('a', 5000, 1), seq: 2 },
      ],
      stages: stages('a', 'b', 'c'),
      maxSets: [],
      timeline: t,
      complete: true,
    });
    const checks = report.violations.map((v) => `${v.check}:${v.node}`);
    expect(checks).toContain('rank:b');
    expect(checks).toContain('slots:b');
    expect(checks).toContain('down:b');
    expect(checks).toContain('slot-at-reboot:c');
    expect(checks).toContain('once:a');
    expect(report.peakDown).toBe(3);
  });

  it('under domain-max, flags two holders or two nodes down in one domain, and lets a node pass', () => {
    // max 3, domain-max 1: a (z1) and c (z2) hold; b (z1, queued between them) is passed.
    const t = timeline(
      [
        ['queue/a', 'put'],
        ['queue/b', 'put'],
        ['queue/c', 'put'],
        ['queue/d', 'put'],
        ['holding/a', 'put'],
        ['holding/c', 'put'],
        ['holding/d', 'put'],
      ],
      '3',
    );
    const of = new Map([
      ['a', 'z1'],
      ['b', 'z1'],
      ['c', 'z2'],
      ['d', 'z1'],
    ]);
    const report = checkInvariants({
      reboots: [reboot('a', 1000, 5), reboot('c', 1100, 6), reboot('d', 1200, 7)],
      stages: stages('a', 'c', 'd'),
      maxSets: [],
      timeline: t,
      complete: false,
      domains: { of, max: 1 },
    });
    // d is a second holder of z1, and a second node of z1 down; passing b is no violation.
    expect(report.violations.map((v) => `${v.check}:${v.node}`)).toEqual(['domain:d', 'domain:d']);
  });

  it('with a canary, flags a node that follows the canaries before they are up and soaked', () => {
    const t = timeline(
      [
        ['holding/a', 'put'],
        ['holding/b', 'put'],
        ['holding/c', 'put'],
      ],
      '3',
    );
    // a and b are 2's canaries (up at 2000 and 2100); with a 1 s soak, nobody else before 3100.
    const run = (cDownAt: number) =>
      checkInvariants({
        reboots: [reboot('a', 1000, 2), reboot('b', 1100, 4), reboot('c', cDownAt, 6)],
        stages: stages('a', 'b', 'c'),
        maxSets: [],
        timeline: t,
        complete: true,
        canary: { count: 2, soakMs: 1000 },
      });
    expect(run(3100).violations).toEqual([]);
    expect(run(3000).violations.map((v) => `${v.check}:${v.node}`)).toEqual(['canary:c']);
    // A canary still down holds everyone else back.
    const down = checkInvariants({
      reboots: [reboot('a', 1000, 2), { ...reboot('b', 1100, 4), upAt: null }, reboot('c', 9e9, 6)],
      stages: stages('a', 'b', 'c'),
      maxSets: [],
      timeline: t,
      complete: false,
      canary: { count: 2, soakMs: 1000 },
    });
    expect(down.violations.map((v) => v.check)).toContain('canary');
  });

  it('under domain-max, does not count a node still down whose slot an operator took away', () => {
    // a (z1) goes down on its slot; an operator force-unlocks it (its marker goes) while it is
    // still down; b (z1) is admitted and goes down too. As for max, that is the operator's doing.
    const t = timeline(
      [
        ['holding/a', 'put'],
        ['holding/a', 'delete'],
        ['holding/b', 'put'],
      ],
      '1',
    );
    const report = checkInvariants({
      reboots: [{ ...reboot('a', 250, 2), upAt: 5000 }, reboot('b', 700, 6)],
      stages: stages('a', 'b'),
      maxSets: [],
      timeline: t,
      complete: false,
      domains: {
        of: new Map([
          ['a', 'z1'],
          ['b', 'z1'],
        ]),
        max: 1,
      },
    });
    expect(report.violations.map((v) => `${v.check}:${v.node}`)).toEqual([]);
  });

  it('flags an admission while more holders are lost than the loss budget allows', () => {
    const input = { reboots: [], stages: [], maxSets: [], complete: false };
    // b is admitted after a was lost: with budget 0 the group should have halted.
    const admitted = timeline([['holding/a', 'put']], '3');
    lose(admitted, 'a');
    const events = admitted.events as TimelineEvent[];
    const revision = events.length + 1;
    events.push(
      {
        revision,
        at: revision * 100,
        key: `${ROOT}queue/b`,
        type: 'put',
        value: '{}',
        createRevision: revision,
      },
      {
        revision: revision + 1,
        at: (revision + 1) * 100,
        key: `${ROOT}holding/b`,
        type: 'put',
        value: JSON.stringify({ createRevision: revision }),
        createRevision: revision + 1,
      },
    );
    const found = checkInvariants({ ...input, timeline: admitted }).violations;
    expect(found.map((v) => `${v.check}:${v.node}`)).toContain('halt:b');
    // With a loss budget of 1 the same admission is fine (a still counts as a place ahead).
    const tolerant = { ...admitted, lossBudgetAt: () => 1 };
    const ok = checkInvariants({ ...input, timeline: tolerant }).violations;
    expect(ok.map((v) => v.check)).not.toContain('halt');
  });

  it('flags two machines rebooting on one slot, and lets a clone skip its update', () => {
    const t = timeline([['holding/a', 'put']], '2');
    const clone = { ...reboot('a', 1100, 2), machine: 'a-clone1' };
    const report = checkInvariants({
      reboots: [reboot('a', 1000, 2), clone],
      stages: [...stages('a'), { node: 'a-clone1', version: '2', at: 0, optional: true }],
      maxSets: [],
      timeline: t,
      complete: true,
    });
    expect(report.violations.map((v) => v.check)).toEqual(['slot-at-reboot']);
    expect(report.violations[0]!.message).toContain('a, a-clone1');
    const alone = checkInvariants({
      reboots: [reboot('a', 1000, 2)],
      stages: [...stages('a'), { node: 'a-clone1', version: '2', at: 0, optional: true }],
      maxSets: [],
      timeline: t,
      complete: true,
    });
    expect(alone.ok).toBe(true);
  });

  it('excuses a reboot whose slot an operator force-unlocked at that moment', () => {
    const t = timeline([['holding/b', 'put']], '1');
    const base = { stages: stages('a', 'b'), maxSets: [], timeline: t, complete: false };
    const bare = [reboot('a', 1000, null), reboot('b', 1100, 2)];
    expect(checkInvariants({ ...base, reboots: bare }).violations.map((v) => v.check)).toEqual([
      'down',
      'slot-at-reboot',
      'slot-at-reboot',
    ]);
    const unlocks = [{ node: 'a', at: 900, doneAt: 1400, code: 0 }];
    const excused = checkInvariants({ ...base, reboots: bare, unlocks });
    expect(excused.violations).toEqual([]);
    expect(excused.notes.join('\n')).toContain('force-unlocked');
    // An unlock long before the reboot excuses nothing.
    const early = [{ node: 'a', at: 0, doneAt: -5000, code: 0 }];
    expect(checkInvariants({ ...base, reboots: bare, unlocks: early }).ok).toBe(false);
  });

  it('takes the slot from the timeline when an operator force-unlocked it before the direct read answered', () => {
    // a is admitted (marker at revision 2), goes down at 300 ms; an operator's unlock starts at
    // 1000 ms and deletes the marker (revision 11); the simulator's read of the marker, slowed
    // by an etcd just back from an outage, answers only at 1500 ms and finds nothing.
    const padding = Array.from({ length: 8 }, (_, i): [string, 'put'] => [`requests/x${i}`, 'put']);
    const t = timeline([['holding/a', 'put'], ...padding, ['holding/a', 'delete']], '1');
    const late: RebootEntry = { ...reboot('a', 300, null), slotSeen: true, admissionReadAt: 1500 };
    const base = { stages: stages('a'), maxSets: [], timeline: t, complete: true };
    const unlocks = [{ node: 'a', at: 1000, doneAt: 1200, code: 0 }];
    const report = checkInvariants({ ...base, reboots: [late], unlocks });
    expect(report.violations).toEqual([]);
    expect(report.notes.join('\n')).toContain('a rebooted (#1) on its marker of revision 2');
    // The same null answer with no unlock in flight, or with one that started only after the
    // read answered, is a reboot without a slot.
    const checks = (u: typeof unlocks) =>
      checkInvariants({ ...base, reboots: [late], unlocks: u }).violations.map((v) => v.check);
    expect(checks([])).toContain('slot-at-reboot');
    expect(checks([{ node: 'a', at: 1600, doneAt: 1700, code: 0 }])).toContain('slot-at-reboot');
    // Nor does an unlock of another node excuse it.
    expect(checks([{ node: 'b', at: 1000, doneAt: 1200, code: 0 }])).toContain('slot-at-reboot');
  });

  it('leaves to the operator a reboot confirmed before a force-unlock took its slot (a live reboot, --yes)', () => {
    // a is admitted (marker at revision 2) and confirms its reboot (record `rebooting`, revision
    // 3); an operator's unlock (revisions 3 to 12) removes the marker at revision 12; b is
    // admitted on the freed slot; a's Reboot call comes only at 2500 ms (its confirmation's
    // answer was slow, or it was paused), when it has no marker. Both are down against max 1.
    const padding = Array.from({ length: 8 }, (_, i): [string, 'put'] => [`requests/x${i}`, 'put']);
    const script = (state: string): [string, 'put' | 'delete', string?][] => [
      ['holding/a', 'put'],
      ['queue/a', 'put', JSON.stringify({ state, token: 'ta' })],
      ...padding,
      ['holding/a', 'delete'],
      ['holding/b', 'put'],
    ];
    const base = { stages: stages('a', 'b'), maxSets: [], complete: true };
    const bare: RebootEntry = { ...reboot('a', 2500, null), slotSeen: false, token: 'ta' };
    const reboots = [bare, reboot('b', 2600, 15)];
    const unlock = { node: 'a', at: 350, doneAt: 1250, code: 0, fromRevision: 3, toRevision: 12 };
    const run = (over: { state?: string; unlock?: object; reboot?: Partial<RebootEntry> } = {}) =>
      checkInvariants({
        ...base,
        timeline: timeline(script(over.state ?? 'rebooting'), '1'),
        reboots: [{ ...bare, ...over.reboot }, reboots[1]!],
        unlocks: [{ ...unlock, ...over.unlock }],
      });
    const excused = run();
    expect(excused.violations).toEqual([]);
    expect(excused.notes.join('\n')).toContain(
      'a rebooted (#1) after confirming its slot (record rebooting at revision 3), which an operator then force-unlocked (revision 12;',
    );
    const unexcused = ['down', 'slot-at-reboot', 'slot-at-reboot'];
    const checks = (r: ReturnType<typeof run>) =>
      r.violations.map((v) => v.check).filter((c) => unexcused.includes(c));
    // Still draining when its slot went: the agent's confirmation must have failed.
    expect(checks(run({ state: 'draining' }))).toEqual(unexcused);
    // The marker went before the unlock began (someone else removed it).
    expect(checks(run({ unlock: { fromRevision: 12, toRevision: 14 } }))).toEqual(unexcused);
    // A twin with the same node id but another instance token did not confirm anything.
    expect(checks(run({ reboot: { machine: 'a-clone1', token: 'tc' } }))).toEqual(unexcused);
    // An unlock that began only after the call excuses nothing by this rule.
    expect(checks(run({ unlock: { at: 2700, doneAt: 2800 } }))).toEqual(unexcused);
  });

  it('flags an admission and a reboot while the group window is shut', () => {
    // The timeline's clock is revision × 100 ms after the epoch, a Thursday: Thursday 00:00
    // for a minute is open, a Monday window is shut.
    const open = timeline([
      ['windows', 'put', 'Thu 00:00+1m UTC'],
      ['holding/a', 'put'],
    ]);
    expect(
      checkInvariants({
        reboots: [reboot('a', 20_000, 3)],
        stages: stages('a'),
        maxSets: [],
        timeline: open,
        complete: false,
      }).ok,
    ).toBe(true);
    const shut = timeline([
      ['windows', 'put', 'Mon 04:00+1h UTC'],
      ['holding/a', 'put'],
    ]);
    const report = checkInvariants({
      reboots: [reboot('a', 20_000, 3)],
      stages: stages('a'),
      maxSets: [],
      timeline: shut,
      complete: false,
    });
    expect(report.violations.map((v) => `${v.check}:${v.node}`)).toEqual(['window:a', 'window:a']);
  });

  it('flags slot keys left over and a watcher that missed revisions', () => {
    const t = { ...timeline([]), gap: new Error('compacted') };
    const report = checkInvariants({
      reboots: [],
      stages: [],
      maxSets: [],
      timeline: t,
      complete: true,
      leftover: ['holding/a'],
    });
    expect(report.violations.map((v) => v.check)).toEqual(['leak', 'observer']);
  });

  it('requires exactly one reboot per staged update once the rollout is complete', () => {
    const t = timeline([['holding/a', 'put']]);
    const base = { reboots: [reboot('a', 1000, 2)], maxSets: [], timeline: t };
    expect(checkInvariants({ ...base, stages: stages('a'), complete: true }).ok).toBe(true);
    const missing = checkInvariants({ ...base, stages: stages('a', 'b'), complete: true });
    expect(missing.violations.map((v) => `${v.check}:${v.node}`)).toEqual(['once:b']);
    expect(checkInvariants({ ...base, stages: stages('a', 'b'), complete: false }).ok).toBe(true);
    const unstaged = checkInvariants({ ...base, stages: [], complete: false });
    expect(unstaged.violations.map((v) => `${v.check}:${v.node}`)).toEqual(['once:a']);
  });
});

describe('openIntervals', () => {
  it('reads the simple specs the simulator writes, and nothing else', () => {
    // 2024-01-01 was a Monday.
    const monday = Date.UTC(2024, 0, 1);
    const spec = 'Mon,Wed 04:00+30m UTC; Sun 23:50+20m UTC';
    const open = openIntervals(spec, monday, monday + 7 * 86_400_000);
    expect(open?.map(([a, b]) => [new Date(a).toISOString(), (b - a) / 60_000])).toEqual([
      ['2024-01-01T04:00:00.000Z', 30],
      ['2024-01-03T04:00:00.000Z', 30],
      // The Sunday before runs into Monday.
      ['2023-12-31T23:50:00.000Z', 20],
      ['2024-01-07T23:50:00.000Z', 20],
    ]);
    expect(openIntervals('Mon 04:00-05:00 Europe/Berlin', monday, monday + 1)).toBeNull();
  });
});
