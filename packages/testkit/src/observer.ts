/**
 * An independent observer of who holds a slot: it watches a group's `holding/` markers with its
 * own etcd client, never through the code under test, and records the peak count and a timeline.
 * Safety tests assert on what it saw.
 *
 * It counts holders after every revision, not after every watch response: a catch-up response
 * carries up to 1000 events, and a marker may come and go inside one. It tracks the revision of
 * the last event it applied (never a response header, which carries the store's current revision)
 * and, when its stream goes down, watches again from the event after that one, so it misses
 * nothing across reconnects. If etcd compacted past that point it cannot know what it missed:
 * `gaps` says so, and `check()` throws.
 */
import { Etcd3, type IWatchResponse, type Watcher } from 'etcd3';

/** One change the observer saw: the markers that existed after revision `revision`. */
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
  /** Compactions that cut the observer off from events it never saw. */
  readonly gaps: string[] = [];
  peak = 0;
  /** The revision of the last event applied: the watch resumes after it. */
  #revision = 0;
  #watcher: Watcher | null = null;
  #stopped = false;

  private constructor(
    endpoints: string[],
    readonly groupRoot: string,
  ) {
    this.#client = new Etcd3({ hosts: endpoints });
  }

  get #prefix(): string {
    return `${this.groupRoot}holding/`;
  }

  /** Starts watching from the current revision. */
  static async start(endpoints: string[], groupRoot: string): Promise<HolderObserver> {
    const observer = new HolderObserver(endpoints, groupRoot);
    const prefix = observer.#prefix;
    const res = await observer.#client.getAll().prefix(prefix).exec();
    for (const kv of res.kvs) observer.#held.add(kv.key.toString().slice(prefix.length));
    observer.peak = observer.#held.size;
    observer.#revision = Number(res.header.revision);
    await observer.#watch();
    return observer;
  }

  async #watch(): Promise<void> {
    if (this.#stopped) return;
    const watcher = await this.#client
      .watch()
      .prefix(this.#prefix)
      .startRevision(String(this.#revision + 1))
      .create();
    if (this.#stopped) {
      await watcher.cancel().catch(() => {});
      return;
    }
    this.#watcher = watcher;
    watcher.on('data', (data) => this.#apply(data));
    // etcd3 would resume from the last response header + 1, which skips the rest of a catch-up
    // batch. Start a watcher of our own from the last event we applied instead.
    const again = () => {
      if (this.#watcher !== watcher) return;
      this.#watcher = null;
      void watcher.cancel().catch(() => {});
      setTimeout(() => void this.#watch().catch(again), 100);
    };
    watcher.on('disconnected', again);
    watcher.on('error', (error: Error) => {
      if (/compact/i.test(error.message)) this.gaps.push(error.message);
      again();
    });
  }

  #apply(data: IWatchResponse): void {
    const prefix = this.#prefix;
    const events = data.events;
    for (const [i, event] of events.entries()) {
      const revision = Number(event.kv.mod_revision);
      if (revision <= this.#revision) continue; // Seen before a reconnect.
      const node = event.kv.key.toString().slice(prefix.length);
      if (event.type === 'Delete') this.#held.delete(node);
      else if (!this.#held.has(node)) {
        this.#held.add(node);
        this.grants.push(node);
      }
      // One txn's events share a revision: count once the revision is complete.
      const next = events[i + 1];
      if (next && Number(next.kv.mod_revision) === revision) continue;
      this.#revision = revision;
      this.peak = Math.max(this.peak, this.#held.size);
      this.timeline.push({ revision, at: Date.now(), holders: [...this.#held] });
    }
  }

  /** Nodes holding a slot now, as far as the observer has seen. */
  get holders(): string[] {
    return [...this.#held];
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
        throw new Error(`observer: condition not met in ${timeoutMs} ms; holders: ${this.holders}`);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** Stops watching and closes the observer's client. */
  async stop(): Promise<void> {
    this.#stopped = true;
    const watcher = this.#watcher;
    this.#watcher = null;
    await watcher?.cancel().catch(() => {});
    this.#client.close();
  }
}
