/**
 * The node's local time zone, found as locksmithd (a Go program) found it through `time.Local`:
 *
 * - `TZ` unset: the zone of `/etc/localtime`; UTC when there is no such file.
 * - `TZ` empty, or `UTC`: UTC.
 * - `TZ=:NAME` is the same as `TZ=NAME`.
 * - `TZ=/absolute/path`: the zone of that file.
 * - `TZ=NAME`: that tz database zone (`America/Los_Angeles`); a name the database does not know
 *   means UTC, as in Go (`TZ=CET-1CEST`, a POSIX rule, is not a zone name there either).
 *
 * Go reads the zone file itself; sluice needs its name for the tz database it evaluates windows
 * with. A file is named by where its link points (`/etc/localtime -> ../usr/share/zoneinfo/
 * Europe/Berlin`, as systemd's timedatectl writes it), or else by the file under
 * `/usr/share/zoneinfo` with the same contents. A copy that matches none is an error: the agent
 * cannot tell its own hours, so it fails closed and asks for `windowZone`.
 */
import { readdir, readFile, readlink, realpath, stat } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { canonicalZone, SluiceError } from '@sluice/core';

/** Where the zone of this node was found. */
export interface LocalZone {
  /** An IANA zone name the tz database knows, such as `Europe/Berlin` or `UTC`. */
  zone: string;
  /** How it was found, for `--check-config` and logs: `TZ=America/Los_Angeles`, ... */
  from: string;
  /** Set when the result is UTC by Go's fallback rules, though something else was asked for. */
  warning?: string;
}

/** Where to look; every field has the production default. Tests point them elsewhere. */
export interface LocalZoneOptions {
  /** The environment whose `TZ` counts. Default `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** Default `/etc/localtime`. */
  localtimeFile?: string;
  /** The tz database directory. Default `/usr/share/zoneinfo`. */
  zoneinfoDir?: string;
}

/** The default localtime file. */
export const DEFAULT_LOCALTIME_FILE = '/etc/localtime';

/** The default tz database directory. */
export const DEFAULT_ZONEINFO_DIR = '/usr/share/zoneinfo';

/** UTC under its other names (`/etc/localtime -> zoneinfo/Etc/UTC` is common): shown as UTC. */
const UTC_ALIASES = /^(Etc\/)?(UTC|UCT|Universal|Zulu)$/;

/** True when the tz database sluice evaluates windows with knows `name`. */
function knownZone(name: string): boolean {
  return canonicalZone(name) !== undefined;
}

/** Finds the node's local zone as Go's `time.Local` would (see the module comment). */
export async function localZone(opts: LocalZoneOptions = {}): Promise<LocalZone> {
  const env = opts.env ?? process.env;
  const localtime = opts.localtimeFile ?? DEFAULT_LOCALTIME_FILE;
  const zoneinfo = opts.zoneinfoDir ?? DEFAULT_ZONEINFO_DIR;
  const tz = env.TZ;
  if (tz === undefined) {
    const named = await zoneOfFile(localtime, zoneinfo);
    if (named === null) return { zone: 'UTC', from: `UTC (${localtime} does not exist)` };
    return { zone: named, from: `${localtime} (${named})` };
  }
  const name = tz.startsWith(':') ? tz.slice(1) : tz;
  if (name === '' || name === 'UTC') return { zone: 'UTC', from: `TZ=${tz}` };
  if (name.startsWith('/')) {
    const named = await zoneOfFile(name, zoneinfo);
    if (named === null) {
      return {
        zone: 'UTC',
        from: `UTC (TZ=${tz}: no such file)`,
        warning: `TZ=${tz} names a file that does not exist; like locksmithd, windows from locksmith's settings are in UTC`,
      };
    }
    return { zone: named, from: `TZ=${tz} (${named})` };
  }
  if (UTC_ALIASES.test(name)) return { zone: 'UTC', from: `TZ=${tz}` };
  if (knownZone(name)) return { zone: name, from: `TZ=${tz}` };
  return {
    zone: 'UTC',
    from: `UTC (TZ=${tz} is not a time zone name)`,
    warning: `TZ=${tz} is not a time zone name; like locksmithd, windows from locksmith's settings are in UTC (set windowZone to choose a zone)`,
  };
}

/**
 * The zone name of a zone file: by its link into the zoneinfo directory, or by matching its
 * contents. Null when the file does not exist. Throws a SluiceError when it cannot be named.
 */
async function zoneOfFile(file: string, zoneinfo: string): Promise<string | null> {
  let target: string;
  try {
    target = await realpath(file);
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new SluiceError(
      'invalid-config',
      `cannot read ${file} to find the local time zone`,
      file,
      {
        cause,
      },
    );
  }
  // By link: the path below a ".../zoneinfo/" directory (posix/ and right/ hold the same zones).
  const link = await readlink(file).catch(() => null);
  for (const candidate of [link === null ? null : resolve(file, '..', link), target]) {
    if (candidate === null) continue;
    const at = candidate.lastIndexOf(`${sep}zoneinfo${sep}`);
    if (at === -1) continue;
    const name = candidate.slice(at + '/zoneinfo/'.length).replace(/^(posix|right)\//, '');
    if (UTC_ALIASES.test(name)) return 'UTC';
    if (knownZone(name)) return name;
  }
  const found = await matchContents(target, zoneinfo);
  if (found !== null) return found;
  throw new SluiceError(
    'invalid-config',
    `cannot tell the local time zone: ${file} is not a link into a zoneinfo directory and matches no zone in ${zoneinfo}; set windowZone (or TZ) to the zone this node keeps its hours in`,
    file,
  );
}

/** The name of the zone file in `zoneinfo` with the same bytes as `file`, preferring Area/City. */
async function matchContents(file: string, zoneinfo: string): Promise<string | null> {
  const wanted = await readFile(file).catch(() => null);
  if (wanted === null || wanted.subarray(0, 4).toString('latin1') !== 'TZif') return null;
  const matches: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      const path = join(dir, entry.name);
      const name = relative(zoneinfo, path);
      if (entry.isDirectory()) {
        if (name !== 'posix' && name !== 'right') await walk(path);
        continue;
      }
      if (!knownZone(name) || name === 'localtime' || name === 'posixrules') continue;
      const info = await stat(path).catch(() => null);
      if (info?.size !== wanted.length) continue;
      const bytes = await readFile(path).catch(() => null);
      if (bytes?.equals(wanted)) matches.push(name);
    }
  };
  if (!isAbsolute(zoneinfo)) return null;
  await walk(zoneinfo);
  // Identical files are aliases (US/Pacific, America/Los_Angeles): the Area/City name reads best.
  matches.sort((a, b) => score(a) - score(b) || a.localeCompare(b));
  const best = matches[0];
  if (best === undefined) return null;
  return matches.some((m) => UTC_ALIASES.test(m)) ? 'UTC' : best;
}

function score(name: string): number {
  const areas = /^(Africa|America|Antarctica|Asia|Atlantic|Australia|Europe|Indian|Pacific)\//;
  if (areas.test(name)) return 0;
  if (name.startsWith('Etc/')) return 1;
  return name.includes('/') ? 2 : 3;
}
