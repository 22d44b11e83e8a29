/**
 * Reading locksmith's settings from update.conf, so a Flatcar or CoreOS node keeps its reboot
 * strategy, window and etcd connection when sluiced replaces locksmithd.
 *
 * update.conf (`/etc/flatcar/update.conf`, `/etc/coreos/update.conf`) is a shell-style file of
 * `KEY=value` lines that update_engine reads too:
 *
 * ```sh
 * # /etc/flatcar/update.conf
 * GROUP=stable
 * SERVER=https://public.update.flatcar-linux.net/v1/update/
 * REBOOT_STRATEGY=etcd-lock
 * LOCKSMITHD_REBOOT_WINDOW_START="Thu 04:00"
 * LOCKSMITHD_REBOOT_WINDOW_LENGTH=1h30m
 * LOCKSMITHD_ENDPOINT=https://10.0.0.1:2379,https://10.0.0.2:2379
 * LOCKSMITHD_ETCD_CAFILE=/etc/ssl/etcd/ca.pem
 * ```
 *
 * Syntax: blank lines and lines starting with `#` are skipped; an optional `export ` prefix is
 * allowed; a value may be bare, `"double-quoted"` (with `\"`, `\\`, `\$` and `` \` `` escapes) or
 * `'single-quoted'`, and pieces may be joined (`a"b c"`); after the value only a `# comment` may
 * follow. A key set twice takes its last value, as in the shell. An empty value means unset.
 */
import { err, ok, parseLocksmithWindow, type Result, SluiceError } from '@sluice/core';
import { splitEndpoints } from '@sluice/etcd';

/** The reboot strategies locksmith knows. `best-effort` means etcd-lock if etcd is configured. */
export type LocksmithStrategy = 'etcd-lock' | 'reboot' | 'off' | 'best-effort';

const STRATEGIES: readonly LocksmithStrategy[] = ['etcd-lock', 'reboot', 'off', 'best-effort'];

/** The settings update.conf can carry, in sluice's terms. Unset keys are absent. */
export interface LocksmithSettings {
  /** From `REBOOT_STRATEGY`. */
  strategy: LocksmithStrategy;
  /** From `LOCKSMITHD_REBOOT_WINDOW_START` or `REBOOT_WINDOW_START`, e.g. `Thu 04:00`. */
  windowStart: string;
  /** From `LOCKSMITHD_REBOOT_WINDOW_LENGTH` or `REBOOT_WINDOW_LENGTH`, e.g. `1h30m`. */
  windowLength: string;
  /** From `LOCKSMITHD_ENDPOINT`, split at commas. */
  endpoints: string[];
  /** From `LOCKSMITHD_ETCD_CAFILE`. Valid on its own: TLS that only verifies the server. */
  cacert: string;
  /** From `LOCKSMITHD_ETCD_CERTFILE`. */
  cert: string;
  /** From `LOCKSMITHD_ETCD_KEYFILE`. */
  key: string;
  /** From `LOCKSMITHD_ETCD_USERNAME`. */
  username: string;
  /** From `LOCKSMITHD_ETCD_PASSWORD`. A secret: never put it in a message. */
  password: string;
  /** From `LOCKSMITHD_GROUP`. */
  group: string;
}

/** Where in the file a setting was read: its 1-based line and the key as written. */
export interface UpdateConfOrigin {
  line: number;
  key: string;
}

/** What `parseUpdateConf` found in one file. */
export interface UpdateConf {
  /** The settings the file sets. */
  settings: Partial<LocksmithSettings>;
  /** For each setting in `settings`, the line and key it came from. */
  origins: Partial<Record<keyof LocksmithSettings, UpdateConfOrigin>>;
  /** Lines that were read but ignored (unknown `LOCKSMITHD_*` and `REBOOT_*` keys), for logging. */
  warnings: string[];
}

/** Which setting each key fills. The prefixed window keys win over the unprefixed ones. */
const KEYS: Readonly<Record<string, keyof LocksmithSettings>> = {
  REBOOT_STRATEGY: 'strategy',
  LOCKSMITHD_REBOOT_WINDOW_START: 'windowStart',
  LOCKSMITHD_REBOOT_WINDOW_LENGTH: 'windowLength',
  REBOOT_WINDOW_START: 'windowStart',
  REBOOT_WINDOW_LENGTH: 'windowLength',
  LOCKSMITHD_ENDPOINT: 'endpoints',
  LOCKSMITHD_ETCD_CAFILE: 'cacert',
  LOCKSMITHD_ETCD_CERTFILE: 'cert',
  LOCKSMITHD_ETCD_KEYFILE: 'key',
  LOCKSMITHD_ETCD_USERNAME: 'username',
  LOCKSMITHD_ETCD_PASSWORD: 'password',
  LOCKSMITHD_GROUP: 'group',
};

/**
 * Parses the text of an update.conf. `path` names the file in messages. Syntax errors and invalid
 * values (an unknown strategy, a window start without a length) are SluiceErrors of kind
 * `invalid-config` whose message reads `<path>:<line>: <KEY>: <what is wrong>`; values are not
 * quoted in messages about the password. Unknown `LOCKSMITHD_*` and `REBOOT_*` keys are
 * returned as warnings; update_engine's own keys (`GROUP`, `SERVER`) and anything else are
 * ignored.
 */
export function parseUpdateConf(text: string, path: string): Result<UpdateConf> {
  const settings: Partial<LocksmithSettings> = {};
  const origins: UpdateConf['origins'] = {};
  const warnings: string[] = [];
  const fail = (line: number, why: string) =>
    err(new SluiceError('invalid-config', `${path}:${line}: ${why}`, path));

  const lines = text.split(/\r?\n/);
  for (let index = 0; index < lines.length; index++) {
    const number = index + 1;
    const line = lines[index]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    const assignment = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!assignment) {
      return fail(number, 'expected KEY=value (a shell variable assignment)');
    }
    const [, key = '', rawValue = ''] = assignment;
    const value = shellWord(rawValue);
    if (!value.ok) return fail(number, `${key}: ${value.error}`);

    const field = KEYS[key];
    if (field === undefined) {
      // GROUP, SERVER and the like belong to update_engine: the file is not ours alone.
      if (/^(LOCKSMITHD_|REBOOT_)/.test(key)) {
        warnings.push(`${path}:${number}: ignoring unknown key ${key}`);
      }
      continue;
    }
    // The LOCKSMITHD_ window keys win over the unprefixed ones, whatever their order.
    const previous = origins[field];
    if (previous?.key.startsWith('LOCKSMITHD_') && !key.startsWith('LOCKSMITHD_')) continue;
    if (value.value === '') {
      delete settings[field];
      delete origins[field];
      continue;
    }
    if (field === 'strategy') {
      const strategy = STRATEGIES.find((s) => s === value.value);
      if (strategy === undefined) {
        return fail(
          number,
          `${key}: unknown strategy ${JSON.stringify(value.value)} (want etcd-lock, reboot, off or best-effort)`,
        );
      }
      settings.strategy = strategy;
    } else if (field === 'endpoints') {
      const endpoints = splitEndpoints(value.value);
      if (endpoints.length === 0) return fail(number, `${key}: no endpoint in the list`);
      settings.endpoints = endpoints;
    } else {
      settings[field] = value.value;
    }
    origins[field] = { line: number, key };
  }

  const start = origins.windowStart;
  const length = origins.windowLength;
  if (start !== undefined || length !== undefined) {
    const at = (start ?? length)!;
    const source = `${path}:${at.line}`;
    const window = parseLocksmithWindow(
      settings.windowStart ?? '',
      settings.windowLength ?? '',
      source,
    );
    if (!window.ok) {
      const prefix = `invalid reboot window in ${source}: `;
      const why = window.error.message.startsWith(prefix)
        ? window.error.message.slice(prefix.length)
        : window.error.message;
      return fail(at.line, `${at.key}: invalid reboot window: ${why}`);
    }
  }
  return ok({ settings, origins, warnings });
}

/**
 * Reads the value part of `KEY=value` the way a shell reads one word: bare characters, quoted
 * pieces, and an optional trailing comment. Reasons never quote the value, which may be a secret.
 */
function shellWord(text: string): Result<string, string> {
  let out = '';
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c === ' ' || c === '\t') {
      const rest = text.slice(i).trimStart();
      if (rest === '' || rest.startsWith('#')) return ok(out);
      return err('unexpected text after the value (quote values that contain spaces)');
    }
    if (c === "'") {
      const end = text.indexOf("'", i + 1);
      if (end === -1) return err('unterminated single quote');
      out += text.slice(i + 1, end);
      i = end + 1;
    } else if (c === '"') {
      i++;
      let closed = false;
      while (i < text.length) {
        const d = text[i]!;
        if (d === '"') {
          closed = true;
          i++;
          break;
        }
        if (d === '\\' && i + 1 < text.length && '"\\$`'.includes(text[i + 1]!)) {
          out += text[i + 1];
          i += 2;
        } else {
          out += d;
          i++;
        }
      }
      if (!closed) return err('unterminated double quote');
    } else if (c === '\\' && i + 1 < text.length) {
      out += text[i + 1];
      i += 2;
    } else {
      out += c;
      i++;
    }
  }
  return ok(out);
}
