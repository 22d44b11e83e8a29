/**
 * The maintenance calendar as an operator meets it, through sluicectl processes against a real
 * etcd: `blackouts set` validates and stores every entry with its zone, history keeps each
 * change, status and `windows` say when a blackout shuts the window, `windows check --blackouts`
 * evaluates one without etcd, and a malformed value written with etcdctl fails closed.
 */
import { type EtcdCluster, startEtcd } from '@sluice/testkit';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CliRunner } from './cli.js';

let etcd: EtcdCluster;
let cli: CliRunner;

beforeAll(async () => {
  etcd = await startEtcd();
});
afterAll(async () => {
  await etcd?.stop();
});
beforeEach(() => {
  cli = new CliRunner(etcd.endpoints);
});
afterEach(async () => {
  await cli?.cleanup();
});

/** Yesterday to tomorrow in UTC: a blackout in force whenever the test runs, even at midnight. */
const day = (offset: number) =>
  new Date(Date.now() + offset * 86_400_000).toISOString().slice(0, 10);
const around = () => `${day(-1)}..${day(1)}`;
/** A date a year on: surely not in force. */
const nextYear = () => `${Number(day(0).slice(0, 4)) + 1}-06-01`;

describe('sluicectl blackouts', () => {
  it('sets, shows and clears them; status and windows say when one shuts the window', async () => {
    await etcd.etcdctl(['put', cli.keys.max, '2']);
    const set = await cli.run(['blackouts', 'set', `${around()}; ${nextYear()} europe/berlin`]);
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout).toContain(`set to: ${around()} UTC; ${nextYear()} Europe/Berlin`);
    expect(await etcd.etcdctl(['get', cli.keys.blackouts, '--print-value-only'])).toBe(
      `${around()} UTC; ${nextYear()} Europe/Berlin\n`,
    );
    // Refused before etcd is touched, naming what is wrong.
    const bad = await cli.run(['blackouts', 'set', '2026-13-01']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('"2026-13-01" is not a date');

    const shown = (await cli.json(['blackouts'])) as { now: string | null; blackouts: unknown[] };
    expect(shown.now).toBe(`${around()} UTC`);
    expect(shown.blackouts).toHaveLength(2);
    const status = (await cli.json(['status'])) as {
      available: number;
      blocker: { kind: string };
      window: { open: boolean; blackout: string | null };
    };
    expect(status.window).toMatchObject({ open: false, blackout: `${around()} UTC` });
    expect(status).toMatchObject({ available: 0, blocker: { kind: 'window-closed' } });
    expect((await cli.run(['status'])).stdout).toMatch(
      new RegExp(`^Window: +closed: blackout ${around()} UTC, opens `, 'm'),
    );
    const windows = (await cli.run(['windows'])).stdout;
    expect(windows).toMatch(/^Blackouts: /m);
    expect(windows).toMatch(new RegExp(`^Now: +closed \\(blackout ${around()} UTC\\)`, 'm'));

    expect((await cli.run(['blackouts', 'clear'])).code).toBe(0);
    expect((await cli.json(['status'])) as unknown).toMatchObject({ available: 2 });
    const history = (await cli.json(['history', '--kind', 'action'])) as {
      actions: { action: string }[];
    };
    expect(history.actions.map((a) => a.action)).toEqual(['blackouts-clear', 'blackouts-set']);
  });

  it('windows check --blackouts evaluates a blackout in its zone, without etcd', async () => {
    const check = (at: string) =>
      cli.json([
        'windows',
        'check',
        'daily 00:00+24h UTC',
        '--blackouts',
        '2026-12-25 America/New_York',
        '--at',
        at,
      ]) as Promise<{ open: boolean; blackout: string | null; nextStart: string | null }>;
    expect(await check('2026-12-25T04:59:00Z')).toMatchObject({ open: true, blackout: null });
    expect(await check('2026-12-25T05:00:00Z')).toMatchObject({
      open: false,
      blackout: '2026-12-25 America/New_York',
      nextStart: '2026-12-26T05:00:00.000Z',
    });
  });

  it('fails closed on a malformed value written with etcdctl, and names the key', async () => {
    await etcd.etcdctl(['put', cli.keys.blackouts, 'christmas']);
    const status = (await cli.json(['status'])) as {
      available: number;
      blocker: { kind: string; key: string };
    };
    expect(status).toMatchObject({
      available: 0,
      blocker: { kind: 'invalid-value', key: cli.keys.blackouts },
    });
    expect((await cli.run(['status'])).stdout).toMatch(
      /^Window: +closed: the blackouts are invalid/m,
    );
    const check = await cli.run(['status', '--check']);
    expect(check.code).toBe(1);
    expect(check.stdout).toContain(cli.keys.blackouts);
  });
});
