/**
 * A simulated fleet: N {@link SimNode}s, each running the real `sluiced`, against a real etcd
 * (one member by default, or a cluster), with the simulator's own records of everything that
 * happened: the reboot log, staged updates, its changes of max, pause and window, and two
 * independent etcd watchers (a {@link GroupTimeline} and the testkit's HolderObserver).
 *
 * ```ts
 * const fleet = await Fleet.start({ nodes: 6, max: 2, rebootSeconds: 2 });
 * try {
 *   await fleet.stageAll('2.0.0');
 *   await fleet.waitForRollout('2.0.0');
 *   expect(fleet.check().violations).toEqual([]);
 * } finally {
 *   await fleet.stop();
 * }
 * ```
 *
 * Every process the fleet starts (agents, dbus-daemons, and etcd unless one was passed in) is
 * stopped by PID in `stop()`, which is also registered to run on SIGINT/SIGTERM of entry points
 * that call `installShutdownHandlers()`.
 *
 * Why one file: the simulated fleet owns every process it starts (etcd members, proxies, agents,
 * the simulated logind) and stops them all by PID; one owner keeps that cleanup complete.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type GroupKeys, parseCanary } from '@sluice/core';
import { type EtcdCluster, HolderObserver, startEtcd } from '@sluice/testkit';
import { Etcd3 } from 'etcd3';
import {
  checkInvariants,
  type InvariantReport,
  type MaxSetEntry,
  type RebootEntry,
  type StageEntry,
  type UnlockEntry,
} from './invariants.js';
import { AgentLink } from './links.js';
import { SimNode, type SimNodeHooks, type SimOs } from './node.js';
import { onShutdown } from './procs.js';
import type { Random } from './random.js';
import { confirmSlot } from './slot-check.js';
import { GroupTimeline, simClientOptions, simGroupKeys } from './timeline.js';

const run = promisify(execFile);

/** The built operator CLI, used for pause, resume and unlock when it exists. */
export const SLUICECTL = fileURLToPath(new URL('../../cli/dist/main.js', import.meta.url));

/** How to set up a fleet. Everything but `nodes` has a default. */
export interface FleetOptions {
  /** How many nodes. */
  nodes: number;
  /** The group's max, written before the agents start. Default: left unset (1). */
  max?: number;
  /**
   * Failure domains: node i (from 1) is in `zone-<1 + (i-1) mod domains>`. Default: none. The
   * invariants then check `domainMax` per domain, from the reboot log and this assignment.
   */
  domains?: number;
  /** The group's `domain-max`, written before the agents start. Default: unset (no limit). */
  domainMax?: number;
  /**
   * The group's canary, written before the agents start: the first `count` nodes of each new
   * version reboot alone, then soak (`soak`, e.g. "5s"). The invariants then check rule 10.
   */
  canary?: { count: number; soak: string };
  /** How long a reboot keeps a machine down, in seconds. Default 3. */
  rebootSeconds?: number;
  /** Spread reboot times by up to ± this fraction, from `random`. Default 0. */
  rebootJitter?: number;
  /** Use this etcd (not stopped by the fleet). Default: start one. */
  etcd?: EtcdCluster;
  /** Members of the etcd the fleet starts. Default 1. */
  members?: number;
  /** Key prefix. Default a fresh `/sim-<id>/`. */
  prefix?: string;
  /** Group. Default `default`. */
  group?: string;
  /** The waiting key's lease in seconds. Default 3. */
  sessionTTL?: number;
  /** The slot's lease in seconds. Default 30, or twice the reboot time plus 10 s if longer. */
  holdTTL?: number;
  /** The agents' back-off after a failure. Default `1s`. */
  retryDelay?: string;
  /** A group window spec written before the agents start. */
  window?: string;
  /** The OS version installed at the start. Default `1.0.0`. */
  version?: string;
  /** Node ids are `<nodeName><nn>`. Default `n`. */
  nodeName?: string;
  /** Agents serve metrics on a free loopback port. Default off. */
  metrics?: boolean;
  /** The agents' log level. Default `info` (the simulator follows transitions in the log). */
  logLevel?: 'debug' | 'info' | 'warn';
  /** When an agent exits on its own, start it again after this many ms; null: leave it down. */
  restartAgentsAfterMs?: number | null;
  /** Where node directories go. Default a fresh temp directory, removed by `stop()`. */
  dir?: string;
  /** Keep the directory (logs) after `stop()`. */
  keepDir?: boolean;
  /** Randomness for reboot jitter. */
  random?: Random;
  /** Extra YAML for every agent's config. */
  extraYaml?: string;
  /** What the machines run: update_engine (`flatcar`, default) or rpm-ostree (`fcos`). */
  os?: SimOs;
  /**
   * Each agent reaches etcd through a link of its own (a fault proxy per member, see
   * {@link AgentLink}), which `link(id)` returns. Default off: agents dial the members.
   */
  links?: boolean;
  /** Agents run under libfaketime, so that `setClock()` can set their clocks off. Default off. */
  fakeClocks?: boolean;
  /** The `sluiced` program every machine runs (see `SimNodeOptions.agent`). Default the built agent. */
  agent?: string;
  /** The group's loss budget, written before the agents start. Default: left unset (0). */
  lossBudget?: number;
  /**
   * How long a rebooting machine stays down at most waiting for the observer to show its marker
   * (see `confirmSlot`), in ms. Default 120 s, for etcd outages; a test that expects a reboot
   * without a marker sets less.
   */
  slotCheckMs?: number;
}

/** Resolves with `p`'s value, or undefined if it fails or takes longer than `ms` (etcd may hang). */
export async function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const result = await Promise.race([
    p.catch(() => undefined),
    new Promise<undefined>((r) => {
      timer = setTimeout(() => r(undefined), ms);
    }),
  ]);
  clearTimeout(timer);
  return result;
}

/** Something the simulator did or saw, for logs and the HTML timeline. */
export interface FleetEvent {
  at: number;
  kind: string;
  node?: string;
  detail?: string;
}

/** A transition an agent logged. */
export interface AgentTransition {
  at: number;
  node: string;
  from: string;
  to: string;
  edge: string;
}

/** One node as a progress display shows it. */
export interface NodeView {
  id: string;
  /** Combined state: the machine's (down), the etcd record's, else the agent's own. */
  state: string;
  /** 1-based place among waiters, when waiting. */
  position: number | null;
  version: string;
  staged: string | null;
  machine: 'up' | 'down';
  agentRunning: boolean;
  agentState: string;
  reboots: number;
}

/** The result of running a command. */
export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * What a node whose record says `rebooting` is doing: `booting` when the machine came back up
 * after the record was written (the agent runs again and has yet to move on), `rebooting` before
 * that (the reboot is confirmed and about to be asked for, or the machine is going down).
 * `recordAt` is when the record turned `rebooting`, `lastUpAt` when the node last booted.
 */
export function rebootingOrBooting(
  recordAt: number | null,
  lastUpAt: number | null,
): 'rebooting' | 'booting' {
  return recordAt !== null && lastUpAt !== null && lastUpAt >= recordAt ? 'booting' : 'rebooting';
}

/** A running fleet. Create with {@link Fleet.start}; always `stop()` it. */
export class Fleet {
  readonly nodes: SimNode[] = [];
  /** Each machine's failure domain, by name, when the fleet has domains (`FleetOptions.domains`). */
  readonly domains = new Map<string, string>();
  /** Cloned machines (another node's id) added with `addClone()`; not part of the rollout. */
  readonly clones: SimNode[] = [];
  /** Every operator `unlock --force` the fleet ran, for the checker. */
  readonly unlocks: UnlockEntry[] = [];
  readonly reboots: RebootEntry[] = [];
  readonly stages: StageEntry[] = [];
  readonly maxSets: MaxSetEntry[] = [];
  readonly events: FleetEvent[] = [];
  readonly transitions: AgentTransition[] = [];
  readonly keys: GroupKeys;
  /** When the fleet was started (ms). */
  readonly startedAt = Date.now();
  timeline!: GroupTimeline;
  observer!: HolderObserver;
  etcd!: EtcdCluster;
  #ownsEtcd = false;
  #client: Etcd3 | null = null;
  readonly #links = new Map<string, AgentLink>();
  #hooks!: SimNodeHooks;
  #dir = '';
  #stopping: Promise<void> | null = null;
  #unregister: () => void = () => {};
  readonly #listeners = new Set<(event: FleetEvent) => void>();

  private constructor(readonly opts: FleetOptions) {
    this.keys = simGroupKeys(opts);
  }

  /** Starts etcd (unless given), the watchers and every node, and waits for the agents. */
  static async start(opts: FleetOptions): Promise<Fleet> {
    const fleet = new Fleet(opts);
    fleet.#unregister = onShutdown(() => fleet.stop());
    try {
      await fleet.#start();
    } catch (error) {
      await fleet.stop();
      throw error;
    }
    return fleet;
  }

  async #start(): Promise<void> {
    const o = this.opts;
    if (o.etcd) {
      this.etcd = o.etcd;
    } else {
      this.etcd = await startEtcd({ members: o.members ?? 1 });
      this.#ownsEtcd = true;
    }
    this.#dir = o.dir ?? (await mkdtemp(join(tmpdir(), 'sluice-sim-')));
    this.#client = new Etcd3(simClientOptions(this.endpoints));
    if (o.max !== undefined) await this.setMax(o.max);
    if (o.window !== undefined) await this.setWindow(o.window);
    if (o.domainMax !== undefined) {
      await this.#client.put(this.keys.domainMax).value(String(o.domainMax));
    }
    if (o.canary !== undefined) {
      await this.#client.put(this.keys.canary).value(JSON.stringify(o.canary));
    }
    if (o.lossBudget !== undefined) {
      await this.#client.put(this.keys.lossBudget).value(String(o.lossBudget));
    }
    this.timeline = await GroupTimeline.start(this.endpoints, this.keys);
    this.observer = await HolderObserver.start(
      this.endpoints,
      this.keys.root,
      simClientOptions(this.endpoints),
    );
    const hooks: SimNodeHooks = {
      reboot: (node) => this.#onReboot(node),
      booted: (node) => this.#onBooted(node),
      transition: (node, from, to, edge, at) => {
        this.transitions.push({ at, node: node.id, from, to, edge });
      },
      agentExited: (node, code, signal) => {
        this.note('agent-exit', node.id, `exited on its own (${code ?? signal})`);
        const after = o.restartAgentsAfterMs === undefined ? 1000 : o.restartAgentsAfterMs;
        if (after !== null && node.machine === 'up') {
          node.later(after, () => {
            if (node.machine === 'up' && !node.agentRunning) void this.startAgent(node.id);
          });
        }
      },
    };
    this.#hooks = hooks;
    const width = Math.max(2, String(o.nodes).length);
    for (let i = 1; i <= o.nodes; i++) {
      const name = `${o.nodeName ?? 'n'}${String(i).padStart(width, '0')}`;
      if (o.domains) this.domains.set(name, `zone-${1 + ((i - 1) % o.domains)}`);
      this.nodes.push(await this.#machine(name));
    }
    await Promise.all(this.nodes.map((n) => n.setup()));
    await Promise.all(this.nodes.map((n) => this.startAgent(n.id)));
    this.note('fleet-started', undefined, `${o.nodes} nodes`);
  }

  /** A new machine named `id` (not set up yet), with its link when the fleet has links. */
  async #machine(id: string, nodeId?: string): Promise<SimNode> {
    const o = this.opts;
    const baseMs = (o.rebootSeconds ?? 3) * 1000;
    const jitter = o.rebootJitter && o.random ? o.random.between(-1, 1) * o.rebootJitter : 0;
    let endpoints = this.endpoints;
    if (o.links) {
      const link = await AgentLink.start(this.endpoints);
      this.#links.set(id, link);
      endpoints = link.endpoints;
    }
    return new SimNode(
      {
        id,
        ...(nodeId ? { nodeId } : {}),
        dir: join(this.#dir, id),
        endpoints,
        prefix: this.keys.prefix,
        group: this.keys.group,
        sessionTTL: o.sessionTTL ?? 3,
        // The hold lease must outlast a reboot, or every rebooting node counts as lost.
        holdTTL: o.holdTTL ?? Math.max(30, Math.ceil(2 * (o.rebootSeconds ?? 3) + 10)),
        retryDelay: o.retryDelay ?? '1s',
        metrics: o.metrics ?? false,
        logLevel: o.logLevel ?? 'info',
        version: o.version ?? '1.0.0',
        rebootMs: Math.round(baseMs * (1 + jitter)),
        ...(this.domains.has(nodeId ?? id) ? { domain: this.domains.get(nodeId ?? id)! } : {}),
        ...(o.extraYaml ? { extraYaml: o.extraYaml } : {}),
        ...(o.fakeClocks ? { fakeClock: true } : {}),
        ...(o.os ? { os: o.os } : {}),
        ...(o.agent ? { agent: o.agent } : {}),
      },
      this.#hooks,
    );
  }

  /**
   * Adds a cloned machine: a machine of its own (bus, update_engine, logind) whose agent runs
   * with the node id of `of`, as a VM cloned from another's image would (same /etc/machine-id).
   * It is not part of the rollout; `removeClone()` takes it away again. Its agent starts at once
   * unless `start` is false (then `startAgent(clone.id)` starts it). Returns it.
   */
  async addClone(of: string, opts: { start?: boolean } = {}): Promise<SimNode> {
    const original = this.node(of);
    const name = `${original.id}-clone${this.clones.filter((c) => c.nodeId === of).length + 1}`;
    const clone = await this.#machine(name, original.nodeId);
    this.clones.push(clone);
    await clone.setup();
    this.note('clone', name, `a second machine with node id ${original.nodeId}`);
    if (opts.start !== false) await this.startAgent(name);
    return clone;
  }

  /** Takes a cloned machine away: its agent is killed and its bus stopped. Idempotent. */
  async removeClone(name: string): Promise<void> {
    const clone = this.clones.find((c) => c.id === name);
    if (!clone || this.#removed.has(name)) return;
    this.#removed.add(name);
    this.note('clone-removed', name);
    await clone.stop();
    await this.#links.get(name)?.stop();
  }

  readonly #removed = new Set<string>();

  /** A machine's link to etcd (fleets started with `links`). */
  link(id: string): AgentLink {
    const link = this.#links.get(id);
    if (!link) throw new Error(`${id} has no link of its own (start the fleet with links: true)`);
    return link;
  }

  /** Sets a machine's agent clock `seconds` off the real one (fleets with `fakeClocks`). */
  async setClock(id: string, seconds: number): Promise<void> {
    await this.node(id).setClockOffset(seconds);
    this.note('clock', id, `${seconds >= 0 ? '+' : ''}${seconds} s`);
  }

  /** SIGSTOPs a machine's agent (`why` goes to the event log); `thawAgent()` continues it. */
  freezeAgent(id: string, why = ''): void {
    const node = this.node(id);
    if (!node.agentRunning || node.frozen) return;
    this.note('freeze', id, `in state ${node.agentState}${why ? ` for ${why}` : ''}`);
    node.freeze();
  }

  /** SIGCONTs a frozen agent. */
  thawAgent(id: string): void {
    const node = this.node(id);
    if (!node.frozen) return;
    node.thaw();
    this.note('thaw', id);
  }

  /** Thaws every frozen agent at once. */
  thawAll(): void {
    for (const node of this.machines) {
      if (!node.frozen) continue;
      node.thaw();
      this.note('thaw', node.id);
    }
  }

  /**
   * Releases a node's slot as an operator would, with `sluicectl unlock --force` (and `--yes`
   * where sluicectl asks for it), and records it for the checker: when it ran, and etcd's
   * revision just before and just after (unless etcd could not say), between which it deleted
   * what it deleted. Returns the exit code.
   */
  async forceUnlock(node: string): Promise<number> {
    const args = ['unlock', node, '--force', ...((await this.#unlockNeedsYes()) ? ['--yes'] : [])];
    const fromRevision = await this.#revision();
    const at = Date.now();
    const res = await this.sluicectl(args);
    const doneAt = Date.now();
    const toRevision = fromRevision === null ? null : await this.#revision();
    this.unlocks.push({
      node,
      at,
      doneAt,
      code: res.code,
      ...(fromRevision !== null && toRevision !== null ? { fromRevision, toRevision } : {}),
    });
    this.note('unlock', node, `sluicectl ${args.join(' ')}: exit ${res.code}`);
    return res.code;
  }

  /**
   * Learns ahead which options this sluicectl's unlock takes, so that a later `forceUnlock()` is
   * a single command: for a test whose timing starts at the unlock.
   */
  async prepareUnlock(): Promise<void> {
    await this.#unlockNeedsYes();
  }

  #yes: Promise<boolean> | null = null;

  /** Whether this sluicectl's unlock has a `--yes` (its confirmation for a live reboot). */
  #unlockNeedsYes(): Promise<boolean> {
    this.#yes ??= this.sluicectl(['unlock', '--help']).then((r) => r.stdout.includes('--yes'));
    return this.#yes;
  }

  /** The etcd client URLs. */
  get endpoints(): string[] {
    return this.etcd.endpoints;
  }

  /** The fleet's working directory (node configs and agent logs). */
  get dir(): string {
    return this.#dir;
  }

  /** Every machine: the fleet's nodes and any clones. */
  get machines(): SimNode[] {
    return [...this.nodes, ...this.clones];
  }

  /** The machine with this name (a node or a clone); throws if there is none. */
  node(id: string): SimNode {
    const node = this.machines.find((n) => n.id === id);
    if (!node) throw new Error(`no node ${id} in the fleet`);
    return node;
  }

  /** Records an event (also for tests and drivers: `etcd-down`, `kill-leader`, …). */
  note(kind: string, node?: string, detail?: string): void {
    const event: FleetEvent = {
      at: Date.now(),
      kind,
      ...(node ? { node } : {}),
      ...(detail ? { detail } : {}),
    };
    this.events.push(event);
    for (const listener of this.#listeners) listener(event);
  }

  /** Calls `listener` on every recorded event. Returns an unsubscribe function. */
  onEvent(listener: (event: FleetEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #onReboot(node: SimNode): Promise<void> {
    const entry: RebootEntry = {
      node: node.nodeId,
      machine: node.id,
      seq: this.reboots.filter((r) => (r.machine ?? r.node) === node.id).length + 1,
      downAt: Date.now(),
      upAt: null,
      versionBefore: node.version,
      versionAfter: node.staged ?? node.version,
      slotSeen: null,
      slotSeenAfterMs: null,
      admissionRevision: null,
    };
    this.reboots.push(entry);
    this.note('down', node.id, `${entry.versionBefore} -> ${entry.versionAfter}`);
    // Which agent went down: its token tells its record from a twin's (the first line of the file).
    void readFile(join(node.opts.dir, 'instance'), 'utf8').then(
      (text) => {
        const token = text.split('\n')[0];
        if (token) entry.token = token;
      },
      () => {},
    );
    return confirmSlot(
      entry,
      this.observer,
      (id) => this.#markerRevision(id),
      this.opts.slotCheckMs,
    );
  }

  /** etcd's current revision, or null when etcd does not answer within 2 s. */
  async #revision(): Promise<number | null> {
    const res = await within(this.#client!.get(this.keys.max).exec(), 2000);
    return res ? Number(res.header.revision) : null;
  }

  async #markerRevision(node: string): Promise<number | null> {
    const res = await this.#client!.get(this.keys.holding(node)).exec();
    const kv = res.kvs[0];
    return kv ? Number(kv.create_revision) : null;
  }

  #onBooted(node: SimNode): void {
    const entry = this.reboots
      .filter((r) => (r.machine ?? r.node) === node.id && r.upAt === null)
      .at(-1);
    if (entry) entry.upAt = Date.now();
    this.note('up', node.id, node.version);
  }

  /** Starts a node's agent and waits until it has recovered. */
  async startAgent(id: string): Promise<void> {
    const node = this.node(id);
    if (node.agentRunning || node.machine === 'down') return;
    this.note('agent-start', id);
    await node.startAgent();
  }

  /**
   * SIGKILLs a node's agent, as a crash would. With `restartAfterMs`, starts it again after that
   * long (systemd's Restart=), if the machine is still up then.
   */
  async killAgent(id: string, opts: { restartAfterMs?: number } = {}): Promise<void> {
    const node = this.node(id);
    if (!node.agentRunning) return;
    this.note('agent-kill', id, `in state ${node.agentState}`);
    await node.killAgent();
    if (opts.restartAfterMs !== undefined) {
      node.later(opts.restartAfterMs, () => void this.startAgent(id));
    }
  }

  /**
   * Stages `version` on the given nodes (default all): update_engine reports
   * UPDATE_STATUS_UPDATED_NEED_REBOOT. With `spreadMs`, each node gets it at a random moment
   * within that span (needs `random`).
   */
  async stageAll(
    version: string,
    opts: { nodes?: string[]; spreadMs?: number; random?: Random } = {},
  ): Promise<void> {
    const targets = (opts.nodes ?? this.nodes.map((n) => n.id)).map((id) => this.node(id));
    await Promise.all(
      targets.map(async (node) => {
        const delay = opts.spreadMs && opts.random ? opts.random.between(0, opts.spreadMs) : 0;
        if (delay > 0) await sleep(delay);
        this.stages.push({
          node: node.id,
          version,
          at: Date.now(),
          ...(this.clones.includes(node) ? { optional: true } : {}),
        });
        this.note('staged', node.id, version);
        await node.stageUpdate(version);
      }),
    );
  }

  /** Writes max. `via` picks the tool: the simulator's client, the real etcdctl, or sluicectl. */
  async setMax(
    value: number | string,
    via: 'client' | 'etcdctl' | 'sluicectl' = 'client',
  ): Promise<void> {
    const text = String(value);
    const at = Date.now();
    if (via === 'etcdctl') {
      await this.etcd.etcdctl(['put', this.keys.max, text]);
    } else if (via === 'sluicectl') {
      await this.sluicectlOk(['set-max', text]);
    } else {
      await this.#client!.put(this.keys.max).value(text).exec();
    }
    this.maxSets.push({ at, doneAt: Date.now(), value: text, via });
    this.note('max', undefined, `max ${text} (${via})`);
  }

  /**
   * Writes (or with null deletes) the group's window spec. `via` picks the tool: etcdctl
   * (default), the simulator's client, or `sluicectl windows set/clear`.
   */
  async setWindow(
    spec: string | null,
    via: 'client' | 'etcdctl' | 'sluicectl' = 'etcdctl',
  ): Promise<void> {
    if (via === 'sluicectl') {
      await this.sluicectlOk(spec === null ? ['windows', 'clear'] : ['windows', 'set', spec]);
    } else if (via === 'client') {
      if (spec === null) await this.#client!.delete().key(this.keys.windows).exec();
      else await this.#client!.put(this.keys.windows).value(spec).exec();
    } else if (spec === null) {
      await this.etcd.etcdctl(['del', this.keys.windows]);
    } else {
      await this.etcd.etcdctl(['put', this.keys.windows, spec]);
    }
    this.note('window', undefined, `${spec ?? 'removed (always open)'} (${via})`);
  }

  /** True when the built sluicectl exists. */
  get hasSluicectl(): boolean {
    return existsSync(SLUICECTL);
  }

  /** Runs the built sluicectl against this fleet's etcd, prefix and group. */
  async sluicectl(args: readonly string[]): Promise<CommandResult> {
    const argv = [
      SLUICECTL,
      '--endpoints',
      this.endpoints.join(','),
      '--prefix',
      this.keys.prefix,
      '--group',
      this.keys.group,
      ...args,
    ];
    try {
      const { stdout, stderr } = await run(process.execPath, argv, {
        env: { PATH: process.env.PATH, HOME: process.env.HOME, USER: 'sim' },
        timeout: 20_000,
      });
      return { code: 0, stdout, stderr };
    } catch (error) {
      const e = error as { code?: number; stdout?: string; stderr?: string };
      return {
        code: typeof e.code === 'number' ? e.code : -1,
        stdout: e.stdout ?? '',
        stderr: e.stderr ?? String(error),
      };
    }
  }

  /** Runs sluicectl and throws with its output unless it exits 0. */
  async sluicectlOk(args: readonly string[]): Promise<string> {
    const res = await this.sluicectl(args);
    if (res.code !== 0) {
      throw new Error(`sluicectl ${args.join(' ')} exited ${res.code}: ${res.stderr}${res.stdout}`);
    }
    return res.stdout;
  }

  /** Pauses the group, with sluicectl when it is built, else with etcdctl. */
  async pause(reason: string): Promise<void> {
    if (this.hasSluicectl) await this.sluicectlOk(['pause', '--reason', reason]);
    else await this.etcd.etcdctl(['put', this.keys.paused, reason]);
    this.note('pause', undefined, reason);
  }

  /** Resumes the group, with sluicectl when it is built, else with etcdctl. */
  async resume(): Promise<void> {
    if (this.hasSluicectl) await this.sluicectlOk(['resume']);
    else await this.etcd.etcdctl(['del', this.keys.paused]);
    this.note('resume');
  }

  /** The current etcd revision (from a fresh read). */
  async revision(): Promise<number> {
    const res = await this.#client!.get(this.keys.max).exec();
    return Number(res.header.revision);
  }

  /**
   * True when the node runs `version`, is up, its agent is idle, and etcd holds neither a queue
   * key nor a holding marker for it.
   */
  nodeDone(id: string, version: string): boolean {
    const node = this.node(id);
    return (
      node.machine === 'up' &&
      node.version === version &&
      node.staged === null &&
      node.agentRunning &&
      node.agentState === 'idle' &&
      this.timeline.get(this.keys.queue(id)) === null &&
      this.timeline.get(this.keys.holding(id)) === null
    );
  }

  /** True when every node but `except` is done with `version` (see {@link nodeDone}). */
  rolloutDone(version: string, except: readonly string[] = []): boolean {
    return this.nodes.every((n) => except.includes(n.id) || this.nodeDone(n.id, version));
  }

  /** Waits until `predicate()` holds; throws with the fleet's state after `timeoutMs`. */
  async waitFor(predicate: () => boolean, what: string, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      if (Date.now() > deadline) {
        throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${this.describe()}`);
      }
      await sleep(25);
    }
  }

  /** Waits until the rollout of `version` is done on every node but `except`. */
  async waitForRollout(
    version: string,
    opts: { timeoutMs?: number; except?: string[] } = {},
  ): Promise<void> {
    await this.waitFor(
      () => this.rolloutDone(version, opts.except ?? []),
      `every node to run ${version}`,
      opts.timeoutMs ?? 120_000,
    );
    this.note('rollout-done', undefined, version);
  }

  /** Each node as a display shows it. */
  view(): NodeView[] {
    const queue = new Map(this.timeline.queue().map((q) => [q.node, q]));
    const lost = new Set(this.timeline.lost);
    return this.nodes.map((n) => {
      const q = queue.get(n.id);
      let state: string;
      if (n.machine === 'down') state = lost.has(n.id) ? 'down, lost' : 'down';
      else if (q && q.state === 'rebooting') {
        state = rebootingOrBooting(
          this.timeline.records.get(n.id)?.at(-1)?.at ?? null,
          this.reboots.filter((r) => r.node === n.id && r.upAt !== null).at(-1)?.upAt ?? null,
        );
      } else if (q) state = q.state;
      else if (lost.has(n.id)) state = 'lost';
      else if (n.staged !== null) {
        state = ['recovering', 'idle', 'stopped'].includes(n.agentState) ? 'staged' : n.agentState;
      } else if (this.reboots.some((r) => (r.machine ?? r.node) === n.id)) state = 'updated';
      else state = 'idle';
      if (!n.agentRunning && n.machine === 'up') state = `${state} (agent down)`;
      return {
        id: n.id,
        state,
        position: q?.position ?? null,
        version: n.version,
        staged: n.staged,
        machine: n.machine,
        agentRunning: n.agentRunning,
        agentState: n.agentState,
        reboots: this.reboots.filter((r) => (r.machine ?? r.node) === n.id).length,
      };
    });
  }

  /** A multi-line description of every node, for failure messages. */
  describe(): string {
    const lines = this.view().map(
      (v) =>
        `  ${v.id}: ${v.state}${v.position ? ` #${v.position}` : ''} v${v.version}${v.staged ? ` (staged ${v.staged})` : ''} agent=${v.agentState} reboots=${v.reboots}`,
    );
    const paused = this.timeline.paused;
    return [
      `fleet ${this.keys.root} max=${this.timeline.max}${paused ? ` paused=${paused}` : ''} holders=[${this.timeline.holders.join(', ')}]`,
      ...lines,
    ].join('\n');
  }

  /** Checks the invariants over everything recorded so far (see invariants.ts). */
  check(opts: { complete?: boolean; leftover?: string[] } = {}): InvariantReport {
    return checkInvariants({
      reboots: this.reboots,
      stages: this.stages,
      maxSets: this.maxSets,
      unlocks: this.unlocks,
      timeline: this.timeline,
      ...(this.opts.domainMax !== undefined && this.domains.size > 0
        ? { domains: { of: this.domains, max: this.opts.domainMax } }
        : {}),
      ...this.#canaryRule(),
      observerGap: this.observer?.gaps.length ? new Error(this.observer.gaps.join('; ')) : null,
      complete: opts.complete ?? true,
      ...(opts.leftover ? { leftover: opts.leftover } : {}),
    });
  }

  /** The canary as the agents read it, for rule 10 (none when unset or not valid). */
  #canaryRule(): { canary?: { count: number; soakMs: number } } {
    if (!this.opts.canary) return {};
    const parsed = parseCanary(JSON.stringify(this.opts.canary), this.keys.canary);
    return parsed.ok && parsed.value ? { canary: parsed.value } : {};
  }

  /**
   * The group's slot keys left in etcd (queue keys and holding markers), read directly with the
   * simulator's own client: once a rollout is over there must be none.
   */
  async leftoverSlots(): Promise<string[]> {
    const read = async (prefix: string) =>
      (await this.#client!.getAll().prefix(prefix).keys()).map((k) =>
        k.slice(this.keys.root.length),
      );
    return [...(await read(this.keys.queuePrefix)), ...(await read(this.keys.holdingPrefix))];
  }

  /** Waits until every reboot's slot check has finished (see `confirmSlot`). */
  async settle(): Promise<void> {
    await this.waitFor(
      () => this.reboots.every((r) => r.slotSeen !== null),
      'the slot checks of the last reboots',
      125_000,
    );
  }

  /**
   * Stops every node (agents by PID), the watchers, and etcd if the fleet started it; removes the
   * directory unless `keepDir`. Idempotent.
   */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      this.#unregister();
      await Promise.all(this.machines.map((n) => n.stop().catch(() => {})));
      await Promise.all([...this.#links.values()].map((l) => l.stop().catch(() => {})));
      await this.observer?.stop().catch(() => {});
      await this.timeline?.stop().catch(() => {});
      this.#client?.close();
      if (this.#ownsEtcd) await this.etcd?.stop().catch(() => {});
      if (this.#dir && !this.opts.keepDir && !this.opts.dir) {
        await rm(this.#dir, { recursive: true, force: true });
      }
    })();
    return this.#stopping;
  }
}
