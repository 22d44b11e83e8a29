/**
 * A local mirror of one group's keys (see `Mirror`), with what waiters need on top: the queue's
 * create revisions in order, a snapshot built on demand, and parking for waiters deep in the
 * queue. Waiters use it to know when to ask etcd again; it never decides an admission by itself
 * (see DESIGN.md, "the mirror is only a wake-up hint"). `sluicectl watch` draws from it.
 */
import { buildSnapshot, type GroupKeys, type GroupSnapshot, type RawKV } from '@sluice/core';
import type { Etcd3 } from 'etcd3';
import { Mirror } from './mirror.js';
import { readPrefix } from './reads.js';

/** Reads a group in pages at one revision: one consistent snapshot, whatever its size. */
export async function readGroup(client: Etcd3, keys: GroupKeys): Promise<GroupSnapshot> {
  const { kvs, revision } = await readPrefix(client, keys.root);
  return buildSnapshot(keys, kvs, revision);
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

/** A listener that sleeps until a place ahead of its queue key frees up. See `park()`. */
interface Parked {
  listener: () => void;
  /** The waiter's own queue key and its create revision. */
  key: string;
  createRevision: number;
  /** Woken once fewer than this many queue keys stand ahead of `createRevision`. */
  threshold: number;
}

/**
 * A live mirror of a group. Start with `GroupWatch.start()` (one watch of its own) or
 * `GroupWatch.open()` (shared by every caller with the same client and group, as when one process
 * hosts many simulated nodes), and stop with `close()`.
 */
export class GroupWatch {
  /** Listener calls so far: what a change costs the waiters that share this watch. */
  readonly stats = { notifications: 0 };
  /** Create revisions of the queue keys, sorted: rank lower bounds in O(log n). */
  readonly #queueRevisions: number[] = [];
  #release: (() => Promise<void>) | null = null;
  readonly #listeners = new Set<() => void>();
  /** Parked listeners (not in `#listeners` while parked), by listener and by queue key. */
  readonly #parked = new Map<() => void, Parked>();
  readonly #parkedByKey = new Map<string, Set<Parked>>();
  /** Parked listeners sorted by their keys' create revisions. */
  readonly #parkedInOrder: Parked[] = [];
  /** No parked listener has a higher threshold (reset when none is parked). */
  #parkedThreshold = 0;
  #snapshot: GroupSnapshot | null = null;
  #mirror!: Mirror;

  private constructor(readonly keys: GroupKeys) {}

  /** Reads the group and starts watching it from the next revision. */
  static async start(client: Etcd3, keys: GroupKeys): Promise<GroupWatch> {
    const watch = new GroupWatch(keys);
    const queue = watch.#queueRevisions;
    const isQueue = (key: string) => key.startsWith(keys.queuePrefix);
    watch.#mirror = await Mirror.start(
      client,
      { prefix: keys.root },
      {
        set: (kv, old) => {
          if (!old && isQueue(kv.key)) insertSorted(queue, kv.createRevision);
        },
        delete: (old) => {
          if (!isQueue(old.key)) return;
          const at = lowerBound(queue, old.createRevision);
          if (queue[at] === old.createRevision) queue.splice(at, 1);
        },
        clear: () => {
          queue.length = 0;
        },
      },
    );
    watch.#mirror.onChange((changed) => {
      const settings = changed?.some((key) => keys.settings.includes(key)) ?? true;
      watch.#changed(settings ? null : changed);
    });
    return watch;
  }

  /** Full reads of the group so far (the first one, and one after each watch outage). */
  get resyncs(): number {
    return this.#mirror.stats.resyncs;
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
    this.#snapshot ??= buildSnapshot(this.keys, this.#mirror.values(), this.#mirror.revision);
    return this.#snapshot;
  }

  /** The revision the mirror is at: its last read's, or its last event's if later. */
  get revision(): number {
    return this.#mirror.revision;
  }

  /** How many queue keys the mirror holds: the size of the group, for scaling timers. */
  get queueSize(): number {
    return this.#queueRevisions.length;
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
    return this.#mirror.connected;
  }

  /**
   * Calls `listener` when the watch stream goes down (false: nothing new arrives, the mirror may
   * be stale) and when it is back (true). Returns an unsubscribe function.
   */
  onConnection(listener: (connected: boolean) => void): () => void {
    return this.#mirror.onConnection(listener);
  }

  /**
   * Calls `listener` after every change to the mirror (but see `park()`). The snapshot is built
   * only when someone reads `snapshot`, once per change however many listeners read it. Returns
   * an unsubscribe function.
   */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
      this.#unpark(listener, false);
    };
  }

  /**
   * Puts a listener to sleep while its waiter stands deep in the queue: it is not called again
   * until a settings key changes, its own queue key (`key`, created at `createRevision`) changes
   * or goes, the mirror is re-read, or fewer than `threshold` queue keys stand ahead of it; the
   * first parked waiter in queue order is also woken when a holding marker changes. Then it is
   * unparked and called as usual.
   *
   * The threshold is the decision's own (`wake.aheadBelow` from `decide()`), so the watch holds
   * no admission rule of its own. With a thousand waiters sharing one watch, each change then
   * wakes a handful of them instead of all. Returns false, leaving the listener as it was, if it
   * would have to wake at once.
   */
  park(listener: () => void, key: string, createRevision: number, threshold: number): boolean {
    if (!this.#listeners.has(listener)) return false;
    if (this.#mirror.get(key)?.createRevision !== createRevision) return false;
    if (this.queueAhead(createRevision) < threshold) return false;
    const parked: Parked = { listener, key, createRevision, threshold };
    this.#listeners.delete(listener);
    this.#parked.set(listener, parked);
    const sameKey = this.#parkedByKey.get(key);
    if (sameKey) sameKey.add(parked);
    else this.#parkedByKey.set(key, new Set([parked]));
    const order = this.#parkedInOrder;
    let at = order.length;
    while (at > 0 && order[at - 1]!.createRevision > createRevision) at--;
    order.splice(at, 0, parked);
    this.#parkedThreshold = Math.max(this.#parkedThreshold, threshold);
    return true;
  }

  /** Wakes a parked listener without calling it (`resume` puts it back among the listeners). */
  #unpark(listener: () => void, resume: boolean): void {
    const parked = this.#parked.get(listener);
    if (!parked) return;
    this.#parked.delete(listener);
    const sameKey = this.#parkedByKey.get(parked.key);
    sameKey?.delete(parked);
    if (sameKey?.size === 0) this.#parkedByKey.delete(parked.key);
    this.#parkedInOrder.splice(this.#parkedInOrder.indexOf(parked), 1);
    if (this.#parked.size === 0) this.#parkedThreshold = 0;
    if (resume) this.#listeners.add(listener);
  }

  /**
   * Re-reads the group (in pages, at one revision) and watches it again from there: for a waiter
   * that found the mirror out of step with etcd, or one that joined the queue again.
   */
  resync(): Promise<void> {
    return this.#mirror.resync();
  }

  /**
   * Tells listeners about a change to `keys`, or to anything (null: a settings key, or a re-read).
   * Parked listeners wake only as `park()` says.
   */
  #changed(keys: readonly string[] | null): void {
    this.#snapshot = null;
    if (this.#parked.size > 0) {
      const woken = new Set<Parked>(keys === null ? this.#parked.values() : []);
      for (const key of keys ?? []) {
        for (const parked of this.#parkedByKey.get(key) ?? []) woken.add(parked);
      }
      // A marker came or went. A marker with no queue key is a lost holder, which halts the
      // group; that takes etcd's word, and one waiter asking is enough (the halt, written as the
      // group's pause, then wakes everyone): the first in the queue.
      const first = this.#parkedInOrder[0];
      if (first && keys?.some((key) => key.startsWith(this.keys.holdingPrefix))) woken.add(first);
      // Places ahead only grow with the create revision: past the first waiter that still has
      // the highest threshold's worth of keys ahead of it, nobody can wake.
      for (const parked of this.#parkedInOrder) {
        const ahead = this.queueAhead(parked.createRevision);
        if (ahead >= this.#parkedThreshold) break;
        if (ahead < parked.threshold) woken.add(parked);
      }
      for (const parked of woken) this.#unpark(parked.listener, true);
    }
    for (const listener of [...this.#listeners]) {
      if (!this.#listeners.has(listener)) continue;
      this.stats.notifications++;
      listener();
    }
  }

  /** Stops the watch (for a shared one: once every caller has closed it). */
  async close(): Promise<void> {
    if (this.#release) return this.#release();
    return this.#stop();
  }

  async #stop(): Promise<void> {
    this.#listeners.clear();
    this.#parked.clear();
    this.#parkedByKey.clear();
    this.#parkedInOrder.length = 0;
    await this.#mirror.close();
  }
}
