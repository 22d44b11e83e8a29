/**
 * Update sources: the ways the agent learns that the node needs a reboot. This module holds the
 * `UpdateSource` interface and the sources that need nothing but the local system: a sentinel
 * file (Debian and Ubuntu write `/run/reboot-required`, openSUSE MicroOS `/run/reboot-needed`)
 * and a command. update_engine and manual requests live in update-sources.ts, rpm-ostree and
 * bootc in sources-ostree.ts, systemd-sysupdate, needrestart and dnf in sources-packages.ts.
 *
 * Sources fail closed: when a source cannot tell, it reports "not needed" (marked `unknown`), so
 * an error never causes a reboot.
 */
import { type FSWatcher, statSync, watch } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { formatDuration } from '@sluice/core';
import { runShellCommand } from './checks.js';

/** One reading of a source: is a reboot needed, and why. */
export interface UpdateSignal {
  /** True when this source says the node needs a reboot. */
  needed: boolean;
  /** The source's name, such as `sentinel` or `command`. */
  source: string;
  /** Human-readable evidence: file content, command output, update_engine's operation. */
  detail: string;
  /** The version the reboot will bring, when the source knows it. */
  version?: string;
  /**
   * True when the source could not tell (a tool missing or failing, output it does not
   * understand): `needed` is then false, and `detail` says why.
   */
  unknown?: boolean;
  /**
   * True when restarting userspace is enough to apply the update (bootc's `softRebootCapable`
   * with `/run/nextroot` set up): the agent may soft-reboot instead (`reboot.softReboot: auto`).
   */
  softReboot?: boolean;
}

/**
 * What {@link UpdateSource.apply} did: `rebooting` when applying the update reboots the machine
 * by itself (rpm-ostree's FinalizeDeployment), `ready` when the agent's reboot now applies it.
 */
export type Applied = 'rebooting' | 'ready';

/**
 * Something that tells the agent whether a reboot is needed. `start` begins following it and
 * calls `onChange` with the first reading and then whenever the reading changes; `current`
 * returns the latest reading (not needed until the first one); `close` stops for good.
 */
export interface UpdateSource {
  readonly name: string;
  start(onChange: (s: UpdateSignal) => void): Promise<void>;
  current(): UpdateSignal;
  close(): Promise<void>;
  /**
   * For sources whose update is held back until the node's turn (a deployment staged with
   * finalization locked): makes the update take effect. The agent calls it only while it holds
   * its slot, right before the reboot and after the slot was confirmed; an admission given back
   * before then leaves the update held back. Rejects when it cannot (the agent then does not
   * reboot, and tries again later).
   */
  apply?(signal: AbortSignal): Promise<Applied>;
}

const VERSION = /^v?\d+(?:\.\d+)+(?:[-+~][0-9A-Za-z.+~-]*)?$/;

/** A version string such as `4081.2.0` or `v1.2.3-rc1`, or undefined. */
function asVersion(line: string): string | undefined {
  const candidate = line.trim();
  return VERSION.test(candidate) ? candidate : undefined;
}

/** True when two readings say the same (so `onChange` need not fire). */
export const sameSignal = (a: UpdateSignal, b: UpdateSignal): boolean =>
  a.needed === b.needed &&
  a.detail === b.detail &&
  a.version === b.version &&
  Boolean(a.unknown) === Boolean(b.unknown) &&
  Boolean(a.softReboot) === Boolean(b.softReboot);

/** Options for `SentinelFileSource`. */
export interface SentinelFileOptions {
  /**
   * How often to look at the file without being told to, in milliseconds: a safety net for a
   * missed watch event, and how soon a missing parent directory is noticed. Default 30 s.
   */
  recheckMs?: number;
}

/**
 * Needed while a file exists, as with Debian's and Ubuntu's `/run/reboot-required` or openSUSE
 * MicroOS's `/run/reboot-needed`. The file's content (trimmed, first 200 characters) is the
 * detail, and its first line is the version when it looks like one (`4081.2.0`); Debian's
 * `*** System restart required ***` is not a version. When `<file>.pkgs` exists too (Debian's
 * list of the packages that asked for the reboot), the detail names them instead.
 *
 * The parent directory is watched with `fs.watch`, so creation and removal are noticed within
 * moments; every watch event triggers a fresh look. If the directory does not exist (yet), or
 * the watch breaks, the file is looked at every `recheckMs` and the watch is set up again once
 * the directory appears. `onChange` fires on the first reading and whenever existence, content or
 * version change.
 */
export class SentinelFileSource implements UpdateSource {
  readonly name = 'sentinel';
  readonly #path: string;
  readonly #recheckMs: number;
  #signal: UpdateSignal;
  #onChange: ((s: UpdateSignal) => void) | null = null;
  #watcher: FSWatcher | null = null;
  #dirIno: number | undefined;
  #timer: NodeJS.Timeout | null = null;
  #checking: Promise<void> | null = null;
  #again = false;
  #closed = false;

  constructor(path: string, options: SentinelFileOptions = {}) {
    this.#path = path;
    this.#recheckMs = options.recheckMs ?? 30_000;
    this.#signal = { needed: false, source: this.name, detail: `${path} not looked at yet` };
  }

  async start(onChange: (s: UpdateSignal) => void): Promise<void> {
    this.#watch();
    this.#signal = await this.#read();
    if (this.#closed) return;
    this.#onChange = onChange;
    onChange(this.#signal);
    // Anything that happened between setting up the watch and now.
    this.#check();
    this.#timer = setInterval(() => this.#check(), this.#recheckMs);
    this.#timer.unref();
  }

  current(): UpdateSignal {
    return this.#signal;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#onChange = null;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    this.#unwatch();
    await this.#checking;
  }

  /** Watches the parent directory; leaves `#watcher` null if that is not possible now. */
  #watch(): void {
    if (this.#closed || this.#watcher !== null) return;
    const dir = dirname(this.#path);
    try {
      this.#dirIno = statSync(dir).ino;
      // Every event makes us look again: cheap, and immune to missing or odd file names.
      const watcher = watch(dir, { persistent: false }, () => this.#check());
      watcher.on('error', () => {
        this.#unwatch();
        this.#check();
      });
      this.#watcher = watcher;
    } catch {
      // The directory does not exist yet: every re-check tries again.
      this.#watcher = null;
    }
  }

  #unwatch(): void {
    this.#watcher?.close();
    this.#watcher = null;
  }

  /**
   * Looks at the file again, one look at a time; events during a look cause one more. Also
   * re-establishes the watch when the directory appeared or was replaced (a watch on a deleted
   * directory hears nothing more).
   */
  #check(): void {
    if (this.#closed || this.#onChange === null) return;
    if (this.#checking) {
      this.#again = true;
      return;
    }
    this.#checking = (async () => {
      do {
        this.#again = false;
        const ino = await inode(dirname(this.#path));
        if (this.#watcher !== null && ino !== this.#dirIno) this.#unwatch();
        if (this.#watcher === null && ino !== undefined) this.#watch();
        const next = await this.#read();
        if (this.#closed) return;
        if (!sameSignal(next, this.#signal)) {
          this.#signal = next;
          this.#onChange?.(next);
        }
      } while (this.#again && !this.#closed);
    })().finally(() => {
      this.#checking = null;
    });
  }

  async #read(): Promise<UpdateSignal> {
    const path = this.#path;
    try {
      const info = await stat(path);
      if (info.isDirectory()) {
        return { needed: false, source: this.name, detail: `${path} is a directory, not a file` };
      }
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? String(error);
      const detail = code === 'ENOENT' || code === 'ENOTDIR' ? `no ${path}` : `${path}: ${code}`;
      return { needed: false, source: this.name, detail };
    }
    let content = '';
    try {
      content = (await readFile(path, 'utf8')).slice(0, 4096);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? String(error);
      if (code === 'ENOENT') return { needed: false, source: this.name, detail: `no ${path}` };
      return { needed: true, source: this.name, detail: `${path} exists (unreadable: ${code})` };
    }
    const flat = content.replace(/\s+/g, ' ').trim();
    const packages = await readPackages(`${path}.pkgs`);
    const detail =
      packages !== null
        ? `${path}: required by ${packages}`.slice(0, 200)
        : flat === ''
          ? `${path} exists (empty)`
          : flat.slice(0, 200);
    const version = asVersion(content.split('\n', 1)[0] ?? '');
    return {
      needed: true,
      source: this.name,
      detail,
      ...(version === undefined ? {} : { version }),
    };
  }
}

/** Debian's `.pkgs` list next to the sentinel, as `a, b (+3 more)`; null when there is none. */
async function readPackages(path: string): Promise<string | null> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return null;
  }
  const names = [
    ...new Set(
      text
        .split('\n')
        .map((l) => l.trim())
        .filter(Boolean),
    ),
  ];
  if (names.length === 0) return null;
  const shown = names.slice(0, 5).join(', ');
  return names.length > 5 ? `${shown} (+${names.length - 5} more)` : shown;
}

/** The inode number of a path, or undefined if it does not exist. */
async function inode(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).ino;
  } catch {
    return undefined;
  }
}

/** Options for `CommandSource`. */
export interface CommandSourceOptions {
  /** How long one run may take before its process group is killed. Default: the smaller of the
   * interval and 60 s. */
  timeoutMs?: number;
  /** Spread of each pause as a fraction of the interval (0.1 = ±10 %). Default 0.1. */
  jitter?: number;
}

/**
 * Runs `task` right after `start()` and then every `intervalMs`, each pause spread by ±`jitter`
 * of the interval so that a fleet does not run in step; one run at a time, until `close()`,
 * which aborts `signal` and waits for a run in progress. The timers do not keep Node running.
 */
export class Poller {
  readonly #stop = new AbortController();
  readonly #jitter: number;
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<void> | null = null;

  constructor(
    private readonly intervalMs: number,
    jitter: number,
    private readonly task: (signal: AbortSignal) => Promise<void>,
  ) {
    this.#jitter = Math.min(Math.max(jitter, 0), 1);
  }

  /** Aborted once `close()` was called. */
  get signal(): AbortSignal {
    return this.#stop.signal;
  }

  start(): void {
    this.#schedule(0);
  }

  async close(): Promise<void> {
    this.#stop.abort();
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#running;
  }

  #schedule(delayMs: number): void {
    if (this.#stop.signal.aborted) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#running = this.task(this.#stop.signal).finally(() => {
        this.#running = null;
        const spread = this.intervalMs * this.#jitter * (Math.random() * 2 - 1);
        this.#schedule(Math.max(1, Math.round(this.intervalMs + spread)));
      });
    }, delayMs);
    this.#timer.unref();
  }
}

/**
 * Asks a command: exit 0 means a reboot is needed, any other exit means it is not. It runs with
 * `/bin/sh -c` right after `start` and then every `intervalMs`, with jitter so a fleet does not
 * run it in step. A command that cannot run, is killed or times out counts as not needed (fail
 * closed), with the reason in the detail. The detail is the tail of the output (or the exit
 * code); on exit 0 the first line of stdout is the version when it looks like one. `onChange`
 * fires on the first result and whenever `needed` or the version changes; `current()` always has
 * the latest detail.
 */
export class CommandSource implements UpdateSource {
  readonly name = 'command';
  readonly #command: string;
  readonly #timeoutMs: number;
  readonly #poller: Poller;
  #signal: UpdateSignal;
  #onChange: ((s: UpdateSignal) => void) | null = null;
  #first = true;

  constructor(command: string, intervalMs: number, options: CommandSourceOptions = {}) {
    this.#command = command;
    const interval = Math.max(1, intervalMs);
    this.#timeoutMs = options.timeoutMs ?? Math.min(interval, 60_000);
    this.#poller = new Poller(interval, options.jitter ?? 0.1, (signal) => this.#runOnce(signal));
    this.#signal = { needed: false, source: this.name, detail: 'not run yet' };
  }

  async start(onChange: (s: UpdateSignal) => void): Promise<void> {
    this.#onChange = onChange;
    this.#poller.start();
  }

  current(): UpdateSignal {
    return this.#signal;
  }

  async close(): Promise<void> {
    this.#onChange = null;
    await this.#poller.close();
  }

  async #runOnce(signal: AbortSignal): Promise<void> {
    const run = await runShellCommand(this.#command, this.#timeoutMs, signal);
    if (signal.aborted) return;
    let next: UpdateSignal;
    const tail = run.tail === '' ? '' : `: ${run.tail.slice(-200)}`;
    if (run.spawnError !== undefined) {
      next = { needed: false, source: this.name, detail: `cannot run: ${run.spawnError}` };
    } else if (run.stopped === 'timeout') {
      next = {
        needed: false,
        source: this.name,
        detail: `timed out after ${formatDuration(this.#timeoutMs)} (killed); not rebooting${tail}`,
      };
    } else if (run.code === 0) {
      const version = asVersion(run.firstLine);
      next = {
        needed: true,
        source: this.name,
        detail: run.tail === '' ? 'exit code 0' : run.tail.slice(-200),
        ...(version === undefined ? {} : { version }),
      };
    } else if (run.code === null) {
      next = { needed: false, source: this.name, detail: `killed by ${run.signal}${tail}` };
    } else {
      next = { needed: false, source: this.name, detail: `exit code ${run.code}${tail}` };
    }
    const changed =
      this.#first || next.needed !== this.#signal.needed || next.version !== this.#signal.version;
    this.#first = false;
    this.#signal = next;
    if (changed) this.#onChange?.(next);
  }
}
