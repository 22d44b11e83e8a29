/**
 * The simulator's own record of a group in etcd: one range read of `<prefix>groups/<group>/`,
 * then a watch from the next revision with a client of its own, never through the code under
 * test. Every event is kept with its revision and the time it was seen, so that the invariant
 * checker can replay the group in revision order (max, pause, window and holding markers) and the
 * HTML timeline can show each node's record states over time.
 *
 * Events are processed one by one in revision order, not per watch response: a response may batch
 * several revisions, and a check on the batch's end state could miss a brief over-admission. The
 * watch is the testkit's {@link RevisionWatch}: it resumes after the last revision applied, never
 * from a response header, so a stream that drops in the middle of a catch-up (responses of at most
 * 1000 revisions after a partition or a burst of writes) loses nothing.
 */
import { randomUUID } from 'node:crypto';
import { GroupKeys } from '@sluice/core';
import { RevisionWatch } from '@sluice/testkit';
import { ExponentialBackoff } from 'cockatiel';
import { Etcd3, type IKeyValue, type IOptions } from 'etcd3';

/** A key as it stands in the simulator's mirror. */
export interface MirrorKV {
  value: string;
  createRevision: number;
  modRevision: number;
  lease: string;
}

/** One etcd event under the group root. */
export interface TimelineEvent {
  /** The revision of the change (the put's or delete's mod revision). */
  revision: number;
  /** When the simulator saw it (ms since the epoch). */
  at: number;
  key: string;
  type: 'put' | 'delete';
  /** The new value; null for a delete. */
  value: string | null;
  /** The key's create revision (its place in the queue for a queue key); 0 for a delete. */
  createRevision: number;
}

/** A value of a settings key from some revision on. `raw` is null while the key is absent. */
export interface SettingChange {
  revision: number;
  at: number;
  raw: string | null;
}

/** A max value from some revision on: `value` is what admission obeys (absent 1, invalid 0). */
export interface MaxChange extends SettingChange {
  value: number;
}

/** One stint of a holding marker: from its creation (the admission) to its deletion. */
export interface MarkerInterval {
  node: string;
  /** The revision of the admission txn. */
  createdRevision: number;
  createdAt: number;
  deletedRevision: number | null;
  deletedAt: number | null;
}

/** A node's queue record state from some moment on; null once its queue key is gone. */
export interface RecordState {
  at: number;
  revision: number;
  state: string | null;
  /** The instance token the record carries (the agent that wrote it), when it has one. */
  token?: string;
}

/** One queue key as the simulator shows it. */
export interface QueueView {
  node: string;
  /** The record's `state` field (waiting, holding, …), or `unreadable`. */
  state: string;
  createRevision: number;
  /** A holding marker exists for the node. */
  holding: boolean;
  /** 1-based place among waiters (nodes without a marker), as `sluicectl status` counts. */
  position: number | null;
}

/**
 * Client options for the simulator's own etcd clients: etcd3's default watch back-off grows to
 * 30 s while etcd is unreachable, which would leave the simulator blind for that long after an
 * outage; the simulator retries its watches at least every second. Unary calls get a deadline.
 */
export function simClientOptions(endpoints: string[]): IOptions {
  return {
    hosts: endpoints,
    // A read or write that hangs (etcd is down, a member is cut off) fails after 5 s instead.
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + 5000 }),
    faultHandling: {
      // etcd3 wants a first back-off step (it calls next() on it), not the factory.
      watchBackoff: new ExponentialBackoff({ initialDelay: 50, maxDelay: 1000 }).next(),
    },
  };
}

/** A simulated fleet's group: `prefix` (default a fresh `/sim-<random>/`) and `group` (default). */
export function simGroupKeys(opts: { prefix?: string; group?: string }): GroupKeys {
  return new GroupKeys(opts.prefix ?? `/sim-${randomUUID().slice(0, 8)}/`, opts.group ?? 'default');
}

/**
 * How admission reads `max`, restated here independently of the code under test: absent means 1,
 * a plain decimal from 0 to 10000 is itself, anything else admits nobody (0).
 */
export function effectiveMax(raw: string | null): number {
  if (raw === null) return 1;
  const text = raw.trim();
  if (!/^[0-9]{1,6}$/.test(text)) return 0;
  const n = Number(text);
  return n > 10_000 ? 0 : n;
}

/** The simulator's independent watcher of one group. Start with {@link GroupTimeline.start}. */
export class GroupTimeline {
  readonly #client: Etcd3;
  readonly #mirror = new Map<string, MirrorKV>();
  readonly #listeners = new Set<() => void>();
  #watch: RevisionWatch | null = null;
  /** Every event seen, in revision order. */
  readonly events: TimelineEvent[] = [];
  /** The keys found by the first read, as puts at their own revisions. */
  readonly initial: TimelineEvent[] = [];
  /** Max over time, starting with its value at the start revision. */
  readonly maxChanges: MaxChange[] = [];
  /** The paused key over time. */
  readonly pausedChanges: SettingChange[] = [];
  /** The windows key over time. */
  readonly windowChanges: SettingChange[] = [];
  /** The loss-budget key over time. */
  readonly lossBudgetChanges: SettingChange[] = [];
  /** Holding-marker stints, in the order they began. */
  readonly markers: MarkerInterval[] = [];
  /** Each node's record states over time. */
  readonly records = new Map<string, RecordState[]>();
  /** The revision of the first read. */
  startRevision = 0;
  /** When the first read was made. */
  startAt = 0;
  /** The last revision applied (the start revision until the first change). */
  get revision(): number {
    return Math.max(this.startRevision, this.#watch?.lastRevision ?? 0);
  }

  /** Watch disconnections seen (each was resumed from the revision after the last one applied). */
  get disconnects(): number {
    return this.#watch?.disconnects ?? 0;
  }

  /**
   * Set when etcd cancelled the watch (its revision was compacted): the timeline has a hole and
   * the checker cannot vouch for anything after it.
   */
  get gap(): Error | null {
    return this.#watch?.gap ?? null;
  }

  private constructor(
    readonly endpoints: string[],
    readonly keys: GroupKeys,
  ) {
    this.#client = new Etcd3(simClientOptions(endpoints));
  }

  /** Reads the group and starts watching it from the next revision. */
  static async start(endpoints: string[], keys: GroupKeys): Promise<GroupTimeline> {
    const timeline = new GroupTimeline(endpoints, keys);
    try {
      await timeline.#begin();
    } catch (error) {
      await timeline.stop();
      throw error;
    }
    return timeline;
  }

  async #begin(): Promise<void> {
    const res = await this.#client.getAll().prefix(this.keys.root).exec();
    const at = Date.now();
    this.startAt = at;
    this.startRevision = Number(res.header.revision);
    for (const kv of res.kvs) {
      const key = kv.key.toString();
      this.#mirror.set(key, toMirror(kv));
      this.initial.push({
        revision: Number(kv.mod_revision),
        at,
        key,
        type: 'put',
        value: kv.value.toString(),
        createRevision: Number(kv.create_revision),
      });
      this.#note(key, 'put', kv.value.toString(), Number(kv.create_revision), at, true, 0);
    }
    const rev = this.startRevision;
    if (!this.maxChanges.length) {
      this.maxChanges.push({ revision: rev, at, raw: null, value: 1 });
    }
    if (!this.pausedChanges.length) this.pausedChanges.push({ revision: rev, at, raw: null });
    if (!this.windowChanges.length) this.windowChanges.push({ revision: rev, at, raw: null });
    if (!this.lossBudgetChanges.length) {
      this.lossBudgetChanges.push({ revision: rev, at, raw: null });
    }
    this.#watch = await RevisionWatch.start(this.#client, this.keys.root, {
      startRevision: rev + 1,
      onRevision: (change) => {
        for (const event of change.events) {
          const key = event.key;
          if (event.type === 'delete') {
            this.#mirror.delete(key);
            this.#note(key, 'delete', null, change.revision, change.at, false, 0);
          } else {
            this.#mirror.set(key, {
              value: event.value ?? '',
              createRevision: event.createRevision,
              modRevision: event.modRevision,
              lease: event.lease,
            });
            const value = event.value ?? '';
            this.#note(key, 'put', value, change.revision, change.at, false, event.createRevision);
          }
        }
        for (const listener of this.#listeners) listener();
      },
    });
  }

  #note(
    key: string,
    type: 'put' | 'delete',
    value: string | null,
    revision: number,
    at: number,
    initial: boolean,
    createRevision: number,
  ): void {
    const keys = this.keys;
    // The initial read is the state at the start revision, not a change; a marker found then
    // keeps its own create revision (its admission).
    const rev = initial && !key.startsWith(this.keys.holdingPrefix) ? this.startRevision : revision;
    if (!initial) this.events.push({ revision, at, key, type, value, createRevision });
    if (key === keys.max) {
      this.maxChanges.push({ revision: rev, at, raw: value, value: effectiveMax(value) });
    } else if (key === keys.paused) {
      this.pausedChanges.push({ revision: rev, at, raw: value });
    } else if (key === keys.windows) {
      this.windowChanges.push({ revision: rev, at, raw: value });
    } else if (key === keys.lossBudget) {
      this.lossBudgetChanges.push({ revision: rev, at, raw: value });
    } else if (key.startsWith(keys.holdingPrefix)) {
      const node = key.slice(keys.holdingPrefix.length);
      if (type === 'put') {
        const open = this.markers.find((m) => m.node === node && m.deletedRevision === null);
        if (!open) {
          this.markers.push({
            node,
            createdRevision: rev,
            createdAt: at,
            deletedRevision: null,
            deletedAt: null,
          });
        }
      } else {
        for (const m of this.markers) {
          if (m.node === node && m.deletedRevision === null) {
            m.deletedRevision = revision;
            m.deletedAt = at;
          }
        }
      }
    } else if (key.startsWith(keys.queuePrefix)) {
      const node = key.slice(keys.queuePrefix.length);
      const list = this.records.get(node) ?? [];
      this.records.set(node, list);
      const { state, token } = value === null ? { state: null, token: undefined } : recordOf(value);
      const last = list.at(-1);
      if (last?.state !== state || last?.token !== token) {
        list.push({ at, revision: rev, state, ...(token ? { token } : {}) });
      }
    }
  }

  /** Calls `listener` after every watch response. Returns an unsubscribe function. */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** The max admission obeyed at `revision`. */
  maxAt(revision: number): number {
    return settingAt(this.maxChanges, revision)?.value ?? 1;
  }

  /** The max as the simulator had seen it by time `at` (ms). */
  maxAtTime(at: number): number {
    let value = this.maxChanges[0]?.value ?? 1;
    for (const change of this.maxChanges) {
      if (change.at <= at) value = change.value;
    }
    return value;
  }

  /** The paused key's raw value at `revision` (null: not paused). */
  pausedAt(revision: number): string | null {
    return settingAt(this.pausedChanges, revision)?.raw ?? null;
  }

  /**
   * The loss budget admission obeys at `revision`: absent 0, and anything but a plain decimal
   * also 0 (an unreadable budget admits nobody; 0 is the strictest reading).
   */
  lossBudgetAt(revision: number): number {
    const raw = settingAt(this.lossBudgetChanges, revision)?.raw ?? null;
    return raw !== null && /^[0-9]{1,6}$/.test(raw.trim()) ? Number(raw.trim()) : 0;
  }

  /** The windows key's raw value at `revision` (null: no group window). */
  windowsAt(revision: number): string | null {
    return settingAt(this.windowChanges, revision)?.raw ?? null;
  }

  /** The current value of a key under the group root, or null. */
  get(key: string): string | null {
    return this.#mirror.get(key)?.value ?? null;
  }

  /** The current max (absent 1, invalid 0). */
  get max(): number {
    return effectiveMax(this.get(this.keys.max));
  }

  /** The current paused value, or null. */
  get paused(): string | null {
    return this.get(this.keys.paused);
  }

  /** Nodes that have a holding marker now. */
  get holders(): string[] {
    const out: string[] = [];
    for (const key of this.#mirror.keys()) {
      if (key.startsWith(this.keys.holdingPrefix))
        out.push(key.slice(this.keys.holdingPrefix.length));
    }
    return out;
  }

  /** The node's marker stint that is open now (as far as the watcher has seen), if any. */
  openMarker(node: string): MarkerInterval | undefined {
    return this.markers.find((m) => m.node === node && m.deletedRevision === null);
  }

  /**
   * Holders lost during their reboot: the queue key their marker belongs to is gone (or is a
   * newer one, the node having queued again), or the marker is unreadable.
   */
  get lost(): string[] {
    return this.holders.filter((node) => {
      const marker = this.get(this.keys.holding(node));
      const queued = this.#mirror.get(this.keys.queue(node));
      let place: unknown;
      try {
        place = (JSON.parse(marker ?? '') as { createRevision?: unknown }).createRevision;
      } catch {
        return true;
      }
      return queued === undefined || queued.createRevision !== place;
    });
  }

  /** The queue now, in queue order (by create revision). */
  queue(): QueueView[] {
    const markers = new Set(this.holders);
    const entries: QueueView[] = [];
    for (const [key, kv] of this.#mirror) {
      if (!key.startsWith(this.keys.queuePrefix)) continue;
      const node = key.slice(this.keys.queuePrefix.length);
      entries.push({
        node,
        state: recordOf(kv.value).state,
        createRevision: kv.createRevision,
        holding: markers.has(node),
        position: null,
      });
    }
    entries.sort((a, b) => a.createRevision - b.createRevision);
    let position = 0;
    for (const entry of entries) {
      if (!entry.holding) entry.position = ++position;
    }
    return entries;
  }

  /** Stops watching and closes the client. Idempotent. */
  async stop(): Promise<void> {
    const watch = this.#watch;
    this.#watch = null;
    this.#listeners.clear();
    await watch?.close();
    this.#client.close();
  }
}

function toMirror(kv: IKeyValue): MirrorKV {
  return {
    value: kv.value.toString(),
    createRevision: Number(kv.create_revision),
    modRevision: Number(kv.mod_revision),
    lease: String(kv.lease ?? '0'),
  };
}

/** The `state` (or `unreadable`) and `token` fields of a queue record. */
function recordOf(value: string): { state: string; token: string | undefined } {
  try {
    const parsed = JSON.parse(value) as { state?: unknown; token?: unknown };
    return {
      state: typeof parsed.state === 'string' ? parsed.state : 'unreadable',
      token: typeof parsed.token === 'string' ? parsed.token : undefined,
    };
  } catch {
    return { state: 'unreadable', token: undefined };
  }
}

/** The last change at or before `revision`. */
function settingAt<T extends { revision: number }>(
  changes: readonly T[],
  revision: number,
): T | undefined {
  let found: T | undefined;
  for (const change of changes) {
    if (change.revision <= revision) found = change;
    else break;
  }
  return found ?? changes[0];
}
