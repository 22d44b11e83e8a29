/**
 * The schema of one configuration layer (the YAML file; environment, flags and update.conf are
 * mapped onto it), with error messages that name the key at fault and suggest the likely one.
 */
import { isValidDomain, isValidName, parseDurationText } from '@sluice/core';
import { type EtcdSettings, EtcdSettingsSchema, splitEndpoints } from '@sluice/etcd/settings';
import { z } from 'zod';
import { CheckEntrySchema } from '../checks.js';
import { NOTIFY_EVENTS } from '../notify.js';
import { SourcesSchema } from '../os-sources.js';
import { REBOOT_METHODS } from '../reboot.js';
import { parseListenAddress } from './describe.js';
import {
  bool,
  count,
  duration,
  httpUrl,
  oneOf,
  q,
  section,
  text,
  ttlSeconds,
  typeOf,
} from './fields.js';

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

function isZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

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
    domain: text
      .refine(
        isValidDomain,
        'must be up to 63 letters, digits and . _ : @ -, starting with a letter or digit',
      )
      .optional(),
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
  blackouts: z
    .union([z.string(), z.array(z.string())], {
      error: 'expected a blackouts spec or a list of them',
    })
    .transform((v) => (Array.isArray(v) ? v : [v]))
    .optional(),
  sources: SourcesSchema.optional(),
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
