/**
 * A simulated machine that runs the built `sluiced` as a process: its own dbus-daemon with a
 * simulated update_engine and logind, its own files (machine id, boot id, instance token), and
 * a config file. Two machines may be given the same node id (a cloned machine-id) and still have
 * token files of their own, as cloned VMs have disks of their own. Stop with `stop()`.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type DbusDaemon, FakeLogind, FakeUpdateEngine, startDbusDaemon } from '@sluice/testkit';
import { type Proc, SLUICED, start } from '../process.js';

/** How a machine is set up. */
export interface MachineOptions {
  /** The node id in its /etc/machine-id. */
  nodeId: string;
  /** Its host name, shown in status and in a twin's error. */
  hostname: string;
  endpoints: string[];
  prefix: string;
  group?: string;
  /** Lines of the config's `sources:` section. Default: no sentinel file. */
  sources?: string[];
  /** Extra YAML appended to the config file. */
  yaml?: string;
}

/** libfaketime's preload library, where Debian's `faketime` package puts it. */
export const LIBFAKETIME = [
  '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1',
  '/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1',
].find((p) => existsSync(p));

/** One machine. */
export class Machine {
  bus!: DbusDaemon;
  updateEngine!: FakeUpdateEngine;
  logind!: FakeLogind;
  dir!: string;
  boot = 1;
  agent: Proc | null = null;

  constructor(readonly opts: MachineOptions) {}

  static async start(opts: MachineOptions): Promise<Machine> {
    const m = new Machine(opts);
    m.dir = await mkdtemp(join(tmpdir(), `sluice-machine-${opts.hostname}-`));
    await writeFile(join(m.dir, 'machine-id'), `${opts.nodeId}\n`);
    await writeFile(join(m.dir, 'boot_id'), `${opts.hostname}-boot-1\n`);
    m.bus = await startDbusDaemon();
    m.updateEngine = new FakeUpdateEngine(m.bus.address);
    await m.updateEngine.start();
    m.logind = new FakeLogind(m.bus.address);
    await m.logind.start();
    await writeFile(
      join(m.dir, 'sluiced.yaml'),
      [
        'node:',
        `  hostname: ${opts.hostname}`,
        `  tokenFile: ${join(m.dir, 'instance')}`,
        'etcd:',
        `  endpoints: [${opts.endpoints.join(', ')}]`,
        `  prefix: ${opts.prefix}`,
        `  group: ${opts.group ?? 'default'}`,
        '  sessionTTL: 5s',
        '  holdTTL: 60s',
        'sources:',
        ...(opts.sources ?? ['sentinel: off']).map((line) => `  ${line}`),
        'dbus:',
        `  address: "${m.bus.address}"`,
        'metrics:',
        '  listen: off',
        opts.yaml ?? '',
      ].join('\n'),
    );
    return m;
  }

  /** The boot id the machine has now. */
  get bootId(): string {
    return `${this.opts.hostname}-boot-${this.boot}`;
  }

  /** Starts sluiced on this machine. `env` adds to its environment (e.g. libfaketime's). */
  startAgent(env: NodeJS.ProcessEnv = {}): Proc {
    this.agent = start(
      SLUICED,
      [
        '--config',
        join(this.dir, 'sluiced.yaml'),
        '--update-conf',
        '',
        '--machine-id-file',
        join(this.dir, 'machine-id'),
        '--boot-id-file',
        join(this.dir, 'boot_id'),
        '--retry-delay',
        '1s',
      ],
      env,
    );
    return this.agent;
  }

  /** The machine goes down: its agent dies with it (SIGKILL, no clean stop). */
  async crash(): Promise<void> {
    const agent = this.agent;
    this.agent = null;
    if (!agent) return;
    agent.child.kill('SIGKILL');
    await agent.exited;
  }

  /** The machine comes back from a reboot: a new boot id, update_engine idle on `version`. */
  async rebooted(version: string): Promise<void> {
    await this.crash();
    this.boot++;
    await writeFile(join(this.dir, 'boot_id'), `${this.bootId}\n`);
    this.updateEngine.setIdle(version);
  }

  /** Everything the agent logged so far (JSON lines on stdout, messages on stderr). */
  log(): string {
    return `${this.agent?.stdout() ?? ''}${this.agent?.stderr() ?? ''}`;
  }

  async stop(): Promise<void> {
    await this.crash();
    await this.updateEngine?.stop().catch(() => {});
    await this.logind?.stop().catch(() => {});
    await this.bus?.stop();
    await rm(this.dir, { recursive: true, force: true });
  }
}
