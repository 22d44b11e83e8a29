/**
 * The reboot semaphore: a FIFO queue of node keys in etcd, ordered by create revision, of which
 * the first `max` may hold a slot. See DESIGN.md ("The semaphore") for why it never over-admits.
 *
 * One Semaphore serves one node in one group. It keeps the node's key on a short session lease
 * while waiting and on a long hold lease once admitted, so the slot outlives a reboot.
 */
import {
  buildSnapshot,
  DEFAULT_GROUP,
  DEFAULT_PREFIX,
  type Decision,
  decide,
  GroupKeys,
  type GroupSnapshot,
  type HistoryRecord,
  type HoldingMarker,
  haltReason,
  lostHolders,
  mustHalt,
  type NodeState,
  type QueueEntry,
  type QueueRecord,
  rankOf,
  SluiceError,
  throwIfAborted,
  type WindowSpec,
} from '@sluice/core';
import { type Etcd3, Range } from 'etcd3';
import { etcdCall, isTransient } from './errors.js';
import { coalesce, GroupWatch, readGroup, toRawKV } from './group-watch.js';
import { Session } from './session.js';

/** How a Semaphore is set up. Only `node` is required. */
export interface SemaphoreOptions {
  /** This node's id (its machine-id by default in the agent). */
  node: string;
  /** Shown by `sluicectl status`. Defaults to the node id. */
  hostname?: string;
  prefix?: string;
  group?: string;
  /** TTL of the waiting lease, in seconds: a dead waiter leaves the queue after this. Default 30. */
  sessionTTL?: number;
  /** TTL of the hold lease, in seconds: must outlast a reboot. Default 3600. */
  holdTTL?: number;
  /** History records kept per group. Default 500. */
  historyLimit?: number;
  /** The node's own reboot windows, which must be open as well as the group's. */
  localWindows?: readonly WindowSpec[];
  /** The clock. Tests may pass a fixed one. */
  now?: () => Date;
  /** Called after every decision while waiting: queue position, wait reason. */
  onDecision?: (decision: Decision, snapshot: GroupSnapshot) => void;
  /** Called for each etcd error that a wait rides out (it retries with back-off). */
  onRetry?: (error: unknown) => void;
}

/** Why the node wants a slot; stored in its queue record. */
export interface SlotRequest {
  reason?: string;
  fromVersion?: string;
  toVersion?: string;
  manual?: boolean;
  bootId?: string;
}

/** A granted slot. `revision` is the fencing token: the revision of the admission txn. */
export interface Grant {
  node: string;
  revision: number;
  createRevision: number;
  record: QueueRecord;
}

/** The node's own key as found in etcd, for recovery after a restart or reboot. */
export interface OwnEntry {
  entry: QueueEntry;
  record: QueueRecord | null;
  holding: boolean;
  grant: Grant | null;
}

const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 4000;

/** Counters of what a Semaphore did, for metrics and benchmarks. */
export interface SemaphoreStats {
  /** Admission txns sent. */
  admitAttempts: number;
  /** Admission txns whose guard failed because the group changed after the snapshot. */
  admitConflicts: number;
  /** Decisions taken while waiting (one per relevant change, never on a timer). */
  decisions: number;
}

/** One node's view of one group's reboot semaphore. */
export class Semaphore {
  readonly keys: GroupKeys;
  readonly stats: SemaphoreStats = { admitAttempts: 0, admitConflicts: 0, decisions: 0 };
  readonly node: string;
  readonly hostname: string;
  readonly #client: Etcd3;
  readonly #opts: SemaphoreOptions;
  #session: Session | null = null;
  #hold: Session | null = null;
  /** The group watch while `acquire()` waits. */
  #waiting: GroupWatch | null = null;

  constructor(client: Etcd3, opts: SemaphoreOptions) {
    this.#client = client;
    this.#opts = opts;
    this.node = opts.node;
    this.hostname = opts.hostname ?? opts.node;
    this.keys = new GroupKeys(opts.prefix ?? DEFAULT_PREFIX, opts.group ?? DEFAULT_GROUP);
  }

  #now(): Date {
    return this.#opts.now?.() ?? new Date();
  }

  /** Reads the group: one consistent snapshot. */
  snapshot(): Promise<GroupSnapshot> {
    return readGroup(this.#client, this.keys);
  }

  /**
   * Reads only this node's queue key and holding marker, at one revision: enough for `own()` and
   * to see whether this node's slot was declared lost, at a cost that does not grow with the
   * group. The settings in the result are not read: never decide admission on it.
   */
  async ownSnapshot(): Promise<GroupSnapshot> {
    const queueKey = this.keys.queue(this.node);
    const holdingKey = this.keys.holding(this.node);
    const reads = () => [this.#client.get(queueKey), this.#client.get(holdingKey)];
    // Both branches read the same keys: a txn only to read them at one revision.
    const res = await etcdCall(`a read of ${queueKey}`, () =>
      this.#client
        .if(queueKey, 'Create', '==', 0)
        .then(...reads())
        .else(...reads())
        .commit(),
    );
    const kvs = res.responses.flatMap((r) => r.response_range?.kvs ?? []).map(toRawKV);
    return buildSnapshot(this.keys, kvs, Number(res.header.revision));
  }

  /** This node's key in a snapshot, or null. */
  own(snapshot: GroupSnapshot): OwnEntry | null {
    const entry = snapshot.queue.find((e) => e.node === this.node);
    if (!entry) return null;
    const marker = snapshot.holding.find((h) => h.node === this.node);
    const grant =
      entry.holding && entry.record && marker
        ? {
            node: this.node,
            revision: marker.createRevision,
            createRevision: entry.createRevision,
            record: entry.record,
          }
        : null;
    return { entry, record: entry.record, holding: entry.holding, grant };
  }

  async #sessionLease(): Promise<Session> {
    if (this.#session?.alive) return this.#session;
    this.#session?.close();
    this.#session = await Session.open(this.#client, this.#opts.sessionTTL ?? 30);
    return this.#session;
  }

  async #holdLease(): Promise<Session> {
    if (this.#hold?.alive) return this.#hold;
    this.#hold?.close();
    this.#hold = await Session.open(this.#client, this.#opts.holdTTL ?? 3600);
    return this.#hold;
  }

  #record(state: NodeState, req: SlotRequest, base?: QueueRecord | null): QueueRecord {
    const now = this.#now().toISOString();
    const record: QueueRecord = {
      ...(base ?? {}),
      v: 1,
      node: this.node,
      hostname: this.hostname,
      state,
      since: base?.state === state ? base.since : now,
      enqueuedAt: base?.enqueuedAt ?? now,
      reason: req.reason ?? base?.reason ?? '',
    };
    for (const field of ['fromVersion', 'toVersion', 'manual', 'bootId'] as const) {
      if (req[field] !== undefined) (record as Record<string, unknown>)[field] = req[field];
    }
    return record;
  }

  /**
   * Joins the queue, or re-attaches to this node's existing key: the key keeps its create revision,
   * so a restarted agent keeps its place, and a holder keeps its slot. Idempotent.
   */
  async enqueue(req: SlotRequest = {}, signal?: AbortSignal): Promise<OwnEntry> {
    throwIfAborted(signal);
    const session = await this.#sessionLease();
    const key = this.keys.queue(this.node);
    const res = await etcdCall(`joining the queue at ${key}`, () =>
      this.#client
        .if(key, 'Create', '==', 0)
        .then(
          this.#client
            .put(key)
            .value(JSON.stringify(this.#record('waiting', req)))
            .lease(session.id),
        )
        .commit(),
    );
    const own = this.own(await this.ownSnapshot());
    if (!own) {
      // Our key vanished between the txn and the read (an operator removed it): try once more.
      if (!res.succeeded) return this.enqueue(req, signal);
      throw new SluiceError('refused', `queue key ${key} disappeared right after it was written`);
    }
    if (!res.succeeded) {
      if (Boolean(own.record?.manual) !== Boolean(req.manual)) {
        // A manual lock and an agent's slot never stand in for each other.
        throw new SluiceError(
          'refused',
          own.record?.manual
            ? `${key} is a manual lock (sluicectl lock); this node waits until it is unlocked`
            : `${key} belongs to this node's agent; a manual lock must wait until it is released`,
          key,
        );
      }
      await this.#attach(own, req);
    }
    return own;
  }

  /**
   * Moves an existing key onto a lease this process keeps alive: the hold lease for a holder, the
   * session lease for a waiter. The txn is guarded on the key's create revision, so it never
   * resurrects a key that was released or lost meanwhile.
   */
  async #attach(own: OwnEntry, req: SlotRequest = {}): Promise<void> {
    const lease = own.holding ? await this.#holdLease() : await this.#sessionLease();
    const previous = own.entry.lease;
    if (previous === lease.id) return;
    const record = own.record
      ? { ...this.#record(own.record.state, req, own.record) }
      : this.#record(own.holding ? 'holding' : 'waiting', req);
    const res = await etcdCall(`re-attaching ${own.entry.key}`, () =>
      this.#client
        .if(own.entry.key, 'Create', '==', own.entry.createRevision)
        .then(this.#client.put(own.entry.key).value(JSON.stringify(record)).lease(lease.id))
        .commit(),
    );
    if (!res.succeeded) {
      throw new SluiceError('refused', `${own.entry.key} changed while re-attaching; try again`);
    }
    own.entry.lease = lease.id;
    own.record = record;
    if (own.grant) own.grant.record = record;
    if (previous !== '0') {
      // The old lease belonged to this node's previous process and held only this key.
      await this.#client.leaseClient.leaseRevoke({ ID: previous }).catch(() => {});
    }
  }

  /**
   * Waits until this node holds a slot, and returns the grant. Joins the queue first if needed.
   * Waiting watches the group from the snapshot's revision: no polling. Each change to the group
   * re-runs the pure `decide()`; an `admit` becomes a txn guarded on the snapshot. Rejects only
   * when aborted or on an error a retry cannot fix; etcd outages are waited out.
   */
  async acquire(req: SlotRequest = {}, signal?: AbortSignal): Promise<Grant> {
    throwIfAborted(signal);
    const first = await this.enqueue(req, signal);
    if (first.grant) return first.grant;
    // Grant the hold lease now, so taking a slot is one txn when the turn comes.
    await this.#holdLease();
    const watch = await GroupWatch.open(this.#client, this.keys);
    this.#waiting = watch;
    try {
      return await this.#waitLoop(watch, req, signal);
    } finally {
      this.#waiting = null;
      await watch.close();
    }
  }

  /**
   * This node's place while `acquire()` waits: the number of places ahead of it (0 = next in
   * line), from the local mirror of the group, so it costs no etcd call. Null when not waiting.
   */
  position(): number | null {
    const watch = this.#waiting;
    return watch ? rankOf(watch.snapshot, this.node) : null;
  }

  #waitLoop(watch: GroupWatch, req: SlotRequest, signal?: AbortSignal): Promise<Grant> {
    return new Promise<Grant>((resolve, reject) => {
      let done = false;
      let timer: NodeJS.Timeout | undefined;
      let failures = 0;
      const finish = (fn: () => void) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        unsubscribe();
        signal?.removeEventListener('abort', onAbort);
        fn();
      };
      const onAbort = () =>
        finish(() =>
          reject(
            new SluiceError('aborted', 'stopped waiting for a slot', undefined, {
              cause: signal?.reason,
            }),
          ),
        );
      const wakeAt = (at: Date) => {
        clearTimeout(timer);
        const delay = Math.max(0, at.getTime() - this.#now().getTime()) + 5;
        timer = setTimeout(run, Math.min(delay, 2 ** 31 - 1));
      };

      const step = async (): Promise<void> => {
        const snapshot = watch.snapshot;
        const own = this.own(snapshot);
        if (!own) {
          // Our key expired (the session lease was lost) or was removed: join again, at the back.
          // Not after the wait was cancelled: then `leave()` removed it on purpose.
          if (done || signal?.aborted) return;
          await this.enqueue(req, signal);
          return;
        }
        if (own.grant) {
          await this.#attach(own);
          finish(() => resolve(own.grant!));
          return;
        }
        if (mustHalt(snapshot)) await this.halt(snapshot);
        const decision = decide(snapshot, this.node, this.#now(), this.#opts.localWindows);
        this.stats.decisions++;
        this.#opts.onDecision?.(decision, snapshot);
        if (decision.kind === 'wait' && decision.reason === 'queue' && snapshot.max.ok) {
          // At least max places stand ahead, and ranks only fall: sleep until one frees up (or
          // the settings or our own key change) instead of deciding again on every change.
          watch.park(listener, own.entry.key, own.entry.createRevision, snapshot.max.value);
        }
        if (decision.kind === 'admit') {
          const grant = await this.#admit(snapshot, own);
          if (grant) finish(() => resolve(grant));
          // Something changed after the snapshot: decide again on fresh data.
          else await watch.resync();
        } else if (decision.kind === 'wait' && decision.wakeAt) {
          wakeAt(decision.wakeAt);
        }
      };

      const steps = coalesce(step, () => done);
      const run = async (): Promise<void> => {
        try {
          await steps();
          failures = 0;
        } catch (error) {
          if (!isTransient(error)) {
            finish(() => reject(error));
            return;
          }
          // etcd is unreachable: nothing can be admitted. Try again with jittered backoff.
          failures++;
          this.#opts.onRetry?.(error);
          const base = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** failures);
          clearTimeout(timer);
          timer = setTimeout(
            () => {
              void watch.resync().then(run, run);
            },
            base / 2 + Math.random() * (base / 2),
          );
        }
      };

      const listener = () => void run();
      const unsubscribe = watch.onChange(listener);
      signal?.addEventListener('abort', onAbort, { once: true });
      void run();
    });
  }

  /**
   * Tries once to take a slot: the grant, or the decision that refused it. A refused node leaves
   * the queue again (for `sluicectl lock` without --wait).
   */
  async tryAcquire(req: SlotRequest = {}, signal?: AbortSignal): Promise<Grant | Decision> {
    const own = await this.enqueue(req, signal);
    if (own.grant) return own.grant;
    const snapshot = await this.snapshot();
    if (mustHalt(snapshot)) await this.halt(snapshot);
    const decision = decide(snapshot, this.node, this.#now(), this.#opts.localWindows);
    const self = this.own(snapshot);
    if (decision.kind === 'admit' && self) {
      const grant = await this.#admit(snapshot, self);
      if (grant) return grant;
    }
    await this.leave();
    return decision.kind === 'admit'
      ? {
          kind: 'wait',
          reason: 'queue',
          rank: decision.rank,
          detail: 'the group changed while taking the slot',
          wakeAt: null,
        }
      : decision;
  }

  /**
   * The admission txn: valid only if the settings keys and our own key are exactly as in the
   * snapshot and no marker exists for us yet. Moves our key to the hold lease and writes the
   * lease-less holding marker. Returns null when the guard failed.
   */
  async #admit(snapshot: GroupSnapshot, own: OwnEntry): Promise<Grant | null> {
    const hold = await this.#holdLease();
    const key = own.entry.key;
    const holdingKey = this.keys.holding(this.node);
    const now = this.#now().toISOString();
    const record: QueueRecord = {
      ...this.#record('holding', {}, own.record),
      grantedAt: now,
    };
    let txn = this.#client.if(key, 'Create', '==', own.entry.createRevision);
    txn = txn.and(holdingKey, 'Create', '==', 0);
    for (const [settingsKey, rev] of Object.entries(snapshot.settingsRevisions)) {
      txn = txn.and(settingsKey, 'Mod', '==', rev);
    }
    // Every lost holder we counted must still be there, unchanged, and no new one may appear
    // unseen: lost markers only arise from deleted queue keys, which the rank already covers.
    for (const lost of lostHolders(snapshot))
      txn = txn.and(lost.key, 'Mod', '==', lost.modRevision);
    const res = await etcdCall(`taking a slot at ${key}`, () =>
      txn
        .then(
          this.#client.put(key).value(JSON.stringify(record)).lease(hold.id),
          this.#client.put(holdingKey).value(
            JSON.stringify({
              v: 1,
              node: this.node,
              hostname: this.hostname,
              createRevision: own.entry.createRevision,
              grantedAt: now,
            } satisfies HoldingMarker),
          ),
        )
        .commit(),
    );
    this.stats.admitAttempts++;
    if (!res.succeeded) {
      this.stats.admitConflicts++;
      return null;
    }
    // The txn's revision is the fencing token; it is also the marker's create revision.
    const revision = Number(res.header.revision);
    // The waiting lease has no keys left; drop it so waiting costs nothing more.
    const session = this.#session;
    this.#session = null;
    await session?.revoke().catch(() => {});
    return { node: this.node, revision, createRevision: own.entry.createRevision, record };
  }

  /**
   * Updates this holder's record (draining, rebooting, ...), guarded on its create revision.
   * Rejects with `refused` if the node no longer holds its key (released or lost).
   */
  async setState(grant: Grant, state: NodeState, patch: Partial<QueueRecord> = {}): Promise<Grant> {
    const hold = await this.#holdLease();
    const key = this.keys.queue(this.node);
    const record: QueueRecord = {
      ...grant.record,
      ...patch,
      state,
      since: grant.record.state === state ? grant.record.since : this.#now().toISOString(),
    };
    const res = await etcdCall(`updating ${key}`, () =>
      this.#client
        .if(key, 'Create', '==', grant.createRevision)
        .then(this.#client.put(key).value(JSON.stringify(record)).lease(hold.id))
        .commit(),
    );
    if (!res.succeeded) {
      throw new SluiceError('refused', `${key} is gone: this node no longer holds its slot`, key);
    }
    return { ...grant, record };
  }

  /**
   * Gives the slot back: deletes the queue key and the holding marker and appends a history
   * record, in one txn guarded on the key's create revision. Returns false when there was nothing
   * to release (already released). A node that comes back after its slot was declared lost
   * removes its own lost marker, recording the outcome `lost`; the group stays paused.
   */
  async release(
    grant: Grant | null = null,
    outcome: 'released' | 'abandoned' = 'released',
  ): Promise<boolean> {
    const snapshot = await this.ownSnapshot();
    const own = this.own(snapshot);
    const marker = snapshot.holding.find((h) => h.node === this.node);
    const createRevision = grant?.createRevision ?? own?.entry.createRevision;
    if (own && createRevision === own.entry.createRevision) {
      const record = own.record;
      const history = this.#history(
        outcome,
        record,
        marker?.marker ?? null,
        marker?.createRevision,
      );
      const res = await etcdCall(`releasing ${own.entry.key}`, () =>
        this.#client
          .if(own.entry.key, 'Create', '==', own.entry.createRevision)
          .then(
            this.#client.delete().key(own.entry.key),
            this.#client.delete().key(this.keys.holding(this.node)),
            this.#client.put(history.key).value(JSON.stringify(history.record)),
          )
          .commit(),
      );
      this.#dropLeases();
      if (res.succeeded) await this.#pruneHistory();
      return res.succeeded;
    }
    if (marker?.orphan && marker.marker && marker.marker.createRevision === createRevision) {
      const history = this.#history('lost', null, marker.marker, marker.createRevision);
      await etcdCall(`clearing lost marker ${marker.key}`, () =>
        this.#client
          .if(marker.key, 'Mod', '==', marker.modRevision)
          .then(
            this.#client.delete().key(marker.key),
            this.#client.put(history.key).value(JSON.stringify(history.record)),
          )
          .commit(),
      );
      this.#dropLeases();
      return false;
    }
    this.#dropLeases();
    return false;
  }

  /**
   * Leaves the queue if this node is still only waiting, and returns `left`. If it holds a slot,
   * the slot is kept (`held`), unless `ifAdmitted` is `release`: a caller whose wait was cancelled
   * while its admission txn was in flight passes that, so a slot nobody waits for is given back
   * (as `abandoned`) instead of lingering.
   */
  async leave(ifAdmitted: 'keep' | 'release' = 'keep'): Promise<'left' | 'held' | 'released'> {
    const key = this.keys.queue(this.node);
    const res = await etcdCall(`leaving the queue at ${key}`, () =>
      this.#client
        .if(this.keys.holding(this.node), 'Create', '==', 0)
        .then(this.#client.delete().key(key))
        .commit(),
    );
    if (!res.succeeded) {
      if (ifAdmitted === 'keep') return 'held';
      await this.release(null, 'abandoned');
      return 'released';
    }
    const session = this.#session;
    this.#session = null;
    await session?.revoke().catch(() => {});
    return 'left';
  }

  #dropLeases(): void {
    // Revoke in the background: the keys are already gone.
    for (const s of [this.#session, this.#hold]) void s?.revoke().catch(() => {});
    this.#session = null;
    this.#hold = null;
  }

  #history(
    outcome: HistoryRecord['outcome'],
    record: QueueRecord | null,
    marker: HoldingMarker | null,
    markerRevision?: number,
  ): { key: string; record: HistoryRecord } {
    const now = this.#now();
    const history: HistoryRecord = {
      v: 1,
      node: this.node,
      hostname: record?.hostname ?? marker?.hostname ?? this.hostname,
      group: this.keys.group,
      outcome,
      endedAt: now.toISOString(),
      reason: record?.reason ?? '',
    };
    if (record?.enqueuedAt) history.enqueuedAt = record.enqueuedAt;
    const grantedAt = record?.grantedAt ?? marker?.grantedAt;
    if (grantedAt) history.grantedAt = grantedAt;
    if (markerRevision) history.grantedRevision = markerRevision;
    return { key: this.keys.history(now.getTime(), this.node), record: history };
  }

  async #pruneHistory(): Promise<void> {
    await pruneHistory(this.#client, this.keys, this.#opts.historyLimit ?? 500);
  }

  /**
   * Halts the group because of lost holders: writes `paused` with a reason naming them, only if
   * the group is not paused already and the lost markers are still there.
   */
  async halt(snapshot: GroupSnapshot): Promise<boolean> {
    return haltGroup(this.#client, snapshot);
  }

  /** Stops refreshing both leases without revoking them: keys survive until their TTLs run out. */
  close(): void {
    this.#session?.close();
    this.#hold?.close();
    this.#session = null;
    this.#hold = null;
  }
}

/**
 * Pauses a group for its lost holders, if it has more than its loss budget and is not paused.
 * Guarded so that it never overwrites an operator's pause and never acts on a stale view.
 */
export async function haltGroup(client: Etcd3, snapshot: GroupSnapshot): Promise<boolean> {
  if (!mustHalt(snapshot)) return false;
  const lost = lostHolders(snapshot);
  const keys = snapshot.keys;
  let txn = client.if(keys.paused, 'Create', '==', 0);
  for (const h of lost) txn = txn.and(h.key, 'Mod', '==', h.modRevision);
  const reason = haltReason(lost);
  const value = JSON.stringify({ reason, since: new Date().toISOString(), by: 'sluice' });
  const res = await etcdCall(`pausing ${keys.root} for lost holders`, () =>
    txn.then(client.put(keys.paused).value(value)).commit(),
  );
  return res.succeeded;
}

/** Deletes the oldest history records of a group beyond `limit`. */
export async function pruneHistory(client: Etcd3, keys: GroupKeys, limit: number): Promise<void> {
  const count = await etcdCall('counting history', () =>
    client.getAll().prefix(keys.historyPrefix).count(),
  );
  // Prune in batches of a tenth, so most releases only count.
  const slack = Math.max(1, Math.floor(limit / 10));
  if (count <= limit + slack) return;
  const excess = await etcdCall('listing old history', () =>
    client
      .getAll()
      .prefix(keys.historyPrefix)
      .sort('Key', 'Ascend')
      .limit(count - limit)
      .keys(),
  );
  const last = excess.at(-1);
  if (!last) return;
  await etcdCall('pruning history', () =>
    client
      .delete()
      .range(new Range(keys.historyPrefix, `${last}\0`))
      .exec(),
  );
}
