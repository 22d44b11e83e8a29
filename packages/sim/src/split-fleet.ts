/**
 * An in-process fleet split over several simulator processes, for groups too big for one: at
 * 10,000 nodes a single Node process running every agent, its watch and its timers is itself the
 * bottleneck, and the benchmark would measure the simulator instead of sluice.
 *
 * Each worker (`split-worker.ts`) runs one shard of the fleet as an `InProcessFleet` (node `i`
 * in worker `i % processes`) against the shared etcd and group. This process writes the group's
 * max, keeps its own `GroupTimeline` of the group (what the figures and the invariant checks read,
 * independent of every agent), and collects the workers' reboot logs, stages and transitions at
 * the end. Workers talk to it over Node's IPC channel; they are tracked children (see
 * `procs.ts`), so they die with it.
 */
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { GroupKeys } from '@sluice/core';
import { Etcd3 } from 'etcd3';
import { type InProcessOptions, waitWhileMoving } from './in-process.js';
import {
  checkInvariants,
  type InvariantReport,
  type RebootEntry,
  type StageEntry,
} from './invariants.js';
import { exited, killChild, spawnTracked, startOrStop } from './procs.js';
import type { TransitionRecord } from './report.js';
import { GroupTimeline, simClientOptions, simGroupKeys } from './timeline.js';

/** What this process sends a worker. */
export type ToWorker =
  | { type: 'stage'; version: string; spreadMs: number; seed: number }
  | { type: 'report' }
  | { type: 'stop' };

/** What a worker sends this process. */
export type FromWorker =
  | { type: 'ready' }
  | {
      type: 'progress';
      reboots: number;
      done: boolean;
      states: Record<string, number>;
      /** The agents' warnings and errors so far, by message. */
      problems: [string, number][];
    }
  | {
      type: 'report';
      reboots: RebootEntry[];
      stages: StageEntry[];
      transitions: TransitionRecord[];
      problems: [string, number][];
      cpuSeconds: number;
      rssMiB: number;
    }
  | { type: 'error'; message: string };

/** How a worker is started: its shard of the fleet, passed as JSON in its environment. */
export interface WorkerSpec extends Omit<InProcessOptions, 'etcd' | 'shard' | 'prefix'> {
  endpoints: string[];
  prefix: string;
  shard: { index: number; of: number };
}

/** The environment variable a worker reads its `WorkerSpec` from. */
export const WORKER_SPEC_ENV = 'SLUICE_SPLIT_WORKER';

/** One worker process and what it last said. */
class Worker {
  ready = false;
  last: Extract<FromWorker, { type: 'progress' }> | null = null;
  report: Extract<FromWorker, { type: 'report' }> | null = null;
  error: string | null = null;
  readonly #waiters = new Set<() => void>();

  constructor(
    readonly index: number,
    readonly child: ChildProcess,
  ) {
    child.on('message', (message: FromWorker) => {
      if (message.type === 'progress') this.last = message;
      else if (message.type === 'report') this.report = message;
      else if (message.type === 'error') this.error = message.message;
      else if (message.type === 'ready') this.ready = true;
      for (const wake of this.#waiters) wake();
    });
    child.once('exit', (code, signal) => {
      this.error ??= `worker ${index} exited (${signal ?? code})`;
      for (const wake of this.#waiters) wake();
    });
  }

  send(message: ToWorker): void {
    this.child.send(message);
  }

  /** Resolves once `test()` holds; rejects when the worker failed or after `ms`. */
  async until(test: () => boolean, ms: number, what: string): Promise<void> {
    const deadline = Date.now() + ms;
    while (!test()) {
      if (this.error !== null) throw new Error(`worker ${this.index}: ${this.error}`);
      if (Date.now() > deadline) throw new Error(`worker ${this.index}: no ${what} in ${ms} ms`);
      await new Promise<void>((resolve) => {
        const wake = () => {
          this.#waiters.delete(wake);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(wake, 1000);
        this.#waiters.add(wake);
      });
    }
  }
}

/** How to set up a split fleet: an in-process fleet's options plus the number of processes. */
export interface SplitOptions extends Omit<InProcessOptions, 'shard'> {
  processes: number;
}

/** A fleet split over worker processes. Create with {@link SplitFleet.start}; always `stop()`. */
export class SplitFleet {
  readonly reboots: RebootEntry[] = [];
  readonly stages: StageEntry[] = [];
  readonly transitions: TransitionRecord[] = [];
  readonly problems = new Map<string, number>();
  readonly keys: GroupKeys;
  /** CPU seconds and RSS (MiB) of each worker at its report. */
  readonly workers: { cpuSeconds: number; rssMiB: number }[] = [];
  timeline!: GroupTimeline;
  #client: Etcd3 | null = null;
  #workers: Worker[] = [];
  #collected = false;

  private constructor(readonly opts: SplitOptions) {
    this.keys = simGroupKeys(opts);
  }

  /** Writes max, starts the timeline and every worker, and waits until all agents run. */
  static async start(opts: SplitOptions): Promise<SplitFleet> {
    return startOrStop(new SplitFleet(opts), (fleet) => fleet.#start());
  }

  async #start(): Promise<void> {
    const { etcd, processes, ...rest } = this.opts;
    this.#client = new Etcd3(simClientOptions(etcd.endpoints));
    await this.#client.put(this.keys.max).value(String(this.opts.max)).exec();
    this.timeline = await GroupTimeline.start(etcd.endpoints, this.keys);
    const here = fileURLToPath(import.meta.url);
    const worker = here.replace(/split-fleet\.(ts|js)$/, 'split-worker.$1');
    // From source (benchmarks, tests), the worker runs through tsx, as they do.
    const loader = worker.endsWith('.ts') ? ['--import', 'tsx', '--conditions=source'] : [];
    for (let index = 0; index < processes; index++) {
      const spec: WorkerSpec = {
        ...rest,
        endpoints: etcd.endpoints,
        prefix: this.keys.prefix,
        group: this.keys.group,
        shard: { index, of: processes },
      };
      const child = spawnTracked(
        process.execPath,
        [...loader, worker],
        { ...process.env, [WORKER_SPEC_ENV]: JSON.stringify(spec) },
        { ipc: true },
      );
      child.stdout?.pipe(process.stderr);
      child.stderr?.pipe(process.stderr);
      this.#workers.push(new Worker(index, child));
    }
    await Promise.all(this.#workers.map((w) => w.until(() => w.ready, 600_000, 'start')));
  }

  /** Stages `version` on every node, each at a random moment within `spreadMs`. */
  stageAll(version: string, opts: { spreadMs: number; seed: number }): void {
    for (const w of this.#workers) {
      w.send({ type: 'stage', version, spreadMs: opts.spreadMs, seed: opts.seed + w.index });
    }
  }

  /** The agents' warnings and errors so far, by message, over every worker's last progress. */
  problemsSoFar(): Map<string, number> {
    const problems = new Map<string, number>();
    for (const w of this.#workers) {
      for (const [message, n] of w.last?.problems ?? []) {
        problems.set(message, (problems.get(message) ?? 0) + n);
      }
    }
    return problems;
  }

  /** How many nodes are in each agent state, over every worker's last progress report. */
  states(): Record<string, number> {
    const states: Record<string, number> = {};
    for (const w of this.#workers) {
      for (const [state, n] of Object.entries(w.last?.states ?? {})) {
        states[state] = (states[state] ?? 0) + n;
      }
    }
    return states;
  }

  /**
   * Waits until every worker says its part of the rollout is done. Throws after `timeoutMs`, or
   * sooner when nothing has moved (no reboot, no marker, no group event) for `stallMs`.
   */
  async waitForRollout(timeoutMs: number, stallMs = 60_000): Promise<void> {
    await waitWhileMoving({
      done: () => {
        const failed = this.#workers.find((w) => w.error !== null);
        if (failed) throw new Error(`worker ${failed.index}: ${failed.error}`);
        return this.#workers.every((w) => w.last?.done);
      },
      progress: () =>
        `${this.#workers.reduce((n, w) => n + (w.last?.reboots ?? 0), 0)}/${this.timeline.markers.length}/${this.timeline.events.length}`,
      describe: () => `rollout not done: ${JSON.stringify(this.states())}`,
      timeoutMs,
      stallMs,
    });
  }

  /** Collects every worker's records (once), then checks every invariant on them. */
  async check(complete = true): Promise<InvariantReport> {
    if (!this.#collected) {
      this.#collected = true;
      for (const w of this.#workers) w.send({ type: 'report' });
      for (const w of this.#workers) {
        await w.until(() => w.report !== null, 180_000, 'report');
        const r = w.report!;
        this.reboots.push(...r.reboots);
        this.stages.push(...r.stages);
        this.transitions.push(...r.transitions);
        for (const [message, n] of r.problems) {
          this.problems.set(message, (this.problems.get(message) ?? 0) + n);
        }
        this.workers.push({ cpuSeconds: r.cpuSeconds, rssMiB: r.rssMiB });
      }
      this.transitions.sort((a, b) => a.at - b.at);
    }
    return checkInvariants({
      reboots: this.reboots,
      stages: this.stages,
      maxSets: [],
      timeline: this.timeline,
      complete,
    });
  }

  /** The current etcd revision. */
  async revision(): Promise<number> {
    return Number((await this.#client!.get(this.keys.max).exec()).header.revision);
  }

  /** Stops every worker (asking first, then by PID), the timeline and the client. Idempotent. */
  async stop(): Promise<void> {
    await Promise.all(
      this.#workers.map(async (w) => {
        if (w.child.connected) w.send({ type: 'stop' });
        const gone = exited(w.child);
        const late = setTimeout(() => void killChild(w.child), 15_000);
        await gone;
        clearTimeout(late);
      }),
    );
    this.#workers = [];
    await this.timeline?.stop().catch(() => {});
    this.#client?.close();
    this.#client = null;
  }
}
