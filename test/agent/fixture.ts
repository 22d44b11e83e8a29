/**
 * A simulated node for agent tests: a real dbus-daemon with simulated update_engine and logind,
 * files for the machine id and boot id, and agents started in-process against a real etcd.
 * Everything is stopped in `stop()`, which tests call from afterEach.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadAgentConfig, type RunningAgent, startAgent } from '@sluice/agent';
import type { AgentState } from '@sluice/core';
import { type DbusDaemon, FakeLogind, FakeUpdateEngine, startDbusDaemon } from '@sluice/testkit';
import { pino } from 'pino';

export interface NodeOptions {
  node: string;
  endpoints: string[];
  prefix: string;
  group: string;
  /** Extra YAML appended to the config file. */
  yaml?: string;
}

/** One simulated machine. */
export class TestNode {
  bus!: DbusDaemon;
  updateEngine!: FakeUpdateEngine;
  logind!: FakeLogind;
  dir!: string;
  agent: RunningAgent | null = null;
  /** How far this node's clock is off, in ms (positive: ahead); change it at any time. */
  clockOffsetMs = 0;
  /** Every transition of every agent run on this node: `from -> to (edge)`. */
  readonly edges: string[] = [];
  boot = 1;

  constructor(readonly opts: NodeOptions) {}

  async setup(): Promise<this> {
    this.dir = await mkdtemp(join(tmpdir(), `sluice-node-${this.opts.node}-`));
    await writeFile(join(this.dir, 'machine-id'), `${this.opts.node}\n`);
    await writeFile(join(this.dir, 'boot_id'), 'boot-1\n');
    this.bus = await startDbusDaemon();
    this.updateEngine = new FakeUpdateEngine(this.bus.address);
    await this.updateEngine.start();
    this.logind = new FakeLogind(this.bus.address);
    await this.logind.start();
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
        'sources:',
        '  sentinel: off',
        'dbus:',
        `  address: "${this.bus.address}"`,
        'metrics:',
        '  listen: 127.0.0.1:0',
        'log:',
        '  level: warn',
        this.opts.yaml ?? '',
      ].join('\n'),
    );
    return this;
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
      now: () => new Date(Date.now() + this.clockOffsetMs),
    });
    agent.agent.onTransition((state, edge) => this.edges.push(`${state.name} (${edge})`));
    await agent.ready;
    this.agent = agent;
    return agent;
  }

  get state(): AgentState {
    if (!this.agent) throw new Error('no agent running');
    return this.agent.agent.state;
  }

  /** Resolves when the running agent reaches `name`, or rejects after `timeoutMs`. */
  async until(name: AgentState['name'], timeoutMs = 10_000): Promise<AgentState> {
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

  /** What the reboot does to the agent: its process goes away, and the next boot has a new id. */
  async reboot(newVersion: string): Promise<void> {
    await this.agent?.stop();
    this.agent = null;
    this.boot++;
    await writeFile(join(this.dir, 'boot_id'), `boot-${this.boot}\n`);
    this.updateEngine.setIdle(newVersion);
  }

  async stop(): Promise<void> {
    await this.agent?.stop().catch(() => {});
    this.agent = null;
    await this.updateEngine?.stop().catch(() => {});
    await this.logind?.stop().catch(() => {});
    await this.bus?.stop();
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
  }
}
