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

/**
 * What is wrong with an etcd endpoint, or null when it is usable: an `http://` or `https://` URL
 * with a host and nothing after the port, or `host:port` without a scheme (as etcdctl accepts it;
 * the client picks http or https from the TLS settings). User and password belong in the
 * settings, not the URL; a URL carrying them is refused without echoing it, and a message quotes
 * no more of an endpoint than its scheme and authority.
 */
export function endpointProblem(endpoint: string): string | null {
  const text = endpoint.trim();
  const expected = 'expected http://HOST:PORT or https://HOST:PORT (or HOST:PORT)';
  // Anything before an "@" in the authority is a user and password: never echoed, and refused
  // first, whether or not the rest is a valid URL.
  if (CREDENTIALS.test(text)) {
    return 'an endpoint URL must not carry a user or password: set the user and a password file instead (--user and --password-file, or etcd.username and etcd.passwordFile)';
  }
  // A path, query or fragment may carry a token (`?password=…`): only the scheme and authority
  // are ever quoted, cut to 60 characters.
  const authority = /^(?:[^:/?#]*:\/\/)?[^/?#]*/.exec(text)?.[0] ?? '';
  const head = authority.length < text.length ? `${authority}/…` : authority;
  const shown = JSON.stringify(head.length > 60 ? `${head.slice(0, 59)}…` : head);
  const scheme = /^([^:/?#]*):\/\//.exec(text)?.[1];
  if (scheme !== undefined && scheme !== 'http' && scheme !== 'https') {
    if (scheme === '') return `${shown} has no scheme before "://"; ${expected}`;
    if (/^https?$/i.test(scheme)) return `${shown}: write the scheme in lower case; ${expected}`;
    return `${shown} is not an http or https URL; ${expected}`;
  }
  let url: URL;
  try {
    url = new URL(scheme === undefined ? `http://${text}` : text);
  } catch {
    return `${shown} is not a valid URL; ${expected}`;
  }
  if (url.username || url.password) {
    return 'an endpoint URL must not carry a user or password: set the user and a password file instead (--user and --password-file, or etcd.username and etcd.passwordFile)';
  }
  if (!url.hostname) return `${shown} has no host; ${expected}`;
  if (url.pathname !== '/' || url.search || url.hash) {
    return `${shown} has a path or query; etcd endpoints are only a scheme, host and port: ${expected}`;
  }
  return null;
}

/** A user (and password) in an endpoint: `user:pw@host`, with or without a scheme. */
const CREDENTIALS = /^(?:[^:/]*:\/\/)?[^/\s]*@/;

/** One endpoint, checked with `endpointProblem()`. */
const EndpointSchema = z.string().superRefine((endpoint, ctx) => {
  const problem = endpointProblem(endpoint);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

/** etcd connection settings as written in a config file, env vars or flags. */
export const EtcdSettingsSchema = z
  .object({
    endpoints: z.array(EndpointSchema).min(1).default([DEFAULT_ENDPOINT]),
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
  .superRefine((s, ctx) => {
    if (Boolean(s.cert) === Boolean(s.key)) return;
    // Name the one that was given: that is the setting the user wrote.
    ctx.addIssue({
      code: 'custom',
      message: 'cert and key must be given together for mutual TLS',
      path: [s.cert ? 'cert' : 'key'],
    });
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

/** One etcd connection flag: the settings field it sets, its name, its argument and its help. */
export interface EtcdFlagSpec {
  field: keyof EtcdSettings;
  /** The option's name in camelCase, as commander reports it (`passwordFile`). */
  name: string;
  /** The flag with its argument, as commander declares it: `--password-file <file>`. */
  flag: string;
  help: string;
}

/** The etcd flags as commander parses them: each `ETCD_FLAGS` entry's `name`. */
export interface EtcdFlags {
  endpoints?: string[];
  cacert?: string;
  cert?: string;
  key?: string;
  user?: string;
  password?: string;
  passwordFile?: string;
  prefix?: string;
  group?: string;
}

/**
 * The etcd connection flags every sluice program shares, in the order `--help` lists them:
 * sluiced declares them in its settings table, `sluicectl` and `sluice-fleetlock` with
 * `addEtcdOptions`. Their environment variables are `ETCD_ENV`'s.
 */
export const ETCD_FLAGS: readonly EtcdFlagSpec[] = [
  {
    field: 'endpoints',
    name: 'endpoints',
    flag: '--endpoints <urls>',
    help: 'etcd endpoints, comma-separated',
  },
  {
    field: 'cacert',
    name: 'cacert',
    flag: '--cacert <file>',
    help: 'CA bundle that signed the etcd server certificate',
  },
  { field: 'cert', name: 'cert', flag: '--cert <file>', help: 'client certificate for mutual TLS' },
  { field: 'key', name: 'key', flag: '--key <file>', help: 'client key for mutual TLS' },
  { field: 'username', name: 'user', flag: '--user <name>', help: 'etcd user name' },
  {
    field: 'password',
    name: 'password',
    flag: '--password <password>',
    help: 'etcd password (prefer --password-file)',
  },
  {
    field: 'passwordFile',
    name: 'passwordFile',
    flag: '--password-file <file>',
    help: 'file holding the etcd password',
  },
  {
    field: 'prefix',
    name: 'prefix',
    flag: '--prefix <prefix>',
    help: 'etcd key prefix (default /sluice/v1/)',
  },
  {
    field: 'group',
    name: 'group',
    flag: '--group <group>',
    help: 'reboot group (default "default")',
  },
];

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

/** What each TLS file must hold, and how to convert a DER file into it. */
const PEM_FILES = {
  cacert: { what: 'a PEM CA certificate bundle', block: 'CERTIFICATE', tool: 'x509' },
  cert: { what: 'a PEM client certificate', block: 'CERTIFICATE', tool: 'x509' },
  key: { what: 'a PEM private key', block: 'PRIVATE KEY', tool: 'pkey' },
} as const;

/**
 * Checks that the TLS files are readable PEM, so a wrong file is a configuration error naming the
 * file and the setting, instead of a TLS failure at the first etcd call.
 */
async function checkPemFiles(
  settings: EtcdSettings,
  where: Partial<Record<string, string>>,
): Promise<void> {
  for (const field of ['cacert', 'cert', 'key'] as const) {
    const path = settings[field];
    if (!path) continue;
    const source = where[field] ?? `etcd.${field}`;
    const { what, block, tool } = PEM_FILES[field];
    let text: string;
    try {
      text = await readFile(path, 'latin1');
    } catch (cause) {
      const code = (cause as NodeJS.ErrnoException).code ?? 'unreadable';
      throw new SluiceError('invalid-config', `${source}: cannot read ${path} (${code})`, source, {
        cause,
      });
    }
    // "BEGIN PRIVATE KEY", "BEGIN RSA PRIVATE KEY", "BEGIN EC PRIVATE KEY", ...
    const begin = new RegExp(`-----BEGIN (?:[A-Z0-9]+ )*${block}-----`);
    if (!begin.test(text)) {
      throw new SluiceError(
        'invalid-config',
        `${source}: ${path} is not ${what} (no "-----BEGIN ${block}-----" line); a DER file converts with: openssl ${tool} -inform der -in ${path} -out ${path}.pem`,
        source,
      );
    }
  }
}

/**
 * Turns settings into client options: checks that the TLS files are PEM and reads the password
 * file if one is given. `where` maps a field to where it came from, as for parseEtcdSettings().
 */
export async function connectionOptions(
  settings: EtcdSettings,
  where: Partial<Record<string, string>> = {},
): Promise<EtcdConnectionOptions> {
  await checkPemFiles(settings, where);
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
