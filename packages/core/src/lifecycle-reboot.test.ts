/**
 * The lifecycle around the reboot call itself: waiting for logind's inhibitor locks (keeping the
 * slot up to a bound, then giving it back), and recognising a soft reboot, which keeps the boot id,
 * by systemd's soft-reboot count.
 */
import { describe, expect, it } from 'vitest';
import {
  type AgentState,
  type Context,
  type RecoveredRecord,
  transition,
  type UpdateInfo,
} from './lifecycle.js';

const NOW = new Date('2026-11-25T03:00:00Z');
const update: UpdateInfo = { source: 'rpm-ostree', detail: 'staged', version: '41.2' };

function ctx(over: Partial<Context> = {}): Context {
  return {
    now: NOW,
    strategy: 'etcd-lock',
    window: { open: true, nextOpen: null },
    retryDelayMs: 60_000,
    postDeadlineMs: 600_000,
    postIntervalMs: 10_000,
    releaseDelayMs: 0,
    checkInhibitors: true,
    inhibitorWaitMs: 600_000,
    inhibitorRecheckMs: 15_000,
    ...over,
  };
}
const at = (ms: number) => new Date(NOW.getTime() + ms);

describe('inhibitor locks', () => {
  const draining: AgentState = { name: 'draining', update, revision: 7 };

  it('looks at the inhibitor locks first, then the clock, then confirms the slot and asks for the reboot', () => {
    const step = transition(draining, { type: 'drained' }, ctx());
    expect(step.state).toMatchObject({ name: 'rebooting' });
    expect(step.effects).toEqual([
      { type: 'check-inhibitors' },
      { type: 'check-clock' },
      { type: 'record-state', state: 'rebooting', confirm: true },
      { type: 'reboot' },
    ]);
    // Without the check (method command, or inhibitors: ignore) nothing changes.
    expect(
      transition(draining, { type: 'drained' }, ctx({ checkInhibitors: false })).effects,
    ).toEqual([
      { type: 'check-clock' },
      { type: 'record-state', state: 'rebooting', confirm: true },
      { type: 'reboot' },
    ]);
  });

  it('keeps the slot while blocked, says who blocks in the record once, and looks again', () => {
    const rebooting = transition(draining, { type: 'drained' }, ctx()).state;
    const blocked = transition(
      rebooting,
      { type: 'reboot-blocked', detail: '"backup" (nightly), pid 812' },
      ctx(),
    );
    expect(blocked.edge).toBe('reboot-blocked');
    expect(blocked.state).toMatchObject({
      name: 'rebooting',
      retryAt: at(15_000).toISOString(),
      blocked: { since: NOW.toISOString(), by: '"backup" (nightly), pid 812' },
    });
    expect(blocked.effects).toEqual([
      { type: 'wake-at', at: at(15_000).toISOString() },
      {
        type: 'record-state',
        state: 'rebooting',
        confirm: false,
        problem: expect.stringContaining('waiting for an inhibitor lock on shutdown'),
      },
    ]);
    // No release, no reboot.
    expect(blocked.effects.some((e) => e.type === 'release-slot' || e.type === 'reboot')).toBe(
      false,
    );

    // The recheck comes: look again (and only then confirm and reboot), keeping when it started.
    const recheck = transition(blocked.state, { type: 'tick' }, ctx({ now: at(15_000) }));
    expect(recheck.edge).toBe('reboot-retry');
    expect(recheck.state).toMatchObject({ blocked: { since: NOW.toISOString() } });
    expect(recheck.effects).toEqual([
      { type: 'check-inhibitors' },
      // Clears the wait from the record as the reboot goes ahead.
      { type: 'check-clock' },
      { type: 'record-state', state: 'rebooting', confirm: true, problem: null },
      { type: 'reboot' },
    ]);

    // Still the same holder: no second record write.
    const again = transition(
      recheck.state,
      { type: 'reboot-blocked', detail: '"backup" (nightly), pid 812' },
      ctx({ now: at(15_000) }),
    );
    expect(again.effects).toEqual([{ type: 'wake-at', at: at(30_000).toISOString() }]);
  });

  it('gives the slot back once the wait passes its bound, and queues again later', () => {
    const rebooting: AgentState = {
      name: 'rebooting',
      update,
      revision: 7,
      attempt: 3,
      retryAt: null,
      blocked: { since: NOW.toISOString(), by: '"backup" (nightly), pid 812' },
    };
    const late = transition(
      rebooting,
      { type: 'reboot-blocked', detail: '"backup" (nightly), pid 812' },
      ctx({ now: at(600_000) }),
    );
    expect(late.edge).toBe('inhibitor-timeout');
    expect(late.state).toMatchObject({
      name: 'update-staged',
      lastError: expect.stringContaining('gave the slot back: "backup" (nightly), pid 812'),
    });
    expect(late.effects).toContainEqual({ type: 'release-slot', outcome: 'abandoned', delayMs: 0 });
    // Just before the bound it still waits, only as long as is left.
    const almost = transition(
      rebooting,
      { type: 'reboot-blocked', detail: '"backup" (nightly), pid 812' },
      ctx({ now: at(595_000) }),
    );
    expect(almost.state).toMatchObject({ name: 'rebooting', retryAt: at(600_000).toISOString() });
  });

  it('without etcd (strategy reboot) it waits and gives up the same way, with no record to write', () => {
    const c = ctx({ strategy: 'reboot' });
    const rebooting = transition(draining, { type: 'drained' }, c).state;
    expect(transition(draining, { type: 'drained' }, c).effects).toEqual([
      { type: 'check-inhibitors' },
      { type: 'reboot' },
    ]);
    const blocked = transition(rebooting, { type: 'reboot-blocked', detail: 'x' }, c);
    expect(blocked.effects).toEqual([{ type: 'wake-at', at: at(15_000).toISOString() }]);
    const late = transition(
      blocked.state,
      { type: 'reboot-blocked', detail: 'x' },
      ctx({ strategy: 'reboot', now: at(600_000) }),
    );
    expect(late.state.name).toBe('update-staged');
    expect(late.effects.some((e) => e.type === 'release-slot')).toBe(false);
  });

  it('a failure to list the locks (logind away) counts as a failed reboot: slot kept, retried', () => {
    const rebooting = transition(draining, { type: 'drained' }, ctx()).state;
    const failed = transition(
      rebooting,
      { type: 'effect-failed', effect: 'check-inhibitors', detail: 'logind not running' },
      ctx(),
    );
    expect(failed.edge).toBe('reboot-failed');
    expect(failed.state).toMatchObject({ name: 'rebooting', retryAt: at(60_000).toISOString() });
  });
});

describe('recovery after a soft reboot', () => {
  const record = (over: Partial<RecoveredRecord> = {}): RecoveredRecord => ({
    holding: true,
    state: 'rebooting',
    bootId: 'boot-1',
    revision: 7,
    update,
    softReboots: 0,
    ...over,
  });
  const recovered = (own: RecoveredRecord, softReboots: number | null, bootId = 'boot-1') =>
    transition(
      { name: 'recovering' },
      { type: 'recovered', own, bootId, softReboots, update },
      ctx(),
    );

  it('a higher soft-reboot count with the same boot id is a reboot that happened: post-checks', () => {
    const step = recovered(record(), 1);
    expect(step.edge).toBe('recovered-rebooted');
    expect(step.state.name).toBe('post-checking');
  });

  it('the same count and boot id is a restart: the reboot is asked for again', () => {
    expect(recovered(record(), 0).edge).toBe('recovered-rebooting');
    // Not known (systemd older than 254, or the record predates it): only the boot id counts.
    expect(recovered(record({ softReboots: null }), 3).edge).toBe('recovered-rebooting');
    expect(recovered(record(), null).edge).toBe('recovered-rebooting');
  });

  it('a new boot id is a reboot whatever the count says (a full reboot resets it to 0)', () => {
    expect(recovered(record({ softReboots: 2 }), 0, 'boot-2').edge).toBe('recovered-rebooted');
  });
});
