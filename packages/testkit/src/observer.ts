/**
 * An independent observer of who holds a slot: it watches a group's `holding/` markers with its
 * own etcd client, never through the code under test, and records the peak count and a timeline.
 * Safety tests assert on what it saw.
 *
 * It counts holders after every revision, not after every watch response: a catch-up response
 * carries up to 1000 revisions, and a marker may come and go inside one. Its watch is a
 * {@link RevisionWatch}: it tracks the revision of the last event applied (never a response
 * header, which carries the store's current revision) and resumes after it, so it misses nothing
 * across reconnects. If etcd compacted past that point it cannot know what it missed: `gaps` says
 * so, and `check()` throws.
 */
import { Etcd3, type IOptions } from 'etcd3';
import { RevisionWatch } from './watch.js';

/** One change the observer saw: who held a marker after revision `revision`. */
export interface ObservedChange {
  revision: number;
  at: number;
  holders: string[];
}

/** Watches `<groupRoot>holding/` and counts markers at every revision. */
export class HolderObserver {
  readonly #client: Etcd3;
  readonly #held = new Set<string>();
  /** One entry per revision that changed who holds. */
  readonly timeline: ObservedChange[] = [];
  /** Every node ever seen holding, in the order their markers appeared. */
  readonly grants: string[] = [];
  /** Most markers at one revision. */
  peak = 0;
  #watch: RevisionWatch | null = null;

  private constructor(
    options: IOptions,
    readonly groupRoot: string,
  ) {
    this.#client = new Etcd3(options);
  }

  /**
   * Starts watching from the current revision. `options` are the observer's own client options
   * (the hosts default to `endpoints`).
   */
  static async start(
    endpoints: string[],
    groupRoot: string,
    options: Partial<IOptions> = {},
  ): Promise<HolderObserver> {
    const observer = new HolderObserver({ ...options, hosts: endpoints }, groupRoot);
    const prefix = `${groupRoot}holding/`;
    try {
      const res = await observer.#client.getAll().prefix(prefix).exec();
      for (const kv of res.kvs) observer.#held.add(kv.key.toString().slice(prefix.length));
      observer.peak = observer.#held.size;
      observer.#watch = await RevisionWatch.start(observer.#client, prefix, {
        startRevision: Number(res.header.revision) + 1,
        onRevision: (change) => {
          for (const event of change.events) {
            const node = event.key.slice(prefix.length);
            if (event.type === 'delete') observer.#held.delete(node);
            else if (!observer.#held.has(node)) {
              observer.#held.add(node);
              observer.grants.push(node);
            }
          }
          observer.peak = Math.max(observer.peak, observer.#held.size);
          observer.timeline.push({
            revision: change.revision,
            at: change.at,
            holders: [...observer.#held],
          });
        },
      });
    } catch (error) {
      observer.#client.close();
      throw error;
    }
    return observer;
  }

  /** Nodes holding a slot now, as far as the observer has seen. */
  get holders(): string[] {
    return [...this.#held];
  }

  /** The last revision the observer has applied. */
  get revision(): number {
    return this.#watch?.lastRevision ?? 0;
  }

  /** Why etcd cancelled the observer's watch (it compacted past it): what it shows is stale. */
  get gaps(): string[] {
    const gap = this.#watch?.gap;
    return gap ? [gap.message] : [];
  }

  /** The most holders at any one revision. Throws if the observer may have missed events. */
  check(): number {
    if (this.gaps.length > 0) {
      throw new Error(`observer missed events: ${this.gaps.join('; ')}`);
    }
    return this.peak;
  }

  /** Resolves once `predicate` holds for the observed holders, or rejects after `timeoutMs`. */
  async until(predicate: (holders: string[]) => boolean, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate(this.holders)) {
      if (Date.now() > deadline) {
        const shown = this.holders.slice(0, 20).join(', ');
        const more = this.#held.size > 20 ? ` and ${this.#held.size - 20} more` : '';
        throw new Error(`observer: condition not met in ${timeoutMs} ms; holders: ${shown}${more}`);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** Stops watching and closes the observer's client. */
  async stop(): Promise<void> {
    await this.#watch?.close();
    this.#client.close();
  }
}
