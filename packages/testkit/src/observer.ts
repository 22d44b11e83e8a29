/**
 * An independent observer of who holds a slot: it watches a group's `holding/` markers with its
 * own etcd client, never through the code under test, and records the peak count and a timeline.
 * Safety tests assert on what it saw.
 */
import { Etcd3 } from 'etcd3';

/** One change the observer saw: how many markers existed after revision `revision`. */
export interface ObservedChange {
  revision: number;
  at: number;
  holders: string[];
}

/** Watches `<groupRoot>holding/` and counts markers at every revision. */
export class HolderObserver {
  readonly #client: Etcd3;
  readonly #held = new Set<string>();
  readonly timeline: ObservedChange[] = [];
  /** Every node ever seen holding, in the order their markers appeared. */
  readonly grants: string[] = [];
  peak = 0;
  #cancel: (() => Promise<void>) | null = null;

  private constructor(
    endpoints: string[],
    readonly groupRoot: string,
  ) {
    this.#client = new Etcd3({ hosts: endpoints });
  }

  /** Starts watching from the current revision. */
  static async start(endpoints: string[], groupRoot: string): Promise<HolderObserver> {
    const observer = new HolderObserver(endpoints, groupRoot);
    const prefix = `${groupRoot}holding/`;
    const res = await observer.#client.getAll().prefix(prefix).exec();
    for (const kv of res.kvs) observer.#held.add(kv.key.toString().slice(prefix.length));
    observer.peak = observer.#held.size;
    const watcher = await observer.#client
      .watch()
      .prefix(prefix)
      .startRevision(String(Number(res.header.revision) + 1))
      .create();
    watcher.on('data', (data) => {
      for (const event of data.events) {
        const node = event.kv.key.toString().slice(prefix.length);
        if (event.type === 'Delete') observer.#held.delete(node);
        else if (!observer.#held.has(node)) {
          observer.#held.add(node);
          observer.grants.push(node);
        }
      }
      observer.peak = Math.max(observer.peak, observer.#held.size);
      observer.timeline.push({
        revision: Number(data.header.revision),
        at: Date.now(),
        holders: [...observer.#held],
      });
    });
    observer.#cancel = () => watcher.cancel();
    return observer;
  }

  /** Nodes holding a slot now, as far as the observer has seen. */
  get holders(): string[] {
    return [...this.#held];
  }

  /** Resolves once `predicate` holds for the observed holders, or rejects after `timeoutMs`. */
  async until(predicate: (holders: string[]) => boolean, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate(this.holders)) {
      if (Date.now() > deadline) {
        throw new Error(`observer: condition not met in ${timeoutMs} ms; holders: ${this.holders}`);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** Stops watching and closes the observer's client. */
  async stop(): Promise<void> {
    await this.#cancel?.().catch(() => {});
    this.#client.close();
  }
}
