import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatDuration, MAX_DURATION_MS, parseDuration, parseDurationText } from './duration.js';

const WHERE = 'config file /etc/sluice/sluiced.yaml: lease';
const H = 3_600_000;
const M = 60_000;

describe('parseDuration', () => {
  it.each([
    ['1h30m', H + 30 * M],
    ['90m', 90 * M],
    ['45s', 45_000],
    ['1h', H],
    ['2h0m0s', 2 * H],
    ['1.5h', 1.5 * H],
    ['.5h', H / 2],
    ['2.h', 2 * H],
    ['1h1.5m', H + 90_000],
    ['500ms', 500],
    ['1500us', 2],
    ['1500µs', 2],
    ['1ns', 0],
    ['0', 0],
    ['0s', 0],
    ['+1h', H],
    [' 1h ', H],
    ['8784h', MAX_DURATION_MS],
  ])('reads %j as %i ms', (text, ms) => {
    expect(parseDuration(text, WHERE)).toEqual({ ok: true, value: ms });
  });

  it.each([
    ['', 'empty'],
    ['   ', 'empty'],
    ['-1h', 'negative'],
    ['1d', 'unknown unit "d"'],
    ['1H', 'unknown unit "H"'],
    ['1', 'missing unit after "1"'],
    ['h', 'unexpected "h"'],
    ['abc', 'unexpected "abc"'],
    ['1h 30m', 'unexpected " 30m"'],
    ['1..5h', 'missing unit after "1."'],
    ['+', 'no number'],
    ['8785h', 'longer than 366 days'],
    ['99999999999999999999999h', 'longer than 366 days'],
  ])('refuses %j (%s)', (text, reason) => {
    const result = parseDuration(text, WHERE);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.error.kind).toBe('invalid-config');
    expect(result.error.where).toBe(WHERE);
    expect(result.error.message).toContain(WHERE);
    expect(result.error.message).toContain(JSON.stringify(text));
    expect(result.error.message).toContain(reason);
  });

  it('gives bare reasons through parseDurationText', () => {
    expect(parseDurationText('2d')).toEqual({
      ok: false,
      error: 'unknown unit "d" (use h, m, s or ms, e.g. 1h30m)',
    });
  });

  it('never throws, whatever the text', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 20 }), (text) => {
        const result = parseDuration(text, WHERE);
        if (result.ok) {
          expect(Number.isInteger(result.value)).toBe(true);
          expect(result.value).toBeGreaterThanOrEqual(0);
          expect(result.value).toBeLessThanOrEqual(MAX_DURATION_MS);
        } else {
          expect(result.error.kind).toBe('invalid-config');
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('formatDuration', () => {
  it.each([
    [H + 30 * M, '1h30m'],
    [2 * H, '2h'],
    [45_000, '45s'],
    [1500, '1s500ms'],
    [0, '0s'],
    [25 * H + M + 1001, '25h1m1s1ms'],
    [-M, '-1m'],
    [0.4, '0s'],
  ])('writes %i ms as %j', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  it('refuses NaN and infinities', () => {
    expect(() => formatDuration(Number.NaN)).toThrow(RangeError);
    expect(() => formatDuration(Number.POSITIVE_INFINITY)).toThrow(RangeError);
  });

  it('round-trips through parseDuration', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: MAX_DURATION_MS }), (ms) => {
        expect(parseDuration(formatDuration(ms), WHERE)).toEqual({ ok: true, value: ms });
      }),
      { numRuns: 300 },
    );
  });
});
