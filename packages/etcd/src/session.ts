/**
 * A Session owns one etcd lease and its keep-alive. It says when the lease is lost, and keeps
 * "stop refreshing" (`close()`, the keys live on until the TTL runs out) apart from "revoke"
 * (`revoke()`, the keys go now).
 *
 * A session either grants its lease (`open`) or adopts one granted earlier, by its ID
 * (`adopt`): etcd's keep-alive RPC renews any live lease, whoever granted it. That is how an
 * agent back from its reboot keeps the hold lease its previous process granted, with no write:
 * the slot's key stays where it is. etcd3's `Lease` class can only keep alive a lease it granted
 * itself, so the keep-alive here talks to etcd's lease RPCs directly.
 */
import {
  type Etcd3,
  EtcdLeaseInvalidError,
  type IDuplexStream,
  type ILeaseKeepAliveRequest,
  type ILeaseKeepAliveResponse,
} from 'etcd3';
import { Backoff } from './backoff.js';
import { etcdCall } from './errors.js';

type KeepAliveStream = IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse>;

/** A lease kept alive in the background until closed, revoked or lost. */
export class Session {
  readonly #client: Etcd3;
  readonly #lost = new AbortController();
  readonly #backoff = new Backoff({ initialMs: 100, maxMs: 2000 });
  #closed = false;
  #stream: KeepAliveStream | null = null;
  #tick: ReturnType<typeof setInterval> | undefined;
  #reconnect: ReturnType<typeof setTimeout> | undefined;
  /** When etcd last said the lease is alive (a grant, a keep-alive answer), monotonic ms. */
  #lastAlive = performance.now();

  private constructor(
    client: Etcd3,
    /** The lease id, as etcd's decimal string. */
    readonly id: string,
    /** The TTL in seconds: what every keep-alive renews the lease to. */
    readonly ttl: number,
    keepAlive: boolean,
  ) {
    this.#client = client;
    if (!keepAlive) return;
    // As etcd's own Go client does: renew three times per TTL.
    this.#tick = setInterval(() => this.#renew(), (ttl * 1000) / 3);
    this.#connect();
  }

  /**
   * Grants a lease of `ttl` seconds and starts keeping it alive, unless `keepAlive` is false (the
   * lease then runs out `ttl` seconds after the grant). Rejects with an `etcd-unavailable` or
   * `etcd-denied` SluiceError if etcd does not grant it.
   */
  static async open(
    client: Etcd3,
    ttl: number,
    opts: { keepAlive?: boolean } = {},
  ): Promise<Session> {
    if (!Number.isInteger(ttl) || ttl < 1) {
      throw new RangeError(`an etcd lease TTL is a whole number of seconds, at least 1: ${ttl}`);
    }
    const res = await etcdCall('a lease grant', () => client.leaseClient.leaseGrant({ TTL: ttl }));
    // etcd may grant more than asked (its minimum TTL); renew by what it granted.
    return new Session(client, String(res.ID), Number(res.TTL), opts.keepAlive ?? true);
  }

  /**
   * Adopts the live lease `id`, granted earlier (by this node's previous process), and keeps it
   * alive like one of its own: each keep-alive renews it to its granted TTL. Null when etcd no
   * longer has that lease (it ran out or was revoked), or when its granted TTL is not `ttl`: a
   * lease granted under another setting is not kept, the caller grants a new one.
   */
  static async adopt(client: Etcd3, id: string, ttl: number): Promise<Session | null> {
    const res = await etcdCall(`reading lease ${id}`, () =>
      client.leaseClient.leaseTimeToLive({ ID: id }),
    );
    // etcd answers TTL -1 for a lease it does not have.
    if (Number(res.TTL) <= 0 || Number(res.grantedTTL) !== ttl) return null;
    return new Session(client, id, ttl, true);
  }

  /**
   * Aborted when the lease is gone: etcd said it expired, or no keep-alive got through for twice
   * the TTL (by then etcd has let it go, even allowing for the extension a leader change gives).
   * Keys written on it are then gone. Not aborted by close/revoke.
   */
  get lost(): AbortSignal {
    return this.#lost.signal;
  }

  /** True while the lease is believed alive and kept alive. */
  get alive(): boolean {
    return !this.#closed && !this.#lost.signal.aborted;
  }

  /** Stops refreshing the lease. Keys on it survive until the TTL runs out (e.g. across a reboot). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#tick);
    clearTimeout(this.#reconnect);
    this.#stream?.end();
    this.#stream = null;
  }

  /** Revokes the lease: every key on it is deleted at once. A lease already gone is no error. */
  async revoke(): Promise<void> {
    this.close();
    await etcdCall('a lease revoke', () =>
      this.#client.leaseClient.leaseRevoke({ ID: this.id }).then(
        () => {},
        (error: unknown) => {
          if (!(error instanceof EtcdLeaseInvalidError)) throw error;
        },
      ),
    );
  }

  /** Opens the keep-alive stream and sends the first renewal on it. */
  #connect(): void {
    this.#reconnect = undefined;
    this.#client.leaseClient.leaseKeepAlive().then(
      (stream) => {
        if (this.#closed) {
          stream.end();
          return;
        }
        this.#stream = stream;
        stream.on('data', (res: ILeaseKeepAliveResponse) => {
          if (Number(res.TTL) <= 0) {
            this.#lose(new Error(`etcd says lease ${this.id} has expired`));
            return;
          }
          this.#lastAlive = performance.now();
          this.#backoff.reset();
        });
        stream.on('error', () => this.#broken(stream));
        stream.on('end', () => this.#broken(stream));
        this.#write(stream);
      },
      () => this.#broken(null),
    );
  }

  /**
   * A keep-alive every third of the TTL. Silence is timed on the monotonic clock, so a step of
   * the wall clock neither loses a lease nor keeps a lost one.
   */
  #renew(): void {
    if (this.#closed) return;
    const silentMs = performance.now() - this.#lastAlive;
    if (silentMs > 2 * this.ttl * 1000) {
      this.#lose(new Error(`no keep-alive of lease ${this.id} got through for ${2 * this.ttl} s`));
      return;
    }
    // No answer to the last renewal: the stream may sit on a dead connection, so open another.
    if (this.#stream && silentMs > (this.ttl * 1000 * 2) / 3) this.#broken(this.#stream);
    else if (this.#stream) this.#write(this.#stream);
  }

  #write(stream: KeepAliveStream): void {
    try {
      stream.write({ ID: this.id });
    } catch {
      this.#broken(stream);
    }
  }

  /** The stream failed (or never opened): open a new one after a back-off. */
  #broken(stream: KeepAliveStream | null): void {
    if (stream !== this.#stream || this.#closed || this.#reconnect) return;
    this.#stream = null;
    try {
      stream?.end();
    } catch {
      // Already broken: nothing to end.
    }
    this.#reconnect = setTimeout(() => this.#connect(), this.#backoff.next());
  }

  #lose(error: Error): void {
    if (this.#closed) return;
    this.close();
    this.#lost.abort(error);
  }
}
