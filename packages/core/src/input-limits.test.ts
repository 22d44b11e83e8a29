/**
 * Bad input never opens a window or floods a message: blank window specs are refused (only
 * `always` means always open), `END == START` is a 24-hour window as the grammar says, specs and
 * values beyond their size caps are refused with a short message, and `max` is a plain decimal.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_LIMIT, MAX_VALUE_ECHO, parseLossBudget, parseMax, parsePaused } from './values.js';
import {
  MAX_WINDOW_ENTRIES,
  MAX_WINDOW_SPEC_LENGTH,
  parseLocksmithWindow,
  parseWindowSpec,
  windowState,
} from './window.js';

const SOURCE = 'etcd key /sluice/v1/groups/default/windows';
const HOUR = 3_600_000;

/** Every character JavaScript's `trim()` removes: what a blank spec may consist of. */
const BLANK_CHARS = [
  ' ',
  '\t',
  '\n',
  '\r',
  '\v',
  '\f',
  '\u00a0',
  '\u1680',
  '\u2000',
  '\u2028',
  '\u2029',
  '\u202f',
  '\u205f',
  '\u3000',
  '\ufeff',
];
const blank = fc.array(fc.constantFrom(...BLANK_CHARS), { maxLength: 20 }).map((a) => a.join(''));

describe('blank window specs', () => {
  it('refuses any blank or white-space spec: only "always" means always open', () => {
    fc.assert(
      fc.property(blank, (text) => {
        const result = parseWindowSpec(text, SOURCE);
        expect(result.ok).toBe(false);
        if (result.ok) return;
        expect(result.error.kind).toBe('invalid-window');
        expect(result.error.message).toContain('empty');
        expect(result.error.message).toContain('always');
      }),
      { numRuns: 300 },
    );
    expect(parseWindowSpec('always', SOURCE)).toEqual({
      ok: true,
      value: { windows: [], source: SOURCE },
    });
  });

  it("refuses locksmith's start and length when either is blank, both blank included", () => {
    fc.assert(
      fc.property(blank, blank, (start, length) => {
        expect(parseLocksmithWindow(start, length, SOURCE).ok).toBe(false);
        expect(parseLocksmithWindow(start, '1h', SOURCE).ok).toBe(false);
        expect(parseLocksmithWindow('Thu 04:00', length, SOURCE).ok).toBe(false);
      }),
      { numRuns: 200 },
    );
  });
});

describe('START-END with END equal to START', () => {
  it('is a 24-hour window that ends at the same wall-clock time the next day', () => {
    const parsed = parseWindowSpec('Sat 04:00-04:00 UTC', SOURCE);
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(parsed.value.windows[0]).toMatchObject({ startMinute: 240, endMinute: 240 });
    const state = windowState(parsed.value, new Date('2025-11-29T12:00:00Z'));
    expect(state.open).toBe(true);
    expect(state.nextEnd?.toISOString()).toBe('2025-11-30T04:00:00.000Z');
  });

  it('follows the wall clock across DST: 23 or 25 real hours', () => {
    const spec = parseWindowSpec('Sat 04:00-04:00 Europe/Berlin', SOURCE);
    if (!spec.ok) throw spec.error;
    // 2025-10-25 04:00 CEST to 2025-10-26 04:00 CET: the clocks go back in between.
    const fall = windowState(spec.value, new Date('2025-10-25T03:00:00Z'));
    expect(fall.nextEnd!.getTime() - Date.parse('2025-10-25T02:00:00Z')).toBe(25 * HOUR);
    const spring = windowState(spec.value, new Date('2025-03-29T04:00:00Z'));
    expect(spring.nextEnd!.getTime() - Date.parse('2025-03-29T03:00:00Z')).toBe(23 * HOUR);
  });
});

describe('size caps', () => {
  it('refuses a spec longer than the cap at once, with a short message', () => {
    const entry = 'Mon 04:00+1h UTC; ';
    const huge = entry.repeat(Math.ceil((1024 * 1024) / entry.length));
    const started = performance.now();
    const result = parseWindowSpec(huge, SOURCE);
    expect(performance.now() - started).toBeLessThan(50);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.error.message).toContain(`${MAX_WINDOW_SPEC_LENGTH}`);
    expect(result.error.message.length).toBeLessThan(300);
  });

  it('refuses more entries than the cap', () => {
    const many = Array.from({ length: MAX_WINDOW_ENTRIES + 1 }, () => 'Mon 04:00+1h').join(';');
    expect(many.length).toBeLessThanOrEqual(MAX_WINDOW_SPEC_LENGTH);
    const result = parseWindowSpec(many, SOURCE);
    expect(result.ok || result.error.message).toContain(`at most ${MAX_WINDOW_ENTRIES} entries`);
    const most = Array.from({ length: MAX_WINDOW_ENTRIES }, () => 'Mon 04:00+1h').join(';');
    expect(parseWindowSpec(most, SOURCE).ok).toBe(true);
  });

  it('refuses any text beyond the caps, and quotes at most a short excerpt', () => {
    fc.assert(
      fc.property(
        fc.string({ minLength: 1, maxLength: 30 }),
        fc.integer({ min: 1, max: 5000 }),
        (piece, extra) => {
          const text = piece.repeat(Math.ceil((MAX_WINDOW_SPEC_LENGTH + extra) / piece.length));
          const result = parseWindowSpec(text, SOURCE);
          expect(result.ok).toBe(false);
          if (!result.ok) expect(result.error.message.length).toBeLessThan(300);
        },
      ),
      { numRuns: 100 },
    );
  });

  it('cuts a huge max or loss-budget in its message', () => {
    const huge = '9'.repeat(1024 * 1024);
    for (const result of [parseMax(huge, 'max'), parseLossBudget(`x${huge}`, 'loss-budget')]) {
      expect(result.ok).toBe(false);
      if (result.ok) continue;
      expect(result.error.message.length).toBeLessThan(MAX_VALUE_ECHO + 200);
      expect(result.error.message).toMatch(/\(104857[67] characters\)/);
    }
  });

  it('cuts a huge pause reason', () => {
    const paused = parsePaused('x'.repeat(1024 * 1024));
    expect(paused?.reason.length).toBeLessThanOrEqual(1100);
  });
});

describe('max is a plain decimal', () => {
  it.each(['2', ' 2', '2 ', '2\n', '\t2\r\n', '0', '10000'])('accepts %j', (raw) => {
    expect(parseMax(raw, 'max').ok).toBe(true);
  });

  it.each(['02', '007', '00', '+2', '2.0', '2e0', '0x2', '２'])('refuses %j', (raw) => {
    const result = parseMax(raw, 'max');
    expect(result.ok).toBe(false);
  });

  it('accepts exactly the canonical decimals 0..MAX_LIMIT with white space around', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme-ascii', maxLength: 8 }), blank, (text, pad) => {
        const raw = `${pad}${text}${pad}`;
        const core = text.trim();
        const canonical = /^(0|[1-9][0-9]*)$/.test(core) && Number(core) <= MAX_LIMIT;
        expect(parseMax(raw, 'max').ok).toBe(canonical);
      }),
      { numRuns: 2000 },
    );
  });
});
