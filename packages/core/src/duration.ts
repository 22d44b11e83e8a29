/**
 * Go-style durations, as locksmith and etcd users write them: `1h30m`, `90m`, `45s`, `1.5h`,
 * `2h0m0s`. Sluice keeps durations as whole milliseconds.
 */

import { err, ok, type Result, SluiceError } from './errors.js';

const MS_PER: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3, // U+00B5 micro sign, as Go accepts
  μs: 1e-3, // U+03BC Greek mu, as Go accepts
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/** The longest duration `parseDuration` accepts: 366 days. */
export const MAX_DURATION_MS = 366 * 24 * 3_600_000;

const UNITS_HINT = 'use h, m, s or ms, e.g. 1h30m';

/**
 * Parses a Go duration into whole milliseconds, giving a bare reason on failure (for example
 * `unknown unit "d" (use h, m, s or ms, e.g. 1h30m)`). Use this when you wrap the reason in an
 * error of your own; otherwise use `parseDuration`.
 *
 * Grammar: an optional `+`, then one or more `NUMBER UNIT` pairs with no spaces between them,
 * where NUMBER is a decimal that may have a fraction (`1.5`, `.5`, `2.`) and UNIT is one of `h`,
 * `m`, `s`, `ms`, `us` (or `µs`), `ns`, case-sensitive. A bare `0` is zero. Surrounding
 * whitespace is ignored. Negative values and values over 366 days are refused. Results are rounded
 * to the nearest millisecond, so `1ns` is 0.
 */
export function parseDurationText(text: string): Result<number, string> {
  const s = text.trim();
  if (s === '') return err(`it is empty (${UNITS_HINT})`);
  if (s.startsWith('-')) return err('negative durations are not allowed');
  let rest = s.startsWith('+') ? s.slice(1) : s;
  if (rest === '0') return ok(0);
  if (rest === '') return err(`no number after "+" (${UNITS_HINT})`);

  let total = 0;
  while (rest !== '') {
    const num = /^(?:\d+(?:\.\d*)?|\.\d+)/.exec(rest)?.[0];
    if (num === undefined) return err(`unexpected ${JSON.stringify(rest)} (${UNITS_HINT})`);
    rest = rest.slice(num.length);
    const unit = /^[a-zA-Zµμ]*/.exec(rest)?.[0] ?? '';
    if (unit === '') return err(`missing unit after ${JSON.stringify(num)} (${UNITS_HINT})`);
    const factor = MS_PER[unit];
    if (factor === undefined) return err(`unknown unit ${JSON.stringify(unit)} (${UNITS_HINT})`);
    rest = rest.slice(unit.length);
    total += Number(num) * factor;
    if (!(total <= MAX_DURATION_MS)) return err('it is longer than 366 days');
  }
  return ok(Math.round(total));
}

/**
 * Parses a Go duration (`1h30m`, `90m`, `45s`, `1.5h`) into whole milliseconds. Use it for
 * durations in configuration files, environment variables and flags. On failure the error is a
 * SluiceError of kind `invalid-config` whose message quotes the text and names `where` (the file,
 * variable or flag it came from). See `parseDurationText` for the exact grammar.
 */
export function parseDuration(text: string, where: string): Result<number> {
  const parsed = parseDurationText(text);
  if (parsed.ok) return parsed;
  return err(
    new SluiceError(
      'invalid-config',
      `invalid duration ${JSON.stringify(text)} in ${where}: ${parsed.error}`,
      where,
    ),
  );
}

/**
 * Formats milliseconds as a compact Go duration that `parseDuration` reads back exactly:
 * `5400000` is `1h30m`, `7200000` is `2h`, `1500` is `1s500ms`, `0` is `0s`. Hours are not
 * folded into days, since Go durations have no day unit. Fractions of a millisecond are rounded.
 * Throws a RangeError for NaN or infinite input, which is always a bug in the caller.
 */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) throw new RangeError(`cannot format duration ${ms}`);
  let rest = Math.round(Math.abs(ms));
  if (rest === 0) return '0s';
  const sign = ms < 0 ? '-' : '';
  let out = '';
  for (const [unit, size] of [
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
    ['ms', 1],
  ] as const) {
    const count = Math.floor(rest / size);
    rest -= count * size;
    if (count > 0) out += `${count}${unit}`;
  }
  return sign + out;
}
