/**
 * A local copy of one key or one prefix of etcd: a read at one revision (in pages), then a watch
 * from the next. It is a hint of what etcd holds, for waking up and for display; nothing decides
 * on it alone.
 *
 * Two etcd facts make a naive mirror lose events, and this one guards against both:
 * - A catch-up watch response carries up to 1000 events, and its header carries the store's
 *   *current* revision. So the mirror skips an event only when it is no newer than the last read,
 *   or than what it holds for that key; it never takes a high-water mark from a header.
 * - After a reconnect the etcd3 client resumes a watch from the last response header + 1, which
 *   skips the rest of a catch-up. So a watch that goes down, or that etcd cancels (its start
 *   revision was compacted), is dropped, and the mirror reads etcd again and watches from that
 *   read's revision, backing off while etcd cannot be reached.
 *
 * A third is a watch that stays silent: after a partition the client may keep a stream that says
 * neither `data` nor `disconnected` again. A mirror of one key can be told to check itself
 * (`verifyMs`): it reads the key now and then, and reads again and re-watches when the key's
 * revision in etcd is not the one it holds.
 */
import { type RawKV, SluiceError } from '@sluice/core';
import type { Etcd3, IWatchResponse, Namespace, Watcher } from 'etcd3';
import { Backoff, jitter } from './backoff.js';
import { etcdCall } from './errors.js';
import { readPrefix, toRawKV } from './reads.js';

/**
 * How long a new watch may take to be confirmed by etcd. etcd3 waits for the confirmation
 * without a deadline, and a stream to a member that stopped answering would keep a mirror
 * without a watch (and so without news) for good.
 */
export const WATCH_CREATE_MS = 10_000;

/**
 * Resolves once etcd confirmed the watch; rejects on its error or after `ms` (then calling
 * `onTimeout` first).
 */
function created(watcher: Watcher, ms: number, onTimeout: () => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      done();
      onTimeout();
      reject(new SluiceError('etcd-unavailable', `etcd did not confirm a watch within ${ms} ms`));
    }, ms);
    const onConnected = () => {
      done();
      resolve();
    };
    const onError = (error: unknown) => {
      done();
      reject(error);
    };
    const done = () => {
      clearTimeout(timer);
      watcher.off('connected', onConnected);
      watcher.off('error', onError);
    };
    watcher.once('connected', onConnected);
    watcher.once('error', onError);
  });
}

/**
 * Where the mirrors of a client make their watches: the client itself, until a watch went
 * unconfirmed. etcd3 attaches a stream's watches one at a time, each after the one before was
 * confirmed; a watch given up while its creation is in flight leaves that queue waiting for
 * good, so no later watch on the stream is ever made (seen in the chaos soak: an agent that could
 * not watch its window for minutes after the faults had healed). A namespace with the empty
 * prefix has a watch stream of its own, on the same connection.
 */
const watchSources = new WeakMap<Etcd3, Namespace>();

function watchSource(client: Etcd3): Namespace {
  return watchSources.get(client) ?? client;
}

/** Moves the client's mirrors to a new watch stream, for their next watches. */
function freshWatchSource(client: Etcd3): void {
  watchSources.set(client, client.namespace(''));
}

/** What to mirror: one key, or every key under a prefix. */
export type MirrorRange = { key: string } | { prefix: string };

/** How a mirror runs. */
export interface MirrorOptions {
  /**
   * For a mirror of one key: check it against etcd about this often (jittered), and read again
   * when it is out of step. Off when absent.
   */
  verifyMs?: number;
}

/** Told about each change to the mirror, to keep indexes of its keys. */
export interface MirrorHooks {
  /** A key was written (`old` is what the mirror held before, if anything). */
  set?(kv: RawKV, old: RawKV | undefined): void;
  /** A key was deleted. */
  delete?(old: RawKV): void;
  /** The mirror is about to be filled from a new read. */
  clear?(): void;
}

/** A mirror of a key or prefix. Start with `Mirror.start()`, stop with `close()`. */
export class Mirror {
  /** Full reads of the range, the first one included. */
  readonly stats = { resyncs: 0, verifies: 0 };
  readonly #kvs = new Map<string, RawKV>();
  readonly #listeners = new Set<(keys: readonly string[] | null) => void>();
  readonly #connectionListeners = new Set<(connected: boolean) => void>();
  /** The revision of the last full read. */
  #readRevision = 0;
  /** The revision of the last watch event applied. */
  #lastEvent = 0;
  #watcher: Watcher | null = null;
  #resyncing: Promise<void> | null = null;
  #retry: NodeJS.Timeout | null = null;
  readonly #backoff = new Backoff({ initialMs: 200, maxMs: 10_000 });
  #connected = true;
  #closed = false;
  #verifyTimer: NodeJS.Timeout | null = null;
  /** Set once the first read and watch worked. */
  #started = false;

  private constructor(
    private readonly client: Etcd3,
    readonly range: MirrorRange,
    private readonly hooks: MirrorHooks,
  ) {}

  /** Reads the range and starts watching it from the next revision. */
  static async start(
    client: Etcd3,
    range: MirrorRange,
    hooks: MirrorHooks = {},
    options: MirrorOptions = {},
  ): Promise<Mirror> {
    const mirror = new Mirror(client, range, hooks);
    await mirror.resync();
    if (options.verifyMs !== undefined && 'key' in range) mirror.#verifyEvery(options.verifyMs);
    return mirror;
  }

  #verifyEvery(ms: number): void {
    const next = () => {
      this.#verifyTimer = setTimeout(() => {
        void this.verify()
          .catch(() => {})
          .finally(() => {
            if (!this.#closed) next();
          });
      }, jitter(ms));
      this.#verifyTimer.unref?.();
    };
    next();
  }

  /**
   * Checks a mirror of one key against etcd: reads the key, and when its revision there is not
   * the one the mirror holds (and no event for it is on its way), reads again and re-watches.
   * Resolves true when the mirror was in step.
   */
  async verify(): Promise<boolean> {
    const range = this.range;
    if (!('key' in range) || this.#closed || this.#resyncing) return true;
    this.stats.verifies++;
    const res = await etcdCall(`a read of ${range.key}`, () =>
      this.client.kv.range({ key: Buffer.from(range.key), keys_only: true }),
    );
    const inEtcd = res.kvs[0] ? Number(res.kvs[0].mod_revision) : 0;
    const held = this.#kvs.get(range.key)?.modRevision ?? 0;
    // An event newer than the read may have arrived meanwhile: then the mirror is ahead, not out.
    if (inEtcd === held || this.revision >= Number(res.header.revision)) return true;
    await this.resync();
    return false;
  }

  get #label(): string {
    return 'key' in this.range ? this.range.key : this.range.prefix;
  }

  /** The key-value the mirror holds for `key`, or undefined. */
  get(key: string): RawKV | undefined {
    return this.#kvs.get(key);
  }

  /** Every key-value the mirror holds. */
  values(): IterableIterator<RawKV> {
    return this.#kvs.values();
  }

  /** The newest revision the mirror has seen: its last read, or a later event. */
  get revision(): number {
    return Math.max(this.#readRevision, this.#lastEvent);
  }

  /** False while the watch is down: the mirror may be stale until it has read etcd again. */
  get connected(): boolean {
    return this.#connected;
  }

  /**
   * Calls `listener` after every change: with the keys that changed, or null after a full read
   * (anything may have changed). Returns an unsubscribe function.
   */
  onChange(listener: (keys: readonly string[] | null) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Calls `listener` when the watch goes down (false) and when the mirror is back in step (true).
   * Returns an unsubscribe function.
   */
  onConnection(listener: (connected: boolean) => void): () => void {
    this.#connectionListeners.add(listener);
    return () => this.#connectionListeners.delete(listener);
  }

  #setConnected(connected: boolean): void {
    if (this.#connected === connected) return;
    this.#connected = connected;
    for (const listener of [...this.#connectionListeners]) listener(connected);
  }

  #emit(keys: readonly string[] | null): void {
    for (const listener of [...this.#listeners]) listener(keys);
  }

  /**
   * Reads the range again (at one revision R) and watches it from R+1. Called at start, after the
   * watch went down or was cancelled, and by a user that found the mirror out of step with etcd.
   * Concurrent calls share one read.
   */
  resync(): Promise<void> {
    this.#resyncing ??= this.#resyncOnce()
      .catch((error: unknown) => {
        // The old watch is gone and no new one is up: the mirror is out of step until a read
        // and a watch work again, so keep trying (a mirror that never started is its caller's).
        if (this.#started && !this.#closed && !this.#watcher) {
          this.#setConnected(false);
          this.#recover();
        }
        throw error;
      })
      .finally(() => {
        this.#resyncing = null;
      });
    return this.#resyncing;
  }

  async #resyncOnce(): Promise<void> {
    this.stats.resyncs++;
    this.#dropWatcher();
    const { kvs, revision } = await this.#read();
    if (this.#closed) return;
    this.hooks.clear?.();
    this.#kvs.clear();
    for (const kv of kvs) this.#set(kv);
    this.#readRevision = revision;
    await this.#watchFrom(revision + 1);
    this.#started = true;
    this.#emit(null);
  }

  async #read(): Promise<{ kvs: RawKV[]; revision: number }> {
    const range = this.range;
    if ('prefix' in range) return readPrefix(this.client, range.prefix);
    const res = await etcdCall(`a read of ${range.key}`, () =>
      this.client.kv.range({ key: Buffer.from(range.key) }),
    );
    return { kvs: res.kvs.map(toRawKV), revision: Number(res.header.revision) };
  }

  /**
   * Forgets the current watcher. One that went down is cancelled while the client is
   * disconnected, which only detaches it; one that etcd cancelled is gone from the client
   * already and must not be cancelled again: etcd would answer a second cancel for a watch the
   * client no longer knows, and the etcd3 client throws on that answer outside any promise.
   */
  #dropWatcher(cancel = true): void {
    const old = this.#watcher;
    this.#watcher = null;
    if (old && cancel) void old.cancel().catch(() => {});
  }

  async #watchFrom(revision: number): Promise<void> {
    const range = this.range;
    const builder = watchSource(this.client).watch();
    const scoped = 'key' in range ? builder.key(range.key) : builder.prefix(range.prefix);
    const watcher = scoped.startRevision(String(revision)).watcher();
    await etcdCall(`a watch of ${this.#label}`, () =>
      created(watcher, WATCH_CREATE_MS, () => freshWatchSource(this.client)),
    ).catch((error: unknown) => {
      void watcher.cancel().catch(() => {});
      throw error;
    });
    if (this.#closed) {
      await watcher.cancel().catch(() => {});
      return;
    }
    this.#watcher = watcher;
    this.#setConnected(true);
    watcher.on('data', (res) => {
      if (this.#watcher === watcher) this.#apply(res);
    });
    // Down: etcd3 would resume from the last header + 1 and could skip events. Read again.
    watcher.on('disconnected', () => this.#lost(watcher, true));
    // Cancelled by etcd (its start revision was compacted, say): read again.
    watcher.on('error', () => this.#lost(watcher, false));
  }

  #lost(watcher: Watcher, cancel: boolean): void {
    if (this.#watcher !== watcher) return;
    this.#dropWatcher(cancel);
    this.#setConnected(false);
    this.#recover();
  }

  /** Reads the range again until it works, backing off, while the watch is down. */
  #recover(): void {
    if (this.#closed || this.#retry) return;
    const attempt = () => {
      this.#retry = null;
      if (this.#closed || this.#watcher) return;
      this.resync().then(
        () => this.#backoff.reset(),
        () => {
          if (!this.#closed && !this.#retry)
            this.#retry = setTimeout(attempt, this.#backoff.next());
        },
      );
    };
    this.#retry = setTimeout(attempt, this.#backoff.next());
  }

  #apply(res: IWatchResponse): void {
    const changed: string[] = [];
    for (const event of res.events) {
      const kv = toRawKV(event.kv);
      this.#lastEvent = Math.max(this.#lastEvent, kv.modRevision);
      // Events up to the last read are in the mirror already; after it, a key changes at most
      // once per revision, so an event no newer than what the mirror holds for its key is old.
      if (kv.modRevision <= this.#readRevision) continue;
      const held = this.#kvs.get(kv.key);
      if (held && held.modRevision >= kv.modRevision) continue;
      if (event.type === 'Delete') {
        if (!held) continue;
        this.#kvs.delete(kv.key);
        this.hooks.delete?.(held);
      } else {
        this.#set(kv);
      }
      changed.push(kv.key);
    }
    if (changed.length > 0) this.#emit(changed);
  }

  #set(kv: RawKV): void {
    const old = this.#kvs.get(kv.key);
    this.#kvs.set(kv.key, kv);
    this.hooks.set?.(kv, old);
  }

  /** Stops watching. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#retry) clearTimeout(this.#retry);
    if (this.#verifyTimer) clearTimeout(this.#verifyTimer);
    this.#retry = null;
    this.#listeners.clear();
    this.#connectionListeners.clear();
    const watcher = this.#watcher;
    this.#watcher = null;
    await watcher?.cancel().catch(() => {});
  }
}
