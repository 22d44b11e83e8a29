/**
 * The etcd connection flags every sluice program shares: `--endpoints`, TLS, auth and the key
 * prefix (and `--group` where a program works on one group), their environment variables, and
 * how flags and variables become validated settings. `sluicectl` and `sluice-fleetlock` both
 * declare their flags with `addEtcdOptions()` and read them with `etcdSettingsFrom()`, so the two
 * accept the same flags, variables, TLS files and passwords, with the same error messages.
 */
import { ETCD_ENV, ETCD_FLAGS, type EtcdFlags, type EtcdSettings } from '@sluice/etcd/settings';
import type { Command } from 'commander';

/** The etcd flags as commander parses them (see `addEtcdOptions`). */
export type { EtcdFlags };

/** The flag each settings field comes from, for error messages. */
const FLAGS = Object.fromEntries(ETCD_FLAGS.map((f) => [f.field, f.flag.split(' ')[0]!])) as Record<
  keyof EtcdSettings,
  string
>;

/** Accumulates `--endpoints`: repeatable, each a comma-separated list. */
function collectEndpoints(value: string, previous: string[] | undefined): string[] {
  const list = value
    .split(',')
    .map((e) => e.trim())
    .filter(Boolean);
  return [...(previous ?? []), ...list];
}

/**
 * Declares the etcd flags on `command`; with `group: false` no `--group` (a program that serves
 * every group, as sluice-fleetlock does).
 */
export function addEtcdOptions(command: Command, opts: { group?: boolean } = {}): Command {
  for (const spec of ETCD_FLAGS) {
    if (spec.field === 'group' && opts.group === false) continue;
    const help = `${spec.help} [${ETCD_ENV[spec.field].join(', ')}]`;
    if (spec.field === 'endpoints') command.option(spec.flag, help, collectEndpoints);
    else command.option(spec.flag, help);
  }
  return command;
}

/**
 * The etcd settings from flags over environment variables (SLUICE_*, LOCKSMITHCTL_*) over
 * defaults, validated with the schema the agent uses, and where each field came from (a flag or a
 * variable), for later error messages. Errors name the flag or variable.
 */
export async function etcdSettingsFrom(
  env: NodeJS.ProcessEnv,
  o: EtcdFlags,
): Promise<{ settings: EtcdSettings; where: Record<string, string> }> {
  const { etcdSettingsFromEnv, parseEtcdSettings } = await import('@sluice/etcd');
  const fromEnv = etcdSettingsFromEnv(env);
  const values: Record<string, unknown> = { ...fromEnv.values };
  const where: Record<string, string> = { ...fromEnv.sources };
  const flags: Partial<Record<keyof EtcdSettings, unknown>> = {
    endpoints: o.endpoints,
    cacert: o.cacert,
    cert: o.cert,
    key: o.key,
    username: o.user,
    password: o.password,
    passwordFile: o.passwordFile,
    prefix: o.prefix,
    group: o.group,
  };
  for (const [field, value] of Object.entries(flags) as [keyof EtcdSettings, unknown][]) {
    if (value === undefined) continue;
    values[field] = value;
    where[field] = FLAGS[field];
  }
  // A password given as a flag wins over a password file from the environment, and vice versa.
  if (o.password !== undefined && o.passwordFile === undefined) delete values.passwordFile;
  if (o.passwordFile !== undefined && o.password === undefined) delete values.password;
  return { settings: parseEtcdSettings(values, where), where };
}
