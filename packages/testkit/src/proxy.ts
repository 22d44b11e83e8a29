/**
 * A fault-injecting TCP proxy for tests: put it between one client (or one `sluiced`) and an etcd
 * member, point the client at `proxy.endpoint`, and break the link on demand.
 *
 * - `reset()` drops every open connection at once with a TCP RST, as a crashed middlebox or a
 *   NAT table flush would; new connections go through as before.
 * - `blackhole()` keeps connections open but forwards nothing, either way, and new connections
 *   are accepted and then hang: a partition. Bytes are held, not dropped, as TCP would keep
 *   retransmitting them; `heal()` delivers them, so a partition shorter than the client's own
 *   keep-alive timeout ends without a reconnect, and a longer one ends with the client's.
 * - `setLatency({ up, down })` delays every chunk by that many ms in one direction (`up` is
 *   client to server), keeping their order.
 * - `holdUp(match, action)` holds the first chunk sent to the server that `match` accepts (and
 *   whatever follows it on that connection) until `action` is done: a test can act at the moment
 *   a client sends one particular request, such as a clock check's `GET /version`.
 *
 * Loopback only: it listens on 127.0.0.1 and forwards to the target given. Stop it with `stop()`.
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';

/** Where the proxy forwards to. */
export interface ProxyTarget {
  host?: string;
  port: number;
}

/** What a proxy has carried, for tests that need to know the link was used. */
export interface ProxyStats {
  connections: number;
  resets: number;
  bytesUp: number;
  bytesDown: number;
}

/** One direction of one proxied connection: holds and delays chunks as the faults say. */
class Pipe {
  readonly #held: Buffer[] = [];
  /** While a `holdUp` action runs: what waits for it, in order. */
  #gate: Promise<void> | null = null;
  readonly #gated: Buffer[] = [];
  /** When the last scheduled chunk goes out, so that delayed chunks keep their order. */
  #lastAt = 0;

  constructor(
    private readonly proxy: FaultProxy,
    private readonly to: Socket,
    private readonly direction: 'up' | 'down',
  ) {}

  push(chunk: Buffer): void {
    if (this.#gate) {
      this.#gated.push(chunk);
      return;
    }
    const gate = this.direction === 'up' ? this.proxy.gateFor(chunk) : null;
    if (gate) {
      this.#gate = gate;
      this.#gated.push(chunk);
      void gate.then(() => {
        this.#gate = null;
        for (const held of this.#gated.splice(0)) this.push(held);
      });
      return;
    }
    if (this.proxy.blackholed) {
      this.#held.push(chunk);
      return;
    }
    this.#send(chunk);
  }

  /** Sends what a partition held back. */
  flush(): void {
    for (const chunk of this.#held.splice(0)) this.#send(chunk);
  }

  #send(chunk: Buffer): void {
    const delay = this.proxy.latency[this.direction];
    const stats = this.proxy.stats;
    const write = () => {
      if (this.to.destroyed) return;
      if (this.direction === 'up') stats.bytesUp += chunk.length;
      else stats.bytesDown += chunk.length;
      this.to.write(chunk);
    };
    if (delay <= 0 && this.#lastAt <= Date.now()) {
      write();
      return;
    }
    const at = Math.max(Date.now() + delay, this.#lastAt);
    this.#lastAt = at;
    setTimeout(write, at - Date.now()).unref();
  }
}

interface Link {
  client: Socket;
  server: Socket;
  pipes: Pipe[];
}

/** A TCP proxy on 127.0.0.1 whose link can be reset, cut and slowed. */
export class FaultProxy {
  readonly stats: ProxyStats = { connections: 0, resets: 0, bytesUp: 0, bytesDown: 0 };
  /** Added delay in ms per direction: `up` client to server, `down` server to client. */
  readonly latency = { up: 0, down: 0 };
  #blackholed = false;
  readonly #links = new Set<Link>();
  #hold: { match: (chunk: Buffer) => boolean; action: () => Promise<unknown> } | null = null;

  private constructor(
    private readonly server: Server,
    /** The port the proxy listens on, on 127.0.0.1. */
    readonly port: number,
    readonly target: Required<ProxyTarget>,
  ) {}

  /** Starts a proxy on a free port of 127.0.0.1 that forwards to `target`. */
  static async start(target: ProxyTarget | string): Promise<FaultProxy> {
    const t = typeof target === 'string' ? parseTarget(target) : target;
    const to = { host: t.host ?? '127.0.0.1', port: t.port };
    const server = createServer({ noDelay: true });
    let proxy: FaultProxy | null = null;
    server.on('connection', (socket) => proxy?.accept(socket));
    const port = await new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const address = server.address();
        if (address && typeof address === 'object') resolve(address.port);
        else reject(new Error('the proxy has no port'));
      });
    });
    proxy = new FaultProxy(server, port, to);
    return proxy;
  }

  /** The client URL to give instead of the target's, e.g. `http://127.0.0.1:40123`. */
  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** True while the link is cut (see `blackhole()`). */
  get blackholed(): boolean {
    return this.#blackholed;
  }

  /** Connections open right now. */
  get open(): number {
    return this.#links.size;
  }

  private accept(client: Socket): void {
    this.stats.connections++;
    client.setNoDelay(true);
    const server = createConnection({ host: this.target.host, port: this.target.port });
    server.setNoDelay(true);
    const link: Link = { client, server, pipes: [] };
    const up = new Pipe(this, server, 'up');
    const down = new Pipe(this, client, 'down');
    link.pipes.push(up, down);
    this.#links.add(link);
    client.on('data', (chunk: Buffer) => up.push(chunk));
    server.on('data', (chunk: Buffer) => down.push(chunk));
    const close = () => {
      if (!this.#links.delete(link)) return;
      client.destroy();
      server.destroy();
    };
    // Either side ending ends both, as a real connection through a middlebox would.
    for (const socket of [client, server]) {
      socket.on('error', close);
      socket.on('close', close);
    }
  }

  /** Drops every open connection with a TCP RST. New connections go through. */
  reset(): void {
    for (const link of [...this.#links]) {
      this.#links.delete(link);
      this.stats.resets++;
      link.client.resetAndDestroy();
      link.server.destroy();
    }
  }

  /** Cuts the link: nothing is forwarded either way until `heal()`; connections stay open. */
  blackhole(): void {
    this.#blackholed = true;
  }

  /** Ends a partition: what was held back is delivered, in order. */
  heal(): void {
    this.#blackholed = false;
    for (const link of this.#links) for (const pipe of link.pipes) pipe.flush();
  }

  /** Sets the added delay per direction, in ms; omitted directions keep theirs. */
  setLatency(latency: { up?: number; down?: number }): void {
    if (latency.up !== undefined) this.latency.up = Math.max(0, latency.up);
    if (latency.down !== undefined) this.latency.down = Math.max(0, latency.down);
  }

  /**
   * Holds the first chunk going to the server that `match` accepts until `action` has run (or
   * failed), then sends it on: once. A chunk split across reads is matched on its first part.
   */
  holdUp(match: (chunk: Buffer) => boolean, action: () => Promise<unknown>): void {
    this.#hold = { match, action };
  }

  /** For a chunk going up: the wait a `holdUp` puts on it, or null. */
  gateFor(chunk: Buffer): Promise<void> | null {
    const hold = this.#hold;
    if (!hold?.match(chunk)) return null;
    this.#hold = null;
    return hold.action().then(
      () => {},
      () => {},
    );
  }

  /** Back to a clean link: no partition, no latency. Open connections stay. */
  clear(): void {
    this.setLatency({ up: 0, down: 0 });
    this.heal();
  }

  /** Stops listening and drops every connection. Idempotent. */
  async stop(): Promise<void> {
    this.#blackholed = false;
    for (const link of [...this.#links]) {
      this.#links.delete(link);
      link.client.destroy();
      link.server.destroy();
    }
    if (!this.server.listening) return;
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

function parseTarget(endpoint: string): ProxyTarget {
  const url = new URL(endpoint.includes('://') ? endpoint : `http://${endpoint}`);
  return { host: url.hostname, port: Number(url.port) };
}
