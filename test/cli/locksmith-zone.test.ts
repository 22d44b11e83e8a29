/**
 * `sluicectl windows check` with locksmith's syntax reads the window in the node's local zone,
 * as locksmithd did: the sixteen locksmith and DST cases with TZ set as locksmith users have it
 * and no --zone. An explicit --zone still wins; sluice's own syntax stays in UTC by default.
 */
import { describe, expect, it } from 'vitest';
import { CASES_ZONE, LOCKSMITH_WINDOW_CASES } from '../locksmith-windows.js';
import { CheckJsonSchema, CliRunner } from './cli.js';

// windows check needs no etcd: the endpoint is never dialled.
const cli = new CliRunner(['http://127.0.0.1:9']);

describe("windows check with locksmith's syntax", () => {
  it.each(LOCKSMITH_WINDOW_CASES)('$name, with TZ and no --zone', async (c) => {
    const res = await cli.run(
      ['windows', 'check', c.start, '--length', c.length, '--at', c.at, '-o', 'json'],
      { env: { TZ: CASES_ZONE } },
    );
    expect(res.code, res.stderr).toBe(0);
    const state = CheckJsonSchema.parse(JSON.parse(res.stdout));
    expect(state.open).toBe(c.open);
    expect(c.open ? state.nextEnd : state.nextStart).toBe(c.next);
  });

  it('says which zone it used and where that came from', async () => {
    const res = await cli.run(['windows', 'check', 'Thu 04:00', '--length', '1h30m'], {
      env: { TZ: CASES_ZONE },
    });
    expect(res.stdout).toContain(`window: Thu 04:00+1h30m ${CASES_ZONE}`);
    expect(res.stdout).toContain(
      `zone:   ${CASES_ZONE} (this node's local zone, from TZ=${CASES_ZONE})`,
    );
    const json = JSON.parse(
      (
        await cli.run(['windows', 'check', '04:00', '--length', '1h', '-o', 'json'], {
          env: { TZ: 'Europe/Berlin' },
        })
      ).stdout,
    );
    expect(json).toMatchObject({ zone: 'Europe/Berlin', zoneFrom: 'TZ=Europe/Berlin' });
  });

  it('takes --zone over the local zone, and keeps sluice syntax in UTC', async () => {
    const c = LOCKSMITH_WINDOW_CASES[12]!;
    const res = await cli.run(
      [
        'windows',
        'check',
        c.start,
        '--length',
        c.length,
        '--at',
        c.at,
        '--zone',
        'UTC',
        '-o',
        'json',
      ],
      { env: { TZ: CASES_ZONE } },
    );
    // 04:00 UTC on a Thursday, not 04:00 in Los Angeles.
    expect(CheckJsonSchema.parse(JSON.parse(res.stdout)).nextStart).toBe(
      '2025-03-13T04:00:00.000Z',
    );
    const native = await cli.run(
      ['windows', 'check', 'Thu 04:00+1h30m', '--at', c.at, '-o', 'json'],
      { env: { TZ: CASES_ZONE } },
    );
    expect(CheckJsonSchema.parse(JSON.parse(native.stdout)).nextStart).toBe(
      '2025-03-13T04:00:00.000Z',
    );
    const local = await cli.run(
      ['windows', 'check', 'Thu 04:00+1h30m', '--at', c.at, '--zone', 'local', '-o', 'json'],
      { env: { TZ: CASES_ZONE } },
    );
    expect(CheckJsonSchema.parse(JSON.parse(local.stdout)).nextStart).toBe(c.next);
  });

  it('refuses --zone local for a group window, which nodes in many zones share', async () => {
    const res = await cli.run(['windows', 'set', 'Thu 04:00+1h', '--zone', 'local'], {
      env: { TZ: CASES_ZONE },
    });
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('a group window needs an explicit zone');
  });
});
