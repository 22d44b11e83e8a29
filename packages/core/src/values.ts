/**
 * Parsing of the plain values operators edit with etcdctl. Every parser fails closed: a value that
 * is not exactly right becomes an error naming the key, and the caller admits nobody.
 */
import { err, ok, type Result, SluiceError } from './errors.js';
import { PauseRecordSchema, parseRecord } from './records.js';

/** The largest `max` accepted. Anything above it is surely a typo, and fails closed. */
export const MAX_LIMIT = 10_000;

/** How many characters of a bad value an error message quotes; the rest is cut. */
export const MAX_VALUE_ECHO = 40;

/** The longest pause reason kept; a longer one is cut (it only explains the pause). */
export const MAX_REASON_LENGTH = 1024;

/** A plain decimal: no sign, no leading zeros (`010` might be meant as octal), no exponent. */
const DECIMAL = /^(0|[1-9][0-9]{0,5})$/;

/**
 * A value quoted for an error message: JSON-quoted, cut to MAX_VALUE_ECHO characters, with its
 * full length when it was cut. Use it wherever a message echoes a value someone wrote.
 */
export function quoteValue(raw: string): string {
  if (raw.length <= MAX_VALUE_ECHO) return JSON.stringify(raw);
  return `${JSON.stringify(`${raw.slice(0, MAX_VALUE_ECHO - 1)}…`)} (${raw.length} characters)`;
}

function parseCount(
  raw: string | undefined,
  key: string,
  fallback: number,
  what: string,
): Result<number> {
  if (raw === undefined) return ok(fallback);
  const text = raw.trim();
  if (!DECIMAL.test(text)) {
    return err(
      new SluiceError(
        'invalid-value',
        `${key} is ${quoteValue(raw)}: ${what} must be a plain decimal from 0 to ${MAX_LIMIT} (no sign or leading zeros); nobody is admitted until it is fixed`,
        key,
      ),
    );
  }
  const n = Number(text);
  if (n > MAX_LIMIT) {
    return err(
      new SluiceError(
        'invalid-value',
        `${key} is ${n}: ${what} above ${MAX_LIMIT} is refused as a likely typo; nobody is admitted until it is fixed`,
        key,
      ),
    );
  }
  return ok(n);
}

/**
 * Parses `groups/<g>/max`: how many nodes may hold a slot at once. Absent means 1. Only a plain
 * decimal from 0 to MAX_LIMIT is accepted: digits, no sign, no leading zeros (`02` and `010` are
 * refused, since `010` may be meant as octal), with white space around it ignored (so the newline
 * of `echo 3 | etcdctl put ...` is fine). Anything else fails closed. `0` stops all admissions.
 */
export function parseMax(raw: string | undefined, key: string): Result<number> {
  return parseCount(raw, key, 1, 'max');
}

/**
 * Parses `groups/<g>/loss-budget`: how many lost holders the group tolerates before it halts.
 * Absent means 0: the first lost holder pauses the group.
 */
export function parseLossBudget(raw: string | undefined, key: string): Result<number> {
  return parseCount(raw, key, 0, 'loss-budget');
}

/**
 * Parses `groups/<g>/domain-max`: how many nodes of one failure domain may hold a slot at once,
 * on top of max. Absent means no limit (null); `0` admits no node that has a domain.
 */
export function parseDomainMax(raw: string | undefined, key: string): Result<number | null> {
  if (raw === undefined) return ok(null);
  return parseCount(raw, key, 0, 'domain-max');
}

/** A paused group: why, and since when if the pause was written by sluice. */
export interface Pause {
  reason: string;
  since: string | null;
  by: string | null;
}

/**
 * Parses `groups/<g>/paused`. Any value pauses the group: plain text is the reason (as written by
 * `etcdctl put`), and the JSON form written by `sluicectl pause` adds since and by. Absent means
 * not paused.
 */
export function parsePaused(raw: string | undefined): Pause | null {
  if (raw === undefined) return null;
  const text = raw.length > 64 * 1024 ? raw.slice(0, 64 * 1024) : raw.trim();
  if (text.startsWith('{')) {
    // Not a pause record after all: the text itself is the reason.
    const parsed = parseRecord(PauseRecordSchema, text);
    if (parsed.ok) {
      return {
        reason: cutReason(parsed.value.reason) || '(no reason given)',
        since: parsed.value.since ?? null,
        by: parsed.value.by ?? null,
      };
    }
  }
  return { reason: cutReason(text) || '(no reason given)', since: null, by: null };
}

/** A reason cut to MAX_REASON_LENGTH characters. */
function cutReason(reason: string): string {
  const text = reason.trim();
  return text.length > MAX_REASON_LENGTH ? `${text.slice(0, MAX_REASON_LENGTH - 1)}…` : text;
}

/** The JSON value `sluicectl pause` writes to `groups/<g>/paused`. */
export function formatPause(reason: string, by: string, now: Date): string {
  return JSON.stringify({ reason, since: now.toISOString(), by });
}
