/**
 * Asking a system tool whether a reboot is needed: the shared part of the presets for bootc,
 * systemd-sysupdate, needrestart and dnf. Each preset runs one fixed program with fixed arguments
 * (no shell, so nothing the user writes is interpreted) and reads its answer with a pure
 * interpreter that knows the tool's exit codes and output, including their traps. Whatever the
 * interpreter does not recognise is `unknown`, which never means "reboot".
 */
import { spawn } from 'node:child_process';
import { formatDuration } from '@sluice/core';
import { KILL_GRACE_MS } from './checks.js';
import { Poller, sameSignal, type UpdateSignal, type UpdateSource } from './sources.js';

/** What became of one run of a program. */
export interface ProgramRun {
  /** The program and its arguments, for messages. */
  command: string;
  /** The exit code; null when the program never started or was killed by a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Why sluice stopped it, if it did. */
  stopped: 'timeout' | 'aborted' | null;
  /** Set when the program could not be started (`ENOENT`: not installed). */
  spawnError?: string;
  stdout: string;
  stderr: string;
}

/** Most of a program's output that is kept, per stream. */
const MAX_OUTPUT = 1 << 20;

/**
 * Runs `file` with `args`, without a shell, in its own process group and in the C locale (so
 * tools print the English messages their interpreters look for). On timeout or abort the whole
 * group gets SIGTERM, then SIGKILL after `KILL_GRACE_MS`. Never rejects.
 */
export function runProgram(
  file: string,
  args: readonly string[],
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<ProgramRun> {
  const command = [file, ...args].join(' ');
  return new Promise((resolve) => {
    const base = { command, stdout: '', stderr: '' };
    if (signal?.aborted) {
      resolve({ ...base, code: null, signal: null, stopped: 'aborted' });
      return;
    }
    let stdout = '';
    let stderr = '';
    let stopped: ProgramRun['stopped'] = null;
    let done = false;
    const child = spawn(file, args, {
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LC_ALL: 'C', LANG: 'C', LANGUAGE: 'C' },
    });
    const killGroup = (sig: NodeJS.Signals) => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, sig);
      } catch {
        // Already gone.
      }
    };
    const stop = (why: 'timeout' | 'aborted') => {
      if (done || stopped !== null) return;
      stopped = why;
      killGroup('SIGTERM');
      setTimeout(() => killGroup('SIGKILL'), KILL_GRACE_MS).unref();
    };
    const timer = setTimeout(() => stop('timeout'), timeoutMs);
    const onAbort = () => stop('aborted');
    signal?.addEventListener('abort', onAbort, { once: true });
    const finish = (outcome: Pick<ProgramRun, 'code' | 'signal'> & { spawnError?: string }) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      resolve({ command, stdout, stderr, stopped, ...outcome });
    };
    child.stdout.on('data', (chunk: Buffer) => {
      if (stdout.length < MAX_OUTPUT) stdout += chunk.toString('utf8');
    });
    child.stderr.on('data', (chunk: Buffer) => {
      if (stderr.length < MAX_OUTPUT) stderr += chunk.toString('utf8');
    });
    child.on('error', (error) => finish({ code: null, signal: null, spawnError: error.message }));
    // 'close' waits for the output to be read to the end.
    child.on('close', (code, sig) => finish({ code, signal: sig }));
  });
}

/** The last few hundred characters of a run's output, on one line, for details. */
export function outputTail(run: ProgramRun, chars = 200): string {
  const text = `${run.stdout}\n${run.stderr}`.replace(/\s+/g, ' ').trim();
  return text.length > chars ? `...${text.slice(-chars)}` : text;
}

/**
 * Why a run gave no answer at all (not started, timed out, killed), as a detail; null when it ran
 * to an exit code and its output is the interpreter's to judge.
 */
export function runFailure(run: ProgramRun, timeoutMs: number): string | null {
  if (run.spawnError !== undefined) {
    return /ENOENT/.test(run.spawnError)
      ? `${run.command.split(' ')[0]} is not installed (${run.spawnError})`
      : `cannot run ${run.command}: ${run.spawnError}`;
  }
  if (run.stopped === 'timeout') {
    return `${run.command} timed out after ${formatDuration(timeoutMs)} (killed)`;
  }
  if (run.stopped === 'aborted') return `${run.command} was cancelled`;
  if (run.code === null) return `${run.command} was killed by ${run.signal}`;
  return null;
}

/** A reading that could not be made: not needed, marked unknown, with why. */
export function unknownSignal(source: string, detail: string): UpdateSignal {
  return { needed: false, unknown: true, source, detail: `unknown: ${detail}` };
}

/** How a preset is set up. */
export interface ProgramSourceOptions {
  /** The source's name: `bootc`, `sysupdate`, `needrestart`, `dnf`. */
  name: string;
  /** The program, such as `/usr/bin/dnf`. */
  file: string;
  args: readonly string[];
  /** How often to ask, in milliseconds. */
  intervalMs: number;
  /** How long one run may take. Default: the smaller of the interval and 120 s. */
  timeoutMs?: number;
  /** Spread of each pause as a fraction of the interval. Default 0.1. */
  jitter?: number;
  /** Reads a run that exited; failures to run never reach it (they are unknown). */
  interpret(run: ProgramRun): UpdateSignal;
}

/**
 * Runs a preset's program right after `start` and then every `intervalMs` (with jitter, so a fleet
 * does not run it in step), and reports what its interpreter reads. `onChange` fires on the first
 * reading and whenever the reading changes.
 */
export class ProgramSource implements UpdateSource {
  readonly name: string;
  readonly #opts: ProgramSourceOptions;
  readonly #timeoutMs: number;
  readonly #poller: Poller;
  #signal: UpdateSignal;
  #onChange: ((s: UpdateSignal) => void) | null = null;
  #first = true;

  constructor(options: ProgramSourceOptions) {
    this.name = options.name;
    this.#opts = options;
    this.#timeoutMs = options.timeoutMs ?? Math.min(Math.max(1, options.intervalMs), 120_000);
    this.#signal = { needed: false, source: this.name, detail: 'not asked yet' };
    this.#poller = new Poller(Math.max(1, options.intervalMs), options.jitter ?? 0.1, (signal) =>
      this.#runOnce(signal),
    );
  }

  /** The program this source runs. */
  get file(): string {
    return this.#opts.file;
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

  /** Runs `args` of the same program (for an `apply` step), with the same timeout. */
  protected run(args: readonly string[], signal?: AbortSignal): Promise<ProgramRun> {
    return runProgram(this.#opts.file, args, this.#timeoutMs, signal);
  }

  /** Why a run of {@link run} gave no answer, or null (see `runFailure`). */
  protected failure(run: ProgramRun): string | null {
    return runFailure(run, this.#timeoutMs);
  }

  async #runOnce(signal: AbortSignal): Promise<void> {
    const run = await runProgram(this.#opts.file, this.#opts.args, this.#timeoutMs, signal);
    if (signal.aborted) return;
    const failure = runFailure(run, this.#timeoutMs);
    let next: UpdateSignal;
    if (failure !== null) {
      next = unknownSignal(this.name, failure);
    } else {
      try {
        next = this.#opts.interpret(run);
      } catch (error) {
        next = unknownSignal(this.name, `cannot read ${run.command}: ${String(error)}`);
      }
    }
    const changed = this.#first || !sameSignal(next, this.#signal);
    this.#first = false;
    this.#signal = next;
    if (changed) this.#onChange?.(next);
  }
}
