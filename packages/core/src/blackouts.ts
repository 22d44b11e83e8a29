/**
 * Blackouts: the maintenance calendar. Dates and date ranges, each in an IANA time zone, on which
 * a group's windows (or a node's) stay shut whatever they say: freezes, holidays, a launch.
 *
 * ```text
 * spec  = entry { (";" | newline) entry }
 * entry = DATE [".." DATE] [ZONE]      DATE = YYYY-MM-DD; a range includes both days
 * ```
 *
 * `2026-12-24..2026-12-26 Europe/Berlin; 2027-01-01` shuts everything from midnight on 24
 * December to midnight after 26 December in Berlin, and all of 1 January in UTC (the default
 * zone). A day runs from local midnight to the next local midnight (23 or 25 hours across a DST
 * change; a midnight the clocks skip starts the day when they jump). `windowStateAll` takes a
 * spec's blackouts out of its open periods.
 */
import { DateTime } from 'luxon';
import { err, ok, type Result, SluiceError } from './errors.js';
import { canonicalZone } from './window.js';

/** Whole local days, `from` to `to` inclusive (ISO dates), in `zone`. */
export interface Blackout {
  from: string;
  to: string;
  zone: string;
}

/** The longest blackouts spec accepted, in characters. */
export const MAX_BLACKOUTS_LENGTH = 4096;

/** The most entries a blackouts spec may have. */
export const MAX_BLACKOUT_ENTRIES = 64;

/** The longest single blackout, in days. A longer one is surely a typo in a year. */
export const MAX_BLACKOUT_DAYS = 92;

const DATE = /^\d{4}-\d{2}-\d{2}$/;

/**
 * Parses a blackouts spec (the grammar above); `source` names where the text came from in error
 * messages, which are SluiceErrors of kind `invalid-window`. Blank text is refused: no blackouts
 * is written by removing the key or the setting.
 */
export function parseBlackouts(
  text: string,
  source: string,
  defaultZone = 'UTC',
): Result<Blackout[]> {
  const fail = (why: string) =>
    err(new SluiceError('invalid-window', `invalid blackouts in ${source}: ${why}`, source));
  if (text.length > MAX_BLACKOUTS_LENGTH) {
    return fail(`the spec is ${text.length} characters long; at most ${MAX_BLACKOUTS_LENGTH}`);
  }
  if (text.trim() === '') return fail('the spec is empty; remove it for no blackouts');
  const out: Blackout[] = [];
  for (const line of text.split(/\r?\n|\r/)) {
    if (line.trim() === '') continue;
    for (const raw of line.split(';')) {
      const entry = raw.trim();
      if (entry === '') return fail(`empty entry in ${JSON.stringify(line.trim())}`);
      if (out.length === MAX_BLACKOUT_ENTRIES) {
        return fail(`a spec may have at most ${MAX_BLACKOUT_ENTRIES} entries`);
      }
      const parsed = parseEntry(entry, defaultZone);
      if (typeof parsed === 'string') return fail(`${parsed} in entry ${JSON.stringify(entry)}`);
      out.push(parsed);
    }
  }
  return ok(out);
}

function parseEntry(entry: string, defaultZone: string): Blackout | string {
  const tokens = entry.split(/\s+/);
  if (tokens.length > 2) return `unexpected ${JSON.stringify(tokens[2])}`;
  const [range = '', zoneText] = tokens;
  const zone = canonicalZone(zoneText ?? defaultZone);
  if (zone === undefined) return `unknown time zone ${JSON.stringify(zoneText ?? defaultZone)}`;
  const [from = '', to = from, extra] = range.split('..');
  if (extra !== undefined) return `${JSON.stringify(range)} is not DATE or DATE..DATE`;
  for (const date of [from, to]) {
    if (!DATE.test(date) || !DateTime.fromISO(date, { zone: 'UTC' }).isValid) {
      return `${JSON.stringify(date)} is not a date (YYYY-MM-DD)`;
    }
  }
  const days = DateTime.fromISO(to).diff(DateTime.fromISO(from), 'days').days + 1;
  if (days < 1) return `${to} is before ${from}`;
  if (days > MAX_BLACKOUT_DAYS) return `${days} days is longer than ${MAX_BLACKOUT_DAYS}`;
  return { from, to, zone };
}

/** One blackout as the parser reads it back: `2026-12-24..2026-12-26 Europe/Berlin`. */
export function describeBlackout(b: Blackout): string {
  return `${b.from === b.to ? b.from : `${b.from}..${b.to}`} ${b.zone}`;
}

/** A blackouts spec in canonical form: its entries joined by `; `. */
export function formatBlackouts(blackouts: readonly Blackout[]): string {
  return blackouts.map(describeBlackout).join('; ');
}

/** The instants a blackout covers, [start, end) in epoch ms: local midnight to local midnight. */
export function blackoutSpan(b: Blackout): { start: number; end: number } {
  const day = (date: string) => DateTime.fromISO(date, { zone: b.zone }).startOf('day');
  return { start: day(b.from).toMillis(), end: day(b.to).plus({ days: 1 }).toMillis() };
}

/** The blackout of `blackouts` in force at `at`, if any. */
export function blackoutAt(blackouts: readonly Blackout[], at: Date): Blackout | null {
  const t = at.getTime();
  return (
    blackouts.find((b) => {
      const span = blackoutSpan(b);
      return span.start <= t && t < span.end;
    }) ?? null
  );
}
