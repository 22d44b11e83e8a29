import fc from 'fast-check';
import { DateTime, IANAZone } from 'luxon';
import { describe, expect, it } from 'vitest';
import {
  describeWindow,
  formatWindowSpec,
  parseLocksmithWindow,
  parseWindowSpec,
  type WeeklyWindow,
  WINDOW_HORIZON_MS,
  type WindowSpec,
  type WindowState,
  windowState,
  windowStateAll,
} from './window.js';

const SOURCE = 'etcd key /sluice/v1/groups/default/windows';
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const WEEK = 7 * DAY;

function spec(text: string, defaultZone?: string): WindowSpec {
  const parsed = parseWindowSpec(text, SOURCE, defaultZone);
  if (!parsed.ok) throw parsed.error;
  return parsed.value;
}

const isOpen = (specs: WindowSpec[], at: number): boolean =>
  windowStateAll(specs, new Date(at)).open;

const iso = (d: Date | null) => (d === null ? null : d.toISOString());

/** A table row: spec text, instant, then whether open and the expected next start and end. */
type Row = [string, string, boolean, string | null, string | null];

function checkRows(rows: Row[]): void {
  for (const [text, at, open, nextStart, nextEnd] of rows) {
    const state = windowState(spec(text), new Date(at));
    const want = (s: string | null) => (s === null ? null : new Date(s).toISOString());
    expect({ text, at, state: printable(state) }).toEqual({
      text,
      at,
      state: {
        open,
        nextStart: want(nextStart),
        nextEnd: want(nextEnd),
        nextChange: want(open ? nextEnd : nextStart),
      },
    });
  }
}

function printable(state: WindowState) {
  return {
    open: state.open,
    nextStart: iso(state.nextStart),
    nextEnd: iso(state.nextEnd),
    nextChange: iso(state.nextChange),
  };
}

describe('parseWindowSpec', () => {
  it.each<[string, Partial<WeeklyWindow>]>([
    [
      'Mon-Fri 22:00-02:00 Europe/Berlin',
      {
        days: [1, 2, 3, 4, 5],
        startMinute: 22 * 60,
        endMinute: 120,
        lengthMs: 4 * HOUR,
        zone: 'Europe/Berlin',
      },
    ],
    ['sat, sun 03:00 + 4h', { days: [6, 7], startMinute: 180, lengthMs: 4 * HOUR, zone: 'UTC' }],
    ['Fri-Mon 04:00+1h', { days: [1, 5, 6, 7] }],
    ['Mon-Wed,Fri 4:00+90m', { days: [1, 2, 3, 5], startMinute: 240, lengthMs: 90 * MINUTE }],
    ['* 04:00+30m', { days: [1, 2, 3, 4, 5, 6, 7] }],
    ['daily 04:00+30m', { days: [1, 2, 3, 4, 5, 6, 7] }],
    ['04:00+30m', { days: [1, 2, 3, 4, 5, 6, 7] }],
    ['Thursday 04:00+1h', { days: [4] }],
    ['MONDAY 04:00 +1h europe/berlin', { days: [1], zone: 'Europe/Berlin' }],
    ['22:00 - 24:00', { startMinute: 1320, endMinute: 1440, lengthMs: 2 * HOUR }],
    ['00:00-24:00', { startMinute: 0, endMinute: 1440, lengthMs: DAY }],
    ['Mon 04:00-04:00', { days: [1], startMinute: 240, endMinute: 240, lengthMs: DAY }],
    ['Sun 23:00+3h', { days: [7], startMinute: 1380, lengthMs: 3 * HOUR }],
    ['Mon 04:00+168h', { lengthMs: WEEK }],
  ])('reads %j', (text, want) => {
    const parsed = spec(text);
    expect(parsed.windows).toHaveLength(1);
    expect(parsed.windows[0]).toMatchObject(want);
    if (text.includes('+')) expect(parsed.windows[0]!.endMinute).toBeUndefined();
  });

  it('reads several entries separated by semicolons and newlines, skipping blank lines', () => {
    const parsed = spec('Mon 04:00+1h; Tue 05:00-06:00 Europe/Berlin\n\n  Sat,Sun 03:00+2h\r\n');
    expect(parsed).toEqual({
      source: SOURCE,
      windows: [
        { days: [1], startMinute: 240, lengthMs: HOUR, zone: 'UTC' },
        { days: [2], startMinute: 300, endMinute: 360, lengthMs: HOUR, zone: 'Europe/Berlin' },
        { days: [6, 7], startMinute: 180, lengthMs: 2 * HOUR, zone: 'UTC' },
      ],
    });
  });

  it('uses the default zone for entries without one', () => {
    expect(spec('Mon 04:00+1h', 'America/New_York').windows[0]!.zone).toBe('America/New_York');
    expect(spec('Mon 04:00+1h UTC', 'America/New_York').windows[0]!.zone).toBe('UTC');
  });

  it.each(['always', 'ALWAYS', ' always\n'])('reads %j as always open', (text) => {
    expect(parseWindowSpec(text, SOURCE)).toEqual({
      ok: true,
      value: { windows: [], source: SOURCE },
    });
  });

  it.each([
    ['Funday 04:00+1h', 'unknown day "Funday"'],
    ['Mon,,Tue 04:00+1h', 'empty day in "Mon,,Tue"'],
    ['Mon-Tue-Wed 04:00+1h', 'invalid day range "Mon-Tue-Wed"'],
    ['Mon 25:00+1h', 'invalid time "25:00"'],
    ['Mon 04:60-05:00', 'invalid time "04:60"'],
    ['Mon 04:00-24:01', 'invalid time "24:01"'],
    ['Mon 24:00+1h', 'invalid time "24:00"'],
    ['Mon 4-5', 'invalid time "4"'],
    ['Mon 04:00+1h Mars/Olympus_Mons', 'unknown time zone "Mars/Olympus_Mons"'],
    ['Mon 04:00+1x', 'invalid length "1x": unknown unit "x"'],
    ['Mon 04:00+', 'invalid length ""'],
    ['Mon 04:00+0s', 'length "0s" must be more than zero'],
    ['Mon 04:00+169h', 'length "169h" is longer than a week'],
    ['', 'the spec is empty; write "always"'],
    ['  \n ', 'the spec is empty'],
    ['Mon 04:00+1h;;Tue 04:00+1h', 'empty entry'],
    ['Mon 04:00+1h;', 'empty entry'],
    ['Mon 04:00', 'missing end or length after "04:00"'],
    ['Mon', 'missing start time'],
    ['Mon 04:00 06:00', 'unexpected "06:00"'],
    ['Mon 04:00 - 06:00 extra UTC', 'unexpected "extra"'],
    ['Mon 04:00+1h; always', '"always" cannot be combined with other entries'],
  ])('refuses %j (%s)', (text, reason) => {
    const result = parseWindowSpec(text, SOURCE);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.error.kind).toBe('invalid-window');
    expect(result.error.where).toBe(SOURCE);
    expect(result.error.message).toContain(SOURCE);
    expect(result.error.message).toContain(reason);
  });

  it('refuses an unknown default zone', () => {
    const result = parseWindowSpec('Mon 04:00+1h', SOURCE, 'Nowhere/Special');
    expect(result.ok || result.error.message).toContain('"Nowhere/Special"');
  });

  it('quotes the entry at fault', () => {
    const result = parseWindowSpec('Mon 04:00+1h; Tue 26:00+1h', SOURCE);
    expect(result.ok || result.error.message).toBe(
      `invalid reboot window in ${SOURCE}: invalid time "26:00" (want HH:MM, 00:00 to 23:59) in entry "Tue 26:00+1h"`,
    );
  });
});

describe('parseLocksmithWindow', () => {
  const LS = 'environment REBOOT_WINDOW_START/REBOOT_WINDOW_LENGTH';

  it('reads a weekly start and a length', () => {
    expect(parseLocksmithWindow('Thu 04:00', '1h30m', LS)).toEqual({
      ok: true,
      value: {
        source: LS,
        windows: [{ days: [4], startMinute: 240, lengthMs: 90 * MINUTE, zone: 'UTC' }],
      },
    });
  });

  it('reads a daily start', () => {
    const parsed = parseLocksmithWindow('04:00', '30m', LS, 'Europe/Berlin');
    expect(parsed.ok && parsed.value.windows).toEqual([
      {
        days: [1, 2, 3, 4, 5, 6, 7],
        startMinute: 240,
        lengthMs: 30 * MINUTE,
        zone: 'Europe/Berlin',
      },
    ]);
  });

  it.each([
    ['Thursday 04:00', 4],
    ['sunday 23:30', 7],
    ['SAT 01:00', 6],
  ])('reads the full or any-case day name in %j', (start, day) => {
    const parsed = parseLocksmithWindow(start, '1h', LS);
    expect(parsed.ok && parsed.value.windows[0]!.days).toEqual([day]);
  });

  it('means the same as the native syntax', () => {
    const locksmith = parseLocksmithWindow('Thu 04:00', '1h30m', LS);
    expect(locksmith.ok && locksmith.value.windows).toEqual(spec('Thu 04:00+1h30m').windows);
  });

  it('refuses a blank start and length: an unset variable must not mean always open', () => {
    const result = parseLocksmithWindow('', ' ', LS);
    expect(result.ok || result.error.message).toContain('are both empty');
  });

  it.each([
    ['Thu 04:00', '', 'REBOOT_WINDOW_START "Thu 04:00") is set without a window length'],
    ['', '1h', 'REBOOT_WINDOW_LENGTH "1h") is set without a window start'],
    ['Thx 04:00', '1h', 'unknown day "Thx"'],
    ['Thu 25:00', '1h', 'invalid time "25:00"'],
    ['Thu 04:00 UTC', '1h', 'is not "[DAY] HH:MM"'],
    ['Thu-Fri 04:00', '1h', 'unknown day "Thu-Fri"'],
    ['Thu 04:00', 'soon', 'invalid length "soon"'],
    ['Thu 04:00', '0s', 'must be more than zero'],
    ['Thu 04:00', '200h', 'longer than a week'],
  ])('refuses start %j with length %j', (start, length, reason) => {
    const result = parseLocksmithWindow(start, length, LS);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.error.kind).toBe('invalid-window');
    expect(result.error.where).toBe(LS);
    expect(result.error.message).toContain(LS);
    expect(result.error.message).toContain(reason);
  });

  it('refuses an unknown zone', () => {
    const result = parseLocksmithWindow('Thu 04:00', '1h', LS, 'Mars/Base');
    expect(result.ok || result.error.message).toContain('unknown time zone "Mars/Base"');
  });
});

describe('describeWindow and formatWindowSpec', () => {
  it.each([
    ['Mon-Fri 22:00-02:00 Europe/Berlin', 'Mon-Fri 22:00-02:00 Europe/Berlin'],
    ['fri-mon 4:00+90m', 'Fri-Mon 04:00+1h30m UTC'],
    ['Sat,Sun 03:00+4h', 'Sat,Sun 03:00+4h UTC'],
    ['Sat-Sun 03:00+4h', 'Sat,Sun 03:00+4h UTC'],
    ['Sun,Mon 03:00+4h', 'Sun,Mon 03:00+4h UTC'],
    ['Mon-Wed,Fri 03:00+4h', 'Mon-Wed,Fri 03:00+4h UTC'],
    ['Mon,Wed,Fri-Sun 03:00+4h', 'Wed,Fri-Mon 03:00+4h UTC'],
    ['04:00+30m', 'daily 04:00+30m UTC'],
    ['22:00-24:00', 'daily 22:00-24:00 UTC'],
  ])('writes %j as %j', (text, canonical) => {
    expect(describeWindow(spec(text).windows[0]!)).toBe(canonical);
  });

  it('joins entries and writes an empty spec as always', () => {
    expect(formatWindowSpec(spec('Mon 04:00+1h\nTue 05:00-06:00 Europe/Berlin'))).toBe(
      'Mon 04:00+1h UTC; Tue 05:00-06:00 Europe/Berlin',
    );
    expect(formatWindowSpec(spec('always'))).toBe('always');
  });
});

describe('windowState', () => {
  it('is open exactly from start (inclusive) to end (exclusive)', () => {
    // biome-ignore format: one case per line reads as a table
    checkRows([
      ['Mon 04:00+1h UTC', '2025-06-16T03:59:59.999Z', false, '2025-06-16T04:00Z', '2025-06-16T05:00Z'],
      ['Mon 04:00+1h UTC', '2025-06-16T04:00Z', true, '2025-06-23T04:00Z', '2025-06-16T05:00Z'],
      ['Mon 04:00+1h UTC', '2025-06-16T04:59:59.999Z', true, '2025-06-23T04:00Z', '2025-06-16T05:00Z'],
      ['Mon 04:00+1h UTC', '2025-06-16T05:00Z', false, '2025-06-23T04:00Z', '2025-06-23T05:00Z'],
    ]);
  });

  it('handles windows across midnight and across the end of the week', () => {
    // biome-ignore format: one case per line reads as a table
    checkRows([
      // Fri 22:00 CEST to Sat 02:00 CEST, seen at Sat 00:00 local.
      ['Fri 22:00-02:00 Europe/Berlin', '2025-06-13T22:00Z', true, '2025-06-20T20:00Z', '2025-06-14T00:00Z'],
      // Sunday 23:00 for three hours runs into Monday.
      ['Sun 23:00+3h UTC', '2025-06-16T01:00Z', true, '2025-06-22T23:00Z', '2025-06-16T02:00Z'],
      ['Sun 23:00+3h UTC', '2025-06-16T02:00Z', false, '2025-06-22T23:00Z', '2025-06-23T02:00Z'],
      ['Sun 22:00-01:00 UTC', '2025-06-16T00:30Z', true, '2025-06-22T22:00Z', '2025-06-16T01:00Z'],
      // A wrapping day range, seen on a Tuesday.
      ['Fri-Mon 04:00+1h UTC', '2025-06-17T12:00Z', false, '2025-06-20T04:00Z', '2025-06-20T05:00Z'],
      ['Fri-Mon 04:00+1h UTC', '2025-06-16T04:30Z', true, '2025-06-20T04:00Z', '2025-06-16T05:00Z'],
    ]);
  });

  it('merges overlapping and adjacent windows into one open period', () => {
    // biome-ignore format: one case per line reads as a table
    checkRows([
      ['Mon 04:00-05:00; Mon 05:00-06:00', '2025-06-16T04:30Z', true, '2025-06-23T04:00Z', '2025-06-16T06:00Z'],
      ['Mon 04:00+2h; Mon 05:00-08:00', '2025-06-16T03:00Z', false, '2025-06-16T04:00Z', '2025-06-16T08:00Z'],
      // A two-day window from Sunday merged with one on Tuesday evening.
      ['Sun 22:00+48h; Tue 21:00+2h', '2025-06-16T12:00Z', true, '2025-06-22T22:00Z', '2025-06-17T23:00Z'],
    ]);
  });

  it('reports no change for specs that are always open', () => {
    // biome-ignore format: one case per line reads as a table
    checkRows([
      ['always', '2025-06-16T12:00Z', true, null, null],
      ['daily 00:00-24:00 Europe/Berlin', '2025-03-30T01:30Z', true, null, null],
      // Back-to-back daily windows never close.
      ['daily 12:00+24h', '2025-06-16T11:00Z', true, null, null],
    ]);
  });

  it('follows DST in Europe/Berlin', () => {
    // biome-ignore format: one case per line reads as a table
    checkRows([
      // 2025-03-30: 02:00 CET jumps to 03:00 CEST (01:00Z). 02:30 does not exist: start at the jump.
      ['Sun 02:30+1h Europe/Berlin', '2025-03-29T12:00Z', false, '2025-03-30T01:00Z', '2025-03-30T02:00Z'],
      // A wall-clock window loses the skipped hour: 01:00 CET to 05:00 CEST is 3 hours.
      ['Sun 01:00-05:00 Europe/Berlin', '2025-03-29T12:00Z', false, '2025-03-30T00:00Z', '2025-03-30T03:00Z'],
      // Entirely inside the gap: no opening that day, next one a week later (02:00 CEST).
      ['Sun 02:00-03:00 Europe/Berlin', '2025-03-29T12:00Z', false, '2025-04-06T00:00Z', '2025-04-06T01:00Z'],
      ['Sun 02:00-03:00 Europe/Berlin', '2025-03-22T12:00Z', false, '2025-03-23T01:00Z', '2025-03-23T02:00Z'],
      // 2025-10-26: 03:00 CEST falls back to 02:00 CET (01:00Z). 02:30 happens twice: the first counts.
      ['Sun 02:30+1h Europe/Berlin', '2025-10-25T12:00Z', false, '2025-10-26T00:30Z', '2025-10-26T01:30Z'],
      // A wall-clock window gains the repeated hour: 01:00 CEST to 05:00 CET is 5 hours.
      ['Sun 01:00-05:00 Europe/Berlin', '2025-10-25T12:00Z', false, '2025-10-25T23:00Z', '2025-10-26T04:00Z'],
      ['Sun 01:00-05:00 Europe/Berlin', '2025-10-26T01:30Z', true, '2025-11-02T00:00Z', '2025-10-26T04:00Z'],
      // A length is elapsed time: 23:00 CEST + 4h is 02:00 CET.
      ['Sat 23:00+4h Europe/Berlin', '2025-10-25T12:00Z', false, '2025-10-25T21:00Z', '2025-10-26T01:00Z'],
    ]);
  });

  it('follows DST in America/New_York', () => {
    // biome-ignore format: one case per line reads as a table
    checkRows([
      // 2025-03-09: 02:00 EST jumps to 03:00 EDT (07:00Z). 02:15 starts at the jump.
      ['Sun 02:15-03:30 America/New_York', '2025-03-08T12:00Z', false, '2025-03-09T07:00Z', '2025-03-09T07:30Z'],
      // Across midnight into the gap: ends at the jump, 4 real hours.
      ['Sat 22:00-02:00 America/New_York', '2025-03-08T12:00Z', false, '2025-03-09T03:00Z', '2025-03-09T07:00Z'],
      // 2025-11-02: 02:00 EDT falls back to 01:00 EST (06:00Z). 01:30 EDT comes first.
      ['Sun 01:30+1h America/New_York', '2025-11-01T12:00Z', false, '2025-11-02T05:30Z', '2025-11-02T06:30Z'],
      // 01:00 EDT to 02:00 EST: 2 real hours, open during the second 01:15.
      ['Sun 01:00-02:00 America/New_York', '2025-11-01T12:00Z', false, '2025-11-02T05:00Z', '2025-11-02T07:00Z'],
      ['Sun 01:00-02:00 America/New_York', '2025-11-02T06:15Z', true, '2025-11-09T06:00Z', '2025-11-02T07:00Z'],
    ]);
  });

  it('follows DST in Australia/Sydney (southern hemisphere)', () => {
    // biome-ignore format: one case per line reads as a table
    checkRows([
      // 2025-10-05: 02:00 AEST jumps to 03:00 AEDT (2025-10-04T16:00Z).
      ['Sun 02:30+1h Australia/Sydney', '2025-10-03T00:00Z', false, '2025-10-04T16:00Z', '2025-10-04T17:00Z'],
      ['Sun 01:00-05:00 Australia/Sydney', '2025-10-03T00:00Z', false, '2025-10-04T15:00Z', '2025-10-04T18:00Z'],
      // 2025-04-06: 03:00 AEDT falls back to 02:00 AEST (2025-04-05T16:00Z).
      ['Sun 02:30+1h Australia/Sydney', '2025-04-04T00:00Z', false, '2025-04-05T15:30Z', '2025-04-05T16:30Z'],
      ['Sun 02:00-04:00 Australia/Sydney', '2025-04-04T00:00Z', false, '2025-04-05T15:00Z', '2025-04-05T18:00Z'],
    ]);
  });

  it('throws on an invalid Date or an unknown zone in a hand-built spec', () => {
    expect(() => windowState(spec('Mon 04:00+1h'), new Date(Number.NaN))).toThrow(RangeError);
    const bad: WindowSpec = {
      source: 'test',
      windows: [{ days: [1], startMinute: 0, lengthMs: HOUR, zone: 'Nowhere/Special' }],
    };
    expect(() => windowState(bad, new Date())).toThrow(RangeError);
  });
});

describe('windowStateAll', () => {
  const at = (s: string) => new Date(s);

  it('is open only while every spec is open', () => {
    const group = spec('daily 02:00-06:00 UTC');
    const node = spec('Tue 05:00+3h UTC');
    expect(printable(windowStateAll([group, node], at('2025-06-16T12:00Z')))).toEqual({
      open: false,
      nextStart: '2025-06-17T05:00:00.000Z',
      nextEnd: '2025-06-17T06:00:00.000Z',
      nextChange: '2025-06-17T05:00:00.000Z',
    });
    expect(printable(windowStateAll([group, node], at('2025-06-17T05:30Z')))).toEqual({
      open: true,
      nextStart: '2025-06-24T05:00:00.000Z',
      nextEnd: '2025-06-17T06:00:00.000Z',
      nextChange: '2025-06-17T06:00:00.000Z',
    });
  });

  it('intersects windows in different zones', () => {
    // 04:00 CEST is 02:00Z, so the overlap is 02:00Z to 04:00Z every day.
    const state = windowStateAll(
      [spec('daily 01:00-05:00 UTC'), spec('daily 04:00+2h Europe/Berlin')],
      at('2025-06-16T00:00Z'),
    );
    expect(iso(state.nextStart)).toBe('2025-06-16T02:00:00.000Z');
    expect(iso(state.nextEnd)).toBe('2025-06-16T04:00:00.000Z');
  });

  it('closes when the first spec closes', () => {
    const state = windowStateAll(
      [spec('daily 00:00-12:00'), spec('daily 10:00-14:00')],
      at('2025-06-16T11:00Z'),
    );
    expect(printable(state)).toEqual({
      open: true,
      nextStart: '2025-06-17T10:00:00.000Z',
      nextEnd: '2025-06-16T12:00:00.000Z',
      nextChange: '2025-06-16T12:00:00.000Z',
    });
  });

  it('reports no opening when the specs never meet', () => {
    const state = windowStateAll(
      [spec('Mon 01:00+1h'), spec('Tue 01:00+1h')],
      at('2025-06-16T00:00Z'),
    );
    expect(state).toEqual({ open: false, nextChange: null, nextStart: null, nextEnd: null });
  });

  it('ignores always-open specs and is always open without specs', () => {
    const only = spec('Mon 04:00+1h');
    const t = at('2025-06-16T00:00Z');
    expect(windowStateAll([spec('always'), only], t)).toEqual(windowState(only, t));
    expect(windowStateAll([], t)).toEqual({
      open: true,
      nextChange: null,
      nextStart: null,
      nextEnd: null,
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Properties

const ZONES = [
  'UTC',
  'Europe/Berlin',
  'America/New_York',
  'Australia/Sydney',
  'Australia/Lord_Howe', // half-hour DST shift
  'Pacific/Chatham', // +12:45 / +13:45
  'America/St_Johns', // -03:30 / -02:30, changes at 02:00 local
  'America/Santiago', // changes at local midnight
  'Asia/Kolkata', // no DST
] as const;

const TABLE_FROM = Date.UTC(2023, 11, 1);
const TABLE_TO = Date.UTC(2028, 1, 1);

interface Segment {
  from: number;
  offset: number;
}

/**
 * The test's own view of each zone: its offset segments between TABLE_FROM and TABLE_TO, found
 * by sampling daily and bisecting each change. The oracle below works from this table only.
 */
const SEGMENTS: Record<string, Segment[]> = Object.fromEntries(
  ZONES.map((name) => {
    const zone = IANAZone.create(name);
    const offset = (t: number) => zone.offset(t) * MINUTE;
    const segments: Segment[] = [{ from: Number.NEGATIVE_INFINITY, offset: offset(TABLE_FROM) }];
    for (let t = TABLE_FROM + DAY; t <= TABLE_TO; t += DAY) {
      const previous = segments[segments.length - 1]!.offset;
      if (offset(t) === previous) continue;
      let lo = t - DAY;
      let hi = t;
      while (hi - lo > 1) {
        const mid = Math.floor((lo + hi) / 2);
        if (offset(mid) === previous) lo = mid;
        else hi = mid;
      }
      segments.push({ from: hi, offset: offset(t) });
    }
    return [name, segments];
  }),
);

const TRANSITIONS = Object.values(SEGMENTS).flatMap((segments) =>
  segments.slice(1).map((s) => s.from),
);

function oracleOffset(zone: string, instant: number): number {
  const segments = SEGMENTS[zone]!;
  let offset = segments[0]!.offset;
  for (const s of segments) if (s.from <= instant) offset = s.offset;
  return offset;
}

/** The documented rule, from the table: the first instant showing that wall time, or the jump over it. */
function oracleInstant(zone: string, local: number): number {
  const segments = SEGMENTS[zone]!;
  const candidates = segments
    .map((s, i) => ({ t: local - s.offset, from: s.from, to: segments[i + 1]?.from ?? Infinity }))
    .filter(({ t, from, to }) => t >= from && t < to)
    .map(({ t }) => t);
  if (candidates.length > 0) return Math.min(...candidates);
  for (let i = 1; i < segments.length; i++) {
    const { from, offset } = segments[i]!;
    const before = segments[i - 1]!.offset;
    if (from + before <= local && local < from + offset) return from;
  }
  throw new Error('oracle: no instant');
}

function oracleOpen(s: WindowSpec, instant: number): boolean {
  if (s.windows.length === 0) return true;
  return s.windows.some((w) => {
    const today = Math.floor((instant + oracleOffset(w.zone, instant)) / DAY);
    for (let day = today - 9; day <= today + 1; day++) {
      const weekday = DateTime.fromMillis(day * DAY, { zone: 'UTC' }).weekday;
      if (!w.days.includes(weekday)) continue;
      const start = oracleInstant(w.zone, day * DAY + w.startMinute * MINUTE);
      const end =
        w.endMinute === undefined
          ? start + w.lengthMs
          : oracleInstant(
              w.zone,
              (w.endMinute > w.startMinute ? day : day + 1) * DAY + w.endMinute * MINUTE,
            );
      if (start <= instant && instant < end) return true;
    }
    return false;
  });
}

const windowArb: fc.Arbitrary<WeeklyWindow> = fc
  .record({
    days: fc.uniqueArray(fc.integer({ min: 1, max: 7 }), { minLength: 1, maxLength: 7 }),
    startMinute: fc.oneof(
      fc.integer({ min: 0, max: 1439 }),
      fc.constantFrom(0, 60, 90, 120, 135, 150, 180, 1380), // around local DST changes
    ),
    end: fc.oneof(
      fc.integer({ min: 1, max: 7 * 24 * 4 }).map((q) => ({ lengthMs: q * 15 * MINUTE })),
      fc.integer({ min: 1, max: WEEK }).map((ms) => ({ lengthMs: ms })),
      fc.integer({ min: 0, max: 1440 }).map((endMinute) => ({ endMinute })),
      fc.constantFrom(0, 60, 120, 150, 180, 1440).map((endMinute) => ({ endMinute })),
    ),
    zone: fc.constantFrom(...ZONES),
  })
  .filter(({ startMinute, end }) => !('endMinute' in end) || end.endMinute !== startMinute)
  .map(({ days, startMinute, end, zone }) => {
    const sorted = [...days].sort((a, b) => a - b);
    if ('lengthMs' in end) return { days: sorted, startMinute, lengthMs: end.lengthMs, zone };
    const minutes =
      end.endMinute > startMinute
        ? end.endMinute - startMinute
        : end.endMinute + 1440 - startMinute;
    return {
      days: sorted,
      startMinute,
      lengthMs: minutes * MINUTE,
      endMinute: end.endMinute,
      zone,
    };
  });

const specArb: fc.Arbitrary<WindowSpec> = fc
  .array(windowArb, { minLength: 1, maxLength: 3 })
  .map((windows) => ({ windows, source: SOURCE }));

/** Instants in 2024–2027, half of them within four days of some zone's DST change. */
const instantArb: fc.Arbitrary<number> = fc.oneof(
  fc.integer({ min: Date.UTC(2024, 0, 15), max: Date.UTC(2027, 11, 15) }),
  fc
    .tuple(fc.constantFrom(...TRANSITIONS), fc.integer({ min: -4 * 24 * 60, max: 4 * 24 * 60 }))
    .map(([t, minutes]) => t + minutes * MINUTE),
);

const RUNS = { numRuns: 150 };

describe('window properties', () => {
  it('agrees with a brute-force oracle on whether a spec is open', () => {
    fc.assert(
      fc.property(specArb, instantArb, (s, at) => {
        expect(windowState(s, new Date(at)).open).toBe(oracleOpen(s, at));
      }),
      { numRuns: 300 },
    );
  });

  it('describes each open period exactly by nextStart and nextEnd', () => {
    fc.assert(
      fc.property(specArb, instantArb, fc.double({ min: 0, max: 1, noNaN: true }), (s, at, f) => {
        const state = windowState(s, new Date(at));
        const start = state.nextStart?.getTime();
        const end = state.nextEnd?.getTime();
        for (const t of [state.nextChange, state.nextStart, state.nextEnd]) {
          if (t !== null) expect(t.getTime()).toBeGreaterThan(at);
        }
        const within = (a: number, b: number) => Math.min(b - 1, a + Math.floor(f * (b - a)));
        if (state.open) {
          expect(state.nextChange).toEqual(state.nextEnd);
          if (end !== undefined) {
            expect(isOpen([s], within(at, end))).toBe(true);
            expect(isOpen([s], end - 1)).toBe(true);
            expect(isOpen([s], end)).toBe(false);
          } else {
            expect(start).toBeUndefined();
          }
          if (start !== undefined && end !== undefined) {
            expect(start).toBeGreaterThan(end);
            expect(isOpen([s], within(end, start))).toBe(false);
            expect(isOpen([s], start - 1)).toBe(false);
            expect(isOpen([s], start)).toBe(true);
          }
        } else {
          // Every window recurs weekly, so a single spec always opens within the horizon.
          expect(start).toBeDefined();
          expect(state.nextChange).toEqual(state.nextStart);
          expect(isOpen([s], within(at, start!))).toBe(false);
          expect(isOpen([s], start! - 1)).toBe(false);
          expect(isOpen([s], start!)).toBe(true);
          if (end !== undefined) {
            expect(end).toBeGreaterThan(start!);
            expect(isOpen([s], within(start!, end))).toBe(true);
            expect(isOpen([s], end - 1)).toBe(true);
            expect(isOpen([s], end)).toBe(false);
            // Seen from inside, the period ends at the same instant.
            expect(windowState(s, new Date(start!)).nextEnd?.getTime()).toBe(end);
          }
        }
      }),
      RUNS,
    );
  });

  it('finds the first flip when several specs must all be open', () => {
    fc.assert(
      fc.property(
        fc.array(specArb, { minLength: 2, maxLength: 3 }),
        instantArb,
        fc.double({ min: 0, max: 1, noNaN: true }),
        (specs, at, f) => {
          const state = windowStateAll(specs, new Date(at));
          expect(state.open).toBe(specs.every((s) => windowState(s, new Date(at)).open));
          const change = state.nextChange?.getTime();
          if (change !== undefined) {
            expect(change).toBeGreaterThan(at);
            const inside = Math.min(change - 1, at + Math.floor(f * (change - at)));
            expect(isOpen(specs, inside)).toBe(state.open);
            expect(isOpen(specs, change - 1)).toBe(state.open);
            expect(isOpen(specs, change)).toBe(!state.open);
          } else if (!state.open) {
            // No opening within the horizon: spot-check a few instants in it.
            for (const g of [f, f / 2, (1 + f) / 2]) {
              expect(isOpen(specs, at + Math.floor(g * WINDOW_HORIZON_MS))).toBe(false);
            }
          }
          if (state.nextStart !== null && state.nextEnd !== null) {
            expect(isOpen(specs, state.nextStart.getTime())).toBe(true);
            expect(isOpen(specs, state.nextEnd.getTime() - 1)).toBe(true);
            expect(isOpen(specs, state.nextEnd.getTime())).toBe(false);
          }
        },
      ),
      RUNS,
    );
  });

  it('parses what it formats back to the same windows', () => {
    fc.assert(
      fc.property(specArb, (s) => {
        expect(parseWindowSpec(formatWindowSpec(s), SOURCE)).toEqual({ ok: true, value: s });
      }),
      { numRuns: 300 },
    );
  });

  const TOKENS = [
    'Mon',
    'fri',
    'Sunday',
    'Thu',
    '-',
    ',',
    '*',
    'daily',
    'always',
    '04:00',
    '4:00',
    '22:00',
    '24:00',
    '25:00',
    '00:00',
    '+',
    '1h',
    '30m',
    '1h30m',
    '0s',
    '169h',
    '1x',
    ' ',
    ' ',
    '\n',
    ';',
    'Europe/Berlin',
    'UTC',
    'utc',
    'Mars/Base',
    'Fri-Mon',
    ':',
    '12',
  ];
  const textArb = fc.oneof(
    fc.string({ maxLength: 40 }),
    fc.string({ unit: 'binary', maxLength: 20 }),
    fc.array(fc.constantFrom(...TOKENS), { maxLength: 12 }).map((t) => t.join('')),
  );

  it('either parses any text or says why, and never throws', () => {
    fc.assert(
      fc.property(textArb, (text) => {
        const result = parseWindowSpec(text, SOURCE);
        if (result.ok) {
          // Whatever it read, the canonical form reads back the same.
          expect(parseWindowSpec(formatWindowSpec(result.value), SOURCE)).toEqual(result);
        } else {
          expect(result.error.kind).toBe('invalid-window');
          expect(result.error.where).toBe(SOURCE);
          expect(result.error.message).toContain(SOURCE);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('reads any locksmith settings or says why, and never throws', () => {
    fc.assert(
      fc.property(textArb, textArb, (start, length) => {
        const result = parseLocksmithWindow(start, length, SOURCE);
        if (!result.ok) expect(result.error.kind).toBe('invalid-window');
      }),
      { numRuns: 300 },
    );
  });
});
