import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_LIMIT, parseLossBudget, parseMax, parsePaused } from './values.js';

const KEY = '/sluice/v1/groups/default/max';

describe('parseMax', () => {
  it.each([
    [undefined, 1],
    ['0', 0],
    ['1', 1],
    ['3', 3],
    [' 3\n', 3],
    ['10000', 10_000],
  ])('accepts %j as %d', (raw, expected) => {
    expect(parseMax(raw, KEY)).toEqual({ ok: true, value: expected });
  });

  it.each(['abc', '-1', '1.5', '', ' ', '1e3', '0x10', '+2', '10001', '99999999999', '3 4', 'NaN'])(
    'fails closed on %j and names the key',
    (raw) => {
      const result = parseMax(raw, KEY);
      expect(result.ok).toBe(false);
      if (!result.ok) {
        expect(result.error.kind).toBe('invalid-value');
        expect(result.error.where).toBe(KEY);
        expect(result.error.message).toContain(KEY);
        expect(result.error.message).toContain('nobody is admitted');
      }
    },
  );

  it('parses any string to a safe integer in range, or fails closed', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme-ascii', maxLength: 12 }), (raw) => {
        const result = parseMax(raw, KEY);
        if (result.ok) {
          expect(Number.isSafeInteger(result.value)).toBe(true);
          expect(result.value).toBeGreaterThanOrEqual(0);
          expect(result.value).toBeLessThanOrEqual(MAX_LIMIT);
          expect(raw.trim()).toMatch(/^[0-9]+$/);
          expect(Number(raw.trim())).toBe(result.value);
        } else {
          expect(result.error.where).toBe(KEY);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('round-trips every valid value', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: MAX_LIMIT }), (n) => {
        expect(parseMax(String(n), KEY)).toEqual({ ok: true, value: n });
      }),
    );
  });
});

describe('parseLossBudget', () => {
  it('defaults to 0 and fails closed on junk', () => {
    expect(parseLossBudget(undefined, 'k')).toEqual({ ok: true, value: 0 });
    expect(parseLossBudget('2', 'k')).toEqual({ ok: true, value: 2 });
    expect(parseLossBudget('two', 'k').ok).toBe(false);
  });
});

describe('parsePaused', () => {
  it('is null when absent', () => {
    expect(parsePaused(undefined)).toBeNull();
  });
  it('takes plain text as the reason', () => {
    expect(parsePaused('change freeze')).toEqual({
      reason: 'change freeze',
      since: null,
      by: null,
    });
  });
  it('pauses even on an empty value', () => {
    expect(parsePaused('')?.reason).toBe('(no reason given)');
  });
  it('reads the JSON form written by sluicectl', () => {
    const raw = JSON.stringify({ reason: 'r', since: '2026-11-25T10:00:00.000Z', by: 'ops@h' });
    expect(parsePaused(raw)).toEqual({
      reason: 'r',
      since: '2026-11-25T10:00:00.000Z',
      by: 'ops@h',
    });
  });
  it('treats JSON without a reason as text', () => {
    expect(parsePaused('{"x":1}')?.reason).toBe('{"x":1}');
  });
});
