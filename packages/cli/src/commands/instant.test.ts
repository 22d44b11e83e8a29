/**
 * `--at`: only an existing ISO-8601 instant with a zone is read, and it is read exactly. The
 * oracle builds instants from their parts with its own calendar rules, never with the parser.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseInstant } from './windows.js';

const pad = (n: number, width = 2) => String(n).padStart(width, '0');

function isLeap(year: number): boolean {
  return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
}

function daysIn(year: number, month: number): number {
  return [31, isLeap(year) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1] ?? 0;
}

/** Days from 1970-01-01 to year-month-day, counted by hand. */
function daysFromEpoch(year: number, month: number, day: number): number {
  let days = 0;
  for (let y = 1970; y < year; y++) days += isLeap(y) ? 366 : 365;
  for (let y = year; y < 1970; y++) days -= isLeap(y) ? 366 : 365;
  for (let m = 1; m < month; m++) days += daysIn(year, m);
  return days + day - 1;
}

interface Parts {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number | null;
  fraction: string | null;
  zone: 'Z' | 'z' | { sign: '+' | '-'; hours: number; minutes: number };
}

function render(p: Parts): string {
  const zone =
    typeof p.zone === 'string'
      ? p.zone
      : `${p.zone.sign}${pad(p.zone.hours)}:${pad(p.zone.minutes)}`;
  const seconds =
    p.second === null ? '' : `:${pad(p.second)}${p.fraction === null ? '' : `.${p.fraction}`}`;
  return `${pad(p.year, 4)}-${pad(p.month)}-${pad(p.day)}T${pad(p.hour)}:${pad(p.minute)}${seconds}${zone}`;
}

/** The instant the parts name, or null when they name none (Feb 30, 24:00, 23:59:60, ...). */
function oracle(p: Parts): number | null {
  if (p.month < 1 || p.month > 12 || p.day < 1 || p.day > daysIn(p.year, p.month)) return null;
  if (p.hour > 23 || p.minute > 59 || (p.second ?? 0) > 59) return null;
  let offset = 0;
  if (typeof p.zone !== 'string') {
    if (p.zone.hours > 23 || p.zone.minutes > 59) return null;
    offset = (p.zone.sign === '-' ? -1 : 1) * (p.zone.hours * 60 + p.zone.minutes) * 60_000;
  }
  const ms =
    p.fraction === null || p.second === null
      ? 0
      : Math.floor(Number(`0.${p.fraction}`) * 1000 + 1e-9);
  const local =
    daysFromEpoch(p.year, p.month, p.day) * 86_400_000 +
    ((p.hour * 60 + p.minute) * 60 + (p.second ?? 0)) * 1000 +
    ms;
  return local - offset;
}

const parts: fc.Arbitrary<Parts> = fc.record({
  year: fc.integer({ min: 1900, max: 2400 }),
  month: fc.integer({ min: 0, max: 13 }),
  day: fc.oneof(fc.integer({ min: 0, max: 32 }), fc.integer({ min: 28, max: 31 })),
  // Edge values more often: 24:00:00, second 60, day 29 to 31.
  hour: fc.oneof(fc.integer({ min: 0, max: 25 }), fc.constant(24)),
  minute: fc.oneof(fc.integer({ min: 0, max: 61 }), fc.constant(0)),
  second: fc.option(fc.oneof(fc.integer({ min: 0, max: 61 }), fc.constantFrom(0, 60))),
  fraction: fc.option(fc.stringMatching(/^[0-9]{1,9}$/)),
  zone: fc.oneof(
    fc.constantFrom('Z' as const, 'z' as const),
    fc.record({
      sign: fc.constantFrom('+' as const, '-' as const),
      hours: fc.integer({ min: 0, max: 25 }),
      minutes: fc.integer({ min: 0, max: 61 }),
    }),
  ),
});

describe('parseInstant (--at)', () => {
  it.each([
    '2025-02-30T00:00:00Z',
    '2025-02-29T00:00:00Z',
    '2024-04-31T12:00:00Z',
    '2025-13-01T00:00:00Z',
    '2025-00-10T00:00:00Z',
    '2025-01-01T24:00:00Z',
    '2025-06-30T23:59:60Z',
    '2025-01-01T00:00:00+24:00',
    '2025-01-01T00:00:00',
    '2025-01-01',
    '2025-01-01 00:00:00Z',
    'tomorrow',
    '',
  ])('refuses %j', (text) => {
    const result = parseInstant(text, '--at');
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.error.message).toContain('--at');
  });

  it('reads 2024-02-29 and an offset exactly', () => {
    const result = parseInstant('2024-02-29T03:30:00+02:00', '--at');
    expect(result.ok && result.value.toISOString()).toBe('2024-02-29T01:30:00.000Z');
  });

  it('reads exactly the existing instants and refuses everything else', () => {
    fc.assert(
      fc.property(parts, (p) => {
        const text = render(p);
        const want = oracle(p);
        const result = parseInstant(text, '--at');
        if (want === null) {
          expect({ text, ok: result.ok }).toEqual({ text, ok: false });
        } else {
          expect({ text, at: result.ok ? result.value.getTime() : null }).toEqual({
            text,
            at: want,
          });
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('refuses any text that is not an instant in that form', () => {
    const shape = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:\d{2})$/;
    fc.assert(
      fc.property(fc.string({ maxLength: 30 }), (text) => {
        if (shape.test(text)) return;
        expect(parseInstant(text, '--at').ok).toBe(false);
      }),
      { numRuns: 2000 },
    );
  });
});
