/**
 * Operator actions on a group, for `sluicectl` and tests: status, max, pause and resume, forced
 * release, reboot requests, history. Every write is a guarded txn or a single put, so two
 * operators cannot silently undo each other.
 */
import {
  describeZodError,
  formatPause,
  type GroupKeys,
  type GroupSnapshot,
  type GroupStatus,
  groupStatus,
  type HistoryRecord,
  HistoryRecordSchema,
  isSluiceError,
  parseMax,
  type RebootRequest,
  type Result,
  SluiceError,
} from '@sluice/core';
import { type Etcd3, Range } from 'etcd3';
import { etcdCall, toSluiceError } from './errors.js';
import { coalesce, GroupWatch, readGroup } from './group-watch.js';
import { haltGroup, pruneHistory } from './semaphore.js';

/**
 * What `releaseManual()` did: released a held slot (recorded in history), or removed a waiter
 * from the queue (nothing was held, so no history).
 */
export type ManualRelease = { outcome: 'released' | 'left' };

/**
 * Why `releaseManual()` left a node alone: it has nothing in the group, its key belongs to its
 * agent (or cannot be read), or only its lost-holder marker is left. All three need an operator's
 * `--force` (or nothing at all).
 */
export type ManualReleaseRefusal =
  | { refused: 'nothing' }
  | { refused: 'agent'; holding: boolean; state: string | null }
  | { refused: 'lost' };

/** A history record that cannot be read, by key. */
export interface HistoryError {
  key: string;
  message: string;
}

/** Options of `GroupAdmin.watch()`. */
export interface WatchOptions {
  /** Failures while building a status. The watch goes on. */
  onError?: (error: SluiceError) => void;
  /**
   * The watch stream went down (`connected` false) or came back (true). `at` is when this was
   * noticed. While it is down, nothing new arrives: the last
   * status is all there is. After it comes back, a fresh status follows.
   */
  onConnection?: (connected: boolean, at: Date) => void;
}

/** Admin operations on one group. */
export class GroupAdmin {
  constructor(
    private readonly client: Etcd3,
    readonly keys: GroupKeys,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /**
   * Halts the group for lost holders if this reader may write. A read-only user (a dashboard)
   * cannot, and must still see the status: the lost holder shows in it, and the agents halt the
   * group themselves.
   */
  async #tryHalt(snapshot: GroupSnapshot): Promise<boolean> {
    try {
      return await haltGroup(this.client, snapshot);
    } catch (error) {
      if (isSluiceError(error) && error.kind === 'etcd-denied') return false;
      throw error;
    }
  }

  /**
   * The group's status, with the seconds left on each holder's lease. Halts the group first if it
   * has lost holders and is not paused yet (the first reader that sees a loss halts the rollout).
   */
  async status(): Promise<GroupStatus> {
    let snapshot = await readGroup(this.client, this.keys);
    if (await this.#tryHalt(snapshot)) snapshot = await readGroup(this.client, this.keys);
    const windowText = await etcdCall(`a read of ${this.keys.windows}`, () =>
      this.client.get(this.keys.windows).string(),
    );
    return this.statusOf(snapshot, windowText);
  }

  /**
   * The status of a snapshot you already have (from a GroupWatch, say), with the seconds left on
   * each queue key's lease looked up in etcd. `windowText` is the raw value of the windows key.
   * Does not halt the group; `status()` and `watch()` do that.
   */
  async statusOf(snapshot: GroupSnapshot, windowText: string | null): Promise<GroupStatus> {
    const ttls = new Map<string, number>();
    // Lease time is shown for holders only: one lookup per holder, not per node in the queue.
    await Promise.all(
      snapshot.queue
        .filter((e) => e.lease !== '0' && (e.holding || e.record?.state !== 'waiting'))
        .map(async (e) => {
          const res = await this.client.leaseClient
            .leaseTimeToLive({ ID: e.lease })
            .catch(() => null);
          if (res) ttls.set(e.lease, Number(res.TTL));
        }),
    );
    return groupStatus(snapshot, this.now(), ttls, windowText);
  }

  /**
   * Live status, for `sluicectl watch`. Calls `onStatus` once the watch is up, again after every
   * change to the group as etcd watch events arrive (nothing polls etcd), when the group's window
   * opens or closes, and after the watch stream comes back from an outage. Changes that arrive
   * while a status is being built are folded into the next one. Like `status()`, it halts the
   * group when it sees more lost holders than the loss budget. `options.onConnection` hears when
   * the stream goes down and comes back; `options.onError` gets failures while building a status.
   * Stop with `close()`.
   */
  async watch(
    onStatus: (status: GroupStatus) => void,
    options: WatchOptions = {},
  ): Promise<{ close(): Promise<void> }> {
    const { onError = () => {}, onConnection = () => {} } = options;
    const watch = await GroupWatch.start(this.client, this.keys);
    let closed = false;
    let timer: NodeJS.Timeout | undefined;
    const pass = coalesce(
      async () => {
        const snapshot = watch.snapshot;
        // The pause this writes arrives as a watch event and brings the next status.
        if (await this.#tryHalt(snapshot)) return;
        const status = await this.statusOf(snapshot, watch.get(this.keys.windows)?.value ?? null);
        if (closed) return;
        onStatus(status);
        clearTimeout(timer);
        const change = status.window.nextChange;
        if (change) {
          const delay = Math.max(0, Date.parse(change) - this.now().getTime()) + 5;
          timer = setTimeout(() => void render(), Math.min(delay, 2 ** 31 - 1));
        }
      },
      () => closed,
    );
    const render = async (): Promise<void> => {
      try {
        await pass();
      } catch (error) {
        if (!closed) onError(toSluiceError(error, `a status of ${this.keys.root}`));
      }
    };
    watch.onChange(() => void render());
    await render();
    watch.onConnection((connected) => {
      if (closed) return;
      onConnection(connected, this.now());
      if (connected) void render();
    });
    return {
      close: async () => {
        closed = true;
        clearTimeout(timer);
        await watch.close();
      },
    };
  }

  /** Sets max, after validating it like the agents will. Returns the old raw value. */
  async setMax(value: string): Promise<{ old: string | null; new: number }> {
    const parsed: Result<number> = parseMax(value, this.keys.max);
    if (!parsed.ok) throw new SluiceError('invalid-config', parsed.error.message, 'N');
    const res = await etcdCall(`a write of ${this.keys.max}`, () =>
      this.client.put(this.keys.max).value(String(parsed.value)).getPrevious(),
    );
    // etcd3's getPrevious() always returns an object; `value` is missing when the key was absent.
    const previous = (res as { value?: Buffer } | undefined)?.value;
    return { old: previous === undefined ? null : previous.toString(), new: parsed.value };
  }

  /** Pauses the group: no new slots until `resume()`. Returns false if it was already paused. */
  async pause(reason: string, by: string): Promise<boolean> {
    const res = await etcdCall(`a write of ${this.keys.paused}`, () =>
      this.client
        .if(this.keys.paused, 'Create', '==', 0)
        .then(this.client.put(this.keys.paused).value(formatPause(reason, by, this.now())))
        .commit(),
    );
    return res.succeeded;
  }

  /** Resumes the group. Returns false if it was not paused. */
  async resume(): Promise<boolean> {
    const res = await etcdCall(`a delete of ${this.keys.paused}`, () =>
      this.client.delete().key(this.keys.paused).exec(),
    );
    return Number(res.deleted) > 0;
  }

  /** Sets the group's window spec (validated by the caller). */
  async setWindows(spec: string): Promise<void> {
    await etcdCall(`a write of ${this.keys.windows}`, () =>
      this.client.put(this.keys.windows).value(spec).exec(),
    );
  }

  /** Removes the group's window: always open. */
  async clearWindows(): Promise<boolean> {
    const res = await etcdCall(`a delete of ${this.keys.windows}`, () =>
      this.client.delete().key(this.keys.windows).exec(),
    );
    return Number(res.deleted) > 0;
  }

  /**
   * Releases a node's slot (or clears its lost marker, or removes it from the queue) on an
   * operator's word, and records it in history as `forced`. Guarded on what was read, so it acts
   * on exactly the key it saw. Returns false when the node had nothing to release.
   */
  async forceRelease(node: string, by: string, historyLimit = 500): Promise<boolean> {
    const snapshot = await readGroup(this.client, this.keys);
    const entry = snapshot.queue.find((e) => e.node === node);
    const marker = snapshot.holding.find((h) => h.node === node);
    if (!entry && !marker) return false;
    const now = this.now();
    const history: HistoryRecord = {
      v: 1,
      node,
      hostname: entry?.record?.hostname ?? marker?.marker?.hostname ?? '',
      group: this.keys.group,
      outcome: marker?.orphan ? 'lost' : 'forced',
      endedAt: now.toISOString(),
      reason: entry?.record?.reason ?? '',
      by,
    };
    if (entry?.record?.enqueuedAt) history.enqueuedAt = entry.record.enqueuedAt;
    const grantedAt = entry?.record?.grantedAt ?? marker?.marker?.grantedAt;
    if (grantedAt) history.grantedAt = grantedAt;
    if (marker) history.grantedRevision = marker.createRevision;

    let txn = this.client.if(this.keys.queue(node), 'Mod', '==', entry?.modRevision ?? 0);
    txn = txn.and(this.keys.holding(node), 'Mod', '==', marker?.modRevision ?? 0);
    const res = await etcdCall(`a forced release of ${node}`, () =>
      txn
        .then(
          this.client.delete().key(this.keys.queue(node)),
          this.client.delete().key(this.keys.holding(node)),
          this.client.put(this.keys.history(now.getTime(), node)).value(JSON.stringify(history)),
        )
        .commit(),
    );
    if (!res.succeeded) {
      throw new SluiceError(
        'refused',
        `${node}'s slot changed while releasing it; run the command again`,
      );
    }
    await pruneHistory(this.client, this.keys, historyLimit);
    return true;
  }

  /**
   * Releases a slot taken by hand (`sluicectl lock`, record `manual: true`), recording `by` in
   * history with the outcome `released`, or removes such a node from the queue while it only
   * waits. Never touches a key its agent wrote, an unreadable record, or a lost holder: those
   * are refused, for `forceRelease()`. Guarded on the key as read, so it releases exactly the
   * manual lock it looked at.
   */
  async releaseManual(
    node: string,
    by: string,
    historyLimit = 500,
  ): Promise<ManualRelease | ManualReleaseRefusal> {
    const snapshot = await readGroup(this.client, this.keys);
    const entry = snapshot.queue.find((e) => e.node === node);
    const marker = snapshot.holding.find((h) => h.node === node);
    if (marker?.orphan) return { refused: 'lost' };
    if (!entry) return { refused: 'nothing' };
    if (entry.record?.manual !== true) {
      return { refused: 'agent', holding: entry.holding, state: entry.record?.state ?? null };
    }
    const changed = () =>
      new SluiceError(
        'refused',
        `${node}'s slot changed while releasing it; run the command again`,
      );

    if (!entry.holding) {
      const res = await etcdCall(`removing ${entry.key} from the queue`, () =>
        this.client
          .if(entry.key, 'Mod', '==', entry.modRevision)
          .and(this.keys.holding(node), 'Create', '==', 0)
          .then(this.client.delete().key(entry.key))
          .commit(),
      );
      if (!res.succeeded) throw changed();
      return { outcome: 'left' };
    }

    const now = this.now();
    const record = entry.record;
    const history: HistoryRecord = {
      v: 1,
      node,
      hostname: record.hostname || marker?.marker?.hostname || '',
      group: this.keys.group,
      outcome: 'released',
      endedAt: now.toISOString(),
      reason: record.reason,
      by,
    };
    if (record.enqueuedAt) history.enqueuedAt = record.enqueuedAt;
    const grantedAt = record.grantedAt ?? marker?.marker?.grantedAt;
    if (grantedAt) history.grantedAt = grantedAt;
    if (marker) history.grantedRevision = marker.createRevision;
    const res = await etcdCall(`releasing ${entry.key}`, () =>
      this.client
        .if(entry.key, 'Mod', '==', entry.modRevision)
        .and(this.keys.holding(node), 'Mod', '==', marker?.modRevision ?? 0)
        .then(
          this.client.delete().key(entry.key),
          this.client.delete().key(this.keys.holding(node)),
          this.client.put(this.keys.history(now.getTime(), node)).value(JSON.stringify(history)),
        )
        .commit(),
    );
    if (!res.succeeded) throw changed();
    await pruneHistory(this.client, this.keys, historyLimit);
    return { outcome: 'released' };
  }

  /** Asks a node's agent for a coordinated reboot. */
  async requestReboot(request: RebootRequest): Promise<void> {
    await etcdCall(`a write of ${this.keys.request(request.node)}`, () =>
      this.client.put(this.keys.request(request.node)).value(JSON.stringify(request)).exec(),
    );
  }

  /** Clears a node's reboot request (the agent does this once it has acted on it). */
  async clearRebootRequest(node: string): Promise<void> {
    await etcdCall(`a delete of ${this.keys.request(node)}`, () =>
      this.client.delete().key(this.keys.request(node)).exec(),
    );
  }

  /** The newest `limit` readable history records, newest first. See `readHistory()`. */
  async history(limit = 20): Promise<HistoryRecord[]> {
    return (await this.readHistory(limit)).records;
  }

  /**
   * The newest `limit` readable history records, newest first, and every unreadable record met on
   * the way (a hand-written value, say), by key. Unreadable records do not count against `limit`:
   * it reads on, page by page, until it has `limit` good ones or the history ends. With `since`,
   * only records written from then on.
   */
  async readHistory(
    limit = 20,
    since: Date | null = null,
  ): Promise<{ records: HistoryRecord[]; errors: HistoryError[] }> {
    const records: HistoryRecord[] = [];
    const errors: HistoryError[] = [];
    const whole = Range.prefix(this.keys.historyPrefix);
    // Keys start with their time in ms: records from `since` on sort from its key on.
    const prefix = since
      ? new Range(this.keys.history(since.getTime(), '').slice(0, -1), whole.end)
      : whole;
    // Keys sort by time: each page reads below the oldest key of the one before.
    let end = prefix.end;
    while (records.length < limit) {
      const range = new Range(prefix.start, end);
      const res = await etcdCall(`a read of ${this.keys.historyPrefix}`, () =>
        this.client
          .getAll()
          .inRange(range)
          .sort('Key', 'Descend')
          .limit(limit - records.length)
          .exec(),
      );
      for (const kv of res.kvs) {
        const key = kv.key.toString();
        const parsed = parseHistory(kv.value.toString());
        if ('record' in parsed) records.push(parsed.record);
        else errors.push({ key, message: parsed.error });
      }
      const last = res.kvs.at(-1);
      if (!res.more || !last) break;
      end = last.key;
    }
    return { records, errors };
  }
}

/** Parses one history value: the record, or why it cannot be read. */
function parseHistory(text: string): { record: HistoryRecord } | { error: string } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return {
      error: `not JSON: ${JSON.stringify(text.length > 60 ? `${text.slice(0, 60)}…` : text)}`,
    };
  }
  const parsed = HistoryRecordSchema.safeParse(json);
  if (parsed.success) return { record: parsed.data };
  return { error: `not a history record: ${describeZodError(parsed.error)}` };
}
