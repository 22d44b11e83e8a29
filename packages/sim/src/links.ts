/**
 * Network faults for the simulator, built on the testkit's {@link FaultProxy}.
 *
 * - {@link AgentLink}: one agent's links to etcd, a proxy in front of every member. The agent is
 *   configured with the proxies' endpoints, so resetting, cutting or slowing its link touches that
 *   agent only, whichever member it talks to.
 * - {@link PeerNet}: etcd's peer traffic, member to member, through proxies, so that one member
 *   can be cut off from the others while clients still reach it. Members advertise a front port
 *   each (through startEtcd's `peerRoute`); the front finds out which member dialled (the owner of
 *   the connection's source port, from /proc) and hands the connection to the proxy for that
 *   ordered pair. Cutting a member off blackholes every pair it is part of, in both directions.
 */
import { readdir, readFile, readlink } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { FaultProxy } from '@sluice/testkit';

/** One agent's links to every etcd member, faulted together. */
export class AgentLink {
  private constructor(readonly proxies: FaultProxy[]) {}

  /** Starts one proxy per endpoint (a member's client URL). */
  static async start(endpoints: readonly string[]): Promise<AgentLink> {
    const proxies: FaultProxy[] = [];
    try {
      for (const endpoint of endpoints) proxies.push(await FaultProxy.start(endpoint));
    } catch (error) {
      await Promise.all(proxies.map((p) => p.stop()));
      throw error;
    }
    return new AgentLink(proxies);
  }

  /** The endpoints to give the agent instead of the members'. */
  get endpoints(): string[] {
    return this.proxies.map((p) => p.endpoint);
  }

  /** Drops every open connection with a TCP RST; new ones go through (unless cut). */
  reset(): void {
    for (const p of this.proxies) p.reset();
  }

  /** Cuts the link (connections stay open, nothing is forwarded) until `heal()`. */
  blackhole(): void {
    for (const p of this.proxies) p.blackhole();
  }

  /** Ends a cut: what was held back is delivered. */
  heal(): void {
    for (const p of this.proxies) p.heal();
  }

  /** Adds delay per direction in ms (`up`: agent to etcd). */
  setLatency(latency: { up?: number; down?: number }): void {
    for (const p of this.proxies) p.setLatency(latency);
  }

  /** No cut, no latency. */
  clear(): void {
    for (const p of this.proxies) p.clear();
  }

  /** True while cut. */
  get blackholed(): boolean {
    return this.proxies.some((p) => p.blackholed);
  }

  /** Stops every proxy. */
  async stop(): Promise<void> {
    await Promise.all(this.proxies.map((p) => p.stop()));
  }
}

/** Who dialled in: a member's name, or null when it cannot be told (the dialler is gone). */
type Dialler = string | null;

/** etcd's peer traffic through proxies, one per ordered pair of members. */
export class PeerNet {
  readonly #fronts = new Map<string, { server: Server; port: number; peerPort: number }>();
  /** `from>to` → the proxy carrying connections `from` dialled to `to`; `?` for unknown. */
  readonly #pairs = new Map<string, FaultProxy>();
  readonly #cut = new Set<string>();
  readonly #sockets = new Set<Socket>();
  /** Connections whose dialler could not be told. */
  unknown = 0;

  /** For startEtcd's `peerRoute`: starts the member's front and returns its port. */
  readonly route = async (member: { name: string; peerPort: number }): Promise<number> => {
    const server = createServer((socket) => void this.#accept(member.name, socket));
    const port = await new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const address = server.address();
        if (address && typeof address === 'object') resolve(address.port);
        else reject(new Error('the peer front has no port'));
      });
    });
    this.#fronts.set(member.name, { server, port, peerPort: member.peerPort });
    return port;
  };

  /** Members cut off right now. */
  get cut(): string[] {
    return [...this.#cut];
  }

  /** Cuts `member` off from every other member, both ways. Clients still reach it. */
  isolate(member: string): void {
    this.#cut.add(member);
    for (const [pair, proxy] of this.#pairs) if (this.#touches(pair)) proxy.blackhole();
  }

  /** Joins `member` to the others again; what was held back is delivered. */
  rejoin(member: string): void {
    this.#cut.delete(member);
    for (const [pair, proxy] of this.#pairs) if (!this.#touches(pair)) proxy.heal();
  }

  /** Ends every cut. */
  heal(): void {
    for (const member of [...this.#cut]) this.rejoin(member);
  }

  /** True when traffic on this pair must not flow: one end is cut off (unknown counts as cut). */
  #touches(pair: string): boolean {
    const [from, to] = pair.split('>') as [string, string];
    if (this.#cut.has(to)) return true;
    return from === '?' ? this.#cut.size > 0 : this.#cut.has(from);
  }

  async #accept(to: string, socket: Socket): Promise<void> {
    this.#sockets.add(socket);
    socket.on('close', () => this.#sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.pause();
    const from = await this.#dialler(socket.remotePort, socket.localPort ?? 0).catch(() => null);
    if (from === null) this.unknown++;
    if (socket.destroyed) return;
    const proxy = await this.#pair(from ?? '?', to);
    const upstream = createConnection({ host: '127.0.0.1', port: proxy.port });
    upstream.on('error', () => socket.destroy());
    upstream.on('close', () => socket.destroy());
    socket.on('close', () => upstream.destroy());
    socket.pipe(upstream);
    upstream.pipe(socket);
    socket.resume();
  }

  async #pair(from: string, to: string): Promise<FaultProxy> {
    const key = `${from}>${to}`;
    let proxy = this.#pairs.get(key);
    if (!proxy) {
      const front = this.#fronts.get(to)!;
      proxy = await FaultProxy.start({ port: front.peerPort });
      // Another connection may have made it meanwhile.
      const other = this.#pairs.get(key);
      if (other) {
        await proxy.stop();
        return other;
      }
      this.#pairs.set(key, proxy);
      if (this.#touches(key)) proxy.blackhole();
    }
    return proxy;
  }

  /**
   * The member whose process owns the connection from 127.0.0.1:`port` to the front at
   * `frontPort`: its inode from /proc/net/tcp, then a search of the open files of this process's
   * children that are members of this cluster (known by their peer listen port).
   */
  async #dialler(port: number | undefined, frontPort: number): Promise<Dialler> {
    if (port === undefined) return null;
    const address = (p: number) => `0100007F:${p.toString(16).toUpperCase().padStart(4, '0')}`;
    const [local, remote] = [address(port), address(frontPort)];
    const table = await readFile('/proc/net/tcp', 'utf8');
    let inode: string | null = null;
    for (const line of table.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols[1] === local && cols[2] === remote) {
        inode = cols[9] ?? null;
        break;
      }
    }
    if (!inode || inode === '0') return null;
    const target = `socket:[${inode}]`;
    const byPeerPort = new Map([...this.#fronts].map(([name, f]) => [f.peerPort, name]));
    for (const pid of await childPids()) {
      const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
      const listen = argv.find((a) => a.startsWith('--listen-peer-urls='));
      const member = listen ? byPeerPort.get(Number(listen.split(':').at(-1))) : undefined;
      if (member === undefined) continue;
      const dir = `/proc/${pid}/fd`;
      const fds = await readdir(dir).catch(() => [] as string[]);
      for (const fd of fds) {
        if ((await readlink(`${dir}/${fd}`).catch(() => '')) === target) return member;
      }
    }
    return null;
  }

  /** Stops the fronts and every pair proxy. */
  async stop(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await Promise.all([...this.#pairs.values()].map((p) => p.stop()));
    this.#pairs.clear();
    await Promise.all(
      [...this.#fronts.values()].map(
        (f) => new Promise<void>((resolve) => f.server.close(() => resolve())),
      ),
    );
    this.#fronts.clear();
  }
}

/** The PIDs of this process's children (etcd members are started as direct children). */
async function childPids(): Promise<number[]> {
  const tasks = await readdir('/proc/self/task').catch(() => [] as string[]);
  const pids: number[] = [];
  for (const task of tasks) {
    const text = await readFile(`/proc/self/task/${task}/children`, 'utf8').catch(() => '');
    for (const pid of text.trim().split(/\s+/)) if (pid) pids.push(Number(pid));
  }
  return pids;
}
