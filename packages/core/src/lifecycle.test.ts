import { describe, expect, it } from 'vitest';
import {
  type AgentEvent,
  type AgentState,
  type Context,
  EDGES,
  INITIAL_STATE,
  renderTransitions,
  STATE_NAMES,
  type Step,
  TRANSITIONS,
  transition,
  type UpdateInfo,
} from './lifecycle.js';

const NOW = new Date('2026-11-25T03:00:00Z');
const update: UpdateInfo = { source: 'update-engine', detail: 'NEED_REBOOT', version: '4000.0.0' };

function ctx(over: Partial<Context> = {}): Context {
  return {
    now: NOW,
    strategy: 'etcd-lock',
    window: { open: true, nextOpen: null },
    retryDelayMs: 60_000,
    postDeadlineMs: 600_000,
    postIntervalMs: 10_000,
    releaseDelayMs: 0,
    ...over,
  };
}

/** Runs events through transition() and returns the last step. */
function run(state: AgentState, events: AgentEvent[], c = ctx()): Step {
  let step: Step = { state, effects: [], edge: null };
  for (const e of events) step = transition(step.state, e, c);
  return step;
}

const closed = { open: false, nextOpen: new Date('2026-11-26T04:00:00Z') };

describe('lifecycle', () => {
  it('runs the full etcd-lock cycle up to the reboot', () => {
    let s = transition({ name: 'idle' }, { type: 'update', update }, ctx());
    expect(s.state.name).toBe('checking');
    expect(s.effects).toEqual([{ type: 'run-checks', phase: 'pre' }]);
    s = transition(s.state, { type: 'checks-passed', phase: 'pre' }, ctx());
    expect(s.state.name).toBe('queued');
    expect(s.effects).toEqual([{ type: 'acquire-slot', update }]);
    s = transition(s.state, { type: 'admitted', revision: 42 }, ctx());
    expect(s.state).toMatchObject({ name: 'holding', revision: 42 });
    expect(s.effects).toEqual([{ type: 'run-checks', phase: 'admitted' }]);
    s = transition(s.state, { type: 'checks-passed', phase: 'admitted' }, ctx());
    expect(s.state.name).toBe('draining');
    expect(s.effects).toEqual([
      { type: 'record-state', state: 'draining', confirm: false },
      { type: 'run-checks', phase: 'drain' },
      { type: 'warn-users' },
    ]);
    s = transition(s.state, { type: 'drained' }, ctx());
    expect(s.state.name).toBe('rebooting');
    expect(s.effects).toEqual([
      { type: 'check-clock' },
      { type: 'record-state', state: 'rebooting', confirm: true },
      { type: 'reboot' },
    ]);
  });

  it('does not rewrite the record for a drain or a post-boot phase that takes no time', () => {
    const quick = ctx({ slowPhases: { drain: false, post: false } });
    const holding: AgentState = { name: 'holding', update, revision: 42 };
    const drain = transition(holding, { type: 'checks-passed', phase: 'admitted' }, quick);
    expect(drain.state.name).toBe('draining');
    expect(drain.effects).toEqual([{ type: 'run-checks', phase: 'drain' }, { type: 'warn-users' }]);
    const own = { holding: true, state: 'rebooting' as const, bootId: 'b1', revision: 42, update };
    const back = transition(INITIAL_STATE, { type: 'recovered', own, bootId: 'b2' }, quick);
    expect(back.state.name).toBe('post-checking');
    expect(back.effects).toEqual([{ type: 'run-checks', phase: 'post' }]);
    // A phase that takes time is still recorded, so operators see it.
    const slow = ctx({ slowPhases: { drain: true, post: false } });
    expect(
      transition(holding, { type: 'checks-passed', phase: 'admitted' }, slow).effects[0],
    ).toEqual({ type: 'record-state', state: 'draining', confirm: false });
  });

  it('waits for the window before doing anything', () => {
    const s = transition({ name: 'idle' }, { type: 'update', update }, ctx({ window: closed }));
    expect(s.state).toMatchObject({ name: 'waiting-window', nextOpen: '2026-11-26T04:00:00.000Z' });
    expect(s.effects).toEqual([{ type: 'wake-at', at: '2026-11-26T04:00:00.000Z' }]);
    const opened = transition(s.state, { type: 'tick' }, ctx());
    expect(opened.state.name).toBe('checking');
    expect(opened.edge).toBe('window-open');
  });

  it('releases the slot when the window shut before the reboot', () => {
    const draining: AgentState = { name: 'draining', update, revision: 7 };
    const s = transition(draining, { type: 'drained' }, ctx({ window: closed }));
    expect(s.state).toMatchObject({ name: 'returning-slot', cancelled: false });
    expect(s.effects).toEqual([{ type: 'release-slot', outcome: 'abandoned', delayMs: 0 }]);
    // The window opening again does nothing until the release is done.
    expect(transition(s.state, { type: 'tick' }, ctx()).state.name).toBe('returning-slot');
    // The slot is back while the window is still shut: wait for it, and start over when it opens.
    const back = transition(s.state, { type: 'released' }, ctx({ window: closed }));
    expect(back.edge).toBe('slot-returned');
    expect(back.state).toMatchObject({ name: 'waiting-window' });
    expect(back.effects).toEqual([{ type: 'wake-at', at: '2026-11-26T04:00:00.000Z' }]);
    expect(transition(back.state, { type: 'tick' }, ctx()).state.name).toBe('checking');
    // The slot is back and the window has opened again meanwhile: straight to the pre-checks.
    const reopened = transition(s.state, { type: 'released' }, ctx());
    expect(reopened.state.name).toBe('checking');
    expect(reopened.effects).toEqual([{ type: 'run-checks', phase: 'pre' }]);
  });

  it('retries giving back a slot whose release failed, and goes idle if the update went away', () => {
    const held: AgentState = { name: 'returning-slot', update, cancelled: false, retryAt: null };
    let s = transition(
      held,
      { type: 'effect-failed', effect: 'release-slot', detail: 'etcd down' },
      ctx(),
    );
    expect(s.effects).toEqual([{ type: 'wake-at', at: '2026-11-25T03:01:00.000Z' }]);
    expect(transition(s.state, { type: 'tick' }, ctx()).effects).toEqual([]);
    s = transition(s.state, { type: 'tick' }, ctx({ now: new Date('2026-11-25T03:01:00Z') }));
    expect(s.effects).toEqual([{ type: 'release-slot', outcome: 'abandoned', delayMs: 0 }]);
    s = transition(s.state, { type: 'update', update: null }, ctx());
    expect(transition(s.state, { type: 'released' }, ctx()).state).toEqual({ name: 'idle' });
  });

  it('leaves the queue when its window closes while queued', () => {
    const s = run({ name: 'queued', update }, [{ type: 'tick' }], ctx({ window: closed }));
    expect(s.state.name).toBe('waiting-window');
    expect(s.effects).toEqual([{ type: 'leave-queue' }]);
  });

  it('fails closed on a failing pre-check and retries later', () => {
    const s = run({ name: 'checking', update }, [
      { type: 'checks-failed', phase: 'pre', detail: 'busy' },
    ]);
    expect(s.state).toMatchObject({
      name: 'update-staged',
      lastError: 'busy',
      notBefore: '2026-11-25T03:01:00.000Z',
    });
    expect(s.effects).toEqual([{ type: 'wake-at', at: '2026-11-25T03:01:00.000Z' }]);
    expect(transition(s.state, { type: 'tick' }, ctx()).state.name).toBe('update-staged');
    expect(
      transition(s.state, { type: 'tick' }, ctx({ now: new Date('2026-11-25T03:01:00Z') })).state
        .name,
    ).toBe('checking');
  });

  it('gives the slot back when the admitted checks fail', () => {
    const s = run({ name: 'holding', update, revision: 3 }, [
      { type: 'checks-failed', phase: 'admitted', detail: 'traffic high' },
    ]);
    expect(s.state.name).toBe('update-staged');
    expect(s.effects.at(-1)).toEqual({ type: 'release-slot', outcome: 'abandoned', delayMs: 0 });
    expect(s.effects[0]?.type).toBe('wake-at');
  });

  it('skips the slot with strategy reboot and never acts with off', () => {
    const r = run(
      { name: 'checking', update },
      [{ type: 'checks-passed', phase: 'pre' }],
      ctx({ strategy: 'reboot' }),
    );
    expect(r.state.name).toBe('draining');
    expect(r.effects).toEqual([{ type: 'run-checks', phase: 'drain' }, { type: 'warn-users' }]);
    const drained = transition(r.state, { type: 'drained' }, ctx({ strategy: 'reboot' }));
    expect(drained.effects).toEqual([{ type: 'reboot' }]);
    const off = transition({ name: 'idle' }, { type: 'update', update }, ctx({ strategy: 'off' }));
    expect(off.state.name).toBe('update-staged');
    expect(off.effects).toEqual([]);
    expect(transition(off.state, { type: 'tick' }, ctx({ strategy: 'off' })).effects).toEqual([]);
  });

  it('drops a staged update that went away', () => {
    expect(run({ name: 'queued', update }, [{ type: 'update', update: null }]).effects).toEqual([
      { type: 'leave-queue' },
    ]);
    expect(
      run({ name: 'update-staged', update, notBefore: null, lastError: null }, [
        { type: 'update', update: null },
      ]).state.name,
    ).toBe('idle');
  });

  describe('recovery on start', () => {
    const own = {
      holding: true,
      state: 'rebooting' as const,
      bootId: 'boot-1',
      revision: 9,
      update,
    };

    it('post-checks and releases after a reboot, whatever update is staged (Flatcar#408)', () => {
      let s = transition(INITIAL_STATE, { type: 'recovered', own, bootId: 'boot-2' }, ctx());
      expect(s.state).toMatchObject({ name: 'post-checking', revision: 9 });
      expect(s.effects).toEqual([
        { type: 'record-state', state: 'post-checking', confirm: false },
        { type: 'run-checks', phase: 'post' },
      ]);
      // A new update arriving meanwhile does not stop the release.
      s = transition(s.state, { type: 'update', update }, ctx());
      s = transition(
        s.state,
        { type: 'checks-passed', phase: 'post' },
        ctx({ releaseDelayMs: 5000 }),
      );
      expect(s.state.name).toBe('releasing');
      expect(s.effects).toEqual([{ type: 'release-slot', outcome: 'released', delayMs: 5000 }]);
      expect(transition(s.state, { type: 'released' }, ctx()).state.name).toBe('idle');
    });

    it('keeps the slot while post-checks fail, and reports after the deadline', () => {
      let s = transition(INITIAL_STATE, { type: 'recovered', own, bootId: 'boot-2' }, ctx());
      s = transition(s.state, { type: 'checks-failed', phase: 'post', detail: 'unhealthy' }, ctx());
      expect(s.state).toMatchObject({ name: 'post-checking', failed: false });
      expect(s.effects).toEqual([{ type: 'wake-at', at: '2026-11-25T03:00:10.000Z' }]);
      const afterDeadline = ctx({ now: new Date('2026-11-25T03:20:00Z') });
      s = transition(s.state, { type: 'tick' }, afterDeadline);
      expect(s.effects).toEqual([{ type: 'run-checks', phase: 'post' }]);
      s = transition(
        s.state,
        { type: 'checks-failed', phase: 'post', detail: 'unhealthy' },
        afterDeadline,
      );
      expect(s.state).toMatchObject({
        name: 'post-checking',
        failed: true,
        lastError: 'unhealthy',
      });
      expect(s.edge).toBe('post-checks-failed');
      expect(s.effects.some((e) => e.type === 'release-slot')).toBe(false);
    });

    it('asks again for a reboot that did not happen', () => {
      const s = transition(INITIAL_STATE, { type: 'recovered', own, bootId: 'boot-1' }, ctx());
      expect(s.state.name).toBe('rebooting');
      expect(s.effects).toEqual([
        { type: 'check-clock' },
        { type: 'record-state', state: 'rebooting', confirm: true },
        { type: 'reboot' },
      ]);
    });

    it('gives the slot back instead of asking again when no source wants a reboot any more', () => {
      const s = transition(
        INITIAL_STATE,
        { type: 'recovered', own, bootId: 'boot-1', update: null },
        ctx(),
      );
      expect(s.edge).toBe('recovered-update-gone');
      expect(s.state).toMatchObject({ name: 'releasing', revision: 9 });
      expect(s.effects).toEqual([{ type: 'release-slot', outcome: 'abandoned', delayMs: 0 }]);
      // With a source that could not be read yet, the reboot is asked for as before.
      const unknown = transition(
        INITIAL_STATE,
        { type: 'recovered', own, bootId: 'boot-1' },
        ctx(),
      );
      expect(unknown.state.name).toBe('rebooting');
    });

    it('retries when the timer set for it fires, even if the clock was stepped back meanwhile', () => {
      let s = transition(INITIAL_STATE, { type: 'recovered', own, bootId: 'boot-1' }, ctx());
      s = transition(s.state, { type: 'reboot-failed', detail: 'clock is off' }, ctx());
      expect(s.effects).toEqual([{ type: 'wake-at', at: '2026-11-25T03:01:00.000Z' }]);
      const earlier = ctx({ now: new Date('2026-11-25T01:00:00Z') });
      // A plain tick two hours before the retry time is not due; the retry timer firing is.
      expect(transition(s.state, { type: 'tick' }, earlier).edge).toBeNull();
      const fired = transition(s.state, { type: 'tick', due: '2026-11-25T03:01:00.000Z' }, earlier);
      expect(fired.edge).toBe('reboot-retry');
    });

    it('re-runs the admitted checks after a restart while holding', () => {
      const s = transition(
        INITIAL_STATE,
        { type: 'recovered', own: { ...own, state: 'holding', bootId: null }, bootId: 'b' },
        ctx(),
      );
      expect(s.state.name).toBe('holding');
      expect(s.effects).toEqual([{ type: 'run-checks', phase: 'admitted' }]);
    });

    it('re-attaches to its place in the queue', () => {
      const s = transition(
        INITIAL_STATE,
        { type: 'recovered', own: { ...own, holding: false, state: 'waiting' }, bootId: 'b' },
        ctx(),
      );
      expect(s.state.name).toBe('queued');
      expect(s.effects).toEqual([{ type: 'acquire-slot', update }]);
    });

    it('starts idle without a record', () => {
      expect(
        transition(INITIAL_STATE, { type: 'recovered', own: null, bootId: 'b' }, ctx()).state,
      ).toEqual({ name: 'idle' });
    });
  });

  it('retries a failed reboot call after the back-off, keeping the slot', () => {
    let s = run({ name: 'rebooting', update, revision: 1, attempt: 1, retryAt: null }, [
      { type: 'reboot-failed', detail: 'logind: access denied' },
    ]);
    expect(s.effects).toEqual([{ type: 'wake-at', at: '2026-11-25T03:01:00.000Z' }]);
    expect(transition(s.state, { type: 'tick' }, ctx()).effects).toEqual([]);
    s = transition(s.state, { type: 'tick' }, ctx({ now: new Date('2026-11-25T03:01:00Z') }));
    expect(s.effects).toEqual([
      { type: 'check-clock' },
      { type: 'record-state', state: 'rebooting', confirm: true },
      { type: 'reboot' },
    ]);
    expect(s.state).toMatchObject({ attempt: 2 });
  });

  it('does not reboot when etcd cannot confirm the slot, and gives up on a lost slot', () => {
    const rebooting: AgentState = {
      name: 'rebooting',
      update,
      revision: 1,
      attempt: 1,
      retryAt: null,
    };
    const failed = transition(
      rebooting,
      { type: 'effect-failed', effect: 'record-state', detail: 'etcd down' },
      ctx(),
    );
    expect(failed.state).toMatchObject({ name: 'rebooting', retryAt: '2026-11-25T03:01:00.000Z' });
    expect(failed.effects).toEqual([{ type: 'wake-at', at: '2026-11-25T03:01:00.000Z' }]);
    const lost = transition(rebooting, { type: 'slot-lost', detail: 'key gone' }, ctx());
    expect(lost.state.name).toBe('update-staged');
    expect(lost.effects.some((e) => e.type === 'reboot')).toBe(false);
  });

  it('checks the window again before a retried or recovered reboot, and gives the slot back if it shut', () => {
    const rebooting: AgentState = {
      name: 'rebooting',
      update,
      revision: 7,
      attempt: 1,
      retryAt: '2026-11-25T02:59:00.000Z',
    };
    const retried = transition(rebooting, { type: 'tick' }, ctx({ window: closed }));
    expect(retried.edge).toBe('window-closed');
    expect(retried.state).toMatchObject({ name: 'returning-slot' });
    expect(retried.effects).toEqual([{ type: 'release-slot', outcome: 'abandoned', delayMs: 0 }]);
    expect(transition(rebooting, { type: 'tick' }, ctx()).effects).toContainEqual({
      type: 'reboot',
    });

    const own = {
      holding: true,
      state: 'rebooting' as const,
      bootId: 'boot-1',
      revision: 7,
      update,
    };
    const recovered = transition(
      { name: 'recovering' },
      { type: 'recovered', own, bootId: 'boot-1' },
      ctx({ window: closed }),
    );
    expect(recovered.state).toMatchObject({ name: 'returning-slot' });
    expect(recovered.effects).toEqual([{ type: 'release-slot', outcome: 'abandoned', delayMs: 0 }]);
  });

  it('gives the slot back when the update goes away before the drain', () => {
    const s = transition(
      { name: 'holding', update, revision: 7 },
      { type: 'update', update: null },
      ctx(),
    );
    expect(s.edge).toBe('update-cleared');
    expect(s.state).toEqual({ name: 'releasing', revision: 7, retryAt: null });
    expect(s.effects).toEqual([{ type: 'release-slot', outcome: 'abandoned', delayMs: 0 }]);
    expect(transition(s.state, { type: 'released' }, ctx()).state).toEqual({ name: 'idle' });
  });

  it('keeps its place in the queue while the window cannot be read', () => {
    const unknown = { open: false, nextOpen: new Date('2026-11-25T03:01:00Z'), unknown: true };
    const s = transition({ name: 'queued', update }, { type: 'tick' }, ctx({ window: unknown }));
    expect(s.edge).toBeNull();
    expect(s.state.name).toBe('queued');
    // It is still closed for the last check before a reboot.
    const drained = transition(
      { name: 'draining', update, revision: 7 },
      { type: 'drained' },
      ctx({ window: unknown }),
    );
    expect(drained.state.name).toBe('returning-slot');
  });

  it('records the post-check failure in etcd once, when the deadline passes', () => {
    const post: AgentState = {
      name: 'post-checking',
      revision: 7,
      attempt: 3,
      deadline: '2026-11-25T02:59:00.000Z',
      failed: false,
      lastError: null,
      nextCheckAt: null,
    };
    const failed = { type: 'checks-failed', phase: 'post', detail: 'app: 503' } as const;
    const first = transition(post, failed, ctx());
    expect(first.edge).toBe('post-checks-failed');
    expect(first.effects).toContainEqual({
      type: 'record-state',
      state: 'post-checking',
      confirm: false,
      problem: 'post-reboot checks failing past their deadline: app: 503',
    });
    expect(first.state).toMatchObject({ name: 'post-checking', failed: true });
    const again = transition(first.state, failed, ctx());
    expect(again.effects.map((e) => e.type)).toEqual(['wake-at']);
    const early = transition({ ...post, deadline: '2026-11-25T04:00:00.000Z' }, failed, ctx());
    expect(early.edge).toBe('post-checks-retry');
    expect(early.effects.map((e) => e.type)).toEqual(['wake-at']);
  });

  it('ignores events a state does not expect', () => {
    const s = transition({ name: 'idle' }, { type: 'admitted', revision: 1 }, ctx());
    expect(s).toEqual({ state: { name: 'idle' }, effects: [], edge: null });
  });

  // The runtime applies named edges only, so a step without a name must change nothing: a change
  // to a state's own data with a null edge would be dropped (a node once stayed in waiting-window
  // forever because its `held` flag was never cleared).
  it('changes nothing in any step without an edge name', () => {
    const returning = (cancelled: boolean, retryAt: string | null) =>
      ({ name: 'returning-slot', update, cancelled, retryAt }) as const;
    const states: AgentState[] = [
      { name: 'idle' },
      { name: 'update-staged', update, notBefore: null, lastError: null },
      { name: 'update-staged', update, notBefore: '2026-11-25T03:05:00.000Z', lastError: 'x' },
      { name: 'waiting-window', update, nextOpen: '2026-11-26T04:00:00.000Z' },
      returning(false, null),
      returning(true, null),
      returning(false, '2026-11-25T02:00:00.000Z'),
      returning(false, '2026-11-25T04:00:00.000Z'),
      { name: 'checking', update },
      { name: 'queued', update },
      { name: 'holding', update, revision: 3 },
      { name: 'draining', update, revision: 3 },
      { name: 'rebooting', update, revision: 3, attempt: 1, retryAt: null },
      { name: 'rebooting', update, revision: 3, attempt: 2, retryAt: '2026-11-25T02:00:00.000Z' },
      { name: 'recovering' },
      {
        name: 'post-checking',
        revision: 3,
        attempt: 1,
        deadline: '2026-11-25T04:00:00.000Z',
        failed: false,
        lastError: null,
        nextCheckAt: null,
      },
      { name: 'releasing', revision: 3, retryAt: null },
      { name: 'releasing', revision: 3, retryAt: '2026-11-25T02:00:00.000Z' },
    ];
    const other: UpdateInfo = { source: 'sentinel', detail: '/run/reboot-required' };
    const events: AgentEvent[] = [
      { type: 'recovered', own: null, bootId: 'b' },
      { type: 'update', update: null },
      { type: 'update', update },
      { type: 'update', update: other },
      { type: 'tick' },
      { type: 'tick', due: '2026-11-25T04:00:00.000Z' },
      ...(['pre', 'admitted', 'drain', 'post'] as const).flatMap((phase): AgentEvent[] => [
        { type: 'checks-passed', phase },
        { type: 'checks-failed', phase, detail: 'no' },
      ]),
      { type: 'admitted', revision: 9 },
      { type: 'slot-lost', detail: 'gone' },
      { type: 'drained' },
      { type: 'reboot-failed', detail: 'no' },
      { type: 'released' },
      { type: 'left-queue' },
      ...(['acquire-slot', 'release-slot', 'record-state', 'warn-users'] as const).map(
        (effect): AgentEvent => ({ type: 'effect-failed', effect, detail: 'etcd down' }),
      ),
    ];
    const contexts = (['etcd-lock', 'reboot', 'off'] as const).flatMap((strategy) => [
      ctx({ strategy }),
      ctx({ strategy, window: closed }),
    ]);
    let unnamed = 0;
    const seen = new Set<string>();
    for (const state of states) {
      for (const event of events) {
        for (const c of contexts) {
          const step = transition(state, event, c);
          if (step.edge !== null) {
            // Every named step is a row of the table the docs' diagram is drawn from.
            const row = { from: state.name, edge: step.edge, to: step.state.name };
            expect(TRANSITIONS, JSON.stringify({ event, row })).toContainEqual(row);
            seen.add(JSON.stringify(row));
            continue;
          }
          unnamed++;
          expect({ state, event, step }).toEqual({
            state,
            event,
            step: { state, effects: [], edge: null },
          });
        }
      }
    }
    expect(unnamed).toBeGreaterThan(100); // The sample covers plenty of ignored events.
    expect(seen.size).toBeGreaterThan(TRANSITIONS.length / 2);
  });

  it('names only edges from EDGES, and every edge appears in the table', () => {
    for (const row of TRANSITIONS) {
      expect(EDGES).toContain(row.edge);
      expect(STATE_NAMES).toContain(row.from);
      expect(STATE_NAMES).toContain(row.to);
    }
    for (const edge of EDGES) expect(TRANSITIONS.map((t) => t.edge)).toContain(edge);
  });

  it('is drawn in docs/sluiced.md exactly as the table says (npm run docs updates it)', async () => {
    const { readFile } = await import('node:fs/promises');
    const doc = await readFile(new URL('../../../docs/sluiced.md', import.meta.url), 'utf8');
    const block =
      /<!-- lifecycle:begin -->\n```mermaid\n([\s\S]*?)\n```\n<!-- lifecycle:end -->/.exec(doc);
    expect(block?.[1], 'the diagram in docs/sluiced.md is stale: run npm run docs').toBe(
      renderTransitions(),
    );
  });
});
