/**
 * A simulated node for the tests of the OS sources and reboot methods: on a test bus it has a
 * simulated logind, systemd (with its soft-reboot count) and, on request, rpm-ostreed; its own
 * machine id, boot id and instance token files; and agents started in-process against a real
 * etcd. `fullReboot()`, `softReboot()` and `kexec()` do to the node what those do to a machine:
 * the agent's process goes, and what the next boot sees changes accordingly.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadAgentConfig, type RunningAgent, startAgent } from '@sluice/agent';
import type { AgentState } from '@sluice/core';
import { FakeLogind, FakeRpmOstree, FakeSystemd } from '@sluice/testkit';
import { pino } from 'pino';

export interface OsNodeOptions {
  node: string;
  busAddress: string;
  endpoints: string[];
  prefix: string;
  group: string;
  /** Start a simulated rpm-ostreed too. */
  rpmOstree?: boolean;
  /** Extra YAML appended to the config file; a function gets the node's own directory. */
  yaml?: string | ((dir: string) => string);
}

/** One simulated machine on a shared test bus (one node at a time per bus). */
export class OsNode {
  logind!: FakeLogind;
  systemd!: FakeSystemd;
  rpmOstree: FakeRpmOstree | null = null;
  dir!: string;
  agent: RunningAgent | null = null;
  boot = 1;
  /** Every transition of every agent run on this node: `state (edge)`. */
  readonly edges: string[] = [];

  constructor(readonly opts: OsNodeOptions) {}

  async setup(): Promise<this> {
    this.dir = await mkdtemp(join(tmpdir(), `sluice-os-${this.opts.node}-`));
    await writeFile(join(this.dir, 'machine-id'), `${this.opts.node}\n`);
    await writeFile(join(this.dir, 'boot_id'), 'boot-1\n');
    this.logind = new FakeLogind(this.opts.busAddress);
    await this.logind.start();
    this.systemd = new FakeSystemd(this.opts.busAddress);
    await this.systemd.start();
    if (this.opts.rpmOstree) {
      this.rpmOstree = new FakeRpmOstree(this.opts.busAddress, { version: '41.20250101.3.0' });
      await this.rpmOstree.start();
    }
    await writeFile(
      join(this.dir, 'sluiced.yaml'),
      [
        'node:',
        `  tokenFile: ${join(this.dir, 'instance')}`,
        'etcd:',
        `  endpoints: [${this.opts.endpoints.join(', ')}]`,
        `  prefix: ${this.opts.prefix}`,
        `  group: ${this.opts.group}`,
        '  sessionTTL: 5s',
        '  holdTTL: 60s',
        'dbus:',
        `  address: "${this.opts.busAddress}"`,
        'metrics:',
        '  listen: off',
        'log:',
        '  level: warn',
        typeof this.opts.yaml === 'function' ? this.opts.yaml(this.dir) : (this.opts.yaml ?? ''),
      ].join('\n'),
    );
    return this;
  }

  /** A path in the node's own directory. */
  path(name: string): string {
    return join(this.dir, name);
  }

  /** Starts an agent, as sluiced does at boot. */
  async start(): Promise<RunningAgent> {
    const config = await loadAgentConfig({
      configFile: join(this.dir, 'sluiced.yaml'),
      env: {},
      updateConfFiles: [],
      machineIdFile: join(this.dir, 'machine-id'),
    });
    const agent = await startAgent(config, {
      logger: pino({ level: 'silent' }),
      bootIdFile: join(this.dir, 'boot_id'),
      retryDelayMs: 300,
    });
    agent.agent.onTransition((state, edge) => this.edges.push(`${state.name} (${edge})`));
    this.agent = agent;
    await agent.ready;
    return agent;
  }

  get state(): AgentState {
    if (!this.agent) throw new Error('no agent running');
    return this.agent.agent.state;
  }

  /** Resolves when the running agent reaches `name`, or rejects after `timeoutMs`. */
  async until(name: AgentState['name'], timeoutMs = 15_000): Promise<AgentState> {
    const deadline = Date.now() + timeoutMs;
    while (this.agent?.agent.state.name !== name) {
      if (Date.now() > deadline) {
        throw new Error(
          `node ${this.opts.node}: not ${name} after ${timeoutMs} ms; edges: ${this.edges.join(', ')}`,
        );
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    return this.agent.agent.state;
  }

  async #down(): Promise<void> {
    await this.agent?.stop();
    this.agent = null;
  }

  /** A full reboot: a new boot id, a fresh systemd, rpm-ostree boots what it would. */
  async fullReboot(): Promise<void> {
    await this.#down();
    this.boot++;
    await writeFile(join(this.dir, 'boot_id'), `boot-${this.boot}\n`);
    this.systemd.booted();
    this.rpmOstree?.rebooted();
  }

  /** A kexec: the kernel is replaced, so the boot id changes, as in a full reboot. */
  async kexec(): Promise<void> {
    await this.fullReboot();
  }

  /** A soft reboot: userspace restarts, the kernel (and the boot id) stay; systemd counts it. */
  async softReboot(): Promise<void> {
    await this.#down();
    this.systemd.softRebooted();
    this.rpmOstree?.rebooted();
  }

  async stop(): Promise<void> {
    await this.agent?.stop().catch(() => {});
    this.agent = null;
    await this.logind?.stop().catch(() => {});
    await this.systemd?.stop().catch(() => {});
    await this.rpmOstree?.dispose().catch(() => {});
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
  }
}
