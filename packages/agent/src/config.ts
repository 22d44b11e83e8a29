/**
 * The agent's configuration: one schema, read from several places. From lowest to highest
 * precedence:
 *
 * 1. built-in defaults;
 * 2. locksmith's update.conf files (`/etc/coreos/update.conf`, then `/etc/flatcar/update.conf`),
 *    so a node that ran locksmithd keeps its strategy, window and etcd connection;
 * 3. the YAML file (`/etc/sluice/sluiced.yaml`, or `--config` / `SLUICE_CONFIG`);
 * 4. environment variables (`SLUICE_*`, and locksmith's `LOCKSMITHD_*` names for etcd);
 * 5. command-line flags.
 *
 * Every layer is validated on its own, so a bad value is reported even when a higher layer
 * overrides it, and every error names the key and where it came from:
 * `config file /etc/sluice/sluiced.yaml: checks.pre[0].timeout: expected a duration like 30s,
 * got "soon"`. Unknown keys in the file are errors, with a suggestion for likely typos.
 *
 * The YAML file uses camelCase keys; every key is optional. Durations are Go durations (`30s`,
 * `1h30m`). A complete example with the defaults spelt out:
 *
 * ```yaml
 * node:
 *   id: web-17                # default: the contents of /etc/machine-id
 *   hostname: web-17.example  # default: the host name
 *   tokenFile: /var/lib/sluice/instance  # this agent's instance token (made at first start)
 * clock:
 *   maxSkew: 60s              # no admission, no reboot while the clock is further off etcd's
 * etcd:
 *   endpoints: [https://10.0.0.1:2379, https://10.0.0.2:2379]  # or "a,b"; default http://127.0.0.1:2379
 *   cacert: /etc/sluice/etcd-ca.pem        # alone: TLS that verifies the server only
 *   cert: /etc/sluice/etcd-client.pem      # cert and key: mutual TLS
 *   key: /etc/sluice/etcd-client-key.pem
 *   username: sluice
 *   passwordFile: /etc/sluice/etcd-password # or password: ... (never logged)
 *   prefix: /sluice/v1/
 *   group: web
 *   sessionTTL: 30s   # lease of a waiting node's queue key (whole seconds)
 *   holdTTL: 1h       # lease of a slot while the node reboots; must outlast the reboot
 * strategy: etcd-lock # etcd-lock | reboot | off | best-effort (locksmith's: etcd-lock if etcd is configured)
 * windowZone: Europe/Berlin   # zone of window entries that name none, or local (this node's
 *                             # zone); default UTC, and local for locksmith's { start, length }
 * windows:                    # a spec string, a list of them, or locksmith's { start, length }
 *   - Mon-Fri 22:00-02:00
 *   - Sat,Sun 03:00+4h UTC
 *   - { start: "Thu 04:00", length: 1h30m }
 * sources:
 *   updateEngine: true            # follow update_engine over D-Bus
 *   sentinel: /run/reboot-required # null or "off" to ignore
 *   command: { run: /usr/local/bin/needs-reboot, interval: 5m }  # exit 0 = reboot needed; default null
 *   manual: true                  # honour `sluicectl request-reboot`
 *   rpmOstree: false              # follow rpm-ostreed over D-Bus (Fedora CoreOS, RHEL for Edge)
 *   bootc: false                  # or true, or { interval: 5m, path: /usr/bin/bootc, timeout: 2m }
 *   sysupdate: false              # systemd-sysupdate pending; also takes component: NAME
 *   needrestart: false            # needrestart -b (Debian, Ubuntu)
 *   dnf: false                    # dnf needs-restarting -r (Fedora, RHEL)
 * reboot:
 *   method: logind                # logind | soft-reboot | kexec | command
 *   command: systemctl reboot     # used when method is command
 *   softReboot: auto              # auto: soft-reboot when the source says userspace is enough; never
 *   inhibitors: wait              # wait: hold off while a block inhibitor lock is on shutdown; ignore
 *   inhibitorWait: 10m            # longest such wait, holding the slot; then it is given back
 *   loopLimit: 3                  # stop rebooting for an update still needed after 3 reboots; 0 = off
 *   warnDelay: 0s                 # warn logged-in users this long before rebooting
 *   warnMessage: "System reboot in %s: OS update applied (sluice)"
 * checks:
 *   pre:                          # before queueing and again once admitted; all must pass
 *     - { name: low-traffic, prometheus: "http://prom:9090", query: "sum(rate(http_requests_total[5m])) > 100", timeout: 10s }
 *     - { command: /usr/local/bin/ok-to-reboot, timeout: 30s }
 *   drain: { command: "kubectl drain --ignore-daemonsets $(hostname)", timeout: 10m }
 *   post:                         # after boot, retried until they pass or postDeadline passes
 *     - { name: app, http: "http://127.0.0.1:8080/healthz", timeout: 5s }
 *   postDeadline: 10m
 *   postInterval: 10s
 *   releaseDelay: 0s              # wait this long after the post checks pass before releasing
 * dbus:
 *   address: system               # or unix:path=/run/dbus/system_bus_socket
 * metrics:
 *   listen: 127.0.0.1:9466        # null or "off" disables; a non-loopback host needs allowRemote
 *   allowRemote: false
 * log:
 *   level: info                   # debug | info | warn | error
 * notify:                         # YAML only; see notify.ts
 *   webhooks: [https://hooks.example/T0/B0/xyz]   # POST a JSON notification to each
 *   template: '{"text": "{{text}}"}'              # default: the notification itself as JSON
 *   events: [group-halted, node-lost, post-checks-failing, rollout-finished, group-paused, group-resumed]
 *   timeout: 10s                  # per attempt
 *   attempts: 5
 * ```
 *
 * A check is `{ command }`, `{ http }` (GET, 2xx passes) or `{ prometheus, query }` (passes when
 * the instant query returns nothing or only zeros), each with an optional `name` and `timeout`
 * (default 30s). Window specs follow `parseWindowSpec` in `@sluice/core`; all entries together
 * form the node's one window spec, which is open when any entry is.
 *
 * Environment variables and flags are listed in `AGENT_FLAGS` (and `agentFlagsHelp()`).
 */
import { open } from 'node:fs/promises';
import { isIP } from 'node:net';
import { hostname as osHostname } from 'node:os';
import {
  describeWindow,
  err,
  formatDuration,
  isSluiceError,
  isValidName,
  MAX_WINDOW_ENTRIES,
  ok,
  parseDurationText,
  parseLocksmithWindow,
  parseWindowSpec,
  quoteValue,
  type Result,
  SluiceError,
  type WeeklyWindow,
  type WindowSpec,
} from '@sluice/core';
import {
  ETCD_ENV,
  type EtcdSettings,
  EtcdSettingsSchema,
  etcdSettingsFromEnv,
  parseEtcdSettings,
  splitEndpoints,
} from '@sluice/etcd/settings';
import type { Command } from 'commander';
import { type Document, Lexer, LineCounter, parseDocument } from 'yaml';
import { z } from 'zod';
import { defaultTokenFile } from './identity.js';
import { type LocalZone, localZone } from './localzone.js';
import { parseUpdateConfs } from './locksmith.js';
import { checkTemplate, DEFAULT_NOTIFY, NOTIFY_EVENTS, type NotifySettings } from './notify.js';
import { REBOOT_METHODS, type RebootMethod } from './reboot.js';

// ---------------------------------------------------------------------------------------------
// The resolved configuration

/** A check that runs a shell command (`/bin/sh -c`); exit status 0 passes. */
export interface CheckSpecCommand {
  type: 'command';
  /** Names the check in logs and metrics. */
  name: string;
  command: string;
  timeoutMs: number;
}

/** A check that GETs a URL; a 2xx status passes. */
export interface CheckSpecHttp {
  type: 'http';
  /** Names the check in logs and metrics. */
  name: string;
  url: string;
  timeoutMs: number;
}

/** A check that runs a Prometheus instant query; it passes when the result is empty or all 0. */
export interface CheckSpecPrometheus {
  type: 'prometheus';
  /** Names the check in logs and metrics. */
  name: string;
  /** The Prometheus base URL, such as `http://prometheus:9090`. */
  url: string;
  query: string;
  timeoutMs: number;
}

/** One pre-reboot, drain or post-reboot check. */
export type CheckSpec = CheckSpecCommand | CheckSpecHttp | CheckSpecPrometheus;

/** How the agent reboots: through the etcd semaphore, straight away, or not at all. */
export type Strategy = 'etcd-lock' | 'reboot' | 'off';

/** The log levels the agent accepts. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** The agent's whole configuration, with every default filled in. See the module comment. */
export interface AgentConfig {
  node: {
    /** The node id in etcd keys. Default: the contents of /etc/machine-id. */
    id: string;
    /** Shown in queue records and status. Default: the host name. */
    hostname: string;
    /**
     * Where the agent's instance token is kept (made at first start). Default
     * `$STATE_DIRECTORY/instance`, else `/var/lib/sluice/instance`.
     */
    tokenFile: string;
  };
  /** The clock guard: the largest difference from etcd's clock allowed, in ms (default 60 s). */
  clock: { maxSkewMs: number };
  /** etcd connection settings plus the two lease TTLs, in whole seconds. */
  etcd: EtcdSettings & { sessionTTL: number; holdTTL: number };
  /** locksmith's `best-effort` is already resolved to `etcd-lock` or `reboot`. */
  strategy: Strategy;
  /**
   * The node's own window spec: at most one (all configured entries joined, open when any is).
   * Empty means always open. Combine with the group's spec through `windowStateAll`.
   */
  windows: WindowSpec[];
  /** The zones entries that name none were read in, and why (see `WindowZones`). */
  windowZones: WindowZones;
  /** Which update sources to follow besides nothing: update_engine, a file, a command, manual. */
  sources: {
    updateEngine: boolean;
    /** A file whose existence means a reboot is needed; null to ignore. */
    sentinel: string | null;
    /** A command run every `intervalMs`; exit 0 means a reboot is needed. Null if none. */
    command: { run: string; intervalMs: number } | null;
    /** Follow reboot requests made with `sluicectl request-reboot`. */
    manual: boolean;
  } & OsSources;
  reboot: {
    method: RebootMethod;
    /** The shell command for method `command`. */
    command: string;
    /** `auto`: soft-reboot instead when every source that wants the reboot says that is enough. */
    softReboot: 'auto' | 'never';
    /** `wait`: while a logind block inhibitor is on shutdown, hold off (logind methods only). */
    inhibitors: 'wait' | 'ignore';
    /** The longest wait for inhibitors, holding the slot; then the slot is given back. */
    inhibitorWaitMs: number;
    /** Reboots in a row for one update after which this node stops rebooting for it; 0 = off. */
    loopLimit: number;
    /** Warn logged-in users this long before rebooting; 0 = no warning. */
    warnDelayMs: number;
    /** The warning; `%s` becomes the time left. */
    warnMessage: string;
  };
  checks: {
    pre: CheckSpec[];
    drain: CheckSpec | null;
    post: CheckSpec[];
    postDeadlineMs: number;
    postIntervalMs: number;
    releaseDelayMs: number;
  };
  dbus: {
    /** `system`, or an address such as `unix:path=/run/dbus/system_bus_socket`. */
    address: string;
  };
  metrics: {
    /** `host:port` to serve Prometheus metrics on (see `parseListenAddress`); null = off. */
    listen: string | null;
    /** Whether `listen` may be a non-loopback address. */
    allowRemote: boolean;
  };
  log: { level: LogLevel };
  /** Webhooks to notify of halts, lost nodes, failing post-checks, finished rollouts, pauses. */
  notify: NotifySettings;
  /**
   * Where each setting that is not a default came from, by its YAML path: `etcd.group` →
   * `environment SLUICE_GROUP`, `windows` → `/etc/flatcar/update.conf:4
   * (LOCKSMITHD_REBOOT_WINDOW_START)`. For diagnostics and messages. (The brief called this
   * `sources_of`; it is `origins` here so it does not read like the update `sources`.)
   */
  origins: Record<string, string>;
  /** Settings that were read but ignored (unknown update.conf keys). Log them at startup. */
  warnings: string[];
}

/** The YAML file the agent reads when neither `--config` nor `SLUICE_CONFIG` names one. */
export const DEFAULT_CONFIG_FILE = '/etc/sluice/sluiced.yaml';

/**
 * locksmith's update.conf files, in the order they are read (a later file wins): the OS
 * defaults, then the node's own, as the EnvironmentFile= lines of locksmithd.service read them.
 */
export const DEFAULT_UPDATE_CONF_FILES: readonly string[] = [
  '/usr/share/coreos/update.conf',
  '/usr/share/flatcar/update.conf',
  '/etc/coreos/update.conf',
  '/etc/flatcar/update.conf',
];

/** Where the default node id comes from. */
export const DEFAULT_MACHINE_ID_FILE = '/etc/machine-id';

const DEFAULTS = {
  sessionTTL: 30,
  holdTTL: 3600,
  sentinel: '/run/reboot-required',
  commandIntervalMs: 5 * 60_000,
  rebootCommand: 'systemctl reboot',
  warnMessage: 'System reboot in %s: OS update applied (sluice)',
  checkTimeoutMs: 30_000,
  postDeadlineMs: 10 * 60_000,
  postIntervalMs: 10_000,
  metricsListen: '127.0.0.1:9466',
  maxClockSkewMs: 60_000,
} as const;

// ---------------------------------------------------------------------------------------------
// Update sources and reboot methods beyond update_engine: one schema fragment each (below, in
// the file schema), resolved by `resolveOsSources`.

/** A preset source that asks a tool every `intervalMs` (see sources-packages.ts). */
export interface PresetConfig {
  intervalMs: number;
  /** The tool, when it is not where the distribution installs it. */
  path?: string;
  timeoutMs?: number;
}

/** The sources for image-based and package-based systems; each off (false / null) by default. */
export interface OsSources {
  /** Follow rpm-ostreed over D-Bus. */
  rpmOstree: boolean;
  /** `bootc status --json`. */
  bootc: PresetConfig | null;
  /** `systemd-sysupdate pending`, optionally for one component. */
  sysupdate: (PresetConfig & { component?: string }) | null;
  /** `needrestart -b`. */
  needrestart: PresetConfig | null;
  /** `dnf needs-restarting -r`. */
  dnf: PresetConfig | null;
}

const OS_DEFAULTS = {
  presetIntervalMs: 5 * 60_000,
  softReboot: 'auto',
  inhibitors: 'wait',
  inhibitorWaitMs: 10 * 60_000,
  loopLimit: 3,
} as const;

// ---------------------------------------------------------------------------------------------
// The schema of one layer (the YAML file; env, flags and update.conf are mapped onto it)

/** Quotes a value for a message, cut to a short excerpt (see `quoteValue`). */
const q = (value: string): string => quoteValue(value);

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
function typeOf(value: unknown): string {
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
const PLAIN_KEY = /^[A-Za-z0-9_-]{1,40}$/;

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
function section<T extends z.ZodRawShape>(shape: T) {
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

const text = z
  .string({
    error: (issue) =>
      issue.input === undefined ? 'is required' : `expected a string, got ${typeOf(issue.input)}`,
  })
  .min(1, 'must not be empty');

const bool = z.boolean({
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
function duration(options: { positive?: boolean } = {}) {
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
const count = z.union(
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
const ETCD_FIELDS = Object.keys(etcdShape) as (keyof EtcdSettings)[];

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

type LayerValues = z.output<typeof AgentConfigFileSchema>;

// ---------------------------------------------------------------------------------------------
// Flags and environment variables

/** Parsed command-line flags: every scalar setting has one. Strings are parsed like env values. */
export interface AgentFlags {
  /** The YAML file; a missing file named here is an error. */
  config?: string;
  node?: string;
  hostname?: string;
  tokenFile?: string;
  maxClockSkew?: string;
  /** Comma-separated, or repeated. */
  endpoints?: string | string[];
  cacert?: string;
  cert?: string;
  key?: string;
  user?: string;
  password?: string;
  passwordFile?: string;
  prefix?: string;
  group?: string;
  sessionTtl?: string;
  holdTtl?: string;
  strategy?: string;
  /** Window spec entries; repeatable. */
  window?: string | string[];
  windowZone?: string;
  updateEngine?: boolean;
  sentinel?: string;
  sourceCommand?: string;
  sourceCommandInterval?: string;
  manual?: boolean;
  rebootMethod?: string;
  rebootCommand?: string;
  rpmOstree?: boolean;
  bootc?: boolean;
  sysupdate?: boolean;
  needrestart?: boolean;
  dnf?: boolean;
  softReboot?: string;
  inhibitors?: string;
  inhibitorWait?: string;
  rebootLoopLimit?: string;
  warnDelay?: string;
  warnMessage?: string;
  postDeadline?: string;
  postInterval?: string;
  releaseDelay?: string;
  dbusAddress?: string;
  metricsListen?: string;
  metricsAllowRemote?: boolean;
  logLevel?: string;
}

/** One command-line flag, the environment variables and the YAML key for the same setting. */
export interface AgentFlagSpec {
  /** The property in `AgentFlags` (commander's camelCase of the flag). */
  name: keyof AgentFlags;
  /** The flag in commander syntax, such as `--session-ttl <duration>` or `--update-engine`. */
  flag: string;
  /** The YAML path it sets, such as `etcd.sessionTTL`; empty for `--config`. */
  path: string;
  /** Environment variables for the same setting, first one wins. */
  env: readonly string[];
  description: string;
  /** The flag may be given more than once (collect into a list). */
  repeatable?: true;
  /** A boolean: offer `--no-<flag>` too, and leave it undefined when neither is given. */
  negatable?: true;
}

type Kind = 'text' | 'bool' | 'window' | 'endpoints';

interface Setting extends AgentFlagSpec {
  kind: Kind;
}

/**
 * One row per flag: its `AgentFlags` name, the YAML path it sets, its argument (`bool` for a
 * switch, `bool+no` for a switch that also has a `--no-` form) and its help. The flag is the name
 * in kebab case; the environment variable is `SLUICE_` and the name in snake case, except for the
 * etcd connection, whose variables (with locksmith's names) come from `ETCD_ENV`.
 */
const FLAG_TABLE: readonly (readonly [keyof AgentFlags, string, string, string])[] = [
  ['config', '', '<file>', `YAML config file (default ${DEFAULT_CONFIG_FILE})`],
  ['node', 'node.id', '<id>', 'node id (default: the contents of /etc/machine-id)'],
  ['hostname', 'node.hostname', '<name>', 'host name shown in status'],
  ['tokenFile', 'node.tokenFile', '<file>', 'instance token file (/var/lib/sluice/instance)'],
  ['maxClockSkew', 'clock.maxSkew', '<duration>', "largest offset from etcd's clock (60s)"],
  ['endpoints', 'etcd.endpoints', '<urls>', 'etcd endpoints, comma-separated'],
  ['cacert', 'etcd.cacert', '<file>', 'CA bundle that signed the etcd server certificate'],
  ['cert', 'etcd.cert', '<file>', 'client certificate for mutual TLS'],
  ['key', 'etcd.key', '<file>', 'client key for mutual TLS'],
  ['user', 'etcd.username', '<name>', 'etcd user name'],
  ['password', 'etcd.password', '<password>', 'etcd password (prefer --password-file)'],
  ['passwordFile', 'etcd.passwordFile', '<file>', 'file holding the etcd password'],
  ['prefix', 'etcd.prefix', '<prefix>', 'etcd key prefix (default /sluice/v1/)'],
  ['group', 'etcd.group', '<group>', 'reboot group (default "default")'],
  ['sessionTtl', 'etcd.sessionTTL', '<duration>', 'lease TTL of a waiting node (default 30s)'],
  ['holdTtl', 'etcd.holdTTL', '<duration>', 'lease TTL of a held slot; must outlast a reboot (1h)'],
  ['strategy', 'strategy', '<strategy>', 'etcd-lock, reboot, off or best-effort (etcd-lock)'],
  ['window', 'windows', '<spec>', 'reboot window, e.g. "Mon-Fri 22:00-02:00"; repeatable'],
  ['windowZone', 'windowZone', '<zone>', 'zone of windows that name none, or local (UTC)'],
  ['updateEngine', 'sources.updateEngine', 'bool+no', 'follow update_engine over D-Bus (on)'],
  ['sentinel', 'sources.sentinel', '<file>', 'reboot while this file exists; "off" to ignore'],
  ['sourceCommand', 'sources.command.run', '<command>', 'command whose exit 0 means reboot'],
  ['sourceCommandInterval', 'sources.command.interval', '<duration>', 'its interval (5m)'],
  ['manual', 'sources.manual', 'bool+no', 'honour sluicectl request-reboot (on)'],
  ['rebootMethod', 'reboot.method', '<method>', 'logind, soft-reboot, kexec or command (logind)'],
  ['rebootCommand', 'reboot.command', '<command>', 'for method command ("systemctl reboot")'],
  ['rpmOstree', 'sources.rpmOstree', 'bool+no', 'follow rpm-ostreed over D-Bus (off)'],
  ['bootc', 'sources.bootc', 'bool+no', 'ask bootc status --json every 5m (off)'],
  ['sysupdate', 'sources.sysupdate', 'bool+no', 'ask systemd-sysupdate pending every 5m (off)'],
  ['needrestart', 'sources.needrestart', 'bool+no', 'ask needrestart -b every 5m (off)'],
  ['dnf', 'sources.dnf', 'bool+no', 'ask dnf needs-restarting -r every 5m (off)'],
  ['softReboot', 'reboot.softReboot', '<when>', 'auto or never: soft-reboot when enough (auto)'],
  ['inhibitors', 'reboot.inhibitors', '<policy>', 'wait for or ignore block inhibitors (wait)'],
  [
    'inhibitorWait',
    'reboot.inhibitorWait',
    '<duration>',
    'longest inhibitor wait, slot held (10m)',
  ],
  ['rebootLoopLimit', 'reboot.loopLimit', '<n>', 'stop after n reboots for one update (3; 0 off)'],
  ['warnDelay', 'reboot.warnDelay', '<duration>', 'warn logged-in users this long before (0s)'],
  ['warnMessage', 'reboot.warnMessage', '<text>', 'the warning; %s becomes the time left'],
  ['postDeadline', 'checks.postDeadline', '<duration>', 'time for post-reboot checks (10m)'],
  ['postInterval', 'checks.postInterval', '<duration>', 'pause between post-check rounds (10s)'],
  ['releaseDelay', 'checks.releaseDelay', '<duration>', 'wait before releasing the slot (0s)'],
  ['dbusAddress', 'dbus.address', '<address>', 'system or unix:path=... (default system)'],
  ['metricsListen', 'metrics.listen', '<host:port>', 'metrics address, "off" (127.0.0.1:9466)'],
  ['metricsAllowRemote', 'metrics.allowRemote', 'bool', 'allow a non-loopback metrics address'],
  ['logLevel', 'log.level', '<level>', 'debug, info, warn or error (default info)'],
];

const kebab = (name: string): string => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

const SETTINGS: readonly Setting[] = FLAG_TABLE.map(([name, path, arg, description]) => {
  const etcdField = ETCD_FIELDS.find((f) => path === `etcd.${f}`);
  const env = etcdField
    ? ETCD_ENV[etcdField]
    : [`SLUICE_${kebab(name).replaceAll('-', '_').toUpperCase()}`];
  const isBool = arg.startsWith('bool');
  const kind: Kind = isBool
    ? 'bool'
    : path === 'windows'
      ? 'window'
      : path === 'etcd.endpoints'
        ? 'endpoints'
        : 'text';
  return {
    name,
    flag: isBool ? `--${kebab(name)}` : `--${kebab(name)} ${arg}`,
    path,
    env,
    description,
    kind,
    ...(kind === 'window' ? { repeatable: true as const } : {}),
    ...(arg === 'bool+no' ? { negatable: true as const } : {}),
  };
});

/**
 * Every command-line flag of `sluiced`, with its environment variables and YAML key. Register
 * them with `addAgentFlags`, or build your own parser from this list.
 */
export const AGENT_FLAGS: readonly AgentFlagSpec[] = SETTINGS.map(
  ({ kind: _kind, ...spec }) => spec,
);

/**
 * Registers every flag of `AGENT_FLAGS` on a commander command, so that `command.opts()` is an
 * `AgentFlags`. Flags left out stay undefined (booleans too), so they do not override the file.
 */
export function addAgentFlags(command: Command): Command {
  for (const spec of SETTINGS) {
    const env = spec.env.length > 0 ? ` [env ${spec.env.join(', ')}]` : '';
    const description = `${spec.description}${env}`;
    if (spec.repeatable) {
      command.option(spec.flag, description, (value: string, previous: string[] = []) => [
        ...previous,
        value,
      ]);
    } else {
      command.option(spec.flag, description);
    }
    if (spec.negatable) {
      command.option(spec.flag.replace(/^--/, '--no-'), `turn off: ${spec.description}`);
    }
  }
  return command;
}

/** A plain-text table of every flag, its environment variables and its YAML key, for `--help`. */
export function agentFlagsHelp(): string {
  const rows = SETTINGS.map((s) => [
    s.negatable ? s.flag.replace(/^--/, '--[no-]') : s.flag,
    s.env.join(', '),
    s.path || '-',
  ]);
  const widths = [0, 1].map((i) => Math.max(...rows.map((r) => r[i]!.length)));
  const lines = rows.map(
    (r) => `  ${r[0]!.padEnd(widths[0]!)}  ${r[1]!.padEnd(widths[1]!)}  ${r[2]}`,
  );
  return ['Settings (flag, environment, YAML key):', ...lines].join('\n');
}

// ---------------------------------------------------------------------------------------------
// Loading

/** Where to read the configuration from. Every field has a default for production use. */
export interface LoadOptions {
  /**
   * The YAML file. Default: `flags.config`, else `SLUICE_CONFIG`, else
   * `/etc/sluice/sluiced.yaml`. A missing default file is fine; a missing named file is an error.
   */
  configFile?: string;
  /** Default `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** Parsed command-line flags. */
  flags?: AgentFlags;
  /** locksmith's update.conf files; a later file wins. Missing files are skipped. */
  updateConfFiles?: readonly string[];
  /** Default `/etc/machine-id`. */
  machineIdFile?: string;
  /** The default host name, instead of `os.hostname()`. */
  hostname?: string;
  /** Where the local zone is read when `TZ` is unset. Default `/etc/localtime`. */
  localtimeFile?: string;
  /** The tz database directory, for naming a copied localtime file. Default `/usr/share/zoneinfo`. */
  zoneinfoDir?: string;
}

/** Where one setting came from: a label for messages and the file, variable or flag at fault. */
interface Origin {
  label: string;
  where: string;
}

/** One layer of input, in the YAML file's shape, with the origin of each setting it holds. */
interface RawLayer {
  raw: unknown;
  origins: Map<string, Origin>;
  /** The origin of anything `origins` does not list (the whole file). */
  fallback?: Origin;
  /** For the YAML file: the line a setting (or the nearest key above it) is written on. */
  lineOf?: (path: readonly PropertyKey[]) => number | undefined;
}

/** Paths whose values replace rather than merge with lower layers, and are one origin. */
const UNITS = new Set(['windows', 'etcd.endpoints', 'checks.pre', 'checks.post', 'checks.drain']);

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function setPath(target: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split('.');
  let node = target;
  for (const part of parts.slice(0, -1)) {
    const next = node[part];
    if (isPlainObject(next)) {
      node = next;
    } else {
      const created: Record<string, unknown> = {};
      node[part] = created;
      node = created;
    }
  }
  node[parts[parts.length - 1]!] = value;
}

/** Lists the settings in a parsed YAML document, down to the units, for origin tracking. */
function leafPaths(value: unknown, prefix = ''): string[] {
  if (!isPlainObject(value) || UNITS.has(prefix)) return prefix === '' ? [] : [prefix];
  return Object.entries(value).flatMap(([k, v]) => leafPaths(v, prefix ? `${prefix}.${k}` : k));
}

function configError(origin: Origin, path: string, message: string, cause?: unknown): SluiceError {
  const at = path === '' ? '' : `${path}: `;
  return new SluiceError('invalid-config', `${origin.label}: ${at}${message}`, origin.where, {
    cause,
  });
}

/** `['checks', 'pre', 0, 'timeout']` → `checks.pre[0].timeout`. */
function displayPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else {
      const key = PLAIN_KEY.test(String(part)) ? String(part) : '(key not shown)';
      out += out === '' ? key : `.${key}`;
    }
  }
  return out;
}

function originOf(layer: RawLayer, path: readonly PropertyKey[]): Origin {
  const parts = path.map(String);
  for (let n = parts.length; n > 0; n--) {
    const found = layer.origins.get(parts.slice(0, n).join('.'));
    if (found) return found;
  }
  return layer.fallback ?? { label: 'configuration', where: 'configuration' };
}

/** Picks the most telling issue: inside a union, the branch that got past the type check. */
function explain(
  issue: z.core.$ZodIssue,
  base: readonly PropertyKey[] = [],
): { path: PropertyKey[]; message: string } {
  const path = [...base, ...issue.path];
  if (issue.code === 'invalid_union') {
    for (const branch of issue.errors) {
      if (
        branch.length > 0 &&
        !branch.some((i) => i.path.length === 0 && i.code === 'invalid_type')
      ) {
        return explain(pickIssue(branch), path);
      }
    }
  }
  if (issue.code === 'unrecognized_keys' && issue.keys.length === 1) {
    return { path: [...path, issue.keys[0]!], message: issue.message };
  }
  return { path, message: issue.message };
}

/** An unknown key first: it is usually a typo that also explains a "missing" key beside it. */
function pickIssue(issues: readonly z.core.$ZodIssue[]): z.core.$ZodIssue {
  return issues.find((i) => i.code === 'unrecognized_keys') ?? issues[0]!;
}

function parseLayer(layer: RawLayer): LayerValues {
  const parsed = AgentConfigFileSchema.safeParse(layer.raw);
  if (!parsed.success) {
    const { path, message } = explain(pickIssue(parsed.error.issues));
    const line = layer.lineOf?.(path);
    const where = originOf(layer, path);
    const at = line === undefined ? where : { ...where, label: `${where.label}, line ${line}` };
    throw configError(at, displayPath(path), message);
  }
  const values = parsed.data;
  // The etcd fields come from the shared schema, whose defaults would fill in keys this layer
  // does not set: keep only the keys that were given.
  const rawEtcd = isPlainObject(layer.raw) ? layer.raw.etcd : undefined;
  if (values.etcd && isPlainObject(rawEtcd)) {
    const etcd = values.etcd as Record<string, unknown>;
    for (const key of Object.keys(etcd)) if (!(key in rawEtcd)) delete etcd[key];
  }
  return values;
}

function mergeValues(
  target: Record<string, unknown>,
  source: Record<string, unknown>,
  prefix = '',
): Record<string, unknown> {
  for (const [key, value] of Object.entries(source)) {
    if (value === undefined) continue;
    const path = prefix ? `${prefix}.${key}` : key;
    const current = target[key];
    if (isPlainObject(value) && !UNITS.has(path)) {
      target[key] = mergeValues(isPlainObject(current) ? current : {}, value, path);
    } else {
      target[key] = value;
    }
  }
  return target;
}

function mergeOrigins(target: Map<string, Origin>, layer: RawLayer): void {
  const paths = layer.origins.size > 0 ? [...layer.origins.keys()] : leafPaths(layer.raw);
  for (const path of paths) {
    for (const existing of [...target.keys()]) {
      if (existing.startsWith(`${path}.`)) target.delete(existing);
    }
    const origin = originOf(layer, path.split('.'));
    const line = layer.lineOf?.(path.split('.'));
    target.set(path, line === undefined ? origin : { ...origin, label: `${origin.label}:${line}` });
  }
}

const parseBool = (value: string): boolean | string => {
  const v = value.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  return value;
};

function envLayer(env: NodeJS.ProcessEnv): RawLayer {
  const raw: Record<string, unknown> = {};
  const origins = new Map<string, Origin>();
  const etcd = etcdSettingsFromEnv(env);
  for (const [field, value] of Object.entries(etcd.values)) {
    const name = etcd.sources[field as keyof EtcdSettings]!;
    setPath(raw, `etcd.${field}`, value);
    origins.set(`etcd.${field}`, { label: `environment ${name}`, where: name });
  }
  for (const setting of SETTINGS) {
    // SLUICE_CONFIG names the file; the etcd connection variables were read above.
    if (setting.path === '' || ETCD_FIELDS.some((f) => setting.path === `etcd.${f}`)) continue;
    const name = setting.env.find((n) => env[n] !== undefined && env[n] !== '');
    if (name === undefined) continue;
    const value = env[name]!;
    setPath(raw, setting.path, convert(setting.kind, value));
    origins.set(setting.path, { label: `environment ${name}`, where: name });
  }
  // locksmithd's own window variables, read as locksmithd read them: the LOCKSMITHD_ name when
  // set and not empty, else the old one; start and length together.
  const pick = (names: string[]) => names.find((n) => env[n] !== undefined && env[n] !== '');
  const start = pick(['LOCKSMITHD_REBOOT_WINDOW_START', 'REBOOT_WINDOW_START']);
  const length = pick(['LOCKSMITHD_REBOOT_WINDOW_LENGTH', 'REBOOT_WINDOW_LENGTH']);
  if (start !== undefined || length !== undefined) {
    const name = (start ?? length)!;
    const origin = { label: `environment ${name}`, where: name };
    if (start === undefined || length === undefined) {
      throw configError(
        origin,
        'windows',
        `${name} is set without ${start === undefined ? 'LOCKSMITHD_REBOOT_WINDOW_START' : 'LOCKSMITHD_REBOOT_WINDOW_LENGTH'}; set both or neither, as locksmithd required`,
      );
    }
    if (raw.windows !== undefined) {
      throw configError(
        origin,
        'windows',
        `both ${origins.get('windows')?.where} and ${name} are set; keep one of them`,
      );
    }
    raw.windows = [{ start: env[start]!, length: env[length]! }];
    origins.set('windows', origin);
  }
  return { raw, origins };
}

function convert(kind: Kind, value: unknown): unknown {
  switch (kind) {
    case 'bool':
      return typeof value === 'string' ? parseBool(value) : value;
    case 'window':
      return Array.isArray(value) ? value : [value];
    case 'endpoints':
      return (Array.isArray(value) ? value : [value]).flatMap((v) =>
        typeof v === 'string' ? splitEndpoints(v) : [v],
      );
    case 'text':
      return value;
  }
}

function flagLayer(flags: AgentFlags): RawLayer {
  const raw: Record<string, unknown> = {};
  const origins = new Map<string, Origin>();
  for (const setting of SETTINGS) {
    if (setting.path === '') continue;
    const value = flags[setting.name];
    if (value === undefined || (Array.isArray(value) && value.length === 0)) continue;
    const flag = setting.flag.split(' ')[0]!;
    setPath(raw, setting.path, convert(setting.kind, value));
    origins.set(setting.path, { label: `flag ${flag}`, where: flag });
  }
  return { raw, origins };
}

/**
 * Reads a configuration file of at most MAX_CONFIG_FILE_BYTES; never reads more than that, so a
 * huge file (or a device) costs nothing. Throws a SluiceError naming the file when it is larger.
 */
async function readCapped(path: string, label: string): Promise<string> {
  return (await readCappedBytes(path, label)).toString('utf8');
}

async function readCappedBytes(path: string, label: string): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(MAX_CONFIG_FILE_BYTES + 1);
    let length = 0;
    while (length < buffer.length) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    if (length > MAX_CONFIG_FILE_BYTES) {
      throw new SluiceError(
        'invalid-config',
        `${label}: the file is larger than ${MAX_CONFIG_FILE_BYTES / 1024} KiB; a configuration file is a few KiB`,
        path,
      );
    }
    return buffer.subarray(0, length);
  } finally {
    await handle.close();
  }
}

async function readOptional(path: string): Promise<string | undefined> {
  return (await readOptionalBytes(path))?.toString('utf8');
}

/** Reads a file of at most MAX_CONFIG_FILE_BYTES; undefined when it does not exist. */
async function readOptionalBytes(path: string): Promise<Buffer | undefined> {
  try {
    return await readCappedBytes(path, path);
  } catch (cause) {
    if (isSluiceError(cause)) throw cause;
    const code = (cause as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw new SluiceError('invalid-config', `cannot read ${path} (${code ?? cause})`, path, {
      cause,
    });
  }
}

/**
 * Reads locksmith's update.conf files as one layer, in order (a later file wins), as systemd
 * reads them for locksmithd.service. Missing files are skipped.
 */
async function updateConfLayer(
  paths: readonly string[],
  secrets: Set<string>,
): Promise<{ layer: RawLayer; warnings: string[] } | undefined> {
  const files: { path: string; content: Buffer }[] = [];
  for (const path of paths) {
    const content = await readOptionalBytes(path);
    if (content !== undefined) files.push({ path, content });
  }
  if (files.length === 0) return undefined;
  const parsed = parseUpdateConfs(files);
  if (!parsed.ok) throw parsed.error;
  const { settings, origins: lines, warnings } = parsed.value;
  addSecrets(settings.password, true, secrets);
  for (const endpoint of settings.endpoints ?? []) addSecrets(endpoint, false, secrets);
  const raw: Record<string, unknown> = {};
  const origins = new Map<string, Origin>();
  const note = (yamlPath: string, field: keyof typeof lines) => {
    const at = lines[field]!;
    origins.set(yamlPath, { label: `${at.path}:${at.line} (${at.key})`, where: at.path });
  };
  if (settings.strategy !== undefined) {
    raw.strategy = settings.strategy;
    note('strategy', 'strategy');
  }
  if (settings.windowStart !== undefined && settings.windowLength !== undefined) {
    raw.windows = [{ start: settings.windowStart, length: settings.windowLength }];
    note('windows', 'windowStart');
  }
  for (const field of [
    'endpoints',
    'cacert',
    'cert',
    'key',
    'username',
    'password',
    'group',
  ] as const) {
    if (settings[field] === undefined) continue;
    setPath(raw, `etcd.${field}`, settings[field]);
    note(`etcd.${field}`, field);
  }
  return { layer: { raw, origins }, warnings };
}

async function fileLayer(
  path: string,
  explicit: Origin | undefined,
): Promise<RawLayer | undefined> {
  const origin: Origin = { label: `config file ${path}`, where: path };
  let content: string;
  try {
    content = await readCapped(path, origin.label);
  } catch (cause) {
    if (isSluiceError(cause)) throw cause;
    const code = (cause as NodeJS.ErrnoException).code ?? String(cause);
    if (explicit === undefined && code === 'ENOENT') return undefined;
    const named = explicit ? ` (named by ${explicit.label})` : '';
    throw configError(origin, '', `cannot read it${named}: ${code}`, cause);
  }
  // Composing a document recurses once per level: refuse deep nesting before that happens.
  if (nestingBound(content) > NESTING_SCAN_LIMIT) {
    throw configError(origin, '', `the YAML is nested more than ${MAX_CONFIG_DEPTH} levels`);
  }
  const lineCounter = new LineCounter();
  const doc = parseDocument(content, { uniqueKeys: true, lineCounter });
  const problem = doc.errors[0];
  if (problem) {
    // The first line only: the rest quotes the file, which may hold the password.
    const first = problem.message.split('\n')[0]!.replace(/:$/, '');
    throw configError(origin, '', `invalid YAML: ${first}`);
  }
  let raw: unknown;
  try {
    raw = doc.toJS() ?? {};
  } catch (cause) {
    throw configError(origin, '', 'invalid YAML (too many aliases?)', cause);
  }
  if (!isPlainObject(raw)) {
    throw configError(origin, '', `expected a mapping of settings, got ${typeOf(raw)}`);
  }
  if (depthOf(raw) > MAX_CONFIG_DEPTH) {
    throw configError(origin, '', `the YAML is nested more than ${MAX_CONFIG_DEPTH} levels`);
  }
  const lineOf = (path: readonly PropertyKey[]) => {
    const offset = offsetOf(doc, path);
    return offset === undefined ? undefined : lineCounter.linePos(offset).line;
  };
  return { raw, origins: new Map(), fallback: origin, lineOf };
}

/** The lexical nesting above which a file is refused unread (see `nestingBound`). */
const NESTING_SCAN_LIMIT = 256;

/**
 * An upper bound on how deeply a YAML text nests, from its tokens alone (no recursion): flow
 * brackets open, plus, per line, twice its indentation and block indicators (`-`, `?`, `:`). A
 * block collection nests deeper only by indenting or by an indicator on its line, and at most two
 * levels share a column (a list as a mapping's value). Stops counting once past the scan limit.
 */
function nestingBound(text: string): number {
  let flow = 0;
  let indent = 0;
  let indicators = 0;
  let lineStart = true;
  let bound = 0;
  for (const token of new Lexer().lex(text)) {
    if (token === '[' || token === '{') flow++;
    else if (token === ']' || token === '}') flow = Math.max(0, flow - 1);
    else if (token === '\n' || token === '\r\n') {
      lineStart = true;
      indent = 0;
      indicators = 0;
      continue;
    } else if (token === '-' || token === '?' || token === ':') indicators++;
    else if (lineStart && /^ +$/.test(token)) indent = token.length;
    lineStart = false;
    bound = Math.max(bound, flow + 2 * (indent + indicators));
    if (bound > NESTING_SCAN_LIMIT) return bound;
  }
  return bound;
}

/** How deeply a parsed value nests mappings and lists (a scalar is 0). Iterative. */
function depthOf(value: unknown): number {
  let max = 0;
  const stack: [unknown, number][] = [[value, 0]];
  const seen = new Set<object>();
  while (stack.length > 0) {
    const [node, depth] = stack.pop()!;
    if (typeof node !== 'object' || node === null || seen.has(node)) continue;
    seen.add(node);
    max = Math.max(max, depth + 1);
    if (max > MAX_CONFIG_DEPTH) return max;
    for (const child of Object.values(node)) stack.push([child, depth + 1]);
  }
  return max;
}

/** Where a setting's key (or the nearest one above it) starts in the file, as an offset. */
function offsetOf(doc: Document, path: readonly PropertyKey[]): number | undefined {
  let node: unknown = doc.contents;
  let offset: number | undefined;
  for (const part of path) {
    const items = (node as { items?: unknown[] } | null)?.items;
    if (!Array.isArray(items)) break;
    if (typeof part === 'number') {
      node = items[part];
      const range = (node as { range?: number[] } | undefined)?.range;
      if (range) offset = range[0];
      continue;
    }
    const pair = items.find(
      (p) => String((p as { key?: { value?: unknown } }).key?.value) === String(part),
    ) as { key?: { range?: number[] }; value?: unknown } | undefined;
    if (!pair) break;
    if (pair.key?.range) offset = pair.key.range[0];
    node = pair.value;
  }
  return offset;
}

/**
 * Loads the agent configuration from defaults, update.conf, the YAML file, the environment and
 * flags (each overriding the one before; see the module comment). Throws a SluiceError of kind
 * `invalid-config` whose message names the key and where it came from; the password is never
 * part of a message.
 */
export async function loadAgentConfig(opts: LoadOptions = {}): Promise<AgentConfig> {
  const secrets = new Set<string>();
  try {
    const config = await loadLayers(opts, secrets);
    return { ...config, warnings: config.warnings.map((w) => scrub(w, secrets)) };
  } catch (error) {
    if (!isSluiceError(error)) throw error;
    // Whatever went wrong and wherever a secret was pasted, the message does not carry it. A
    // layer that failed may come before the one holding the password: look at all of them.
    await harvestSecrets(opts, secrets);
    // The cause is dropped: it may quote the same values.
    throw new SluiceError(error.kind, scrub(error.message, secrets), error.where);
  }
}

/** Best effort, never throws: the secrets in every file the configuration would be read from. */
async function harvestSecrets(opts: LoadOptions, secrets: Set<string>): Promise<void> {
  const env = opts.env ?? process.env;
  const file = opts.configFile ?? opts.flags?.config ?? (env.SLUICE_CONFIG || DEFAULT_CONFIG_FILE);
  const text = await readCapped(file, file).catch(() => undefined);
  if (text !== undefined && nestingBound(text) <= NESTING_SCAN_LIMIT) {
    try {
      collectSecrets(
        parseDocument(text, { uniqueKeys: false }).toJS({ maxAliasCount: 0 }),
        secrets,
      );
    } catch {
      // Unreadable YAML: its error message quotes nothing from the file.
    }
  }
  for (const path of opts.updateConfFiles ?? DEFAULT_UPDATE_CONF_FILES) {
    const conf = await readCapped(path, path).catch(() => undefined);
    if (conf === undefined) continue;
    const parsed = parseUpdateConfs([{ path, content: conf }]);
    if (parsed.ok) addSecrets(parsed.value.settings.password, true, secrets);
    for (const match of conf.matchAll(/PASSWORD\s*=\s*["']?([^\n"']*)/g)) {
      addSecrets(match[1], true, secrets);
    }
    addSecrets(conf, false, secrets);
  }
}

/** Keys whose values are secrets, wherever they appear in a layer. */
const SECRET_KEY = /pass(word)?|secret|token|credential/i;

/** `user:password@` in a URL, with or without a scheme, valid URL or not. */
const USERINFO = /(?:^|\/\/|\s|["'[,])([^\s/"'[\],]*)@/g;

/** Adds the secrets a value may carry: all of it when `whole`, and any URL credentials. */
function addSecrets(value: unknown, whole: boolean, secrets: Set<string>): void {
  if (typeof value !== 'string' && typeof value !== 'number') return;
  const text = String(value);
  const candidates: string[] = whole ? [text] : [];
  for (const match of text.matchAll(USERINFO)) {
    const userinfo = match[1] ?? '';
    candidates.push(userinfo);
    const colon = userinfo.indexOf(':');
    if (colon !== -1) candidates.push(userinfo.slice(colon + 1));
  }
  for (const candidate of candidates) {
    // A value that ran to the end of the file (an unclosed quote) is scrubbed line by line too,
    // and a secret with spaces word by word, so no long part of it shows either.
    const words = candidate.split(/\s+/).filter((w) => w.length >= 6);
    for (const piece of [candidate, ...candidate.split(/\r?\n/), ...words]) {
      if (piece.trim().length >= 3) secrets.add(piece.trim());
    }
  }
}

/** Collects secrets from a raw layer: values under secret-looking keys, and URL credentials. */
function collectSecrets(raw: unknown, secrets: Set<string>): void {
  const stack: [unknown, boolean][] = [[raw, false]];
  let budget = 100_000;
  while (stack.length > 0 && budget-- > 0) {
    const [node, secret] = stack.pop()!;
    if (Array.isArray(node)) {
      for (const item of node) stack.push([item, secret]);
    } else if (isPlainObject(node)) {
      for (const [key, value] of Object.entries(node)) {
        addSecrets(key, false, secrets);
        stack.push([value, secret || SECRET_KEY.test(key)]);
      }
    } else {
      addSecrets(node, secret, secrets);
    }
  }
}

/** Replaces every secret in a message, longest first. */
function scrub(text: string, secrets: ReadonlySet<string>): string {
  let out = text;
  for (const secret of [...secrets].sort((a, b) => b.length - a.length)) {
    if (out.includes(secret)) out = out.split(secret).join(REDACTED);
  }
  return out;
}

async function loadLayers(opts: LoadOptions, secrets: Set<string>): Promise<AgentConfig> {
  const env = opts.env ?? process.env;
  const flags = opts.flags ?? {};
  for (const [name, value] of Object.entries(env)) {
    addSecrets(value, SECRET_KEY.test(name), secrets);
  }
  collectSecrets(flags, secrets);

  let explicit: Origin | undefined;
  if (opts.configFile !== undefined) {
    explicit = { label: 'the caller', where: opts.configFile };
  } else if (flags.config !== undefined) {
    explicit = { label: 'flag --config', where: '--config' };
  } else if (env.SLUICE_CONFIG) {
    explicit = { label: 'environment SLUICE_CONFIG', where: 'SLUICE_CONFIG' };
  }
  const configFile = opts.configFile ?? flags.config ?? (env.SLUICE_CONFIG || DEFAULT_CONFIG_FILE);

  const layers: RawLayer[] = [];
  const warnings: string[] = [];
  const found = await updateConfLayer(opts.updateConfFiles ?? DEFAULT_UPDATE_CONF_FILES, secrets);
  if (found) {
    layers.push(found.layer);
    warnings.push(...found.warnings);
  }
  const file = await fileLayer(configFile, explicit);
  if (file) layers.push(file);
  layers.push(envLayer(env), flagLayer(flags));
  for (const layer of layers) collectSecrets(layer.raw, secrets);

  let merged: Record<string, unknown> = {};
  const origins = new Map<string, Origin>();
  for (const layer of layers) {
    const values = parseLayer(layer);
    merged = mergeValues(merged, values as Record<string, unknown>);
    mergeOrigins(origins, layer);
  }
  return resolve(merged as LayerValues, origins, opts, warnings);
}

const DEFAULT_ORIGIN: Origin = { label: 'default', where: 'default' };

async function resolve(
  m: LayerValues,
  origins: Map<string, Origin>,
  opts: LoadOptions,
  warnings: string[],
): Promise<AgentConfig> {
  const origin = (path: string): Origin => {
    const parts = path.split('.');
    for (let n = parts.length; n > 0; n--) {
      const found = origins.get(parts.slice(0, n).join('.'));
      if (found) return found;
    }
    return DEFAULT_ORIGIN;
  };
  const fail = (path: string, message: string, cause?: unknown) =>
    configError(origin(path), path, message, cause);

  // node
  let id = m.node?.id;
  if (id === undefined) {
    const file = opts.machineIdFile ?? DEFAULT_MACHINE_ID_FILE;
    const machineId = (await readOptional(file).catch(() => undefined))?.trim();
    const hint = 'set node.id in the config file, SLUICE_NODE or --node';
    if (machineId === undefined || machineId === '') {
      throw new SluiceError(
        'invalid-config',
        `node.id: not set, and ${file} is missing or empty; ${hint}`,
        file,
      );
    }
    if (!isValidName(machineId)) {
      throw new SluiceError(
        'invalid-config',
        `node.id: ${file} holds ${q(machineId.slice(0, 60))}, which is not a valid node id; ${hint}`,
        file,
      );
    }
    id = machineId;
    origins.set('node.id', { label: `file ${file}`, where: file });
  }
  const hostname = m.node?.hostname ?? opts.hostname ?? osHostname();
  const tokenFile = m.node?.tokenFile ?? defaultTokenFile(opts.env ?? process.env);

  // etcd: the shared schema decides, with each field's origin in its messages.
  const { sessionTTL, holdTTL, ...etcdInput } = m.etcd ?? {};
  const where: Record<string, string> = {};
  for (const field of ETCD_FIELDS) {
    where[field] = `${origin(`etcd.${field}`).label}: etcd.${field}`;
  }
  if (!origins.has('etcd.cert') && origins.has('etcd.key')) where.cert = where.key!;
  let etcd: EtcdSettings;
  try {
    etcd = parseEtcdSettings(etcdInput, where);
  } catch (cause) {
    if (!isSluiceError(cause)) throw cause;
    const field = ETCD_FIELDS.find((f) => cause.message.startsWith(`${where[f]}:`)) ?? 'endpoints';
    const at = field === 'cert' && !origins.has('etcd.cert') ? 'etcd.key' : `etcd.${field}`;
    throw new SluiceError('invalid-config', cause.message, origin(at).where, { cause });
  }

  // strategy: locksmith's best-effort means the lock when etcd is configured.
  const chosen = m.strategy ?? 'etcd-lock';
  const strategy: Strategy =
    chosen === 'best-effort' ? (origins.has('etcd.endpoints') ? 'etcd-lock' : 'reboot') : chosen;

  // windows: all entries form one spec, in their zone unless an entry names its own.
  const entries = m.windows ?? [];
  const needLocal =
    m.windowZone === 'local' ||
    (m.windowZone === undefined && entries.some((e) => typeof e !== 'string'));
  const zones: WindowZones = needLocal
    ? await windowZones(m.windowZone, origin('windowZone').label, () =>
        localZone({
          env: opts.env ?? process.env,
          ...(opts.localtimeFile !== undefined ? { localtimeFile: opts.localtimeFile } : {}),
          ...(opts.zoneinfoDir !== undefined ? { zoneinfoDir: opts.zoneinfoDir } : {}),
        }).catch((error: unknown) => {
          if (isSluiceError(error)) throw configError(origin('windows'), 'windows', error.message);
          throw error;
        }),
      )
    : (() => {
        // No locksmith-syntax entry: the local zone is not needed (nor read).
        const zone =
          m.windowZone === undefined
            ? { zone: 'UTC', from: 'default' }
            : { zone: m.windowZone, from: origin('windowZone').label };
        return { sluice: zone, locksmith: zone };
      })();
  if (zones.warning) warnings.push(zones.warning);
  const windows = resolveWindows(entries, zones, origin('windows'));

  // sources
  let command: AgentConfig['sources']['command'] = null;
  if (m.sources?.command) {
    const { run, interval } = m.sources.command;
    if (run === undefined) {
      throw configError(
        origin('sources.command.interval'),
        'sources.command.run',
        'is required (or set sources.command to null)',
      );
    }
    command = { run, intervalMs: interval ?? DEFAULTS.commandIntervalMs };
  }

  // metrics: loopback only unless allowed.
  const listen = m.metrics?.listen === undefined ? DEFAULTS.metricsListen : m.metrics.listen;
  const allowRemote = m.metrics?.allowRemote ?? false;
  if (listen !== null && !allowRemote) {
    const address = parseListenAddress(listen);
    if (address.ok && !isLoopback(address.value.host)) {
      throw fail(
        'metrics.listen',
        `${q(listen)} is not a loopback address; set metrics.allowRemote (SLUICE_METRICS_ALLOW_REMOTE, --metrics-allow-remote) to serve metrics to other hosts`,
      );
    }
  }

  const template = m.notify?.template ?? DEFAULT_NOTIFY.template;
  const templateProblem = template === null ? null : checkTemplate(template);
  if (templateProblem) throw fail('notify.template', templateProblem);

  return {
    node: { id, hostname, tokenFile },
    clock: { maxSkewMs: m.clock?.maxSkew ?? DEFAULTS.maxClockSkewMs },
    etcd: {
      ...etcd,
      sessionTTL: sessionTTL ?? DEFAULTS.sessionTTL,
      holdTTL: holdTTL ?? DEFAULTS.holdTTL,
    },
    strategy,
    windows,
    windowZones: zones,
    sources: {
      updateEngine: m.sources?.updateEngine ?? true,
      sentinel: m.sources?.sentinel === undefined ? DEFAULTS.sentinel : m.sources.sentinel,
      command,
      manual: m.sources?.manual ?? true,
      ...resolveOsSources(m.sources),
    },
    reboot: {
      method: m.reboot?.method ?? 'logind',
      command: m.reboot?.command ?? DEFAULTS.rebootCommand,
      softReboot: m.reboot?.softReboot ?? OS_DEFAULTS.softReboot,
      inhibitors: m.reboot?.inhibitors ?? OS_DEFAULTS.inhibitors,
      inhibitorWaitMs: m.reboot?.inhibitorWait ?? OS_DEFAULTS.inhibitorWaitMs,
      loopLimit: m.reboot?.loopLimit ?? OS_DEFAULTS.loopLimit,
      warnDelayMs: m.reboot?.warnDelay ?? 0,
      warnMessage: m.reboot?.warnMessage ?? DEFAULTS.warnMessage,
    },
    checks: {
      pre: m.checks?.pre ?? [],
      drain: m.checks?.drain ?? null,
      post: m.checks?.post ?? [],
      postDeadlineMs: m.checks?.postDeadline ?? DEFAULTS.postDeadlineMs,
      postIntervalMs: m.checks?.postInterval ?? DEFAULTS.postIntervalMs,
      releaseDelayMs: m.checks?.releaseDelay ?? 0,
    },
    dbus: { address: m.dbus?.address ?? 'system' },
    metrics: { listen, allowRemote },
    log: { level: m.log?.level ?? 'info' },
    notify: {
      webhooks: m.notify?.webhooks ?? DEFAULT_NOTIFY.webhooks,
      template,
      events: m.notify?.events ?? DEFAULT_NOTIFY.events,
      timeoutMs: m.notify?.timeout ?? DEFAULT_NOTIFY.timeoutMs,
      attempts: m.notify?.attempts ?? DEFAULT_NOTIFY.attempts,
    },
    origins: Object.fromEntries([...origins].map(([path, o]) => [path, o.label])),
    warnings,
  };
}

/** The OS sources as resolved: presets on (with their defaults) or off. */
function resolveOsSources(sources: LayerValues['sources']): OsSources {
  const preset = <E extends object>(
    value:
      | boolean
      | null
      | ({ interval?: number; path?: string; timeout?: number } & E)
      | undefined,
  ): (PresetConfig & Omit<E, 'interval' | 'path' | 'timeout'>) | null => {
    if (value === undefined || value === null || value === false) return null;
    if (value === true) return { intervalMs: OS_DEFAULTS.presetIntervalMs } as PresetConfig & E;
    const { interval, path, timeout, ...rest } = value;
    return {
      ...rest,
      intervalMs: interval ?? OS_DEFAULTS.presetIntervalMs,
      ...(path !== undefined ? { path } : {}),
      ...(timeout !== undefined ? { timeoutMs: timeout } : {}),
    } as PresetConfig & E;
  };
  return {
    rpmOstree: sources?.rpmOstree ?? false,
    bootc: preset(sources?.bootc),
    sysupdate: preset(sources?.sysupdate),
    needrestart: preset(sources?.needrestart),
    dnf: preset(sources?.dnf),
  };
}

type WindowEntry = string | { start: string; length: string };

/**
 * The zones window entries that name none are read in: `windowZone` when it is set (`local`
 * meaning the node's zone), else UTC for sluice's syntax and the node's local zone for
 * locksmith's (`{ start, length }`, update.conf, `LOCKSMITHD_REBOOT_WINDOW_*`), as locksmithd
 * read its window in `time.Local`.
 */
export interface WindowZones {
  /** The zone of sluice-syntax entries, and where that was decided. */
  sluice: { zone: string; from: string };
  /** The zone of locksmith-syntax entries, and where that was decided. */
  locksmith: { zone: string; from: string };
  /** Set when the local zone fell back to UTC by Go's rules (an unknown TZ, say). */
  warning?: string;
}

async function windowZones(
  windowZone: string | undefined,
  windowZoneFrom: string,
  local: () => Promise<LocalZone>,
): Promise<WindowZones> {
  if (windowZone !== undefined && windowZone !== 'local') {
    const set = { zone: windowZone, from: windowZoneFrom };
    return { sluice: set, locksmith: set };
  }
  const found = await local();
  const node = { zone: found.zone, from: `local zone: ${found.from}` };
  const warning = found.warning === undefined ? {} : { warning: found.warning };
  if (windowZone === 'local') {
    const set = { zone: found.zone, from: `${windowZoneFrom} (local zone: ${found.from})` };
    return { sluice: set, locksmith: set, ...warning };
  }
  return { sluice: { zone: 'UTC', from: 'default' }, locksmith: node, ...warning };
}

function resolveWindows(
  entries: readonly WindowEntry[],
  zones: WindowZones,
  origin: Origin,
): WindowSpec[] {
  const source = `${origin.label}: windows`;
  const texts = entries.filter((e): e is string => typeof e === 'string');
  if (entries.length > 1 && texts.some((t) => t.trim().toLowerCase() === 'always')) {
    throw configError(origin, 'windows', '"always" cannot be combined with other windows');
  }
  const rethrow = (error: SluiceError) => {
    const prefix = `invalid reboot window in ${source}: `;
    const why = error.message.startsWith(prefix)
      ? error.message.slice(prefix.length)
      : error.message;
    return configError(origin, 'windows', `invalid reboot window: ${why}`, error);
  };
  const all: WeeklyWindow[] = [];
  for (const text of texts) {
    // Each entry on its own, so a blank one is refused rather than skipped as a blank line.
    const spec = parseWindowSpec(text, source, zones.sluice.zone);
    if (!spec.ok) throw rethrow(spec.error);
    all.push(...spec.value.windows);
  }
  if (all.length > MAX_WINDOW_ENTRIES) {
    throw configError(origin, 'windows', `at most ${MAX_WINDOW_ENTRIES} window entries in all`);
  }
  for (const entry of entries) {
    if (typeof entry === 'string') continue;
    const window = parseLocksmithWindow(entry.start, entry.length, source, zones.locksmith.zone);
    if (!window.ok) throw rethrow(window.error);
    all.push(...window.value.windows);
  }
  return all.length === 0 ? [] : [{ windows: all, source }];
}

// ---------------------------------------------------------------------------------------------
// Helpers for callers

/**
 * Splits a `host:port` listen address (`127.0.0.1:9466`, `[::1]:9466`, `localhost:9466`,
 * `:9466` for every interface). Failures are reasons, such as `expected host:port, ...`.
 */
export function parseListenAddress(text: string): Result<{ host: string; port: number }, string> {
  const match = /^\[([^\]]+)\]:(\d{1,5})$/.exec(text) ?? /^([^:[\]\s]*):(\d{1,5})$/.exec(text);
  const host = match?.[1];
  const port = Number(match?.[2]);
  if (host === undefined || !(port <= 65535)) {
    return err(`expected host:port such as 127.0.0.1:9466 or [::1]:9466, got ${q(text)}`);
  }
  if (text.startsWith('[') && isIP(host) !== 6) {
    return err(`${q(host)} in ${q(text)} is not an IPv6 address`);
  }
  return ok({ host, port });
}

function isLoopback(host: string): boolean {
  if (host === 'localhost' || host === '::1') return true;
  return isIP(host) === 4 && host.startsWith('127.');
}

const REDACTED = '(redacted)';

function redactUrl(value: string): string {
  try {
    const url = new URL(value);
    if (url.password === '') return value;
    url.password = REDACTED;
    return url.toString();
  } catch {
    return value;
  }
}

function redactCheck(check: CheckSpec): CheckSpec {
  return check.type === 'command' ? check : { ...check, url: redactUrl(check.url) };
}

/** One resolved setting, for `sluiced --check-config`. */
export interface SettingReport {
  /** The YAML path, such as `etcd.group`. */
  key: string;
  /** The value as the agent will use it, in the YAML file's notation; secrets redacted. */
  value: string;
  /** Where it came from: `default`, `flag --group`, `environment SLUICE_GROUP`, `file:line`. */
  from: string;
}

/**
 * Every setting of a loaded configuration with where it came from, secrets redacted: what
 * `sluiced --check-config` prints. Windows are shown in canonical form, each entry with its zone,
 * and the zone's own origin is given with them.
 */
export function describeConfig(config: AgentConfig): SettingReport[] {
  const safe = redactConfig(config);
  const from = (path: string): string => {
    const parts = path.split('.');
    for (let n = parts.length; n > 0; n--) {
      const found = config.origins[parts.slice(0, n).join('.')];
      if (found) return found;
    }
    // A section given as a whole (`bootc: { interval: 2m }`) has its origin on a key inside it.
    const inside = Object.keys(config.origins).find((key) => key.startsWith(`${path}.`));
    return inside ? config.origins[inside]! : 'default';
  };
  const rows: SettingReport[] = [];
  const add = (key: string, value: unknown) => {
    if (value === undefined) return;
    const text =
      value === null ? 'off' : Array.isArray(value) ? value.join(', ') || '(none)' : String(value);
    rows.push({ key, value: text, from: from(key) });
  };
  const seconds = (n: number) => formatDuration(n * 1000);
  const { etcd } = safe;
  add('node.id', safe.node.id);
  add('node.hostname', safe.node.hostname);
  add('node.tokenFile', safe.node.tokenFile);
  add('etcd.endpoints', etcd.endpoints);
  for (const field of ['cacert', 'cert', 'key', 'username', 'password', 'passwordFile'] as const) {
    add(`etcd.${field}`, etcd[field]);
  }
  add('etcd.prefix', etcd.prefix);
  add('etcd.group', etcd.group);
  add('etcd.sessionTTL', seconds(etcd.sessionTTL));
  add('etcd.holdTTL', seconds(etcd.holdTTL));
  add('strategy', safe.strategy);
  const windows = safe.windows.flatMap((spec) => spec.windows);
  add('windows', windows.length === 0 ? 'always' : windows.map(describeWindow).join('; '));
  const zones = safe.windowZones;
  rows.push({ key: 'windowZone', value: zones.sluice.zone, from: zones.sluice.from });
  if (zones.locksmith.from !== zones.sluice.from) {
    rows.push({
      key: 'windowZone (locksmith syntax)',
      value: zones.locksmith.zone,
      from: zones.locksmith.from,
    });
  }
  add('sources.updateEngine', safe.sources.updateEngine);
  add('sources.sentinel', safe.sources.sentinel);
  add('sources.command', safe.sources.command?.run ?? null);
  if (safe.sources.command) {
    add('sources.command.interval', formatDuration(safe.sources.command.intervalMs));
  }
  add('sources.manual', safe.sources.manual);
  add('sources.rpmOstree', safe.sources.rpmOstree);
  for (const name of ['bootc', 'sysupdate', 'needrestart', 'dnf'] as const) {
    add(`sources.${name}`, describePreset(safe.sources[name]));
  }
  add('reboot.method', safe.reboot.method);
  add('reboot.command', safe.reboot.command);
  add('reboot.softReboot', safe.reboot.softReboot);
  add('reboot.inhibitors', safe.reboot.inhibitors);
  add('reboot.inhibitorWait', formatDuration(safe.reboot.inhibitorWaitMs));
  add('reboot.loopLimit', safe.reboot.loopLimit);
  add('reboot.warnDelay', formatDuration(safe.reboot.warnDelayMs));
  add('reboot.warnMessage', safe.reboot.warnMessage);
  add(
    'checks.pre',
    safe.checks.pre.map((c) => c.name),
  );
  add('checks.drain', safe.checks.drain?.name ?? null);
  add(
    'checks.post',
    safe.checks.post.map((c) => c.name),
  );
  add('checks.postDeadline', formatDuration(safe.checks.postDeadlineMs));
  add('checks.postInterval', formatDuration(safe.checks.postIntervalMs));
  add('checks.releaseDelay', formatDuration(safe.checks.releaseDelayMs));
  add('dbus.address', safe.dbus.address);
  add('metrics.listen', safe.metrics.listen);
  add('metrics.allowRemote', safe.metrics.allowRemote);
  add('clock.maxSkew', formatDuration(safe.clock.maxSkewMs));
  add('log.level', safe.log.level);
  add('notify.webhooks', safe.notify.webhooks);
  add('notify.template', safe.notify.template);
  const allEvents = NOTIFY_EVENTS.every((event) => safe.notify.events.includes(event));
  add('notify.events', allEvents ? 'all' : safe.notify.events);
  add('notify.timeout', formatDuration(safe.notify.timeoutMs));
  add('notify.attempts', safe.notify.attempts);
  return rows;
}

/** A preset source for `describeConfig`: `every 5m, path /usr/bin/bootc`, or null for off. */
function describePreset(preset: (PresetConfig & { component?: string }) | null): string | null {
  if (preset === null) return null;
  const parts = [`every ${formatDuration(preset.intervalMs)}`];
  if (preset.path !== undefined) parts.push(`path ${preset.path}`);
  if (preset.timeoutMs !== undefined) parts.push(`timeout ${formatDuration(preset.timeoutMs)}`);
  if (preset.component !== undefined) parts.push(`component ${preset.component}`);
  return parts.join(', ');
}

/**
 * A copy of the configuration that is safe to log: the etcd password and passwords inside check
 * URLs are replaced by `(redacted)`, and so are the paths of webhook URLs (Slack's and others'
 * carry their token there). Commands are kept as written.
 */
export function redactConfig(config: AgentConfig): AgentConfig {
  return {
    ...config,
    etcd: config.etcd.password === undefined ? config.etcd : { ...config.etcd, password: REDACTED },
    checks: {
      ...config.checks,
      pre: config.checks.pre.map(redactCheck),
      drain: config.checks.drain && redactCheck(config.checks.drain),
      post: config.checks.post.map(redactCheck),
    },
    notify: { ...config.notify, webhooks: config.notify.webhooks.map(redactWebhook) },
  };
}

function redactWebhook(value: string): string {
  try {
    return `${new URL(value).origin}/${REDACTED}`;
  } catch {
    return REDACTED;
  }
}
