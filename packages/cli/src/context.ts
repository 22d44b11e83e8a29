/**
 * What every command shares: where output goes, how errors become exit codes, the etcd settings
 * from flags and environment, the connection (opened on first use, closed at the end), and who
 * the operator and this node are.
 */
import { readFile } from 'node:fs/promises';
import { hostname, userInfo } from 'node:os';
import {
  DEFAULT_GROUP,
  GroupKeys,
  isSluiceError,
  isValidName,
  quoteValue,
  SluiceError,
} from '@sluice/core';
import type { connectEtcd, EtcdSettings } from '@sluice/etcd';
import { type EtcdFlags, etcdSettingsFrom } from './etcd-options.js';

/** Where the CLI reads its environment and writes its output. `main.ts` passes the process's. */
export interface CliIO {
  /** Standard output; `isTTY` makes `watch` redraw in place. */
  stdout: { write(text: string): unknown; isTTY?: boolean };
  /** Standard error: progress, warnings and error messages. */
  stderr: { write(text: string): unknown };
  /** Environment variables (SLUICE_*, LOCKSMITHCTL_*, SLUICE_NODE). */
  env: NodeJS.ProcessEnv;
  /** Aborted on SIGINT/SIGTERM: long-running commands (`watch`, `lock --wait`) stop cleanly. */
  signal?: AbortSignal;
  /**
   * Asks the person at the terminal a yes/no question; absent when there is nobody to ask (no
   * terminal), and then a command that needs a confirmation wants its flag (`--yes`) instead.
   */
  confirm?: (question: string) => Promise<boolean>;
}

/** Exit codes, the same for every command. */
export const EXIT = {
  /** Done. */
  ok: 0,
  /** Refused: the group is full, the node holds nothing, a race was lost, a check failed. */
  refused: 1,
  /** Usage or configuration error, including invalid values. */
  usage: 2,
  /** etcd is unreachable, or refused or denied the request. */
  etcd: 3,
} as const;

/** The exit code for an error a command threw. */
export function exitCodeFor(error: unknown): number {
  if (!isSluiceError(error)) return EXIT.refused;
  switch (error.kind) {
    case 'invalid-config':
    case 'invalid-value':
    case 'invalid-window':
      return EXIT.usage;
    case 'etcd-unavailable':
    case 'etcd-denied':
    case 'etcd-refused':
      return EXIT.etcd;
    default:
      return EXIT.refused;
  }
}

/** The etcd client type, without depending on etcd3 directly. */
export type EtcdClient = Awaited<ReturnType<typeof connectEtcd>>;

/** Output format chosen with `-o`. */
export type OutputFormat = 'table' | 'json';

/** The global options, as commander parses them. */
export interface GlobalOptions extends EtcdFlags {
  /** Let a write start a group that has no keys yet (see `Context.requireGroup`). */
  create?: boolean;
  output: OutputFormat;
}

/**
 * Per-run state handed to every command. Commands call `connect()` for etcd; everything opened
 * through the context is closed by `close()` when the command is done, in reverse order.
 */
export class Context {
  #settings: EtcdSettings | null = null;
  /** Where each settings field came from (a flag or a variable), for error messages. */
  #where: Record<string, string> = {};
  #client: EtcdClient | null = null;
  readonly #cleanups: (() => void | Promise<void>)[] = [];

  constructor(
    readonly io: CliIO,
    readonly options: GlobalOptions,
  ) {}

  /** True for `-o json`. */
  get json(): boolean {
    return this.options.output === 'json';
  }

  /** Writes a line (or lines) to stdout. */
  out(text = ''): void {
    this.io.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  }

  /** Writes JSON to stdout, pretty-printed, as one value. */
  outJson(value: unknown): void {
    this.out(JSON.stringify(value, null, 2));
  }

  /** Writes a line to stderr. */
  err(text: string): void {
    this.io.stderr.write(text.endsWith('\n') ? text : `${text}\n`);
  }

  /**
   * The etcd settings: flags over environment variables (SLUICE_*, LOCKSMITHCTL_*) over
   * defaults, validated with the schema the agent uses. Errors name the flag or variable.
   */
  async settings(): Promise<EtcdSettings> {
    if (this.#settings) return this.#settings;
    const { settings, where } = await etcdSettingsFrom(this.io.env, this.options);
    this.#settings = settings;
    this.#where = where;
    return this.#settings;
  }

  /** The keys of the selected group (`--group`, default `default`). */
  async keys(group?: string): Promise<GroupKeys> {
    const s = await this.settings();
    return new GroupKeys(s.prefix, group ?? s.group);
  }

  /**
   * The etcd client, connected on first use with short timeouts (3 s per call, one retry), so an
   * unreachable etcd fails within seconds instead of hanging. TLS files that are not PEM are a
   * usage error naming the file and its flag or variable. Closed by `close()`.
   */
  async client(): Promise<EtcdClient> {
    if (this.#client) return this.#client;
    const options = await this.connection();
    const { connectEtcd } = await import('@sluice/etcd');
    const client = await connectEtcd({ ...options, callTimeoutMs: 3000, retryAttempts: 1 });
    this.#client = client;
    this.defer(() => client.close());
    return client;
  }

  /**
   * How to reach etcd, as `client()` connects: endpoints, TLS files checked to be PEM, and the
   * password read from its file. For the rare call that is not made through etcd3 (etcd's v2 keys
   * API, which locksmith used).
   */
  async connection(): Promise<import('@sluice/etcd').EtcdConnectionOptions> {
    const settings = await this.settings();
    const { connectionOptions } = await import('@sluice/etcd');
    return connectionOptions(settings, this.#where);
  }

  /** Runs `fn` at `close()`, before everything deferred earlier. */
  defer(fn: () => void | Promise<void>): void {
    this.#cleanups.push(fn);
  }

  /** Closes everything opened for this run, newest first. Never throws. */
  async close(): Promise<void> {
    while (this.#cleanups.length > 0) {
      const fn = this.#cleanups.pop()!;
      try {
        await fn();
      } catch {
        // Closing is best effort: the process exits next.
      }
    }
  }

  /**
   * Refuses to act on a group nobody uses: a mistyped `--group` must not pause, configure or
   * lock a new, empty group while the real one goes on rebooting. A group is known when any key
   * sits under `<prefix>groups/<group>/` (agents register under `nodes/`), and `default` always
   * is. For a `write` to an unknown group this throws a usage error (exit 2) unless `--create`
   * was given; for a `read` it throws a refusal (exit 1), since showing an empty group as healthy
   * would mislead. Either way the message lists the known groups. A read of `default` under a
   * prefix that holds nothing at all warns about the prefix on stderr and goes on.
   */
  async requireGroup(mode: 'read' | 'write'): Promise<void> {
    const keys = await this.keys();
    const { groupExists, listGroupNames } = await import('@sluice/etcd');
    const client = await this.client();
    if (await groupExists(client, keys)) return;
    if (keys.group === DEFAULT_GROUP) {
      if (mode === 'read' && (await listGroupNames(client, keys.prefix, 1)).names.length === 0) {
        this.err(
          `sluicectl: note: nothing is stored under ${keys.prefix} yet: no agent has registered there (a mistyped --prefix?)`,
        );
      }
      return;
    }
    if (mode === 'write' && this.options.create) return;
    const { names, more } = await listGroupNames(client, keys.prefix);
    const known = [...new Set([DEFAULT_GROUP, ...names])].sort();
    const list = `${known.join(', ')}${more ? ', …' : ''}`;
    const message = `no such group ${JSON.stringify(keys.group)} (known groups: ${list})`;
    if (mode === 'read') throw new SluiceError('refused', message, '--group');
    throw new SluiceError(
      'invalid-config',
      `${message}; add --create to start a new group`,
      '--group',
    );
  }

  /**
   * A sluicectl command line to suggest in a message, e.g. `sluicectl unlock n1 --force`. It
   * repeats `--group` and `--prefix` when they were given as flags, so the suggestion acts on the
   * same group; settings from the environment apply to it as they did to this run.
   */
  command(...args: string[]): string {
    const words = ['sluicectl', ...args];
    if (this.options.group !== undefined) words.push('--group', this.options.group);
    if (this.options.prefix !== undefined) words.push('--prefix', this.options.prefix);
    return words.join(' ');
  }

  /** Who runs this command, as recorded in pauses, releases and requests: `user@host`. */
  get operator(): string {
    let user = this.io.env.SUDO_USER || this.io.env.USER || '';
    if (!user) {
      try {
        user = userInfo().username;
      } catch {
        user = 'unknown';
      }
    }
    return `${user}@${hostname()}`;
  }

  /**
   * This node's id: `--node`, else SLUICE_NODE, else /etc/machine-id (as the agent uses).
   * Refuses names that cannot be part of an etcd key.
   */
  async selfNode(flag: string | undefined): Promise<string> {
    let node = flag;
    let where = '--node';
    if (!node && this.io.env.SLUICE_NODE) {
      node = this.io.env.SLUICE_NODE;
      where = 'SLUICE_NODE';
    }
    if (!node) {
      where = '/etc/machine-id';
      node = await readFile('/etc/machine-id', 'utf8').then(
        (text) => text.trim(),
        () => undefined,
      );
      if (!node) {
        throw new SluiceError(
          'invalid-config',
          'cannot tell which node this is: /etc/machine-id is missing; pass --node ID or set SLUICE_NODE',
          '--node',
        );
      }
    }
    return checkNodeName(node, where);
  }
}

/** Validates a node id given on the command line. */
export function checkNodeName(node: string, where: string): string {
  if (!isValidName(node)) {
    throw new SluiceError(
      'invalid-config',
      `${where}: ${quoteValue(node)} is not a valid node id (letters, digits, . _ : @ -)`,
      where,
    );
  }
  return node;
}

/** The local host name, for queue records of this node. */
export function localHostname(): string {
  return hostname();
}
