/**
 * Helpers for callers: the listen address parser, `describeConfig` for `--check-config`, and
 * redaction for logs.
 */
import { isIP } from 'node:net';
import {
  describeWindow,
  err,
  formatBlackouts,
  formatDuration,
  ok,
  type Result,
} from '@sluice/core';
import { NOTIFY_EVENTS } from '../notify.js';
import { q } from './fields.js';
import type { AgentConfig, CheckSpec, PresetConfig } from './types.js';

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

/** True for a loopback host: 127.0.0.0/8, ::1 or localhost. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost' || host === '::1') return true;
  return isIP(host) === 4 && host.startsWith('127.');
}

/** What a secret is shown as. */
export const REDACTED = '(redacted)';

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
  add('node.domain', safe.node.domain);
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
  add('blackouts', safe.blackouts.length === 0 ? 'none' : formatBlackouts(safe.blackouts));
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
  const expected = safe.reboot.expectedSlotMs;
  add(
    'reboot.expectedSlot',
    expected === null ? 'off' : expected === 'auto' ? 'auto' : formatDuration(expected),
  );
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
