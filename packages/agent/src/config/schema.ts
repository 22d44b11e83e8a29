/**
 * The schema of one configuration layer (the YAML file; environment, flags and update.conf are
 * mapped onto it), with error messages that name the key at fault and suggest the likely one.
 */
import { isValidName, parseDurationText, quoteValue } from '@sluice/core';
import { type EtcdSettings, EtcdSettingsSchema, splitEndpoints } from '@sluice/etcd/settings';
import { z } from 'zod';
import { NOTIFY_EVENTS } from '../notify.js';
import { REBOOT_METHODS } from '../reboot.js';
import { parseListenAddress } from './describe.js';
import { type CheckSpec, DEFAULTS } from './types.js';

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
function editDistance(a: string, b: string): number {
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
function shownKey(key: string): string {
  return PLAIN_KEY.test(key) ? key : '(a key that is not a plain name, not shown)';
}

function unknownKeyMessage(keys: readonly string[], known: readonly string[]): string {
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

function oneOf<const T extends readonly [string, ...string[]]>(values: T) {
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
const ttlSeconds = z
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

function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}

const httpUrl = text.refine(isHttpUrl, 'expected an http:// or https:// URL');

/** Strips user and password from a URL, for names and logs. */
function withoutCredentials(value: string): string {
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

const shorten = (s: string): string => (s.length > 60 ? `${s.slice(0, 57)}...` : s);

const CheckEntrySchema = section({
  name: text.optional(),
  command: text.optional(),
  http: httpUrl.optional(),
  prometheus: httpUrl.optional(),
  query: text.optional(),
  timeout: duration({ positive: true }).optional(),
})
  .superRefine((c, ctx) => {
    const kinds = (['command', 'http', 'prometheus'] as const).filter((k) => c[k] !== undefined);
    if (kinds.length === 0) {
      ctx.addIssue({ code: 'custom', message: 'needs one of command, http or prometheus' });
    } else if (kinds.length > 1) {
      ctx.addIssue({ code: 'custom', message: `has both ${kinds.join(' and ')}; one per check` });
    }
    if (c.prometheus !== undefined && c.query === undefined) {
      ctx.addIssue({ code: 'custom', message: 'is required with prometheus', path: ['query'] });
    }
    if (c.prometheus === undefined && c.query !== undefined) {
      ctx.addIssue({ code: 'custom', message: 'only goes with prometheus', path: ['query'] });
    }
  })
  .transform((c): CheckSpec => {
    const timeoutMs = c.timeout ?? DEFAULTS.checkTimeoutMs;
    if (c.command !== undefined) {
      const name = c.name ?? `command ${shorten(c.command)}`;
      return { type: 'command', name, command: c.command, timeoutMs };
    }
    if (c.http !== undefined) {
      const name = c.name ?? `http ${shorten(withoutCredentials(c.http))}`;
      return { type: 'http', name, url: c.http, timeoutMs };
    }
    const url = c.prometheus!.replace(/\/+$/, '');
    const query = c.query!;
    return {
      type: 'prometheus',
      name: c.name ?? `prometheus ${shorten(query)}`,
      url,
      query,
      timeoutMs,
    };
  });

const LocksmithWindowSchema = section({ start: text, length: text });

const WINDOW_HINT =
  'expected a window spec like "Mon-Fri 22:00-02:00", a list of them, or { start, length }';

const WindowsSchema = z
  .union(
    [
      z.string(),
      LocksmithWindowSchema,
      z.array(z.union([z.string(), LocksmithWindowSchema], { error: WINDOW_HINT })),
    ],
    { error: WINDOW_HINT },
  )
  .transform((v) => (Array.isArray(v) ? v : [v]));

/** Accepts a `host:port` listen address, or null / "off". */
const listenSchema = z
  .string({ error: (issue) => `expected host:port or null, got ${typeOf(issue.input)}` })
  .nullable()
  .transform((value, ctx) => {
    if (value === null || value === 'off') return null;
    const parsed = parseListenAddress(value);
    if (!parsed.ok) {
      ctx.issues.push({ code: 'custom', message: parsed.error, input: value });
      return z.NEVER;
    }
    return value;
  });

const sentinelSchema = z
  .string({ error: (issue) => `expected a file path or null, got ${typeOf(issue.input)}` })
  .nullable()
  .transform((value, ctx) => {
    if (value === null || value === 'off') return null;
    if (!value.startsWith('/')) {
      ctx.issues.push({
        code: 'custom',
        message: `expected an absolute path, got ${q(value)}`,
        input: value,
      });
      return z.NEVER;
    }
    return value;
  });

function isZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

/** A preset source: true / false / null, or its settings (which turn it on). */
function presetSchema<T extends z.ZodRawShape>(extra: T) {
  return z
    .union(
      [
        bool,
        z.null(),
        section({
          interval: duration({ positive: true }).optional(),
          path: text
            .refine((p) => p.startsWith('/'), 'expected an absolute path to the program')
            .optional(),
          timeout: duration({ positive: true }).optional(),
          ...extra,
        }),
      ],
      { error: 'expected true, false, null or a mapping such as { interval: 5m }' },
    )
    .optional();
}

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

const etcdShape = EtcdSettingsSchema.shape;
/** The etcd settings' field names, for the flags table. */
export const ETCD_FIELDS = Object.keys(etcdShape) as (keyof EtcdSettings)[];

/**
 * The schema of the YAML file, and of each layer the agent's configuration is built from. Every
 * key is optional; defaults are filled in after the layers are merged. Strict: unknown keys are
 * errors.
 */
export const AgentConfigFileSchema = section({
  node: section({
    id: text
      .refine(isValidName, 'must be letters, digits and . _ : @ -, starting with a letter or digit')
      .optional(),
    hostname: text.optional(),
    tokenFile: text.optional(),
  }).optional(),
  clock: section({ maxSkew: duration({ positive: true }).optional() }).optional(),
  etcd: section({
    ...etcdShape,
    endpoints: z
      .union([z.string().transform(splitEndpoints), z.array(text)], {
        error: 'expected a list of URLs or a comma-separated string',
      })
      .pipe(z.array(z.string()).min(1, 'needs at least one endpoint'))
      .optional(),
    sessionTTL: ttlSeconds.optional(),
    holdTTL: ttlSeconds.optional(),
  }).optional(),
  strategy: oneOf(['etcd-lock', 'reboot', 'off', 'best-effort']).optional(),
  windowZone: text
    .superRefine((zone, ctx) => {
      if (zone === 'local' || isZone(zone)) return;
      ctx.addIssue({
        code: 'custom',
        message: `expected an IANA time zone such as Europe/Berlin or UTC, or local, got ${q(zone)}`,
      });
    })
    .optional(),
  windows: WindowsSchema.optional(),
  sources: section({
    updateEngine: bool.optional(),
    sentinel: sentinelSchema.optional(),
    command: section({
      run: text.optional(),
      interval: duration({ positive: true }).optional(),
    })
      .nullable()
      .optional(),
    manual: bool.optional(),
    rpmOstree: bool.optional(),
    bootc: presetSchema({}),
    sysupdate: presetSchema({ component: text.optional() }),
    needrestart: presetSchema({}),
    dnf: presetSchema({}),
  }).optional(),
  reboot: section({
    method: oneOf(REBOOT_METHODS).optional(),
    command: text.optional(),
    softReboot: oneOf(['auto', 'never']).optional(),
    inhibitors: oneOf(['wait', 'ignore']).optional(),
    inhibitorWait: duration().optional(),
    loopLimit: count.optional(),
    warnDelay: duration().optional(),
    warnMessage: z.string().optional(),
    expectedSlot: z
      .string({
        error: (issue) => `expected a duration like 30m, auto or off, got ${typeOf(issue.input)}`,
      })
      .transform((input, ctx): number | 'auto' | 'off' => {
        if (input === 'auto' || input === 'off') return input;
        const parsed = parseDurationText(input);
        if (parsed.ok) return parsed.value;
        ctx.issues.push({
          code: 'custom',
          message: `expected a duration like 30m, auto or off, got ${q(input)}`,
          input,
        });
        return z.NEVER;
      })
      .optional(),
  }).optional(),
  checks: section({
    pre: z.array(CheckEntrySchema).optional(),
    drain: CheckEntrySchema.nullable().optional(),
    post: z.array(CheckEntrySchema).optional(),
    postDeadline: duration({ positive: true }).optional(),
    postInterval: duration({ positive: true }).optional(),
    releaseDelay: duration().optional(),
  }).optional(),
  dbus: section({
    address: text
      .refine(
        (a) => a === 'system' || (/^[a-z]+:/.test(a) && !a.startsWith('unix:abstract=')),
        'expected "system" or a D-Bus address such as unix:path=/run/dbus/system_bus_socket (unix:abstract= is not supported)',
      )
      .optional(),
  }).optional(),
  metrics: section({
    listen: listenSchema.optional(),
    allowRemote: bool.optional(),
  }).optional(),
  log: section({ level: oneOf(['debug', 'info', 'warn', 'error']).optional() }).optional(),
  notify: section({
    webhooks: z.array(httpUrl).optional(),
    template: text.optional(),
    events: z.array(oneOf(NOTIFY_EVENTS)).optional(),
    timeout: duration({ positive: true }).optional(),
    attempts: z.number().int().min(1).max(20).optional(),
  }).optional(),
});

/** The YAML file as written (before durations are parsed). */
export type AgentConfigFile = z.input<typeof AgentConfigFileSchema>;

/** One layer as the schema parses it. */
export type LayerValues = z.output<typeof AgentConfigFileSchema>;
