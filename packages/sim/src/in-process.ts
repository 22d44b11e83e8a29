/**
 * An in-process fleet for scale: hundreds or thousands of agents in the simulator's own process
 * (or, through `SplitFleet`, one shard of a fleet in each of several). Each node runs the real
 * `Agent` (the core state machine and its runtime) with a real `Semaphore` against a real etcd;
 * what is simulated is D-Bus: update_engine is a fake update source, and the agent's `Rebooter`
 * takes the machine down in the simulator.
 *
 * Agents share a few etcd clients (`clients`, default one per 50 nodes): a thousand gRPC
 * connections in one process cost more than the agents do. Each agent still has its own leases
 * and its own txns, as on its own machine; the agents of one client share its group watch.
 *
 * A reboot stops the node's agent (its leases are not revoked, as when a machine goes down),
 * keeps the node down for the reboot time, then starts a new agent with a new boot id and the
 * update source idle on the new version. The reboot log, the invariant checks and the watchers
 * are the same as the process fleet's.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Agent,
  type AgentConfig,
  AgentMetrics,
  loadAgentConfig,
  type UpdateSignal,
  type UpdateSource,
} from '@sluice/agent';
import type { GroupKeys } from '@sluice/core';
import { connectEtcd, EtcdGroupSettings, Semaphore } from '@sluice/etcd';
import { HolderObserver } from '@sluice/testkit';
import { Etcd3 } from 'etcd3';
import { pino } from 'pino';
import {
  checkInvariants,
  type InvariantReport,
  type RebootEntry,
  type StageEntry,
} from './invariants.js';
import { startOrStop } from './procs.js';
import type { Random } from './random.js';
import type { TransitionRecord } from './report.js';
import { confirmSlot } from './slot-check.js';
import { GroupTimeline, simClientOptions, simGroupKeys } from './timeline.js';

/** update_engine, simulated: says whether a reboot is needed, and for which version. */
class FakeUpdateSource implements UpdateSource {
  readonly name = 'update-engine';
  #listener: ((s: UpdateSignal) => void) | null = null;
  #signal: UpdateSignal;

  constructor(staged: string | null) {
    this.#signal = FakeUpdateSource.signal(staged);
  }

  static signal(staged: string | null): UpdateSignal {
    return staged === null
      ? { needed: false, source: 'update-engine', detail: 'UPDATE_STATUS_IDLE' }
      : {
          needed: true,
          source: 'update-engine',
          detail: 'UPDATE_STATUS_UPDATED_NEED_REBOOT',
          version: staged,
        };
  }

  async start(onChange: (s: UpdateSignal) => void): Promise<void> {
    this.#listener = onChange;
    onChange(this.#signal);
  }

  current(): UpdateSignal {
    return this.#signal;
  }

  set(staged: string | null): void {
    this.#signal = FakeUpdateSource.signal(staged);
    this.#listener?.(this.#signal);
  }

  async close(): Promise<void> {
    this.#listener = null;
  }
}

/**
 * Polls `done()` until it holds. Throws after `timeoutMs`, or sooner when `progress()` (a
 * fingerprint of what has happened) has not changed for `stallMs`, with `describe()` in the
 * message: a stuck fleet fails its benchmark instead of hanging it.
 */
export async function waitWhileMoving(w: {
  done: () => boolean;
  progress: () => string;
  describe: () => string;
  timeoutMs: number;
  stallMs: number;
}): Promise<void> {
  const deadline = Date.now() + w.timeoutMs;
  let last = w.progress();
  let lastChange = Date.now();
  while (!w.done()) {
    const now = Date.now();
    const progress = w.progress();
    if (progress !== last) {
      last = progress;
      lastChange = now;
    }
    if (now > deadline || now - lastChange > w.stallMs) {
      const why = now > deadline ? `after ${w.timeoutMs} ms` : `stalled for ${w.stallMs} ms`;
      throw new Error(`${w.describe()} (${why})`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** One in-process node. */
interface Node {
  id: string;
  version: string;
  staged: string | null;
  boot: number;
  machine: 'up' | 'down';
  agent: Agent | null;
  source: FakeUpdateSource | null;
  state: string;
  client: Etcd3;
}

/** How to set up an in-process fleet. */
export interface InProcessOptions {
  etcd: { readonly endpoints: string[] };
  /** Nodes in the fleet (in all shards together). */
  nodes: number;
  max: number;
  rebootSeconds: number;
  /** Shared etcd clients. Default one per 50 nodes. */
  clients?: number;
  /** The waiters' lease TTL in seconds. Default 30, as `sluiced` has it. */
  sessionTTL?: number;
  holdTTL?: number;
  retryDelayMs?: number;
  prefix?: string;
  group?: string;
  /**
   * Runs one shard of a fleet split over several processes (see `SplitFleet`): node `i` of
   * `nodes` (ids numbered over the whole fleet) runs here when `i % of === index`. The caller
   * writes the group's max; `prefix` must be the shared one.
   */
  shard?: { index: number; of: number };
}

/** An in-process fleet. Create with {@link InProcessFleet.start}; always `stop()` it. */
export class InProcessFleet {
  readonly reboots: RebootEntry[] = [];
  readonly stages: StageEntry[] = [];
  readonly keys: GroupKeys;
  readonly nodes: Node[] = [];
  /** Warnings and errors the agents logged, by message (with the error text), and how often. */
  readonly problems = new Map<string, number>();
  /** Every transition of every agent: when each node decided what. */
  readonly transitions: TransitionRecord[] = [];
  timeline!: GroupTimeline;
  observer!: HolderObserver;
  #clients: Etcd3[] = [];
  /** The simulator's own client, for its checks. */
  #client: Etcd3 | null = null;
  #config!: AgentConfig;
  #dir = '';
  #timers = new Set<NodeJS.Timeout>();
  #stopped = false;

  private constructor(readonly opts: InProcessOptions) {
    this.keys = simGroupKeys(opts);
  }

  /** Connects, writes max, starts the watchers and every agent. */
  static async start(opts: InProcessOptions): Promise<InProcessFleet> {
    return startOrStop(new InProcessFleet(opts), (fleet) => fleet.#start());
  }

  async #start(): Promise<void> {
    const o = this.opts;
    const endpoints = o.etcd.endpoints;
    this.#dir = await mkdtemp(join(tmpdir(), 'sluice-inproc-'));
    const shard = o.shard ?? { index: 0, of: 1 };
    const mine = Math.ceil((o.nodes - shard.index) / shard.of);
    const count = o.clients ?? Math.max(1, Math.ceil(mine / 50));
    for (let i = 0; i < count; i++) this.#clients.push(await connectEtcd({ endpoints }));
    this.#client = new Etcd3(simClientOptions(endpoints));
    if (!o.shard) await this.#clients[0]!.put(this.keys.max).value(String(o.max)).exec();
    // One validated config, through the agent's own loader; each node gets its own id.
    const file = join(this.#dir, 'sluiced.yaml');
    await writeFile(
      file,
      [
        'node: { id: template }',
        'etcd:',
        `  endpoints: [${endpoints.join(', ')}]`,
        `  prefix: "${this.keys.prefix}"`,
        `  group: ${this.keys.group}`,
        `  sessionTTL: ${o.sessionTTL ?? 30}s`,
        `  holdTTL: ${o.holdTTL ?? Math.max(60, Math.ceil(2 * o.rebootSeconds + 10))}s`,
        'sources: { sentinel: off, manual: false }',
        "# Not used: each agent gets the simulator's Rebooter.",
        'reboot: { method: command, command: "false" }',
        'metrics: { listen: off }',
        '',
      ].join('\n'),
    );
    this.#config = await loadAgentConfig({
      configFile: file,
      env: {},
      updateConfFiles: [],
    });
    this.timeline = await GroupTimeline.start(endpoints, this.keys);
    this.observer = await HolderObserver.start(endpoints, this.keys.root);
    const width = String(o.nodes).length;
    for (let i = shard.index; i < o.nodes; i += shard.of) {
      const id = `n${String(i + 1).padStart(width, '0')}`;
      await writeFile(join(this.#dir, `${id}.boot`), 'boot-1\n');
      this.nodes.push({
        id,
        version: '1.0.0',
        staged: null,
        boot: 1,
        machine: 'up',
        agent: null,
        source: null,
        state: 'stopped',
        client: this.#clients[this.nodes.length % count]!,
      });
    }
    for (const node of this.nodes) await this.#startAgent(node);
  }

  async #startAgent(node: Node): Promise<void> {
    const config: AgentConfig = {
      ...this.#config,
      node: { ...this.#config.node, id: node.id, hostname: node.id },
    };
    const e = config.etcd;
    const semaphore = new Semaphore(node.client, {
      node: node.id,
      hostname: node.id,
      prefix: e.prefix,
      group: e.group,
      sessionTTL: e.sessionTTL,
      holdTTL: e.holdTTL,
    });
    const source = new FakeUpdateSource(node.staged);
    // Warnings and errors are counted by message; "rebooting now" is expected once per reboot.
    const logger = pino(
      { level: 'warn', base: null },
      {
        write: (line: string) => {
          if (line.includes('"msg":"rebooting now"')) return;
          const entry = JSON.parse(line) as { msg?: string; err?: string };
          const key = `${entry.msg ?? ''}${entry.err ? `: ${entry.err}` : ''}`;
          this.problems.set(key, (this.problems.get(key) ?? 0) + 1);
        },
      },
    );
    const agent: Agent = new Agent({
      config,
      lock: semaphore,
      settings: new EtcdGroupSettings(node.client, semaphore.keys, node.id),
      sources: [source],
      logger,
      metrics: new AgentMetrics(),
      bootIdFile: join(this.#dir, `${node.id}.boot`),
      retryDelayMs: this.opts.retryDelayMs ?? 1000,
      rebooter: { reboot: async (): Promise<void> => this.#rebooted(node, agent) },
    });
    agent.onTransition((state, edge) => {
      node.state = state.name;
      this.transitions.push({ at: Date.now(), node: node.id, to: state.name, edge });
    });
    node.agent = agent;
    node.source = source;
    node.state = 'recovering';
    await agent.start();
  }

  #rebooted(node: Node, agent: Agent): void {
    if (node.agent !== agent || node.machine === 'down' || this.#stopped) return;
    const entry: RebootEntry = {
      node: node.id,
      seq: this.reboots.filter((r) => r.node === node.id).length + 1,
      downAt: Date.now(),
      upAt: null,
      versionBefore: node.version,
      versionAfter: node.staged ?? node.version,
      slotSeen: null,
      slotSeenAfterMs: null,
      admissionRevision: null,
    };
    this.reboots.push(entry);
    node.machine = 'down';
    node.agent = null;
    node.source = null;
    node.state = 'down';
    void agent.stop();
    const checked = confirmSlot(entry, this.observer, async (id) => {
      const kv = (await this.#client!.get(this.keys.holding(id)).exec()).kvs[0];
      return kv ? Number(kv.create_revision) : null;
    });
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      void checked.then(() => this.#boot(node, entry));
    }, this.opts.rebootSeconds * 1000);
    this.#timers.add(timer);
  }

  async #boot(node: Node, entry: RebootEntry): Promise<void> {
    if (this.#stopped) return;
    node.boot++;
    await writeFile(join(this.#dir, `${node.id}.boot`), `boot-${node.boot}\n`);
    if (node.staged !== null) node.version = node.staged;
    node.staged = null;
    node.machine = 'up';
    entry.upAt = Date.now();
    await this.#startAgent(node);
  }

  /** Stages `version` on every node, each at a random moment within `spreadMs`. */
  async stageAll(
    version: string,
    opts: { spreadMs?: number; random?: Random } = {},
  ): Promise<void> {
    await Promise.all(
      this.nodes.map(async (node) => {
        const delay = opts.spreadMs && opts.random ? opts.random.between(0, opts.spreadMs) : 0;
        if (delay > 0) await new Promise((r) => setTimeout(r, delay));
        node.staged = version;
        this.stages.push({ node: node.id, version, at: Date.now() });
        node.source?.set(version);
      }),
    );
  }

  /** True when every node runs `version`, idle, with no key left in etcd. */
  rolloutDone(version: string): boolean {
    return this.nodes.every(
      (n) =>
        n.machine === 'up' &&
        n.version === version &&
        n.state === 'idle' &&
        this.timeline.get(this.keys.queue(n.id)) === null &&
        this.timeline.get(this.keys.holding(n.id)) === null,
    );
  }

  /**
   * Waits until the rollout of `version` is done. Throws after `timeoutMs`, or sooner when
   * nothing has moved (no reboot, no admission, no release) for `stallMs`: an agent that is
   * stuck should fail the benchmark, not hang it.
   */
  async waitForRollout(version: string, timeoutMs: number, stallMs = 60_000): Promise<void> {
    await waitWhileMoving({
      done: () => this.rolloutDone(version),
      progress: () =>
        `${this.reboots.length}/${this.timeline.markers.length}/${this.timeline.events.length}`,
      describe: () => `rollout not done: ${JSON.stringify(this.states())}`,
      timeoutMs,
      stallMs,
    });
  }

  /** How many nodes are in each agent state (down for machines rebooting). */
  states(): Record<string, number> {
    const states: Record<string, number> = {};
    for (const n of this.nodes) states[n.state] = (states[n.state] ?? 0) + 1;
    return states;
  }

  /** Waits (up to about two minutes) for the slot checks of the last reboots to answer. */
  async slotChecks(): Promise<void> {
    const deadline = Date.now() + 125_000;
    while (this.reboots.some((r) => r.slotSeen === null) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Waits for the slot checks of the last reboots, then checks every invariant. */
  async check(complete = true): Promise<InvariantReport> {
    await this.slotChecks();
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
    return Number((await this.#clients[0]!.get(this.keys.max).exec()).header.revision);
  }

  /** Stops every agent, the watchers and the clients. Idempotent. */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const timer of this.#timers) clearTimeout(timer);
    await Promise.all(this.nodes.map((n) => n.agent?.stop().catch(() => {})));
    await this.observer?.stop().catch(() => {});
    await this.timeline?.stop().catch(() => {});
    for (const client of this.#clients) client.close();
    this.#client?.close();
    if (this.#dir) await rm(this.#dir, { recursive: true, force: true });
  }
}
