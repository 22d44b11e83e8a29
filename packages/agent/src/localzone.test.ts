/**
 * The node's local zone, found as Go's time.Local finds it (TZ, then /etc/localtime), against
 * this machine's real tz database.
 */
import { copyFile, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { localZone } from './localzone.js';

const ZONEINFO = '/usr/share/zoneinfo';
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-localzone-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('localZone', () => {
  it.each<[string, string | undefined, string]>([
    ['a zone name', 'America/Los_Angeles', 'America/Los_Angeles'],
    ['a leading colon', ':Europe/Berlin', 'Europe/Berlin'],
    ['empty TZ means UTC', '', 'UTC'],
    ['TZ=UTC', 'UTC', 'UTC'],
    ['an absolute path to a zone file', `${ZONEINFO}/Asia/Tokyo`, 'Asia/Tokyo'],
  ])('TZ: %s', async (_name, tz, zone) => {
    const found = await localZone({ env: { TZ: tz }, localtimeFile: join(dir, 'none') });
    expect(found.zone).toBe(zone);
    expect(found.warning).toBeUndefined();
  });

  it('falls back to UTC, with a warning, for a TZ that is not a zone name (as Go does)', async () => {
    for (const tz of ['CET-1CEST', 'Mars/Olympus', '/no/such/file']) {
      const found = await localZone({ env: { TZ: tz } });
      expect(found.zone).toBe('UTC');
      expect(found.warning).toContain(`TZ=${tz}`);
    }
  });

  it('without TZ reads /etc/localtime: a link into zoneinfo, absolute or relative', async () => {
    const absolute = join(dir, 'abs-localtime');
    await symlink(`${ZONEINFO}/Europe/Berlin`, absolute);
    expect(await localZone({ env: {}, localtimeFile: absolute })).toEqual({
      zone: 'Europe/Berlin',
      from: `${absolute} (Europe/Berlin)`,
    });
    const relativeLink = join(dir, 'rel-localtime');
    await symlink(`../../..${ZONEINFO}/America/New_York`, relativeLink);
    expect((await localZone({ env: {}, localtimeFile: relativeLink })).zone).toBe(
      'America/New_York',
    );
  });

  it('names a copied zone file by its contents, preferring Area/City to aliases', async () => {
    const copy = join(dir, 'copied-localtime');
    await copyFile(`${ZONEINFO}/America/Los_Angeles`, copy);
    expect((await localZone({ env: {}, localtimeFile: copy })).zone).toBe('America/Los_Angeles');
  });

  it('is UTC without /etc/localtime, and refuses a file it cannot name', async () => {
    expect((await localZone({ env: {}, localtimeFile: join(dir, 'missing') })).zone).toBe('UTC');
    const bogus = join(dir, 'bogus-localtime');
    await writeFile(bogus, 'TZif not really');
    await expect(localZone({ env: {}, localtimeFile: bogus })).rejects.toThrow(
      /cannot tell the local time zone: .*bogus-localtime.*set windowZone/,
    );
  });
});
