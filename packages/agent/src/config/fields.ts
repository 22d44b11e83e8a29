/**
 * The field types of the configuration schema: strings, switches, durations, choices, URLs and
 * sections that refuse unknown keys, each with a message that names what was expected without
 * quoting a value that may be a secret. Each section's schema (schema.ts, checks.ts) is built from
 * these.
 */
import { parseDurationText, quoteValue } from '@sluice/core';
import { z } from 'zod';

/** Quotes a value for a message, cut to a short excerpt (see `quoteValue`). */
export const q = (value: string): string => quoteValue(value);

/**
 * The largest configuration file read, YAML or update.conf: 1 MiB. A real one is a few KiB; a
 * larger file is refused before it is parsed.
 */
export const MAX_CONFIG_FILE_BYTES = 1024 * 1024;

/**
 * How deeply the YAML file may nest mappings and lists (the top-level mapping is level 1). The
 * deepest setting, `checks.pre[0].timeout`, is at level 4.
 */
export const MAX_CONFIG_DEPTH = 16;

/** Describes a wrongly typed value without quoting strings (which might be secrets). */
export function typeOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'number') return `the number ${value}`;
  if (typeof value === 'boolean') return String(value);
  if (typeof value === 'object') return 'a mapping';
  return `a ${typeof value}`;
}

/** How far apart two strings are, in single-character edits. */
export function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      next.push(Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + cost));
    }
    row = next;
  }
  return row[b.length]!;
}

/** Keys that are shown in messages as written: anything else may be a pasted secret. */
export const PLAIN_KEY = /^[A-Za-z0-9_-]{1,40}$/;

/** A key for a message: as written when it is a plain name, else a placeholder. */
export function shownKey(key: string): string {
  return PLAIN_KEY.test(key) ? key : '(a key that is not a plain name, not shown)';
}

/** The message for unknown keys: each named if plain, with the likely key it was meant to be. */
export function unknownKeyMessage(keys: readonly string[], known: readonly string[]): string {
  if (keys.length > 1) {
    return `unknown keys ${keys.map((k) => (PLAIN_KEY.test(k) ? q(k) : shownKey(k))).join(', ')}`;
  }
  const key = keys[0] ?? '';
  if (!PLAIN_KEY.test(key)) {
    // `etcd:{password: ...}` without a space after the colon is one long key in YAML.
    const colon = /:\S/.test(key) ? '; YAML needs a space after ":"' : '';
    return `unknown key${colon} (known keys: ${known.join(', ')})`;
  }
  const near = known
    .map((k) => ({ k, d: editDistance(key.toLowerCase(), k.toLowerCase()) }))
    .filter(({ d }) => d <= Math.max(2, Math.floor(key.length / 3)))
    .sort((a, b) => a.d - b.d)[0];
  const hint = near ? `did you mean ${q(near.k)}?` : `known keys: ${known.join(', ')}`;
  return `unknown key (${hint})`;
}

/** A strict mapping: unknown keys are errors that suggest the key that was probably meant. */
export function section<T extends z.ZodRawShape>(shape: T) {
  const known = Object.keys(shape);
  return z.strictObject(shape, {
    error: (issue) => {
      if (issue.code === 'unrecognized_keys') return unknownKeyMessage(issue.keys, known);
      if (issue.code === 'invalid_type') {
        return issue.input === undefined
          ? 'is required'
          : `expected a mapping, got ${typeOf(issue.input)}`;
      }
      return undefined;
    },
  });
}

/** A non-empty string setting. */
export const text = z
  .string({
    error: (issue) =>
      issue.input === undefined ? 'is required' : `expected a string, got ${typeOf(issue.input)}`,
  })
  .min(1, 'must not be empty');

/** A true/false setting. */
export const bool = z.boolean({
  error: (issue) =>
    `expected true or false, got ${typeof issue.input === 'string' ? q(issue.input) : typeOf(issue.input)}`,
});

/** One of a fixed set of words. */
export function oneOf<const T extends readonly [string, ...string[]]>(values: T) {
  const list = `${values.slice(0, -1).join(', ')} or ${values[values.length - 1]}`;
  return z.enum(values, {
    error: (issue) =>
      `expected ${list}, got ${typeof issue.input === 'string' ? q(issue.input) : typeOf(issue.input)}`,
  });
}

/** A Go duration string, as milliseconds. */
export function duration(options: { positive?: boolean } = {}) {
  return z
    .string({
      error: (issue) =>
        typeof issue.input === 'number'
          ? `expected a duration like 30s, got the number ${issue.input} (add a unit: "${issue.input}s")`
          : `expected a duration like 30s, got ${typeOf(issue.input)}`,
    })
    .transform((input, ctx) => {
      const parsed = parseDurationText(input);
      if (!parsed.ok) {
        const why = parsed.error.startsWith('unexpected') ? '' : ` (${parsed.error})`;
        ctx.issues.push({
          code: 'custom',
          message: `expected a duration like 30s, got ${q(input)}${why}`,
          input,
        });
        return z.NEVER;
      }
      if (options.positive && parsed.value <= 0) {
        ctx.issues.push({ code: 'custom', message: `must be more than 0, got ${q(input)}`, input });
        return z.NEVER;
      }
      return parsed.value;
    });
}

/** A lease TTL: a duration of whole seconds, at least 1s, as seconds. */
export const ttlSeconds = z
  .string({ error: (issue) => `expected a duration like 30s, got ${typeOf(issue.input)}` })
  .transform((input, ctx) => {
    const parsed = parseDurationText(input);
    if (!parsed.ok || parsed.value < 1000 || parsed.value % 1000 !== 0) {
      const why = parsed.ok ? 'a lease TTL is whole seconds, at least 1s' : parsed.error;
      ctx.issues.push({
        code: 'custom',
        message: `expected a duration like 30s, got ${q(input)} (${why})`,
        input,
      });
      return z.NEVER;
    }
    return parsed.value / 1000;
  });

/** True for an http:// or https:// URL with a host. */
export function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}

/** An http:// or https:// URL setting. */
export const httpUrl = text.refine(isHttpUrl, 'expected an http:// or https:// URL');

/** Strips user and password from a URL, for names and logs. */
export function withoutCredentials(value: string): string {
  try {
    const url = new URL(value);
    if (url.username === '' && url.password === '') return value;
    url.username = '';
    url.password = '';
    return url.toString();
  } catch {
    return value;
  }
}

/** A text cut to 60 characters, for a check's default name. */
export const shorten = (s: string): string => (s.length > 60 ? `${s.slice(0, 57)}...` : s);

/** A whole number of at least 0, from YAML or from a flag's or variable's text. */
export const count = z.union(
  [
    z.number().int().min(0),
    z
      .string()
      .regex(/^\d{1,6}$/, 'expected a whole number such as 3')
      .transform(Number),
  ],
  { error: (issue) => `expected a whole number such as 3, got ${typeOf(issue.input)}` },
);
