/**
 * A local mirror of one group's keys: one range read, then a watch from the next revision. Every
 * etcd event updates the mirror, so a waiter recomputes its rank without reading etcd again.
 */
import { buildSnapshot, type GroupKeys, type GroupSnapshot, type RawKV } from '@sluice/core';
import type { Etcd3, IKeyValue, IWatchResponse, Watcher } from 'etcd3';
import { etcdCall } from './errors.js';

/** Converts etcd3's key-value to the core's RawKV. */
export function toRawKV(kv: IKeyValue): RawKV {
  return {
    key: kv.key.toString(),
    value: kv.value.toString(),
    createRevision: Number(kv.create_revision),
    modRevision: Number(kv.mod_revision),
    lease: String(kv.lease ?? '0'),
  };
}

/** Reads a group in one range request: one consistent snapshot at one revision. */
export async function readGroup(client: Etcd3, keys: GroupKeys): Promise<GroupSnapshot> {
  const res = await etcdCall(`a read of ${keys.root}`, () =>
    client.getAll().prefix(keys.root).exec(),
  );
  return buildSnapshot(keys, res.kvs.map(toRawKV), Number(res.header.revision));
}

/**
 * Wraps `body` so runs never overlap: a call made while it runs returns at once and makes it run
 * once more afterwards. Watch listeners use it to react to a burst of events with few passes.
 * Errors reach the caller that started the run.
 */
export function coalesce(body: () => Promise<void>, stopped: () => boolean): () => Promise<void> {
  let running = false;
  let again = false;
  return async () => {
    if (stopped()) return;
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      do {
        again = false;
        await body();
      } while (again && !stopped());
    } finally {
      running = false;
    }
  };
}

/** Shared watches by client and group root, for `GroupWatch.open()`. */
const shared = new WeakMap<Etcd3, Map<string, { watch: Promise<GroupWatch>; refs: number }>>();

/** Inserts `value` into a sorted array. */
function insertSorted(array: number[], value: number): void {
  array.splice(lowerBound(array, value), 0, value);
}

/** The number of elements of a sorted array below `value`. */
function lowerBound(array: number[], value: number): number {
  let lo = 0;
  let hi = array.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (array[mid]! < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * A live mirror of a group. Start with `GroupWatch.start()` (one watch of its own) or
 * `GroupWatch.open()` (shared by every caller with the same client and group, as when one process
 * hosts many simulated nodes), and stop with `close()`.
 */
export class GroupWatch {
  readonly #mirror = new Map<string, RawKV>();
  /** Create revisions of the queue keys, sorted: rank lower bounds in O(log n). */
  readonly #queueRevisions: number[] = [];
  #release: (() => Promise<void>) | null = null;
  readonly #listeners = new Set<() => void>();
  #revision = 0;
  #settingsRevision = 0;
  #snapshot: GroupSnapshot | null = null;
  #watcher: Watcher | null = null;
  #connected = true;
  #closed = false;

  private constructor(
    private readonly client: Etcd3,
    readonly keys: GroupKeys,
  ) {}

  /** Reads the group and starts watching it from the next revision. */
  static async start(client: Etcd3, keys: GroupKeys): Promise<GroupWatch> {
    const watch = new GroupWatch(client, keys);
    await watch.resync();
    return watch;
  }

  /**
   * A watch of the group shared by every caller with this client: one watch stream and one
   * mirror, however many nodes wait in this process. Each caller must `close()` it once; the
   * stream stops when the last one does.
   */
  static async open(client: Etcd3, keys: GroupKeys): Promise<GroupWatch> {
    let byRoot = shared.get(client);
    if (!byRoot) {
      byRoot = new Map();
      shared.set(client, byRoot);
    }
    const root = keys.root;
    let entry = byRoot.get(root);
    if (!entry) {
      const watch = GroupWatch.start(client, keys);
      entry = { watch, refs: 0 };
      byRoot.set(root, entry);
      watch.catch(() => byRoot.delete(root));
    }
    entry.refs++;
    const watch = await entry.watch;
    const map = byRoot;
    const own = entry;
    watch.#release = async () => {
      own.refs--;
      if (own.refs > 0) return;
      map.delete(root);
      await watch.#stop();
    };
    return watch;
  }

  /** The group as of the last event seen. */
  get snapshot(): GroupSnapshot {
    this.#snapshot ??= buildSnapshot(this.keys, this.#mirror.values(), this.#revision);
    return this.#snapshot;
  }

  /** The latest mod revision seen on any settings key (max, paused, windows, loss-budget). */
  get settingsRevision(): number {
    return this.#settingsRevision;
  }

  /** The raw key-value in the mirror, or undefined. */
  get(key: string): RawKV | undefined {
    return this.#mirror.get(key);
  }

  /**
   * How many queue keys were created before `createRevision`. A lower bound of a node's rank
   * (lost holders ahead add to it), counted without parsing any record.
   */
  queueAhead(createRevision: number): number {
    return lowerBound(this.#queueRevisions, createRevision);
  }

  /** False while the watch stream is down: the mirror may be stale. */
  get connected(): boolean {
    return this.#connected;
  }

  /**
   * Calls `listener` after every change to the mirror. The snapshot is built only when someone
   * reads `snapshot`, so a listener that can decide without it costs nothing. Returns an
   * unsubscribe function.
   */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Re-reads the group and restarts the watch from the new revision. Used at start, after a
   * compaction cancelled the watch, and by a waiter whose txn failed (so it decides again on fresh
   * data instead of retrying blindly).
   */
  async resync(): Promise<void> {
    const res = await etcdCall(`a read of ${this.keys.root}`, () =>
      this.client.getAll().prefix(this.keys.root).exec(),
    );
    const revision = Number(res.header.revision);
    if (this.#closed) return;
    if (revision < this.#revision) return; // An older read lost a race with the watch.
    this.#mirror.clear();
    this.#queueRevisions.length = 0;
    for (const kv of res.kvs) this.#set(toRawKV(kv));
    this.#revision = revision;
    this.#settingsRevision = revision;
    await this.#rewatch();
    this.#changed();
  }

  async #rewatch(): Promise<void> {
    const old = this.#watcher;
    this.#watcher = null;
    if (old) await old.cancel().catch(() => {});
    if (this.#closed) return;
    const watcher = await etcdCall(`a watch of ${this.keys.root}`, () =>
      this.client
        .watch()
        .prefix(this.keys.root)
        .startRevision(String(this.#revision + 1))
        .create(),
    );
    if (this.#closed) {
      await watcher.cancel().catch(() => {});
      return;
    }
    this.#watcher = watcher;
    watcher.on('data', (res) => this.#apply(res));
    watcher.on('disconnected', () => {
      this.#connected = false;
    });
    watcher.on('connected', () => {
      this.#connected = true;
    });
    // A cancelled watch (e.g. the start revision was compacted): read again and re-watch.
    watcher.on('error', () => {
      if (this.#watcher === watcher && !this.#closed) void this.resync().catch(() => {});
    });
  }

  #apply(res: IWatchResponse): void {
    if (this.#watcher === null) return;
    for (const event of res.events) {
      const kv = toRawKV(event.kv);
      if (kv.modRevision <= this.#revision) continue; // Already in the mirror from a resync.
      if (event.type === 'Delete') this.#delete(kv.key);
      else this.#set(kv);
      if (this.keys.settings.includes(kv.key)) this.#settingsRevision = kv.modRevision;
    }
    this.#revision = Math.max(this.#revision, Number(res.header.revision));
    this.#changed();
  }

  #set(kv: RawKV): void {
    const old = this.#mirror.get(kv.key);
    this.#mirror.set(kv.key, kv);
    if (!old && kv.key.startsWith(this.keys.queuePrefix)) {
      insertSorted(this.#queueRevisions, kv.createRevision);
    }
  }

  #delete(key: string): void {
    const old = this.#mirror.get(key);
    if (!old) return;
    this.#mirror.delete(key);
    if (key.startsWith(this.keys.queuePrefix)) {
      const at = lowerBound(this.#queueRevisions, old.createRevision);
      if (this.#queueRevisions[at] === old.createRevision) this.#queueRevisions.splice(at, 1);
    }
  }

  #changed(): void {
    this.#snapshot = null;
    for (const listener of this.#listeners) listener();
  }

  /** Stops the watch (for a shared one: once every caller has closed it). */
  async close(): Promise<void> {
    if (this.#release) return this.#release();
    return this.#stop();
  }

  async #stop(): Promise<void> {
    this.#closed = true;
    this.#listeners.clear();
    const watcher = this.#watcher;
    this.#watcher = null;
    if (watcher) await watcher.cancel().catch(() => {});
  }
}
