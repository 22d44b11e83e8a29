/**
 * Runs the built `sluicectl` (packages/cli/dist/main.js) as a separate process, as an operator
 * would, with a fresh key prefix per runner. Every process started is killed in `cleanup()`, even
 * when the test failed. Build first: `npx turbo run build --filter=@sluice/cli...`.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { GroupKeys } from '@sluice/core';
import { z } from 'zod';

/** The CLI entry point the tests run. */
export const CLI = fileURLToPath(new URL('../../packages/cli/dist/main.js', import.meta.url));

if (!existsSync(CLI)) {
  throw new Error(`${CLI} is missing: run "npx turbo run build --filter=@sluice/cli..." first`);
}

/** How a CLI process ended and what it printed. */
export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** A CLI process still running: read its output while it runs, wait for it to end. */
export interface LiveCli {
  child: ChildProcess;
  /** Output so far. */
  readonly stdout: string;
  readonly stderr: string;
  /** Resolves when stdout matches `pattern` (counted from `from` characters on). */
  waitForOutput(pattern: RegExp, timeoutMs?: number, from?: number): Promise<void>;
  /** Resolves when the process has exited. */
  exited: Promise<CliResult>;
}

/** Options for one CLI run. */
export interface RunOptions {
  env?: Record<string, string>;
  /** Kill the process (SIGKILL) if it runs longer than this. Default 15 s. */
  timeoutMs?: number;
  /** Leave out the runner's `--prefix`, to test prefix handling itself. */
  noPrefix?: boolean;
  /** Run this built program instead of sluicectl (say, LOCKSMITHCTL). */
  script?: string;
}

/** sluice's locksmithctl, built. */
export const LOCKSMITHCTL = fileURLToPath(
  new URL('../../packages/cli/dist/locksmithctl-main.js', import.meta.url),
);

/** Starts CLI processes against one etcd with one fresh prefix, and kills leftovers. */
export class CliRunner {
  readonly prefix = `/t-cli-${randomUUID().slice(0, 8)}/`;
  readonly group = 'default';
  readonly keys = new GroupKeys(this.prefix, this.group);
  readonly #children = new Set<ChildProcess>();

  constructor(readonly endpoints: string[]) {}

  /** A clean environment: only PATH and HOME from the parent, etcd endpoints, and a node id. */
  env(extra: Record<string, string> = {}): Record<string, string> {
    return {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: process.env.HOME ?? '/tmp',
      USER: 'tester',
      SLUICE_ENDPOINTS: this.endpoints.join(','),
      SLUICE_NODE: 'node-self',
      ...extra,
    };
  }

  /** Starts `sluicectl --prefix <fresh> ...args` and returns it while it runs. */
  start(args: readonly string[], options: RunOptions = {}): LiveCli {
    const argv = options.noPrefix ? [...args] : ['--prefix', this.prefix, ...args];
    const child = spawn(process.execPath, [options.script ?? CLI, ...argv], {
      env: this.env(options.env),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.#children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 15_000);
    const exited = new Promise<CliResult>((resolve) => {
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        this.#children.delete(child);
        resolve({ code, signal, stdout, stderr });
      });
    });
    return {
      child,
      get stdout() {
        return stdout;
      },
      get stderr() {
        return stderr;
      },
      exited,
      async waitForOutput(pattern, timeoutMs = 10_000, from = 0) {
        const deadline = Date.now() + timeoutMs;
        while (!pattern.test(stdout.slice(from))) {
          if (Date.now() > deadline || child.exitCode !== null) {
            throw new Error(
              `no ${pattern} in the output within ${timeoutMs} ms:\n${stdout}\nstderr:\n${stderr}`,
            );
          }
          await new Promise((r) => setTimeout(r, 20));
        }
      },
    };
  }

  /** Runs `sluicectl --prefix <fresh> ...args` to the end. */
  run(args: readonly string[], options: RunOptions = {}): Promise<CliResult> {
    return this.start(args, options).exited;
  }

  /** Runs with `-o json` and parses stdout; throws with the output if the exit code is not 0. */
  async json(args: readonly string[], options: RunOptions = {}): Promise<unknown> {
    const res = await this.run([...args, '-o', 'json'], options);
    if (res.code !== 0) {
      throw new Error(
        `sluicectl ${args.join(' ')} exited ${res.code}:\n${res.stdout}${res.stderr}`,
      );
    }
    return JSON.parse(res.stdout);
  }

  /** Kills every process still running and waits for them. */
  async cleanup(): Promise<void> {
    await Promise.all(
      [...this.#children].map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            child.once('close', () => resolve());
            child.kill('SIGKILL');
          }),
      ),
    );
  }
}

const iso = z.iso.datetime({ offset: true });

/** The documented shape of `sluicectl status -o json`: checked field by field. */
export const StatusJsonSchema = z.object({
  group: z.string(),
  max: z.number().int().nullable(),
  /** What can be admitted now: 0 whenever anything blocks admission. */
  available: z.number().int(),
  /** Why nothing (more) can be admitted, or null. */
  blocker: z
    .object({
      kind: z.enum(['invalid-value', 'halted', 'paused', 'window-closed', 'canary', 'full']),
      message: z.string(),
    })
    .passthrough()
    .nullable(),
  holdersOverMax: z.number().int(),
  maxBefore: z.number().int().nullable(),
  paused: z
    .object({ reason: z.string(), since: iso.nullable(), by: z.string().nullable() })
    .nullable(),
  window: z.object({ open: z.boolean(), nextChange: iso.nullable() }),
  holders: z.array(
    z.object({
      node: z.string(),
      hostname: z.string(),
      state: z.string(),
      since: iso.nullable(),
      leaseSecondsLeft: z.number().nullable(),
      reason: z.string(),
      problem: z.string().nullable(),
      aboveMax: z.boolean(),
    }),
  ),
  waiting: z.array(
    z.object({
      node: z.string(),
      hostname: z.string(),
      position: z.number().int().positive(),
      since: iso.nullable(),
      heldBack: z.string().nullable(),
    }),
  ),
  requests: z.array(
    z.object({
      node: z.string(),
      reason: z.string(),
      by: z.string(),
      requestedAt: iso,
      expiresAt: iso.nullable(),
    }),
  ),
  errors: z.array(z.object({ key: z.string(), message: z.string() })),
});

/** The shape of `sluicectl history -o json`. */
export const HistoryJsonSchema = z.object({
  group: z.string(),
  records: z.array(
    z.object({
      node: z.string(),
      hostname: z.string(),
      outcome: z.enum(['released', 'forced', 'lost', 'abandoned']),
      start: iso.nullable(),
      end: iso,
      durationSeconds: z.number().nullable(),
      reason: z.string(),
      by: z.string().nullable(),
      manual: z.boolean(),
    }),
  ),
  actions: z.array(
    z.object({
      action: z.string(),
      at: iso,
      by: z.string(),
      node: z.string().nullable(),
      old: z.string().nullable(),
      new: z.string().nullable(),
      reason: z.string().nullable(),
    }),
  ),
  errors: z.array(z.object({ key: z.string(), message: z.string() })),
});

/**
 * How many unary RPCs (Range, Txn, LeaseTimeToLive, ...) an etcd member has served, from its
 * Prometheus metrics. Watch and keep-alive streams are not counted.
 */
export async function unaryRequests(metricsUrl: string): Promise<number> {
  const text = await (await fetch(metricsUrl)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('grpc_server_started_total{') && line.includes('grpc_type="unary"')) {
      sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return sum;
}

/** The shape of `sluicectl windows check -o json`. */
export const CheckJsonSchema = z.object({
  open: z.boolean(),
  nextStart: iso.nullable(),
  nextEnd: iso.nullable(),
  /** The zone a spec without one is read in (locksmith's syntax), and where it came from. */
  zone: z.string().min(1),
  zoneFrom: z.string().min(1),
  /** The blackout (from --blackouts) in force at the instant, or null. */
  blackout: z.string().nullable(),
});
