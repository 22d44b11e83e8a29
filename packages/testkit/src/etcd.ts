/**
 * A real etcd for tests: one member (or a small cluster) on 127.0.0.1 with free ports and a temp
 * data dir, started as a child process and stopped by PID. Call `stop()` in afterAll/afterEach;
 * it is idempotent, and a process-exit hook kills anything a crashed test left behind. Each member
 * runs under `setpriv --pdeathsig KILL` (util-linux) when it is installed, so it also dies with a
 * process that was killed outright and ran no exit hook.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** util-linux's setpriv, to have the kernel kill etcd if the process that started it dies. */
const SETPRIV = '/usr/bin/setpriv';

/** Returns a TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address && typeof address === 'object') resolve(address.port);
        else reject(new Error('no port'));
      });
    });
  });
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

/** Extra flags and TLS files for an etcd member. */
export interface EtcdMemberOptions {
  /** Files for serving client TLS; `clientCa` turns on client-certificate auth. */
  tls?: { cert: string; key: string; clientCa?: string };
  /** Extra command-line flags. */
  args?: string[];
}

/** One etcd member. */
export class EtcdMember {
  #child: ChildProcess | null = null;
  #log: string[] = [];

  constructor(
    readonly name: string,
    readonly dataDir: string,
    readonly clientPort: number,
    readonly peerPort: number,
    readonly metricsPort: number,
    readonly initialCluster: string,
    readonly clusterState: 'new' | 'existing',
    readonly options: EtcdMemberOptions = {},
    /** The peer port other members dial: `peerPort` itself, or a proxy's in front of it. */
    readonly advertisedPeerPort: number = peerPort,
  ) {}

  get scheme(): string {
    return this.options.tls ? 'https' : 'http';
  }

  /** The client URL, e.g. `http://127.0.0.1:23791`. */
  get endpoint(): string {
    return `${this.scheme}://127.0.0.1:${this.clientPort}`;
  }

  /** The plain-HTTP metrics URL (Prometheus text at /metrics). */
  get metricsUrl(): string {
    return `http://127.0.0.1:${this.metricsPort}/metrics`;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  get running(): boolean {
    return this.#child !== null;
  }

  /** What etcd printed, for failure messages. */
  get log(): string {
    return this.#log.join('');
  }

  /** Starts the process and waits until it answers its health endpoint. */
  async start(): Promise<void> {
    if (this.#child) return;
    const tls = this.options.tls;
    const args = [
      `--name=${this.name}`,
      `--data-dir=${this.dataDir}`,
      `--listen-client-urls=${this.endpoint}`,
      `--advertise-client-urls=${this.endpoint}`,
      `--listen-peer-urls=http://127.0.0.1:${this.peerPort}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${this.advertisedPeerPort}`,
      `--listen-metrics-urls=http://127.0.0.1:${this.metricsPort}`,
      `--initial-cluster=${this.initialCluster}`,
      `--initial-cluster-state=${this.clusterState}`,
      '--initial-cluster-token=sluice-test',
      '--heartbeat-interval=50',
      '--election-timeout=500',
      '--log-level=warn',
      '--logger=zap',
      ...(tls ? [`--cert-file=${tls.cert}`, `--key-file=${tls.key}`] : []),
      ...(tls?.clientCa ? ['--client-cert-auth', `--trusted-ca-file=${tls.clientCa}`] : []),
      ...(this.options.args ?? []),
    ];
    // As a last resort etcd dies with this process, even one killed outright (a test worker
    // hit by a timeout, a simulator that got SIGKILL). setpriv execs etcd: the pid stays etcd's.
    const argv = existsSync(SETPRIV)
      ? [SETPRIV, '--pdeathsig', 'KILL', '--', 'etcd', ...args]
      : ['etcd', ...args];
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#child = child;
    live.add(child);
    this.#log = [];
    const keep = (chunk: Buffer) => {
      this.#log.push(chunk.toString());
      if (this.#log.length > 200) this.#log.shift();
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    child.on('exit', () => {
      live.delete(child);
      if (this.#child === child) this.#child = null;
    });
    await this.#waitHealthy();
  }

  async #waitHealthy(): Promise<void> {
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      if (!this.#child) throw new Error(`etcd ${this.name} exited during start:\n${this.log}`);
      try {
        // The metrics listener serves /health without TLS, whatever the client side uses.
        const res = await fetch(`http://127.0.0.1:${this.metricsPort}/health`);
        const body = (await res.json()) as { health?: string };
        if (body.health === 'true') return;
      } catch {
        // Not up yet.
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`etcd ${this.name} did not become healthy in 20 s:\n${this.log}`);
  }

  /** Stops the process: SIGTERM, then SIGKILL after 5 s. Keeps the data dir (restart with start()). */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const child = this.#child;
    if (!child) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }

  /** Kills the process at once, as a crash would. */
  kill(): Promise<void> {
    return this.stop('SIGKILL');
  }
}

/** A running etcd: one member or a cluster. */
export class EtcdCluster {
  constructor(
    readonly members: EtcdMember[],
    readonly root: string,
  ) {}

  /** Client URLs of every member. */
  get endpoints(): string[] {
    return this.members.map((m) => m.endpoint);
  }

  /** The first member's client URL. */
  get endpoint(): string {
    return this.members[0]!.endpoint;
  }

  /**
   * Runs the real `etcdctl` against this cluster and returns its stdout. Throws with stderr on a
   * non-zero exit.
   */
  async etcdctl(args: string[], extra: string[] = []): Promise<string> {
    const { stdout } = await run(
      'etcdctl',
      [`--endpoints=${this.endpoints.join(',')}`, ...extra, ...args],
      {
        env: { ...process.env, ETCDCTL_API: '3' },
      },
    );
    return stdout;
  }

  /**
   * Reads a counter or gauge from a member's /metrics, summed over its label sets, or over those
   * whose labels contain `labels` (e.g. `grpc_method="Txn"`).
   */
  async metric(name: string, member = 0, labels = ''): Promise<number> {
    const text = await (await fetch(this.members[member]!.metricsUrl)).text();
    let sum = 0;
    for (const line of text.split('\n')) {
      if (labels && !(line.startsWith(`${name}{`) && line.includes(labels))) continue;
      if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) {
        sum += Number(line.slice(line.lastIndexOf(' ') + 1));
      }
    }
    return sum;
  }

  /** Stops every member and removes the data dirs. Idempotent. */
  async stop(): Promise<void> {
    await Promise.all(this.members.map((m) => m.stop()));
    await rm(this.root, { recursive: true, force: true });
  }
}

/** How to start etcd for a test. */
export interface StartEtcdOptions extends EtcdMemberOptions {
  /** Number of members (1 or 3 usually). Default 1. */
  members?: number;
  /**
   * Routes peer traffic, for tests that cut members off from each other: called once per member,
   * before any starts, with its name and the port it listens on for peers; returns the port its
   * peers dial instead (a proxy's that forwards to `peerPort`). Default: peers dial it directly.
   */
  peerRoute?: (member: { name: string; peerPort: number }) => Promise<number>;
}

/** Starts etcd on loopback with free ports and a temp data dir. */
export async function startEtcd(options: StartEtcdOptions = {}): Promise<EtcdCluster> {
  const count = options.members ?? 1;
  const root = await mkdtemp(join(tmpdir(), 'sluice-etcd-'));
  const ports = [];
  for (let i = 0; i < count; i++) {
    ports.push({ client: await freePort(), peer: await freePort(), metrics: await freePort() });
  }
  const advertised: number[] = [];
  for (const [i, p] of ports.entries()) {
    advertised.push(
      options.peerRoute ? await options.peerRoute({ name: `m${i}`, peerPort: p.peer }) : p.peer,
    );
  }
  const initialCluster = advertised.map((port, i) => `m${i}=http://127.0.0.1:${port}`).join(',');
  const members = ports.map(
    (p, i) =>
      new EtcdMember(
        `m${i}`,
        join(root, `m${i}`),
        p.client,
        p.peer,
        p.metrics,
        initialCluster,
        'new',
        options,
        advertised[i],
      ),
  );
  const cluster = new EtcdCluster(members, root);
  try {
    await Promise.all(members.map((m) => m.start()));
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  return cluster;
}
