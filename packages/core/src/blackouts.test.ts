/** Blackouts: parsing, and how they shut windows, across zones and DST changes. */
import { describe, expect, it } from 'vitest';
import { formatBlackouts, parseBlackouts } from './blackouts.js';
import { parseWindowSpec, type WindowSpec, windowStateAll } from './window.js';

function blackouts(text: string) {
  const parsed = parseBlackouts(text, 'test');
  if (!parsed.ok) throw parsed.error;
  return parsed.value;
}

function spec(windows: string | null, off: string): WindowSpec {
  let base: WindowSpec = { windows: [], source: 'test' };
  if (windows !== null) {
    const parsed = parseWindowSpec(windows, 'test');
    if (!parsed.ok) throw parsed.error;
    base = parsed.value;
  }
  return { ...base, blackouts: blackouts(off) };
}

const at = (iso: string) => new Date(iso);
const iso = (d: Date | null) => d?.toISOString() ?? null;

describe('parseBlackouts', () => {
  it('reads dates and ranges with zones, and prints them back', () => {
    const parsed = blackouts('2026-12-24..2026-12-26 europe/berlin; 2027-01-01\n2027-04-05 UTC');
    expect(parsed).toEqual([
      { from: '2026-12-24', to: '2026-12-26', zone: 'Europe/Berlin' },
      { from: '2027-01-01', to: '2027-01-01', zone: 'UTC' },
      { from: '2027-04-05', to: '2027-04-05', zone: 'UTC' },
    ]);
    expect(formatBlackouts(parsed)).toBe(
      '2026-12-24..2026-12-26 Europe/Berlin; 2027-01-01 UTC; 2027-04-05 UTC',
    );
  });

  it.each([
    ['', 'empty'],
    ['2026-02-30', 'is not a date'],
    ['26-12-24', 'is not a date'],
    ['2026-12-26..2026-12-24', 'is before'],
    ['2026-01-01..2026-12-31', 'longer than 92'],
    ['2026-12-24 Mars/Olympus', 'unknown time zone'],
    ['2026-12-24 UTC extra', 'unexpected "extra"'],
    ['2026-12-24;;2026-12-25', 'empty entry'],
    ['2026-12-24..2026-12-25..2026-12-26', 'is not DATE or DATE..DATE'],
  ])('refuses %j (%s), naming where it came from', (text, why) => {
    const parsed = parseBlackouts(text, 'etcd key /k/blackouts');
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) {
      expect(parsed.error.message).toContain('etcd key /k/blackouts');
      expect(parsed.error.message).toContain(why);
    }
  });
});

describe('windows with blackouts', () => {
  it('shuts an always-open group for whole local days, 23 hours on a spring-forward day', () => {
    // Berlin's 2026-03-29 runs from 2026-03-28T23:00Z (UTC+1) to 2026-03-29T22:00Z (UTC+2).
    const s = spec(null, '2026-03-29 Europe/Berlin');
    expect(windowStateAll([s], at('2026-03-28T22:59:00Z'))).toMatchObject({ open: true });
    expect(iso(windowStateAll([s], at('2026-03-28T22:59:00Z')).nextEnd)).toBe(
      '2026-03-28T23:00:00.000Z',
    );
    const during = windowStateAll([s], at('2026-03-29T12:00:00Z'));
    expect(during.open).toBe(false);
    expect(iso(during.nextStart)).toBe('2026-03-29T22:00:00.000Z');
    expect(windowStateAll([s], at('2026-03-29T22:00:00Z')).open).toBe(true);
  });

  it('lasts 25 hours on a fall-back day, and a window in the blackout opens the day after', () => {
    // Berlin's 2026-10-25 runs from 2026-10-24T22:00Z (UTC+2) to 2026-10-25T23:00Z (UTC+1).
    const s = spec('daily 22:30+2h UTC', '2026-10-25 Europe/Berlin');
    const before = windowStateAll([s], at('2026-10-24T21:00:00Z'));
    // The 24 Oct window opens at 22:30Z, inside the blackout: what is left of it opens at 23:00Z
    // on the 25th (the blackout's end), until 00:30Z.
    expect(before.open).toBe(false);
    expect(iso(before.nextStart)).toBe('2026-10-25T23:00:00.000Z');
    expect(iso(before.nextEnd)).toBe('2026-10-26T00:30:00.000Z');
  });

  it('applies a node-local blackout in its own zone alongside the group window', () => {
    const group = parseWindowSpec('daily 00:00+24h UTC', 'group');
    if (!group.ok) throw group.error;
    const local = spec(null, '2026-12-25 America/New_York');
    // New York's Christmas is 05:00Z on the 25th to 05:00Z on the 26th.
    expect(windowStateAll([group.value, local], at('2026-12-25T04:59:00Z')).open).toBe(true);
    const during = windowStateAll([group.value, local], at('2026-12-25T05:00:00Z'));
    expect(during.open).toBe(false);
    expect(iso(during.nextStart)).toBe('2026-12-26T05:00:00.000Z');
  });

  it('finds the next opening after a blackout longer than the 16-day horizon', () => {
    const s = spec('Mon 02:00+1h UTC', '2026-12-01..2026-12-31 UTC');
    const state = windowStateAll([s], at('2026-12-02T00:00:00Z'));
    expect(state.open).toBe(false);
    // 2027-01-04 is the first Monday after the blackout.
    expect(iso(state.nextStart)).toBe('2027-01-04T02:00:00.000Z');
  });
});
