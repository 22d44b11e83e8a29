/**
 * The resolved configuration: what `loadAgentConfig` returns, its defaults, and the settings of
 * the update sources and reboot methods beyond update_engine.
 */
import type { Blackout, WindowSpec } from '@sluice/core';
import type { EtcdSettings } from '@sluice/etcd/settings';
import type { NotifySettings } from '../notify.js';
import type { RebootMethod } from '../reboot.js';
import type { WindowZones } from './load.js';

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
     * The node's failure domain (a rack, a zone): the group's `domain-max` caps the holders of
     * each domain. Null: in no domain.
     */
    domain: string | null;
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
  /**
   * The node's own blackouts (`blackouts`): dates on which it never reboots, whatever its and the
   * group's windows say. Evaluated with the windows (`windowStateAll`): the spec in `windows`
   * carries them, or a spec of its own with no windows.
   */
  blackouts: Blackout[];
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
    /**
     * How long this node's slot takes, admission to release: it is admitted only if that fits
     * before the window closes. `auto`: the median of its last slots in the group's history (no
     * check until it has one); null: no check.
     */
    expectedSlotMs: number | 'auto' | null;
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
   * (LOCKSMITHD_REBOOT_WINDOW_START)`. For diagnostics and messages. Named `origins` so that it
   * does not read like the update `sources`.
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

/** Defaults of the core settings. */
export const DEFAULTS = {
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
// Update sources and reboot methods beyond update_engine: one schema fragment each (in
// schema.ts), resolved by `resolveOsSources` (in load.ts).

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

/** Defaults of the update-source presets and reboot settings. */
export const OS_DEFAULTS = {
  presetIntervalMs: 5 * 60_000,
  softReboot: 'auto',
  inhibitors: 'wait',
  inhibitorWaitMs: 10 * 60_000,
  loopLimit: 3,
} as const;
