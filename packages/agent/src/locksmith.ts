/**
 * Reading locksmith's settings from update.conf, so a Flatcar or CoreOS node keeps its reboot
 * strategy, window and etcd connection when sluiced replaces locksmithd.
 *
 * locksmithd never parsed update.conf itself: its unit reads the files with systemd's
 * `EnvironmentFile=` (`/usr/share/flatcar/update.conf`, then `/etc/flatcar/update.conf`, a
 * later file winning), and locksmithd reads the environment. So this module reads them exactly
 * as systemd does (systemd.exec(5), "EnvironmentFile="), then picks the settings as locksmithd
 * does:
 *
 * ```sh
 * # /etc/flatcar/update.conf
 * GROUP=stable
 * SERVER=https://public.update.flatcar-linux.net/v1/update/
 * REBOOT_STRATEGY=etcd-lock
 * LOCKSMITHD_REBOOT_WINDOW_START=Thu 04:00
 * LOCKSMITHD_REBOOT_WINDOW_LENGTH=1h30m
 * LOCKSMITHD_ENDPOINT=https://10.0.0.1:2379,https://10.0.0.2:2379
 * LOCKSMITHD_ETCD_CAFILE=/etc/ssl/etcd/ca.pem
 * ```
 *
 * The syntax, as systemd reads it: one `KEY=VALUE` per line; white space before the key, around
 * `=` and at the end of an unquoted value is dropped; an unquoted value keeps inner spaces
 * (`Thu 04:00` needs no quotes) and a `#` in it is literal; `'single'` quotes are literal,
 * `"double"` quotes unescape `\"`, `\\`, `` \` `` and `\$`; quoted and unquoted pieces join; a
 * backslash at the end of a line continues it; lines starting with `#` or `;` are comments. A
 * line systemd skips (no `=`, or a name that is not a valid variable name, such as `export X=1`)
 * is skipped with a warning naming file and line; the agent goes on, as locksmithd did. A file
 * that is not valid UTF-8 is refused: systemd would have skipped all of it.
 *
 * Then as locksmithd: an empty value means unset, `LOCKSMITHD_REBOOT_WINDOW_*` wins over
 * `REBOOT_WINDOW_*` when set, and start and length must be given together.
 */
import { err, ok, parseLocksmithWindow, type Result, SluiceError } from '@sluice/core';
import { splitEndpoints } from '@sluice/etcd/settings';

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

/** Where a setting was read: the file, its 1-based line and the key as written. */
export interface UpdateConfOrigin {
  path: string;
  line: number;
  key: string;
}

/** What `parseUpdateConf` found. */
export interface UpdateConf {
  /** The settings the files set. */
  settings: Partial<LocksmithSettings>;
  /** For each setting in `settings`, the file, line and key it came from. */
  origins: Partial<Record<keyof LocksmithSettings, UpdateConfOrigin>>;
  /**
   * Lines that were skipped (as systemd skips them) and unknown `LOCKSMITHD_*` and `REBOOT_*`
   * keys, each naming file and line, for logging. They never quote a value.
   */
  warnings: string[];
}

/** The environment variables locksmithd reads, by the setting each fills. */
const VARIABLES: Readonly<Record<keyof LocksmithSettings, readonly string[]>> = {
  strategy: ['REBOOT_STRATEGY'],
  // locksmithd: the LOCKSMITHD_ name when it is set and not empty, else the old name.
  windowStart: ['LOCKSMITHD_REBOOT_WINDOW_START', 'REBOOT_WINDOW_START'],
  windowLength: ['LOCKSMITHD_REBOOT_WINDOW_LENGTH', 'REBOOT_WINDOW_LENGTH'],
  endpoints: ['LOCKSMITHD_ENDPOINT'],
  cacert: ['LOCKSMITHD_ETCD_CAFILE'],
  cert: ['LOCKSMITHD_ETCD_CERTFILE'],
  key: ['LOCKSMITHD_ETCD_KEYFILE'],
  username: ['LOCKSMITHD_ETCD_USERNAME'],
  password: ['LOCKSMITHD_ETCD_PASSWORD'],
  group: ['LOCKSMITHD_GROUP'],
};

const KNOWN = new Set(Object.values(VARIABLES).flat());

// ---------------------------------------------------------------------------------------------
// systemd's EnvironmentFile syntax

/** One `KEY=VALUE` assignment read from an environment file. */
export interface EnvAssignment {
  key: string;
  value: string;
  /** The 1-based line the assignment starts on. */
  line: number;
}

/** What `parseEnvironmentFile` read. */
export interface EnvironmentFile {
  /** Every valid assignment in file order; a later one of the same key wins. */
  assignments: EnvAssignment[];
  /** The lines systemd skips, by file and line, never quoting them. */
  warnings: string[];
  /** Set when systemd would not load the file at all (invalid UTF-8): the file must be fixed. */
  error?: string;
}

/** A valid environment variable name, as systemd checks it (`env_name_is_valid`). */
const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Reads an environment file as systemd's `EnvironmentFile=` does (see the module comment).
 * `content` is the file's bytes, or its text when already decoded. `path` names the file in
 * warnings. Never throws.
 */
export function parseEnvironmentFile(content: string | Buffer, path: string): EnvironmentFile {
  // Bytes are parsed as latin1 (one character per byte; the syntax is all ASCII), and each key
  // and value is decoded as UTF-8 afterwards, so invalid UTF-8 is found where it is.
  const bytes = typeof content !== 'string';
  const text = bytes ? content.toString('latin1') : content;
  const assignments: EnvAssignment[] = [];
  const warnings: string[] = [];
  let error: string | undefined;
  const warn = (line: number, why: string) => warnings.push(`${path}:${line}: ${why}`);

  type State =
    | 'pre-key'
    | 'key'
    | 'pre-value'
    | 'value'
    | 'value-escape'
    | 'single'
    | 'double'
    | 'double-escape'
    | 'comment'
    | 'comment-escape';
  let state: State = 'pre-key';
  let line = 1;
  let startLine = 1;
  let key = '';
  /** Where the key's trailing white space starts, or -1. */
  let keyWhite = -1;
  let value = '';
  /** Where an unquoted value's trailing white space starts, or -1. */
  let valueWhite = -1;
  /** Where the quote that is still open began, for the warning at the end of the file. */
  let quoteLine = 0;

  const decode = (s: string): string | null => {
    if (!bytes) return s;
    try {
      return utf8.decode(Buffer.from(s, 'latin1'));
    } catch {
      return null;
    }
  };
  const push = () => {
    const rawKey = keyWhite === -1 ? key : key.slice(0, keyWhite);
    const name = decode(rawKey);
    const decoded = decode(value);
    if (name === null || !NAME.test(name)) {
      const shell = /^export[ \t]/.test(rawKey)
        ? '; "export" is shell syntax, not an EnvironmentFile\'s'
        : '';
      warn(
        startLine,
        `ignoring an assignment to an invalid variable name (systemd ignores it too${shell})`,
      );
    } else if (decoded === null) {
      error ??= `${path}:${startLine}: ${name}: the value is not valid UTF-8, so systemd would not load this file at all; fix or remove the line`;
    } else {
      assignments.push({ key: name, value: decoded, line: startLine });
    }
    key = '';
    keyWhite = -1;
    value = '';
    valueWhite = -1;
  };
  const isSpace = (c: string) => c === ' ' || c === '\t' || c === '\n' || c === '\r';

  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    // "\r\n" is one line end; a lone "\r" is one too, as systemd counts it.
    const newline = c === '\n' || c === '\r';
    let lineEnd = c === '\n' || (c === '\r' && text[i + 1] !== '\n');
    switch (state) {
      case 'pre-key':
        if (c === '#' || c === ';') state = 'comment';
        else if (!isSpace(c)) {
          state = 'key';
          startLine = line;
          key = c;
          keyWhite = -1;
        }
        break;
      case 'key':
        if (newline) {
          warn(startLine, 'ignoring a line without "=" (systemd ignores it too)');
          key = '';
          state = 'pre-key';
        } else if (c === '=') {
          state = 'pre-value';
          valueWhite = -1;
        } else {
          if (!isSpace(c)) keyWhite = -1;
          else if (keyWhite === -1) keyWhite = key.length;
          key += c;
        }
        break;
      case 'pre-value':
        if (newline) {
          push();
          state = 'pre-key';
        } else if (c === "'") {
          state = 'single';
          quoteLine = line;
        } else if (c === '"') {
          state = 'double';
          quoteLine = line;
        } else if (c === '\\') state = 'value-escape';
        else if (!isSpace(c)) {
          state = 'value';
          value += c;
        }
        break;
      case 'value':
        if (newline) {
          if (valueWhite !== -1) value = value.slice(0, valueWhite);
          push();
          state = 'pre-key';
        } else if (c === '\\') {
          state = 'value-escape';
          valueWhite = -1;
        } else {
          if (!isSpace(c)) valueWhite = -1;
          else if (valueWhite === -1) valueWhite = value.length;
          value += c;
        }
        break;
      case 'value-escape':
        state = 'value';
        // A backslash-newline continues the line; any other character is taken as it is.
        if (!newline) value += c;
        else if (c === '\r' && text[i + 1] === '\n') {
          i++;
          lineEnd = true;
        }
        break;
      case 'single':
        if (c === "'") state = 'pre-value';
        else value += c;
        break;
      case 'double':
        if (c === '"') state = 'pre-value';
        else if (c === '\\') state = 'double-escape';
        else value += c;
        break;
      case 'double-escape':
        state = 'double';
        if ('"\\`$'.includes(c)) value += c;
        else if (c === '\r' && text[i + 1] === '\n') {
          i++;
          lineEnd = true;
        } else if (c !== '\n') value += `\\${c}`;
        break;
      case 'comment':
        if (c === '\\') state = 'comment-escape';
        else if (newline) state = 'pre-key';
        break;
      case 'comment-escape':
        // Since systemd 254 a backslash at the end of a comment does not continue it.
        state = newline ? 'pre-key' : 'comment';
        break;
    }
    if (lineEnd) line++;
  }
  switch (state) {
    case 'key':
      warn(startLine, 'ignoring a line without "=" (systemd ignores it too)');
      break;
    case 'value':
      if (valueWhite !== -1) value = value.slice(0, valueWhite);
      push();
      break;
    case 'single':
    case 'double':
    case 'double-escape': {
      const name = keyWhite === -1 ? key : key.slice(0, keyWhite);
      const shown = NAME.test(name) ? `${name}'s value` : 'a value';
      warn(
        quoteLine,
        `the quote opened in ${shown} is never closed: the value runs to the end of the file (systemd reads it the same way)`,
      );
      push();
      break;
    }
    case 'pre-value':
    case 'value-escape':
      push();
      break;
    default:
      break;
  }
  return { assignments, warnings, ...(error !== undefined ? { error } : {}) };
}

// ---------------------------------------------------------------------------------------------
// locksmithd's settings

/**
 * Reads one update.conf. See `parseUpdateConfs` for several files read in order, as
 * locksmithd.service reads them.
 */
export function parseUpdateConf(content: string | Buffer, path: string): Result<UpdateConf> {
  return parseUpdateConfs([{ path, content }]);
}

/**
 * Reads update.conf files in order (a later file's assignment wins, as with several
 * `EnvironmentFile=` lines) and picks locksmithd's settings from the result. Invalid values (an
 * unknown strategy, a window start without a length) are SluiceErrors of kind `invalid-config`
 * whose message reads `<path>:<line>: <KEY>: <what is wrong>`; values are not quoted in
 * messages about the password. Skipped lines and unknown `LOCKSMITHD_*` and `REBOOT_*` keys are
 * returned as warnings; update_engine's own keys (`GROUP`, `SERVER`) and anything else are
 * ignored.
 */
export function parseUpdateConfs(
  files: readonly { path: string; content: string | Buffer }[],
): Result<UpdateConf> {
  const environment = new Map<string, { value: string; origin: UpdateConfOrigin }>();
  const warnings: string[] = [];
  for (const { path, content } of files) {
    const file = parseEnvironmentFile(content, path);
    if (file.error !== undefined) {
      return err(new SluiceError('invalid-config', file.error, path));
    }
    warnings.push(...file.warnings);
    for (const { key, value, line } of file.assignments) {
      environment.set(key, { value, origin: { path, line, key } });
      if (!KNOWN.has(key) && /^(LOCKSMITHD_|REBOOT_)/.test(key)) {
        warnings.push(`${path}:${line}: ignoring unknown key ${key}`);
      }
    }
  }

  const settings: Partial<LocksmithSettings> = {};
  const origins: UpdateConf['origins'] = {};
  const fail = (origin: UpdateConfOrigin, why: string) =>
    err(
      new SluiceError(
        'invalid-config',
        `${origin.path}:${origin.line}: ${origin.key}: ${why}`,
        origin.path,
      ),
    );
  for (const field of Object.keys(VARIABLES) as (keyof LocksmithSettings)[]) {
    // As locksmithd reads the environment: an empty value is the same as none.
    const found = VARIABLES[field]
      .map((name) => environment.get(name))
      .find((v) => v !== undefined && v.value !== '');
    if (found === undefined) continue;
    const { value, origin } = found;
    if (field === 'strategy') {
      const strategy = STRATEGIES.find((s) => s === value);
      if (strategy === undefined) {
        const shown = JSON.stringify(value.length > 40 ? `${value.slice(0, 39)}…` : value);
        return fail(
          origin,
          `unknown strategy ${shown} (want etcd-lock, reboot, off or best-effort)`,
        );
      }
      settings.strategy = strategy;
    } else if (field === 'endpoints') {
      const endpoints = splitEndpoints(value);
      if (endpoints.length === 0) return fail(origin, 'no endpoint in the list');
      settings.endpoints = endpoints;
    } else {
      settings[field] = value;
    }
    origins[field] = origin;
  }

  const start = origins.windowStart;
  const length = origins.windowLength;
  if (start !== undefined || length !== undefined) {
    const at = (start ?? length)!;
    const source = `${at.path}:${at.line}`;
    // The syntax only: the zone is decided where the window is used (the node's local zone).
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
      return fail(at, `invalid reboot window: ${why}`);
    }
  }
  return ok({ settings, origins, warnings });
}
