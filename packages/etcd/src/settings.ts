/**
 * The etcd connection settings shared by `sluiced` and `sluicectl`: one schema, the same
 * environment variables, and the same error messages. Secrets (the password) are read from a
 * file or the environment and are never logged: `redactSettings()` gives a loggable copy.
 */
import { readFile } from 'node:fs/promises';
import { DEFAULT_GROUP, DEFAULT_PREFIX, isValidName, SluiceError } from '@sluice/core';
import { z } from 'zod';
import type { EtcdConnectionOptions } from './client.js';

/** The default endpoint: a local etcd. */
export const DEFAULT_ENDPOINT = 'http://127.0.0.1:2379';

/** etcd connection settings as written in a config file, env vars or flags. */
export const EtcdSettingsSchema = z
  .object({
    endpoints: z.array(z.string().min(1)).min(1).default([DEFAULT_ENDPOINT]),
    cacert: z.string().min(1).optional(),
    cert: z.string().min(1).optional(),
    key: z.string().min(1).optional(),
    username: z.string().min(1).optional(),
    password: z.string().optional(),
    passwordFile: z.string().min(1).optional(),
    prefix: z
      .string()
      .regex(/^\/[^\s]*$/, 'must start with / and contain no spaces')
      .default(DEFAULT_PREFIX),
    group: z
      .string()
      .refine(isValidName, 'must be letters, digits, . _ : @ -')
      .default(DEFAULT_GROUP),
  })
  .strict()
  .refine((s) => Boolean(s.cert) === Boolean(s.key), {
    message: 'cert and key must be given together for mutual TLS',
    path: ['cert'],
  });

/** Parsed etcd settings. */
export type EtcdSettings = z.infer<typeof EtcdSettingsSchema>;

/** Splits a comma-separated endpoint list, as etcdctl and locksmith accept it. */
export function splitEndpoints(text: string): string[] {
  return text
    .split(',')
    .map((e) => e.trim())
    .filter(Boolean);
}

/**
 * Environment variables for the etcd settings, by field. `SLUICE_*` first; the `LOCKSMITHCTL_*`
 * and `LOCKSMITHD_*` names are accepted so locksmith users keep their environment.
 */
export const ETCD_ENV: Record<Exclude<keyof EtcdSettings, 'endpoints'> | 'endpoints', string[]> = {
  endpoints: ['SLUICE_ENDPOINTS', 'LOCKSMITHCTL_ENDPOINT', 'LOCKSMITHD_ENDPOINT'],
  cacert: ['SLUICE_CACERT', 'LOCKSMITHCTL_ETCD_CAFILE', 'LOCKSMITHD_ETCD_CAFILE'],
  cert: ['SLUICE_CERT', 'LOCKSMITHCTL_ETCD_CERTFILE', 'LOCKSMITHD_ETCD_CERTFILE'],
  key: ['SLUICE_KEY', 'LOCKSMITHCTL_ETCD_KEYFILE', 'LOCKSMITHD_ETCD_KEYFILE'],
  username: ['SLUICE_USERNAME', 'LOCKSMITHCTL_ETCD_USERNAME', 'LOCKSMITHD_ETCD_USERNAME'],
  password: ['SLUICE_PASSWORD', 'LOCKSMITHCTL_ETCD_PASSWORD', 'LOCKSMITHD_ETCD_PASSWORD'],
  passwordFile: ['SLUICE_PASSWORD_FILE'],
  prefix: ['SLUICE_PREFIX'],
  group: ['SLUICE_GROUP', 'LOCKSMITHCTL_GROUP', 'LOCKSMITHD_GROUP'],
};

/**
 * Reads etcd settings from environment variables (see ETCD_ENV). Returns only the fields that are
 * set, with the variable each came from, so errors can name it.
 */
export function etcdSettingsFromEnv(env: NodeJS.ProcessEnv): {
  values: Partial<Record<keyof EtcdSettings, unknown>>;
  sources: Partial<Record<keyof EtcdSettings, string>>;
} {
  const values: Partial<Record<keyof EtcdSettings, unknown>> = {};
  const sources: Partial<Record<keyof EtcdSettings, string>> = {};
  for (const [field, names] of Object.entries(ETCD_ENV) as [keyof EtcdSettings, string[]][]) {
    const name = names.find((n) => env[n] !== undefined && env[n] !== '');
    if (!name) continue;
    const raw = env[name]!;
    values[field] = field === 'endpoints' ? splitEndpoints(raw) : raw;
    sources[field] = name;
  }
  return { values, sources };
}

/**
 * Validates settings, naming the field (and where it came from) in the error. `where` maps a
 * field to its source, e.g. `{ group: 'SLUICE_GROUP' }` or `{ group: '--group' }`.
 */
export function parseEtcdSettings(
  input: unknown,
  where: Partial<Record<string, string>> = {},
): EtcdSettings {
  const parsed = EtcdSettingsSchema.safeParse(input);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const field = String(issue.path[0] ?? 'etcd');
  const source = where[field] ?? `etcd.${field}`;
  throw new SluiceError('invalid-config', `${source}: ${issue.message}`, source);
}

/** Turns settings into client options, reading the password file if one is given. */
export async function connectionOptions(settings: EtcdSettings): Promise<EtcdConnectionOptions> {
  let password = settings.password;
  if (settings.passwordFile) {
    try {
      password = (await readFile(settings.passwordFile, 'utf8')).replace(/\r?\n$/, '');
    } catch (cause) {
      const code = (cause as NodeJS.ErrnoException).code ?? 'unreadable';
      throw new SluiceError(
        'invalid-config',
        `cannot read the etcd password file ${settings.passwordFile} (${code})`,
        settings.passwordFile,
        { cause },
      );
    }
  }
  return {
    endpoints: settings.endpoints,
    caFile: settings.cacert,
    certFile: settings.cert,
    keyFile: settings.key,
    username: settings.username,
    password,
  };
}

/** A copy of the settings safe to log: the password is replaced. */
export function redactSettings(settings: EtcdSettings): EtcdSettings {
  return settings.password === undefined ? settings : { ...settings, password: '(redacted)' };
}
