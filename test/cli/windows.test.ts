/**
 * sluicectl windows: `windows check` (no etcd) over a table of awkward cases — midnight, the end
 * of the week, DST in Europe/Berlin and America/New_York, locksmith's syntax — and show, set and
 * clear against a real etcd.
 */
import { type EtcdCluster, startEtcd } from '@sluice/testkit';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { CheckJsonSchema, CliRunner, StatusJsonSchema } from './cli.js';

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

interface Case {
  name: string;
  args: string[];
  at: string;
  open: boolean;
  nextStart: string | null;
  nextEnd: string | null;
}

const cases: Case[] = [
  {
    name: 'crosses midnight, open late on Tuesday',
    args: ['Mon-Fri 22:00-02:00 UTC'],
    at: '2025-11-25T23:30:00Z',
    open: true,
    nextEnd: '2025-11-26T02:00:00.000Z',
    nextStart: '2025-11-26T22:00:00.000Z',
  },
  {
    name: "Friday's window runs into Saturday",
    args: ['Mon-Fri 22:00-02:00 UTC'],
    at: '2025-11-29T01:00:00Z',
    open: true,
    nextEnd: '2025-11-29T02:00:00.000Z',
    nextStart: '2025-12-01T22:00:00.000Z',
  },
  {
    name: 'closed on Saturday until Monday night',
    args: ['Mon-Fri 22:00-02:00 UTC'],
    at: '2025-11-29T03:00:00Z',
    open: false,
    nextStart: '2025-12-01T22:00:00.000Z',
    nextEnd: '2025-12-02T02:00:00.000Z',
  },
  {
    name: 'Sunday night window wraps into Monday (week wrap)',
    args: ['Sun 23:00+3h'],
    at: '2025-12-01T01:00:00Z',
    open: true,
    nextEnd: '2025-12-01T02:00:00.000Z',
    nextStart: '2025-12-07T23:00:00.000Z',
  },
  {
    name: 'day range wrapping the week (Fri-Mon), checked midweek',
    args: ['Fri-Mon 04:00+1h'],
    at: '2025-11-26T12:00:00Z',
    open: false,
    nextStart: '2025-11-28T04:00:00.000Z',
    nextEnd: '2025-11-28T05:00:00.000Z',
  },
  {
    name: 'the end of a window is not in it (half-open)',
    args: ['daily 04:00+1h'],
    at: '2025-11-26T05:00:00Z',
    open: false,
    nextStart: '2025-11-27T04:00:00.000Z',
    nextEnd: '2025-11-27T05:00:00.000Z',
  },
  {
    name: 'Berlin spring forward: 02:30 does not exist, the window starts at 03:00 CEST',
    args: ['Sun 02:30+1h Europe/Berlin'],
    at: '2025-03-30T00:30:00Z',
    open: false,
    nextStart: '2025-03-30T01:00:00.000Z',
    nextEnd: '2025-03-30T02:00:00.000Z',
  },
  {
    name: 'Berlin fall back: +4h from Sat 23:00 CEST ends at 02:00 CET',
    args: ['Sat 23:00+4h', '--zone', 'Europe/Berlin'],
    at: '2025-10-25T20:00:00Z',
    open: false,
    nextStart: '2025-10-25T21:00:00.000Z',
    nextEnd: '2025-10-26T01:00:00.000Z',
  },
  {
    name: 'Berlin fall back: 01:00-05:00 lasts five real hours',
    args: ['01:00-05:00 Europe/Berlin'],
    at: '2025-10-25T23:30:00Z',
    open: true,
    nextEnd: '2025-10-26T04:00:00.000Z',
    nextStart: '2025-10-27T00:00:00.000Z',
  },
  {
    name: 'New York spring forward: +1h from 01:30 EST ends at 03:30 EDT',
    args: ['Sun 01:30+1h America/New_York'],
    at: '2025-03-09T05:00:00Z',
    open: false,
    nextStart: '2025-03-09T06:30:00.000Z',
    nextEnd: '2025-03-09T07:30:00.000Z',
  },
  {
    name: 'New York spring forward: a start in the gap moves to 03:00 EDT',
    args: ['Sun 02:15-04:00 America/New_York'],
    at: '2025-03-09T06:00:00Z',
    open: false,
    nextStart: '2025-03-09T07:00:00.000Z',
    nextEnd: '2025-03-09T08:00:00.000Z',
  },
  {
    name: 'New York fall back: 01:30 counts its first occurrence (EDT)',
    args: ['Sun 01:30-02:30 America/New_York'],
    at: '2025-11-02T05:00:00Z',
    open: false,
    nextStart: '2025-11-02T05:30:00.000Z',
    nextEnd: '2025-11-02T07:30:00.000Z',
  },
  {
    name: 'locksmith "Thu 04:00" with --length 1h30m',
    args: ['Thu 04:00', '--length', '1h30m'],
    at: '2025-11-27T04:59:00Z',
    open: true,
    nextEnd: '2025-11-27T05:30:00.000Z',
    nextStart: '2025-12-04T04:00:00.000Z',
  },
  {
    name: 'locksmith "Thu 04:00" in Europe/Berlin is 03:00Z, closed by 04:59Z',
    args: ['Thu 04:00', '--length', '1h30m', '--zone', 'Europe/Berlin'],
    at: '2025-11-27T04:59:00Z',
    open: false,
    nextStart: '2025-12-04T03:00:00.000Z',
    nextEnd: '2025-12-04T04:30:00.000Z',
  },
  {
    name: 'locksmith start without a day means every day',
    args: ['04:00', '--length', '30m'],
    at: '2025-11-27T10:00:00Z',
    open: false,
    nextStart: '2025-11-28T04:00:00.000Z',
    nextEnd: '2025-11-28T04:30:00.000Z',
  },
  {
    name: '"always" is always open',
    args: ['always'],
    at: '2025-11-27T10:00:00Z',
    open: true,
    nextStart: null,
    nextEnd: null,
  },
];

describe('sluicectl windows check', () => {
  it.each(cases)('$name', async (c) => {
    const res = await cli.run(['windows', 'check', ...c.args, '--at', c.at, '-o', 'json']);
    expect(res.code, res.stderr).toBe(0);
    expect(CheckJsonSchema.strict().parse(JSON.parse(res.stdout))).toMatchObject({
      open: c.open,
      nextStart: c.nextStart,
      nextEnd: c.nextEnd,
    });
  });

  it('needs no etcd and prints a readable answer with local wall-clock times', async () => {
    const res = await cli.run(
      ['windows', 'check', 'Mon-Fri 22:00-02:00 Europe/Berlin', '--at', '2025-11-28T23:30:00Z'],
      { env: { SLUICE_ENDPOINTS: 'http://127.0.0.1:1' } },
    );
    expect(res.code).toBe(0);
    expect(res.stdout).toContain('(Sat 00:30 Europe/Berlin): OPEN');
    expect(res.stdout).toMatch(/^closes +2025-11-29 01:00:00Z \(Sat 02:00 Europe\/Berlin\)$/m);
    expect(res.stdout).toMatch(/^next opens +2025-12-01 21:00:00Z \(Mon 22:00 Europe\/Berlin\)$/m);
  });

  it('refuses invalid input with exit 2 and the parser message', async () => {
    const badSpec = await cli.run(['windows', 'check', 'Mon-Fry 22:00-02:00']);
    expect(badSpec.code).toBe(2);
    expect(badSpec.stderr).toContain('unknown day "Fry"');
    const badAt = await cli.run(['windows', 'check', 'daily 04:00+1h', '--at', 'tomorrow']);
    expect(badAt.code).toBe(2);
    expect(badAt.stderr).toContain('--at');
    const noOffset = await cli.run([
      'windows',
      'check',
      'daily 04:00+1h',
      '--at',
      '2025-01-01T04:00',
    ]);
    expect(noOffset.code).toBe(2);
    const badLength = await cli.run(['windows', 'check', 'Thu 04:00', '--length', '1d']);
    expect(badLength.code).toBe(2);
    expect(badLength.stderr).toContain('unknown unit "d"');
    const badZone = await cli.run(['windows', 'check', '04:00+1h', '--zone', 'Mars/Olympus']);
    expect(badZone.code).toBe(2);
  });
});

const ShowJsonSchema = z.object({
  group: z.string(),
  spec: z.string().nullable(),
  error: z.string().nullable(),
  open: z.boolean(),
  nextChange: z.string().nullable(),
  windows: z.array(z.string()),
  upcoming: z.array(z.object({ start: z.string().nullable(), end: z.string().nullable() })),
});

describe('sluicectl windows (etcd)', () => {
  it('shows none, sets a validated spec in canonical form, lists the next openings, clears', async () => {
    expect(ShowJsonSchema.parse(await cli.json(['windows']))).toMatchObject({
      spec: null,
      open: true,
      upcoming: [],
    });
    expect((await cli.run(['windows'])).stdout).toContain('always open');

    const set = await cli.run(['windows', 'set', 'mon-fri 22:00-02:00', '--zone', 'europe/berlin']);
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout).toContain('Mon-Fri 22:00-02:00 Europe/Berlin');
    expect(await etcd.etcdctl(['get', cli.keys.windows, '--print-value-only'])).toBe(
      'Mon-Fri 22:00-02:00 Europe/Berlin\n',
    );

    const shown = ShowJsonSchema.parse(await cli.json(['windows', '--count', '4']));
    expect(shown.windows).toEqual(['Mon-Fri 22:00-02:00 Europe/Berlin']);
    expect(shown.upcoming.length).toBeGreaterThanOrEqual(4);
    for (const o of shown.upcoming) {
      if (o.start === null) continue; // open now
      const length = Date.parse(o.end!) - Date.parse(o.start);
      expect([3, 4, 5].map((h) => h * 3_600_000)).toContain(length);
    }
    const table = (await cli.run(['windows'])).stdout;
    expect(table).toMatch(/^OPENS +CLOSES +LENGTH$/m);
    expect(table).toMatch(/Europe\/Berlin\) +\d{4}-/m);

    const status = StatusJsonSchema.parse(await cli.json(['status']));
    expect(status.window.nextChange).not.toBeNull();

    expect((await cli.run(['windows', 'clear'])).code).toBe(0);
    expect(ShowJsonSchema.parse(await cli.json(['windows'])).spec).toBeNull();
    expect((await cli.run(['windows', 'clear'])).stdout).toContain('had no window');
  });

  it('refuses an invalid spec with exit 2 and stores nothing', async () => {
    const res = await cli.run(['windows', 'set', 'Mon 25:00+1h']);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('invalid time "25:00"');
    expect(await etcd.etcdctl(['get', cli.keys.windows, '--print-value-only'])).toBe('');
  });

  it('shows an invalid spec written by etcdctl, with exit 0', async () => {
    await etcd.etcdctl(['put', cli.keys.windows, 'whenever']);
    const res = await cli.run(['windows', '-o', 'json']);
    expect(res.code).toBe(0);
    const shown = ShowJsonSchema.parse(JSON.parse(res.stdout));
    expect(shown.error).toContain('missing start time');
    expect(shown.open).toBe(false);
    const status = StatusJsonSchema.parse(await cli.json(['status']));
    expect(status.window.open).toBe(false);
    expect(status.errors.map((e) => e.key)).toEqual([cli.keys.windows]);
  });
});
