/**
 * sluiced's flags and environment variables: one table, which drives the command line, `--help`
 * and the settings reference in docs/sluiced.md.
 */
import { ETCD_ENV, ETCD_FLAGS, type EtcdFlags } from '@sluice/etcd/settings';
import type { Command } from 'commander';
import { ETCD_FIELDS } from './schema.js';
import { DEFAULT_CONFIG_FILE } from './types.js';

/**
 * Parsed command-line flags: every scalar setting has one. Strings are parsed like env values.
 * The etcd connection flags are the ones every sluice program shares (`EtcdFlags`).
 */
export interface AgentFlags extends Omit<EtcdFlags, 'endpoints'> {
  /** The YAML file; a missing file named here is an error. */
  config?: string;
  node?: string;
  hostname?: string;
  domain?: string;
  tokenFile?: string;
  maxClockSkew?: string;
  /** Comma-separated, or repeated. */
  endpoints?: string | string[];
  sessionTtl?: string;
  holdTtl?: string;
  strategy?: string;
  /** Window spec entries; repeatable. */
  window?: string | string[];
  windowZone?: string;
  /** Blackout specs; repeatable. */
  blackout?: string | string[];
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
  expectedSlot?: string;
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

/** How a flag or variable's text becomes a YAML value. */
export type Kind = 'text' | 'bool' | 'window' | 'endpoints';

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
  ['domain', 'node.domain', '<name>', 'failure domain (rack, zone) counted by domain-max'],
  ['tokenFile', 'node.tokenFile', '<file>', 'instance token file (/var/lib/sluice/instance)'],
  ['maxClockSkew', 'clock.maxSkew', '<duration>', "largest offset from etcd's clock (60s)"],
  ...ETCD_FLAGS.map(
    (f) => [f.name as keyof AgentFlags, `etcd.${f.field}`, f.flag.split(' ')[1]!, f.help] as const,
  ),
  ['sessionTtl', 'etcd.sessionTTL', '<duration>', 'lease TTL of a waiting node (default 30s)'],
  ['holdTtl', 'etcd.holdTTL', '<duration>', 'lease TTL of a held slot; must outlast a reboot (1h)'],
  ['strategy', 'strategy', '<strategy>', 'etcd-lock, reboot, off or best-effort (etcd-lock)'],
  ['window', 'windows', '<spec>', 'reboot window, e.g. "Mon-Fri 22:00-02:00"; repeatable'],
  ['windowZone', 'windowZone', '<zone>', 'zone of windows that name none, or local (UTC)'],
  [
    'blackout',
    'blackouts',
    '<spec>',
    'dates the node never reboots, e.g. "2026-12-24..2026-12-26"; repeatable',
  ],
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
  [
    'expectedSlot',
    'reboot.expectedSlot',
    '<duration>',
    'slot time, admission to release, that must fit before the window closes (auto: history; off)',
  ],
  ['postDeadline', 'checks.postDeadline', '<duration>', 'time for post-reboot checks (10m)'],
  ['postInterval', 'checks.postInterval', '<duration>', 'pause between post-check rounds (10s)'],
  ['releaseDelay', 'checks.releaseDelay', '<duration>', 'wait before releasing the slot (0s)'],
  ['dbusAddress', 'dbus.address', '<address>', 'system or unix:path=... (default system)'],
  ['metricsListen', 'metrics.listen', '<host:port>', 'metrics address, "off" (127.0.0.1:9466)'],
  ['metricsAllowRemote', 'metrics.allowRemote', 'bool', 'allow a non-loopback metrics address'],
  ['logLevel', 'log.level', '<level>', 'debug, info, warn or error (default info)'],
];

const kebab = (name: string): string => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/** The flags table with each row's flag, variables and kind worked out. */
export const SETTINGS: readonly Setting[] = FLAG_TABLE.map(([name, path, arg, description]) => {
  const etcdField = ETCD_FIELDS.find((f) => path === `etcd.${f}`);
  const env = etcdField
    ? ETCD_ENV[etcdField]
    : [`SLUICE_${kebab(name).replaceAll('-', '_').toUpperCase()}`];
  const isBool = arg.startsWith('bool');
  const kind: Kind = isBool
    ? 'bool'
    : path === 'windows' || path === 'blackouts'
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
