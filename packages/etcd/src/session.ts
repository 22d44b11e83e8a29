/**
 * A Session owns one etcd lease and its keep-alive. It says when the lease is lost, and keeps
 * "stop refreshing" (`close()`, the keys live on until the TTL runs out) apart from "revoke"
 * (`revoke()`, the keys go now).
 */
import type { Etcd3, Lease } from 'etcd3';
import { etcdCall } from './errors.js';

/** A lease kept alive in the background until closed, revoked or lost. */
export class Session {
  readonly #lease: Lease;
  readonly #lost = new AbortController();
  #closed = false;

  private constructor(
    lease: Lease,
    /** The lease id, as etcd's decimal string. */
    readonly id: string,
    /** The TTL in seconds. */
    readonly ttl: number,
  ) {
    this.#lease = lease;
    lease.on('lost', (error) => {
      if (!this.#closed) this.#lost.abort(error);
    });
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
    const lease = client.lease(ttl, { autoKeepAlive: opts.keepAlive ?? true });
    // A failed grant also emits 'lost'; without a listener that would be an unhandled error.
    lease.on('lost', () => {});
    try {
      const id = await etcdCall('a lease grant', () => lease.grant());
      return new Session(lease, id, ttl);
    } catch (error) {
      lease.release();
      throw error;
    }
  }

  /**
   * Aborted when the lease is gone: etcd said it expired, or no keep-alive got through for longer
   * than the TTL. Keys written on it are then gone or about to go. Not aborted by close/revoke.
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
    this.#lease.release();
  }

  /** Revokes the lease: every key on it is deleted at once. */
  async revoke(): Promise<void> {
    this.#closed = true;
    await etcdCall('a lease revoke', () => this.#lease.revoke());
  }
}
