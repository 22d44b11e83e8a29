/**
 * One simulated machine: its own dbus-daemon on a private `unix:path=` socket, a simulated
 * update_engine (or rpm-ostreed, for Fedora CoreOS) and logind (in the simulator's process), and
 * the real `sluiced` as a child process, configured through a YAML file and flags so that it
 * reads nothing from /etc.
 *
 * A reboot is what logind's `Reboot` call does to a machine: the agent process is SIGKILLed at
 * once (the machine is gone), the machine stays down for a while, then it boots: a new boot id,
 * update_engine idle on the new version, and `sluiced` starts again.
 */
import type { ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, type WriteStream } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type DbusDaemon,
  FakeLogind,
  FakeRpmOstree,
  FakeUpdateEngine,
  type RebootCall,
  startDbusDaemon,
} from '@sluice/testkit';
import { exited, killChild, spawnTracked } from './procs.js';
import { SLUICED } from './programs.js';

/**
 * libfaketime, which the simulator preloads into an agent to set its clock off: where Debian's
 * `faketime` package puts it on this machine's architecture.
 */
export const LIBFAKETIME =
  [
    '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1',
    '/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1',
  ].find((path) => existsSync(path)) ?? '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';

/** How one node is set up; the fleet fills it in. */
export interface SimNodeOptions {
  /** The machine's name (its hostname, and the node id unless `nodeId` says otherwise). */
  id: string;
  /**
   * The node id the agent runs with (its machine-id file). Default `id`; a cloned machine has
   * another machine's.
   */
  nodeId?: string;
  /** A directory of its own: machine id, boot id, config, log. */
  dir: string;
  /** The etcd endpoints the agent is given (the members', or proxies in front of them). */
  endpoints: string[];
  prefix: string;
  group: string;
  /** Seconds; the waiting key's lease. */
  sessionTTL: number;
  /** Seconds; the slot's lease, which must outlast a reboot. */
  holdTTL: number;
  /** Back-off after a failed check or etcd call, as a duration (`1s`). */
  retryDelay: string;
  /** Serve the agent's metrics on 127.0.0.1 with a free port. Default off. */
  metrics: boolean;
  logLevel: 'debug' | 'info' | 'warn';
  /** The OS version installed at the start. */
  version: string;
  /** How long a reboot keeps the machine down, in ms. */
  rebootMs: number;
  /** Extra YAML lines appended to the agent's config file. */
  extraYaml?: string;
  /** The node's failure domain (`node.domain`). Default: none. */
  domain?: string;
  /** The operating system the machine runs (see {@link SimOs}). Default `flatcar`. */
  os?: SimOs;
  /**
   * Run the agent under libfaketime, with its clock offset read from a file in the node's
   * directory (see `setClockOffset`). Default off.
   */
  fakeClock?: boolean;
  /** The `sluiced` program to run: the built agent ({@link SLUICED}) unless this says otherwise. */
  agent?: string;
}

/**
 * What the simulated machines run: `flatcar` stages updates with update_engine and reboots through
 * logind; `fcos` (Fedora CoreOS) stages deployments with rpm-ostree, finalization locked, and
 * rpm-ostree's finalize is the reboot.
 */
export type SimOs = 'flatcar' | 'fcos';

/** The simulated OS services of one machine and how they answer the simulator. */
interface OsFakes {
  /** The config lines under `sources:` that follow this OS. */
  sources: string[];
  /** A version is staged and waits for a reboot. */
  stage(version: string): Promise<void>;
  /** The machine booted `version`. */
  booted(version: string): void;
  stop(): Promise<void>;
}

/** What a node tells its fleet. */
export interface SimNodeHooks {
  /**
   * logind was asked to reboot a machine that is up. Called before the agent is killed; the
   * reboot log entry is the fleet's business. The machine boots again only once the returned
   * promise has settled (and the reboot time has passed).
   */
  reboot(node: SimNode, call: RebootCall): Promise<void>;
  /** The machine is up again and its agent was started. */
  booted(node: SimNode): void;
  /** The agent logged a transition. */
  transition(node: SimNode, from: string, to: string, edge: string, at: number): void;
  /** The agent process ended without the simulator asking (a crash or a config error). */
  agentExited(node: SimNode, code: number | null, signal: string | null): void;
}

/** Where the machine is, from the simulator's point of view. */
export type MachineState = 'up' | 'down';

/** A simulated machine. Create with the fleet; `setup()`, `startAgent()`, `stop()`. */
export class SimNode {
  bus: DbusDaemon | null = null;
  updateEngine: FakeUpdateEngine | null = null;
  logind: FakeLogind | null = null;
  /** rpm-ostreed, on `fcos` machines. */
  rpmOstree: FakeRpmOstree | null = null;
  #os: OsFakes | null = null;
  /** Up, or down between a reboot call and the next boot. */
  machine: MachineState = 'up';
  /** The installed OS version. */
  version: string;
  /** A version staged by update_engine and waiting for a reboot, or null. */
  staged: string | null = null;
  /** Boots so far; the boot id is `boot-<n>`. */
  boot = 1;
  /** The agent's last state as it logged it (`recovering` until it logs a transition). */
  agentState = 'stopped';
  /** The edge of that transition. */
  agentEdge = '';
  /** When the agent took it (ms, on the simulator's clock). */
  agentSince = 0;
  /** True while a machine that went down should stay down (a node that never comes back). */
  stuck = false;
  /** Reboot calls still to refuse with a D-Bus error, as a logind that is busy might. */
  refuseReboots = 0;
  /** Starts of the agent process, kills by the simulator, and exits it did on its own. */
  readonly counts = { starts: 0, kills: 0, crashes: 0, freezes: 0 };
  /** True while the agent process is stopped with SIGSTOP. */
  frozen = false;
  /** The agent's clock offset in seconds (libfaketime; 0 without `fakeClock`). */
  clockOffset = 0;
  #child: ChildProcess | null = null;
  #killing = new Set<ChildProcess>();
  #log: WriteStream | null = null;
  #tail: string[] = [];
  #timers = new Set<NodeJS.Timeout>();
  #stopped = false;
  #ready: { resolve: () => void; promise: Promise<void> } | null = null;

  constructor(
    readonly opts: SimNodeOptions,
    readonly hooks: SimNodeHooks,
  ) {
    this.version = opts.version;
  }

  /** The machine's name. */
  get id(): string {
    return this.opts.id;
  }

  /** The node id its agent uses: its own name, or another machine's when cloned. */
  get nodeId(): string {
    return this.opts.nodeId ?? this.opts.id;
  }

  /** The agent's PID while it runs. */
  get pid(): number | null {
    return this.#child?.pid ?? null;
  }

  /** True while an agent process runs. */
  get agentRunning(): boolean {
    return this.#child !== null;
  }

  /** The agent's config file. */
  get configFile(): string {
    return join(this.opts.dir, 'sluiced.yaml');
  }

  /** The agent's log (stdout and stderr of every start, with markers between them). */
  get logFile(): string {
    return join(this.opts.dir, 'sluiced.log');
  }

  /** The last lines the agent printed, for failure messages. */
  tail(lines = 20): string {
    return this.#tail.slice(-lines).join('\n');
  }

  /** Creates the files, starts the dbus-daemon, update_engine and logind. */
  async setup(): Promise<void> {
    const o = this.opts;
    await mkdir(o.dir, { recursive: true });
    await writeFile(join(o.dir, 'machine-id'), `${this.nodeId}\n`);
    await this.#writeBootId();
    if (o.fakeClock) await this.setClockOffset(this.clockOffset);
    this.#log = createWriteStream(this.logFile, { flags: 'a' });
    this.bus = await startDbusDaemon();
    this.#os = await this.#startOs(this.bus.address);
    this.logind = new FakeLogind(this.bus.address);
    this.logind.onReboot = (call) => this.#onReboot(call);
    await this.logind.start();
    const yaml = [
      'node:',
      `  id: ${this.nodeId}`,
      `  hostname: ${o.id}`,
      ...(o.domain ? [`  domain: ${o.domain}`] : []),
      'etcd:',
      `  endpoints: [${o.endpoints.join(', ')}]`,
      `  prefix: "${o.prefix}"`,
      `  group: ${o.group}`,
      `  sessionTTL: ${o.sessionTTL}s`,
      `  holdTTL: ${o.holdTTL}s`,
      'sources:',
      ...this.#os.sources,
      '  sentinel: off',
      '  manual: false',
      'dbus:',
      `  address: "${this.bus.address}"`,
      'metrics:',
      `  listen: ${o.metrics ? '127.0.0.1:0' : 'off'}`,
      'log:',
      `  level: ${o.logLevel}`,
      o.extraYaml ?? '',
    ];
    await writeFile(this.configFile, `${yaml.join('\n')}\n`);
  }

  /** Starts the OS's update services on the machine's bus. */
  async #startOs(address: string): Promise<OsFakes> {
    const version = this.opts.version;
    if ((this.opts.os ?? 'flatcar') === 'fcos') {
      const rpmOstree = new FakeRpmOstree(address, { version });
      // rpm-ostree reboots the machine once it has finalized: the same as logind's Reboot.
      rpmOstree.onFinalize = (call) =>
        this.#onReboot({ at: call.at, interactive: false, method: 'Reboot', kind: 'reboot' });
      await rpmOstree.start();
      this.rpmOstree = rpmOstree;
      return {
        sources: ['  updateEngine: false', '  rpmOstree: true'],
        stage: async (v) => void rpmOstree.stage(v, { locked: true }),
        booted: () => rpmOstree.rebooted(),
        stop: () => rpmOstree.dispose(),
      };
    }
    const updateEngine = new FakeUpdateEngine(address, { newVersion: version });
    await updateEngine.start();
    this.updateEngine = updateEngine;
    return {
      sources: ['  updateEngine: true'],
      stage: (v) => updateEngine.stageUpdate(v, { steps: false }),
      booted: (v) => updateEngine.setIdle(v),
      stop: () => updateEngine.stop(),
    };
  }

  async #writeBootId(): Promise<void> {
    // Unique per machine, as real boot ids are: a clone must not find its twin's boot id.
    await writeFile(join(this.opts.dir, 'boot_id'), `${this.opts.id}-boot-${this.boot}\n`);
  }

  /** libfaketime's offset file for this node's agent. */
  get clockFile(): string {
    return join(this.opts.dir, 'faketime');
  }

  /**
   * Sets the agent's clock `seconds` off the real one (needs `fakeClock`). A running agent sees
   * the change within a second (libfaketime re-reads the file); its timers are unaffected (the
   * monotonic clock is left alone).
   */
  async setClockOffset(seconds: number): Promise<void> {
    if (!this.opts.fakeClock) throw new Error(`${this.id} was not set up with a fake clock`);
    const s = Math.round(seconds);
    await writeFile(this.clockFile, `${s >= 0 ? '+' : ''}${s}\n`);
    this.clockOffset = s;
  }

  /**
   * Starts `sluiced` (no-op while one runs). The returned promise resolves once the agent has
   * recovered from its etcd record (its first logged transition), or after 30 s.
   */
  startAgent(): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    if (this.#child) return this.#ready?.promise ?? Promise.resolve();
    const o = this.opts;
    const args = [
      o.agent ?? SLUICED,
      '--config',
      this.configFile,
      '--machine-id-file',
      join(o.dir, 'machine-id'),
      '--boot-id-file',
      join(o.dir, 'boot_id'),
      '--token-file',
      join(o.dir, 'instance'),
      '--update-conf',
      '',
      '--retry-delay',
      o.retryDelay,
    ];
    // Only PATH and HOME: SLUICE_* variables of whoever runs the simulator must not leak in.
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME };
    if (o.fakeClock) {
      Object.assign(env, {
        LD_PRELOAD: LIBFAKETIME,
        FAKETIME_TIMESTAMP_FILE: this.clockFile,
        FAKETIME_CACHE_DURATION: '1',
        FAKETIME_DONT_FAKE_MONOTONIC: '1',
      });
    }
    const child = spawnTracked(process.execPath, args, env);
    this.#child = child;
    this.counts.starts++;
    this.agentState = 'recovering';
    this.agentEdge = 'start';
    this.agentSince = Date.now();
    let resolve!: () => void;
    const promise = new Promise<void>((r) => {
      resolve = r;
    });
    this.#ready = { resolve, promise };
    const timer = setTimeout(resolve, 30_000);
    void promise.then(() => clearTimeout(timer));
    this.#write(`--- ${new Date().toISOString()} sim: sluiced started, pid ${child.pid}\n`);
    let buffer = '';
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      this.#log?.write(chunk);
      buffer += chunk;
      let nl = buffer.indexOf('\n');
      while (nl >= 0) {
        this.#line(buffer.slice(0, nl));
        buffer = buffer.slice(nl + 1);
        nl = buffer.indexOf('\n');
      }
    });
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      this.#log?.write(chunk);
      this.#remember(chunk.trimEnd());
    });
    child.once('exit', (code, signal) => {
      resolve();
      this.frozen = false;
      this.#write(`--- ${new Date().toISOString()} sim: sluiced exited (${code ?? signal})\n`);
      if (this.#child === child) {
        this.#child = null;
        this.agentState = 'stopped';
      }
      const expected = this.#killing.delete(child);
      if (!expected && !this.#stopped) {
        this.counts.crashes++;
        this.hooks.agentExited(this, code, signal);
      }
    });
    return promise;
  }

  #write(text: string): void {
    this.#log?.write(text);
    this.#remember(text.trimEnd());
  }

  #remember(line: string): void {
    this.#tail.push(line);
    if (this.#tail.length > 200) this.#tail.splice(0, this.#tail.length - 200);
  }

  #line(line: string): void {
    this.#remember(line);
    let entry: { edge?: unknown; from?: unknown; to?: unknown; time?: unknown };
    try {
      entry = JSON.parse(line) as typeof entry;
    } catch {
      return;
    }
    if (typeof entry.edge === 'string' && typeof entry.to === 'string') {
      const from = typeof entry.from === 'string' ? entry.from : '';
      this.agentState = entry.to;
      this.agentEdge = entry.edge;
      // pino's own timestamp: when the agent took the transition, not when we read the line
      // (on the real clock: a fake one is set off by a known offset).
      const at = typeof entry.time === 'number' ? entry.time - this.clockOffset * 1000 : Date.now();
      this.hooks.transition(this, from, entry.to, entry.edge, at);
      if (from === 'recovering') this.#ready?.resolve();
    }
  }

  /** SIGKILLs the agent (as a crash or an OOM kill would) and waits until it is gone. */
  async killAgent(): Promise<void> {
    const child = this.#child;
    if (!child) return;
    this.#child = null;
    this.agentState = 'stopped';
    this.#killing.add(child);
    this.counts.kills++;
    await killChild(child);
  }

  /**
   * Stops the agent process with SIGSTOP, as a hung VM or a stalled disk would: it keeps its
   * connections and leases but answers nothing. `thaw()` lets it go on. No-op without an agent.
   */
  freeze(): void {
    const child = this.#child;
    if (!child?.pid || this.frozen) return;
    child.kill('SIGSTOP');
    this.frozen = true;
    this.counts.freezes++;
    this.#write(`--- ${new Date().toISOString()} sim: sluiced stopped (SIGSTOP)\n`);
  }

  /** Lets a frozen agent go on (SIGCONT). */
  thaw(): void {
    const child = this.#child;
    if (!this.frozen) return;
    this.frozen = false;
    if (!child?.pid) return;
    child.kill('SIGCONT');
    this.#write(`--- ${new Date().toISOString()} sim: sluiced continued (SIGCONT)\n`);
  }

  /** Runs `fn` after `ms` unless the node is stopped first. */
  later(ms: number, fn: () => void): void {
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      if (!this.#stopped) fn();
    }, ms);
    this.#timers.add(timer);
  }

  /** Marks a version as staged and has update_engine (or rpm-ostree) say a reboot is needed. */
  async stageUpdate(version: string): Promise<void> {
    this.staged = version;
    await this.#os?.stage(version);
  }

  #onReboot(call: RebootCall): void {
    if (this.machine === 'down' || this.#stopped) return;
    if (this.refuseReboots > 0) {
      this.refuseReboots--;
      throw new Error('simulated: reboot refused');
    }
    const checked = this.hooks.reboot(this, call).catch(() => {});
    this.machine = 'down';
    void this.killAgent();
    this.later(this.opts.rebootMs, () => {
      void checked.then(() => {
        if (!this.stuck) void this.#bootUp();
      });
    });
  }

  /** Brings a machine that is down up again (also for a stuck one, when a test wants it back). */
  async #bootUp(): Promise<void> {
    if (this.machine === 'up' || this.#stopped) return;
    this.boot++;
    await this.#writeBootId();
    if (this.staged !== null) {
      this.version = this.staged;
      this.staged = null;
    }
    this.#os?.booted(this.version);
    this.machine = 'up';
    const ready = this.startAgent();
    this.hooks.booted(this);
    await ready;
  }

  /** Boots a machine that was kept down (see `stuck`). */
  async bootNow(): Promise<void> {
    this.stuck = false;
    await this.#bootUp();
  }

  /** Stops the agent (SIGKILL), the fakes and the dbus-daemon. Idempotent. */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    const child = this.#child;
    this.#child = null;
    if (child) {
      this.#killing.add(child);
      await killChild(child);
    }
    await Promise.all([...this.#killing].map((c) => exited(c)));
    await this.#os?.stop().catch(() => {});
    await this.logind?.stop().catch(() => {});
    await this.bus?.stop().catch(() => {});
    await new Promise<void>((resolve) => (this.#log ? this.#log.end(resolve) : resolve()));
    this.#log = null;
  }
}
