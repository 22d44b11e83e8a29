/**
 * Reboot windows: the weekly hours in which a node may reboot, in IANA time zones.
 *
 * A `WindowSpec` is a list of `WeeklyWindow`s; the spec is open whenever any of its windows is.
 * A node reboots only while the group's spec (from etcd) and its own local spec are both open:
 * ask `windowStateAll([group, local], now)`.
 *
 * Time zone rules come from luxon (which reads the tz database through `Intl`), so windows are
 * right across daylight-saving changes. The DST rules are:
 *
 * - A window starts at a local wall-clock time on a local date; the date's weekday decides
 *   whether the window runs that day.
 * - If that wall-clock time does not exist (it falls in a spring-forward gap), the window starts
 *   at the first instant after the gap, that is at the moment the clocks jump. Like cron, a
 *   window is not skipped just because its start time was skipped.
 * - If that wall-clock time happens twice (fall-back), the first occurrence counts.
 * - A `+LENGTH` window lasts that much elapsed time, whatever the clocks do. `Sat 23:00+4h` in
 *   Europe/Berlin on the night the clocks go back ends at 02:00 the second time round.
 * - A `-END` window ends at the END wall-clock time, found by the same two rules. So `01:00-05:00`
 *   lasts 5 real hours on a fall-back night and 3 on a spring-forward night. An END that is not
 *   after START is on the next day: `22:00-02:00` crosses midnight, and `04:00-04:00` lasts until
 *   04:00 the next day (24 hours, or 23 or 25 across a DST change). If START and END both fall in
 *   the same gap the window does not open that day.
 * - Windows that overlap or touch merge into one open period.
 *
 * Why one file: the parser, the formatter and the evaluator of one grammar, which must agree; a
 * test round-trips specs through all three.
 */

import { IANAZone } from 'luxon';
import { type Blackout, blackoutSpan } from './blackouts.js';
import { formatDuration, parseDurationText } from './duration.js';
import { err, ok, type Result, SluiceError } from './errors.js';

/** One weekly window: on each of `days`, open from `startMinute` local time for a while. */
export interface WeeklyWindow {
  /** ISO weekdays (1 = Monday … 7 = Sunday) the window starts on, ascending, no duplicates. */
  days: number[];
  /** Start as minutes after local midnight, 0–1439. */
  startMinute: number;
  /**
   * How long the window lasts in elapsed milliseconds. When `endMinute` is set this is only the
   * nominal span between the two wall-clock times (for display); `endMinute` decides the end.
   */
  lengthMs: number;
  /**
   * Set for `START-END` windows: the window ends at this local wall-clock time, as minutes after
   * midnight (0–1440). It ends the same day when `endMinute > startMinute`, otherwise the next day.
   */
  endMinute?: number;
  /** IANA time zone the wall-clock times are in, such as `Europe/Berlin` or `UTC`. */
  zone: string;
}

/** A parsed window spec. No windows means always open, except in its blackouts. */
export interface WindowSpec {
  windows: WeeklyWindow[];
  /** Days on which the spec stays shut whatever its windows say (see blackouts.ts). */
  blackouts?: Blackout[];
  /** Where the spec came from, for messages: `etcd key /sluice/v1/groups/default/windows`. */
  source: string;
}

/** Whether a spec (or several together) is open at an instant, and when that changes. */
export interface WindowState {
  /** Whether a node may reboot now, as far as windows go. */
  open: boolean;
  /** When `open` next flips; null if it does not flip within the search horizon. */
  nextChange: Date | null;
  /**
   * If closed: when the next open period starts. If open: when the open period after the current
   * one starts. Null if there is none within the search horizon.
   */
  nextStart: Date | null;
  /**
   * If closed: when the next open period (the one starting at `nextStart`) ends. If open: when the
   * current open period ends. Null if unknown within the search horizon.
   */
  nextEnd: Date | null;
}

const MINUTE = 60_000;
const DAY = 86_400_000;
const WEEK = 7 * DAY;

/**
 * How far ahead `windowState` and `windowStateAll` look: 16 days. A single spec always opens
 * within that (every window recurs weekly); specs that must all be open may never meet, and
 * then `nextStart` is null.
 */
export const WINDOW_HORIZON_MS = 16 * DAY;

const DAY_NAMES = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'] as const;
const FULL_DAY_NAMES = [
  'monday',
  'tuesday',
  'wednesday',
  'thursday',
  'friday',
  'saturday',
  'sunday',
] as const;

/**
 * The longest window spec accepted, in characters. Real specs are a few entries long; a longer
 * value is refused before it is parsed, so a huge value in etcd costs nothing per decision.
 */
export const MAX_WINDOW_SPEC_LENGTH = 2048;

/** The most entries a window spec may have. */
export const MAX_WINDOW_ENTRIES = 32;

/** How much of a bad token an error message quotes. */
const QUOTE_LIMIT = 40;

/** Quotes a token for a message, cut to QUOTE_LIMIT characters. */
const q = (s: string): string =>
  JSON.stringify(s.length > QUOTE_LIMIT ? `${s.slice(0, QUOTE_LIMIT - 1)}…` : s);

// ---------------------------------------------------------------------------------------------
// Parsing

/**
 * Parses a window spec, as stored in etcd or a config file. Use it for every window a user
 * writes; `source` names where the text came from and appears in error messages.
 *
 * Grammar:
 *
 * ```text
 * spec   = "always" | entry { (";" | newline) entry }
 * entry  = [DAYS] START ("-" END | "+" LENGTH) [ZONE]
 * DAYS   = "*" | "daily" | day-item { "," day-item }     (omitted = every day)
 * day-item = DAY | DAY "-" DAY                            (ranges may wrap: Fri-Mon)
 * DAY    = Mon | Tue | Wed | Thu | Fri | Sat | Sun, or the full name, any case
 * START  = HH:MM, 00:00 to 23:59 (the hour may have one digit)
 * END    = HH:MM, 00:00 to 24:00; END <= START means the window ends the next day, so
 *          04:00-04:00 lasts until 04:00 the next day
 * LENGTH = a Go duration (1h30m, 90m, 45s), more than 0 and at most 168h
 * ZONE   = an IANA time zone name (Europe/Berlin) or UTC; default `defaultZone`
 * ```
 *
 * `always` (any case) means always open. Blank text is refused: an unset variable must not open
 * every hour, so "always open" is only ever written as `always` (or by removing the window).
 * Blank lines between entries are ignored, but an empty entry between semicolons is an error.
 * A spec is at most MAX_WINDOW_SPEC_LENGTH characters and MAX_WINDOW_ENTRIES entries. Spaces are
 * allowed around `-` and `+` and after commas. Examples:
 * `Mon-Fri 22:00-02:00 Europe/Berlin`, `Sat,Sun 03:00+4h`, `daily 04:00+30m UTC; Sun 12:00-14:00`.
 *
 * Failures are SluiceErrors of kind `invalid-window` with `where = source`; the message quotes
 * the bad token and the entry it is in.
 */
export function parseWindowSpec(
  text: string,
  source: string,
  defaultZone = 'UTC',
): Result<WindowSpec> {
  const fail = (why: string) => err(windowError(source, why));
  if (text.length > MAX_WINDOW_SPEC_LENGTH) {
    return fail(
      `the spec is ${text.length} characters long; at most ${MAX_WINDOW_SPEC_LENGTH} are accepted`,
    );
  }
  const whole = text.trim();
  if (whole === '') return fail(BLANK_SPEC);
  if (whole.toLowerCase() === 'always') return ok({ windows: [], source });
  const zone = canonicalZone(defaultZone);
  if (zone === undefined) return fail(`unknown default time zone ${q(defaultZone)}`);

  const windows: WeeklyWindow[] = [];
  for (const rawLine of text.split(/\r?\n|\r/)) {
    const line = rawLine.trim();
    if (line === '') continue;
    for (const rawEntry of line.split(';')) {
      const entry = rawEntry.trim();
      if (entry === '') return fail(`empty entry in ${q(line)} (remove the stray ";")`);
      if (entry.toLowerCase() === 'always') {
        return fail('"always" cannot be combined with other entries');
      }
      if (windows.length === MAX_WINDOW_ENTRIES) {
        return fail(`a spec may have at most ${MAX_WINDOW_ENTRIES} entries`);
      }
      const parsed = parseEntry(entry, zone);
      if (!parsed.ok) return fail(`${parsed.error} in entry ${q(entry)}`);
      windows.push(parsed.value);
    }
  }
  return ok({ windows, source });
}

const BLANK_SPEC =
  'the spec is empty; write "always" for always open (or remove the window), or a window such as "Mon-Fri 22:00-02:00"';

/**
 * Reads locksmith's window settings, `REBOOT_WINDOW_START` (`Thu 04:00`, or `04:00` for every day;
 * full day names work too, and the hour and minute may have one digit, as locksmith reads them)
 * and `REBOOT_WINDOW_LENGTH` (a Go duration such as `1h30m`). Use it when migrating a locksmith
 * configuration. Both must be given: a blank one (empty or white space) is an error, and so is
 * one without the other, so an unset variable never opens every hour; callers that find neither
 * setting have no window to parse. `zone` is the zone the start time is in (locksmith used the
 * node's local time zone).
 */
export function parseLocksmithWindow(
  start: string,
  length: string,
  source: string,
  zone = 'UTC',
): Result<WindowSpec> {
  const fail = (why: string) => err(windowError(source, why));
  const startText = start.trim();
  const lengthText = length.trim();
  if (start.length > MAX_WINDOW_SPEC_LENGTH || length.length > MAX_WINDOW_SPEC_LENGTH) {
    return fail(`a window start or length is longer than ${MAX_WINDOW_SPEC_LENGTH} characters`);
  }
  if (startText === '' && lengthText === '') {
    return fail(
      'the window start (REBOOT_WINDOW_START) and length (REBOOT_WINDOW_LENGTH) are both empty; set both, or neither for no window',
    );
  }
  if (startText === '') {
    return fail(
      `a window length (REBOOT_WINDOW_LENGTH ${q(lengthText)}) is set without a window start (REBOOT_WINDOW_START); set both or neither`,
    );
  }
  if (lengthText === '') {
    return fail(
      `a window start (REBOOT_WINDOW_START ${q(startText)}) is set without a window length (REBOOT_WINDOW_LENGTH); set both or neither`,
    );
  }
  const canonical = canonicalZone(zone);
  if (canonical === undefined) return fail(`unknown time zone ${q(zone)}`);

  const tokens = startText.split(/\s+/);
  if (tokens.length > 2) {
    return fail(`window start ${q(startText)} is not "[DAY] HH:MM", e.g. "Thu 04:00" or "04:00"`);
  }
  let days = [...ALL_DAYS];
  if (tokens.length === 2) {
    const day = dayNumber(tokens[0]!);
    if (day === undefined) return fail(`unknown day ${q(tokens[0]!)} in window start`);
    days = [day];
  }
  const startMinute = parseLocksmithClock(tokens[tokens.length - 1]!);
  if (!startMinute.ok) return fail(`${startMinute.error} in window start`);
  const lengthMs = parseLength(lengthText);
  if (!lengthMs.ok) return fail(`${lengthMs.error} (REBOOT_WINDOW_LENGTH)`);
  return ok({
    windows: [{ days, startMinute: startMinute.value, lengthMs: lengthMs.value, zone: canonical }],
    source,
  });
}

function windowError(source: string, why: string): SluiceError {
  return new SluiceError('invalid-window', `invalid reboot window in ${source}: ${why}`, source);
}

const ALL_DAYS: readonly number[] = [1, 2, 3, 4, 5, 6, 7];

/** Parses one entry; failures are reasons quoting the bad token. */
function parseEntry(entry: string, defaultZone: string): Result<WeeklyWindow, string> {
  const tokens = entry.split(/\s+/);
  const timeAt = tokens.findIndex((t) => /^\d/.test(t));
  if (timeAt === -1) return err('missing start time (HH:MM)');

  let days = ALL_DAYS;
  if (timeAt > 0) {
    const parsed = parseDays(tokens.slice(0, timeAt).join(''));
    if (!parsed.ok) return parsed;
    days = parsed.value;
  }

  let rest = tokens.slice(timeAt);
  let zone = defaultZone;
  const last = rest[rest.length - 1]!;
  if (rest.length > 1 && /^[A-Za-z]/.test(last)) {
    const canonical = canonicalZone(last);
    if (canonical === undefined) return err(`unknown time zone ${q(last)}`);
    zone = canonical;
    rest = rest.slice(0, -1);
  }
  const time = joinTime(rest);
  if (!time.ok) return time;

  const match = /^([^+-]*)(?:([+-])([\s\S]*))?$/.exec(time.value)!;
  const [, startText = '', op, endText = ''] = match;
  const start = parseClock(startText, false);
  if (!start.ok) return start;
  const startMinute = start.value;
  if (op === undefined) {
    return err(`missing end or length after ${q(startText)} (write e.g. 04:00-06:00 or 04:00+2h)`);
  }
  if (op === '+') {
    const length = parseLength(endText);
    if (!length.ok) return length;
    return ok({ days: [...days], startMinute, lengthMs: length.value, zone });
  }
  const end = parseClock(endText, true);
  if (!end.ok) return end;
  const endMinute = end.value;
  return ok({
    days: [...days],
    startMinute,
    lengthMs: nominalLength(startMinute, endMinute),
    endMinute,
    zone,
  });
}

/** Joins `04:00 - 06:00` or `04:00 +2h` back into one token; refuses anything else. */
function joinTime(tokens: string[]): Result<string, string> {
  const [a = '', b, c] = tokens;
  if (tokens.length === 1) return ok(a);
  if (tokens.length === 2 && (/[+-]$/.test(a) || /^[+-]/.test(b!))) return ok(a + b);
  if (tokens.length === 3 && (b === '+' || b === '-')) return ok(a + b + c);
  const stray = tokens.length > 3 && (b === '+' || b === '-') ? tokens[3] : b;
  return err(`unexpected ${q(stray ?? '')}`);
}

/** The wall-clock span of a START-END window, in milliseconds. */
function nominalLength(startMinute: number, endMinute: number): number {
  const minutes =
    endMinute > startMinute ? endMinute - startMinute : endMinute + 1440 - startMinute;
  return minutes * MINUTE;
}

/**
 * Parses `HH:MM` into minutes after midnight: a START (`allow24` false, 00:00 to 23:59) or an END
 * (`allow24` true, 00:00 to 24:00, since 24:00 ends a window at midnight).
 */
function parseClock(text: string, allow24: boolean): Result<number, string> {
  const match = /^(\d{1,2}):(\d{2})$/.exec(text);
  const hour = Number(match?.[1]);
  const minute = Number(match?.[2]);
  if (match && minute < 60 && (hour < 24 || (allow24 && hour === 24 && minute === 0))) {
    return ok(hour * 60 + minute);
  }
  if (text === '') return err('missing time (HH:MM)');
  if (allow24) return err(`invalid time ${q(text)} (want HH:MM, 00:00 to 24:00)`);
  const hint = /^24:00$/.test(text) ? '; 24:00 can only end a window, as in 22:00-24:00' : '';
  return err(`invalid time ${q(text)} (want HH:MM, 00:00 to 23:59${hint})`);
}

/** Parses locksmith's start time: `H:M` with one or two digits each, as locksmith reads it. */
function parseLocksmithClock(text: string): Result<number, string> {
  const match = /^(\d{1,2}):(\d{1,2})$/.exec(text);
  const hour = Number(match?.[1]);
  const minute = Number(match?.[2]);
  if (match && hour < 24 && minute < 60) return ok(hour * 60 + minute);
  return err(`invalid time ${q(text)} (want HH:MM, 00:00 to 23:59)`);
}

/** Parses a window length: a Go duration, more than 0 and at most a week. */
function parseLength(text: string): Result<number, string> {
  const parsed = parseDurationText(text);
  if (!parsed.ok) return err(`invalid length ${q(text)}: ${parsed.error}`);
  if (parsed.value <= 0) return err(`length ${q(text)} must be more than zero`);
  if (parsed.value > WEEK) return err(`length ${q(text)} is longer than a week (168h)`);
  return parsed;
}

/** Parses DAYS: `*`, `daily`, or a comma list of days and (possibly wrapping) day ranges. */
function parseDays(text: string): Result<number[], string> {
  const lower = text.toLowerCase();
  if (lower === '*' || lower === 'daily') return ok([...ALL_DAYS]);
  const chosen = new Set<number>();
  for (const item of text.split(',')) {
    if (item === '') return err(`empty day in ${q(text)}`);
    const ends = item.split('-');
    if (ends.length > 2) return err(`invalid day range ${q(item)}`);
    const numbers: number[] = [];
    for (const name of ends) {
      const day = dayNumber(name);
      if (day === undefined) return err(`unknown day ${q(name)} (use Mon..Sun or full names)`);
      numbers.push(day);
    }
    const [from = 1, to = from] = numbers;
    for (let d = from; ; d = (d % 7) + 1) {
      chosen.add(d);
      if (d === to) break;
    }
  }
  return ok([...chosen].sort((a, b) => a - b));
}

/** ISO weekday number of a 3-letter or full day name, any case. */
function dayNumber(name: string): number | undefined {
  const lower = name.toLowerCase();
  const index = FULL_DAY_NAMES.findIndex((full) => full === lower || full.slice(0, 3) === lower);
  return index === -1 ? undefined : index + 1;
}

const zoneNames = new Map<string, string | undefined>();

/**
 * The zone name to store: the user's spelling with the tz database's capitalisation
 * (`europe/berlin` becomes `Europe/Berlin`; aliases such as `US/Eastern` are kept as written).
 * Undefined if the tz database does not know the zone. Use it to check a zone name before
 * putting it into a spec.
 */
export function canonicalZone(name: string): string | undefined {
  if (zoneNames.has(name)) return zoneNames.get(name);
  let result: string | undefined;
  if (/^[A-Za-z][A-Za-z0-9_+\-/]*$/.test(name) && IANAZone.isValidZone(name)) {
    const resolved = new Intl.DateTimeFormat('en-US', { timeZone: name }).resolvedOptions()
      .timeZone;
    result = resolved.toLowerCase() === name.toLowerCase() ? resolved : name;
  }
  if (zoneNames.size > 1000) zoneNames.clear();
  zoneNames.set(name, result);
  return result;
}

// ---------------------------------------------------------------------------------------------
// Formatting

/**
 * Formats one window in the canonical form `parseWindowSpec` reads back to the same window:
 * `Mon-Fri 22:00-02:00 Europe/Berlin`, `daily 04:00+1h30m UTC`. Use it in logs and CLI output.
 */
export function describeWindow(w: WeeklyWindow): string {
  const time =
    w.endMinute === undefined
      ? `${formatClock(w.startMinute)}+${formatDuration(w.lengthMs)}`
      : `${formatClock(w.startMinute)}-${formatClock(w.endMinute)}`;
  return `${formatDays(w.days)} ${time} ${w.zone}`;
}

/**
 * Formats a spec canonically: its windows joined by `; `, or `always` when it has none. The
 * result parses back to the same windows. Use it to show or store a spec.
 */
export function formatWindowSpec(spec: WindowSpec): string {
  return spec.windows.length === 0 ? 'always' : spec.windows.map(describeWindow).join('; ');
}

function formatClock(minutes: number): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${pad(Math.floor(minutes / 60))}:${pad(minutes % 60)}`;
}

/** `daily`, or runs of days in week order: three or more as a range (wrapping if need be). */
function formatDays(days: readonly number[]): string {
  const set = new Set(days);
  if (ALL_DAYS.every((d) => set.has(d))) return 'daily';
  const gap = ALL_DAYS.find((d) => !set.has(d)) ?? 1;
  const runs: number[][] = [];
  let run: number[] = [];
  for (let i = 1; i <= 7; i++) {
    const d = ((gap - 1 + i) % 7) + 1;
    if (set.has(d)) run.push(d);
    else if (run.length > 0) {
      runs.push(run);
      run = [];
    }
  }
  runs.sort((a, b) => a[0]! - b[0]!);
  const name = (d: number) => DAY_NAMES[d - 1]!;
  return runs
    .map((r) =>
      r.length >= 3 ? `${name(r[0]!)}-${name(r[r.length - 1]!)}` : r.map(name).join(','),
    )
    .join(',');
}

// ---------------------------------------------------------------------------------------------
// Evaluation

/**
 * Whether a spec is open at `at`, and when that changes. Use it to decide whether a node may
 * enqueue or reboot now, and how long to sleep. An always-open spec gives
 * `{ open: true, nextChange: null, nextStart: null, nextEnd: null }`.
 *
 * Open periods are half-open: a window `04:00+1h` is open at 04:00 and closed at 05:00.
 * Throws a RangeError for an invalid Date or a zone the tz database does not know (specs from
 * `parseWindowSpec` and `parseLocksmithWindow` always have valid zones).
 */
export function windowState(spec: WindowSpec, at: Date): WindowState {
  return windowStateAll([spec], at);
}

/**
 * The state when every spec must be open at once: the group's window from etcd and the node's
 * local window. Open iff all are open; `nextChange` is the first instant the combined state
 * flips. Looks `WINDOW_HORIZON_MS` (16 days) ahead: if the specs do not all open together in
 * that time, `nextStart` is null. An empty list, or only always-open specs, is always open.
 */
export function windowStateAll(specs: readonly WindowSpec[], at: Date): WindowState {
  const now = at.getTime();
  if (!Number.isFinite(now)) throw new RangeError('windowState: invalid Date');
  // Past a blackout that is in force or ahead, look the usual horizon further on.
  let limit = now + WINDOW_HORIZON_MS;
  const shut = specs.flatMap((s) => (s.blackouts ?? []).map(blackoutSpan));
  for (const span of shut) {
    if (span.end > now && span.start < limit) limit = Math.max(limit, span.end + WINDOW_HORIZON_MS);
  }

  let periods: Interval[] | undefined;
  for (const spec of specs) {
    const blackouts = spec.blackouts ?? [];
    if (spec.windows.length === 0 && blackouts.length === 0) continue;
    let own =
      spec.windows.length === 0
        ? [{ start: now - WEEK, end: limit + WEEK }]
        : openPeriods(spec.windows, now, limit);
    if (blackouts.length > 0) own = subtract(own, blackouts.map(blackoutSpan));
    periods = periods === undefined ? own : intersect(periods, own);
  }
  if (periods === undefined)
    return { open: true, nextChange: null, nextStart: null, nextEnd: null };

  // Every occurrence that starts by `limit` has been generated, so a period ending by `limit` is
  // exact; one ending later might be extended by occurrences beyond the horizon.
  const date = (t: number | undefined) => (t !== undefined && t <= limit ? new Date(t) : null);
  const index = periods.findIndex((p) => p.end > now);
  const current = periods[index];
  if (current === undefined) {
    return { open: false, nextChange: null, nextStart: null, nextEnd: null };
  }
  if (current.start <= now) {
    const nextEnd = date(current.end);
    const nextStart = nextEnd === null ? null : date(periods[index + 1]?.start);
    return { open: true, nextChange: nextEnd, nextStart, nextEnd };
  }
  const nextStart = date(current.start);
  const nextEnd = nextStart === null ? null : date(current.end);
  return { open: false, nextChange: nextStart, nextStart, nextEnd };
}

/** A half-open span of time, [start, end), in epoch milliseconds. */
interface Interval {
  start: number;
  end: number;
}

/**
 * The merged open periods of some windows: every occurrence that could cover `from` or start
 * by `to`. Windows last at most a week plus a day, so looking nine local days back is enough.
 */
function openPeriods(windows: readonly WeeklyWindow[], from: number, to: number): Interval[] {
  const all: Interval[] = [];
  for (const w of windows) {
    const zone = zoneClock(w.zone);
    const first = localDay(zone, from) - 9;
    const last = localDay(zone, to) + 1;
    for (let day = first; day <= last; day++) {
      if (!w.days.includes(isoWeekday(day))) continue;
      const start = zone.instant(day * DAY + w.startMinute * MINUTE);
      const end =
        w.endMinute === undefined
          ? start + w.lengthMs
          : zone.instant(
              (w.endMinute > w.startMinute ? day : day + 1) * DAY + w.endMinute * MINUTE,
            );
      if (end > start) all.push({ start, end });
    }
  }
  all.sort((a, b) => a.start - b.start);
  const merged: Interval[] = [];
  for (const span of all) {
    const previous = merged[merged.length - 1];
    if (previous !== undefined && span.start <= previous.end) {
      previous.end = Math.max(previous.end, span.end);
    } else {
      merged.push({ ...span });
    }
  }
  return merged;
}

/** Sorted disjoint `periods` with every instant of `holes` (in any order) taken out. */
function subtract(periods: readonly Interval[], holes: readonly Interval[]): Interval[] {
  let out = [...periods];
  for (const hole of holes) {
    out = out.flatMap((p) => {
      if (hole.end <= p.start || hole.start >= p.end) return [p];
      const parts: Interval[] = [];
      if (p.start < hole.start) parts.push({ start: p.start, end: hole.start });
      if (hole.end < p.end) parts.push({ start: hole.end, end: p.end });
      return parts;
    });
  }
  return out;
}

/** The overlaps of two sorted lists of disjoint intervals. */
function intersect(a: readonly Interval[], b: readonly Interval[]): Interval[] {
  const out: Interval[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const x = a[i]!;
    const y = b[j]!;
    const start = Math.max(x.start, y.start);
    const end = Math.min(x.end, y.end);
    if (start < end) out.push({ start, end });
    if (x.end < y.end) i++;
    else j++;
  }
  return out;
}

/** ISO weekday of a day counted from 1970-01-01, which was a Thursday. */
function isoWeekday(day: number): number {
  return ((((day + 3) % 7) + 7) % 7) + 1;
}

/** The local day number (days since 1970-01-01 in local time) of an instant. */
function localDay(zone: ZoneClock, instant: number): number {
  return Math.floor((instant + zone.offset(instant)) / DAY);
}

/**
 * Converts between instants and local wall-clock times in one zone. Local times are written as
 * "epoch milliseconds as if the zone were UTC". Offsets are memoised: window maths asks for the
 * same instants again and again.
 */
interface ZoneClock {
  /** The zone's UTC offset at an instant, in milliseconds. */
  offset(instant: number): number;
  /** The instant a local wall-clock time denotes, by the DST rules in the module comment. */
  instant(local: number): number;
}

const clocks = new Map<string, ZoneClock>();

function zoneClock(name: string): ZoneClock {
  let clock = clocks.get(name);
  if (clock === undefined) {
    clock = makeZoneClock(name);
    clocks.set(name, clock);
  }
  return clock;
}

function makeZoneClock(name: string): ZoneClock {
  if (!IANAZone.isValidZone(name)) throw new RangeError(`unknown time zone ${q(name)}`);
  const zone = IANAZone.create(name);
  const memo = new Map<number, number>();
  const offset = (instant: number): number => {
    let minutes = memo.get(instant);
    if (minutes === undefined) {
      minutes = zone.offset(instant);
      if (memo.size >= 100_000) memo.clear();
      memo.set(instant, minutes);
    }
    return minutes * MINUTE;
  };
  const instant = (local: number): number => {
    // The offsets a day either side are the candidates (zones do not change offset twice in two
    // days). A candidate is valid if the zone really has that offset at the instant it gives.
    const before = offset(local - DAY);
    const after = offset(local + DAY);
    const early = local - before;
    if (before === after) return early;
    const late = local - after;
    const earlyValid = offset(early) === before;
    const lateValid = offset(late) === after;
    if (earlyValid && lateValid) return Math.min(early, late); // fall-back: first occurrence
    if (earlyValid) return early;
    if (lateValid) return late;
    // Spring-forward gap: the transition lies between the two candidates. Find its first
    // millisecond by bisection.
    let lo = Math.min(early, late);
    let hi = Math.max(early, late);
    const loOffset = offset(lo);
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      if (offset(mid) === loOffset) lo = mid;
      else hi = mid;
    }
    return hi;
  };
  return { offset, instant };
}
