/**
 * Shared set-up for integration tests: a fresh group name per test and etcd clients that are
 * closed afterwards, even when a test fails.
 */
import { randomUUID } from 'node:crypto';
import { GroupKeys } from '@sluice/core';
import { connectEtcd, Semaphore, type SemaphoreOptions } from '@sluice/etcd';
import { FaultProxy } from '@sluice/testkit';
import { Etcd3 } from 'etcd3';

/** Tracks clients and semaphores created by a test, and closes them in `cleanup()`. */
export class TestEnv {
  readonly prefix = `/t-${randomUUID().slice(0, 8)}/`;
  readonly group = 'g';
  readonly keys = new GroupKeys(this.prefix, this.group);
  readonly #clients: Etcd3[] = [];
  readonly #semaphores: Semaphore[] = [];
  readonly #proxies: FaultProxy[] = [];

  constructor(readonly endpoints: string[]) {}

  /** A new etcd client, closed at cleanup. */
  client(): Etcd3 {
    const client = new Etcd3({ hosts: this.endpoints });
    this.#clients.push(client);
    return client;
  }

  /**
   * A semaphore for `node` on its own client (as a separate agent process would have), or on
   * `client` when given (as the nodes of one simulator process share one).
   */
  semaphore(node: string, opts: Partial<SemaphoreOptions> = {}, client?: Etcd3): Semaphore {
    const sem = new Semaphore(client ?? this.client(), {
      node,
      prefix: this.prefix,
      group: this.group,
      sessionTTL: 5,
      ...opts,
    });
    this.#semaphores.push(sem);
    return sem;
  }

  /**
   * A semaphore for `node` whose link to etcd runs through a FaultProxy, on a client set up as
   * sluiced sets up its own (call deadlines, retries, circuit breaker): a node whose network the
   * test can reset, cut and slow.
   */
  async proxied(
    node: string,
    opts: Partial<SemaphoreOptions> = {},
    callTimeoutMs = 5000,
  ): Promise<{ sem: Semaphore; proxy: FaultProxy; client: Etcd3 }> {
    const proxy = await FaultProxy.start(this.endpoints[0]!);
    this.#proxies.push(proxy);
    const client = await connectEtcd({ endpoints: [proxy.endpoint], callTimeoutMs });
    this.#clients.push(client);
    return { sem: this.semaphore(node, opts, client), proxy, client };
  }

  /** Stops keep-alives, closes every client and stops every proxy. */
  cleanup(): void {
    for (const s of this.#semaphores) s.close();
    for (const c of this.#clients) c.close();
    for (const p of this.#proxies) void p.stop();
  }
}

/** Sleeps for `ms`. */
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** True if the promise is still pending after `ms`. */
export async function stillPending(p: Promise<unknown>, ms: number): Promise<boolean> {
  const marker = Symbol('pending');
  const result = await Promise.race([
    p.then(
      () => null,
      () => null,
    ),
    sleep(ms).then(() => marker),
  ]);
  return result === marker;
}
