/**
 * A watch for observers that must not miss a single revision: every event under a prefix, in
 * revision order, handed over one revision at a time, across reconnects and catch-up batches.
 *
 * Two etcd facts make a plain etcd3 watcher lossy for this:
 *
 * - A watcher that falls behind (after a reconnect, or a burst of writes) catches up in responses
 *   of at most 1000 revisions, and every response's header carries the *current* store revision,
 *   not the revision of its last event. A high-water mark taken from the header skips the rest of
 *   the catch-up.
 * - etcd3's Watcher does exactly that: it resumes a dropped stream from `header.revision + 1` of
 *   the last response it saw. A stream that drops in the middle of a catch-up resumes past the
 *   revisions still to come, and they are never delivered.
 *
 * This watch keeps its own mark, taken only from events (the revision after the last one
 * delivered), and puts it into the create request every time etcd3 (re)attaches the watcher.
 * etcd never splits one revision across responses (it cuts batches only where the revision
 * changes), so a revision handed over is complete. A watch that etcd cancels (its start revision
 * was compacted) cannot be resumed without a gap: `onGap` is called and nothing more arrives.
 */
import type { Etcd3, IKeyValue, Watcher } from 'etcd3';

/** One event under the watched prefix. */
export interface RevisionEvent {
  type: 'put' | 'delete';
  key: string;
  /** The new value; null for a delete. */
  value: string | null;
  /** The key's create revision; 0 for a delete. */
  createRevision: number;
  /** The revision of the change. */
  modRevision: number;
  /** The lease id as a decimal string, `'0'` for none. */
  lease: string;
}

/** Everything that changed under the prefix in one revision (one txn). */
export interface RevisionChange {
  revision: number;
  /** When the watch received it (ms since the epoch). */
  at: number;
  events: RevisionEvent[];
}

/** How to start a {@link RevisionWatch}. */
export interface RevisionWatchOptions {
  /** The first revision wanted (a range read's header revision + 1). */
  startRevision: number;
  /** Called once per revision, in revision order, never twice for one revision. */
  onRevision: (change: RevisionChange) => void;
  /** Called when etcd cancelled the watch (e.g. compacted past it): revisions are missing. */
  onGap?: (error: Error) => void;
}

/** A gap-free watch of a prefix. Start with {@link RevisionWatch.start}; `close()` it. */
export class RevisionWatch {
  #next: number;
  #watcher: Watcher | null = null;
  #closed = false;
  /** Times the stream dropped and was re-attached. */
  disconnects = 0;
  /** Set once etcd cancelled the watch: the revisions after `lastRevision` never arrive. */
  gap: Error | null = null;

  private constructor(private readonly opts: RevisionWatchOptions) {
    this.#next = opts.startRevision;
  }

  /** Starts watching `prefix` with `client` from `opts.startRevision`. */
  static async start(
    client: Etcd3,
    prefix: string,
    opts: RevisionWatchOptions,
  ): Promise<RevisionWatch> {
    const watch = new RevisionWatch(opts);
    const watcher = await client
      .watch()
      .prefix(prefix)
      .startRevision(String(opts.startRevision))
      .create();
    watch.#watcher = watcher;
    // etcd3 writes `watcher.request` as the create request right after this event, on every
    // (re)attach; its own mark (from headers) is replaced by ours.
    watcher.on('connecting', () => {
      watcher.request.start_revision = String(watch.#next);
    });
    watcher.on('disconnected', () => {
      watch.disconnects++;
    });
    watcher.on('error', (error: Error) => {
      if (watch.#closed) return;
      watch.gap = error;
      watch.opts.onGap?.(error);
    });
    watcher.on('data', (res) => watch.#apply(res.events.map((e) => toEvent(e.type, e.kv))));
    return watch;
  }

  /** The last revision handed over (startRevision - 1 before the first). */
  get lastRevision(): number {
    return this.#next - 1;
  }

  #apply(events: RevisionEvent[]): void {
    if (this.#closed) return;
    const at = Date.now();
    let batch: RevisionEvent[] = [];
    const flush = () => {
      if (batch.length === 0) return;
      const revision = batch[0]!.modRevision;
      this.#next = revision + 1;
      const change = { revision, at, events: batch };
      batch = [];
      this.opts.onRevision(change);
    };
    for (const event of events) {
      // Already handed over (a resume never asks for these, but a replay must not count twice).
      if (event.modRevision < this.#next) continue;
      if (batch.length > 0 && batch[0]!.modRevision !== event.modRevision) flush();
      batch.push(event);
    }
    flush();
  }

  /** Stops watching. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    const watcher = this.#watcher;
    this.#watcher = null;
    await watcher?.cancel().catch(() => {});
  }
}

function toEvent(type: string, kv: IKeyValue): RevisionEvent {
  const put = type === 'Put';
  return {
    type: put ? 'put' : 'delete',
    key: kv.key.toString(),
    value: put ? kv.value.toString() : null,
    createRevision: put ? Number(kv.create_revision) : 0,
    modRevision: Number(kv.mod_revision),
    lease: String(kv.lease ?? '0'),
  };
}
