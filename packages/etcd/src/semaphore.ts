/**
 * The reboot semaphore: a FIFO queue of node keys in etcd, ordered by create revision, of which
 * the first `max` may hold a slot. See DESIGN.md ("The semaphore") for why it never over-admits.
 *
 * One Semaphore serves one node in one group. It keeps the node's key on a short session lease
 * while waiting and on a long hold lease once admitted, so the slot outlives a reboot.
 *
 * The server decides: every admission is decided on a read from etcd at one revision
 * (`readAdmission`) and taken by a txn guarded on that read. The group's local mirror (a
 * GroupWatch) only says when asking again may be worth it; a slow jittered backstop asks anyway,
 * so that no missed event can leave a free slot untaken.
 *
 * Why one file: enqueue, the wait loop, the admission txn and release share the node's keys and
 * leases, and the safety argument is about all of them together.
 */

import { isDeepStrictEqual } from 'node:util';
import {
  type AdmissionView,
  buildSnapshot,
  CanaryRecordSchema,
  type ConfirmOptions,
  DEFAULT_GROUP,
  DEFAULT_PREFIX,
  type Decision,
  decide,
  decideAdmission,
  domainLimit,
  type Grant,
  GroupKeys,
  type GroupSnapshot,
  type HistoryRecord,
  HistoryRecordSchema,
  type HoldingEntry,
  type HoldingMarker,
  mustHalt,
  type NodeState,
  parseRecord,
  type QueueEntry,
  type QueueRecord,
  queuePosition,
  type SlotLock,
  type SlotRecovery,
  type SlotRequest,
  SluiceError,
  throwIfAborted,
  type WindowSpec,
} from '@sluice/core';
import { type Etcd3, EtcdLeaseInvalidError, type ICompare, type IRequestOp } from 'etcd3';
import {
  admissionGuard,
  admissionTooBig,
  canarySeatOps,
  DEFAULT_MAX_TXN_OPS,
  readAdmission,
  readHalt,
} from './admission.js';
import { Backoff, jitter } from './backoff.js';
import { etcdCall, isTransient } from './errors.js';
import { coalesce, GroupWatch, readGroup } from './group-watch.js';
import { haltGroup, haltGroupFor, pruneHistory, slotHistory } from './history.js';
import { prefixEnd, toRawKV } from './reads.js';
import { Session } from './session.js';

/** How a Semaphore is set up. Only `node` is required. */
export interface SemaphoreOptions {
  /** This node's id (its machine-id by default in the agent). */
  node: string;
  /** Shown by `sluicectl status`. Defaults to the node id. */
  hostname?: string;
  prefix?: string;
  group?: string;
  /**
   * This agent's instance token (see DESIGN.md, "One node, one agent"): stored in the queue record
   * and the marker, and required to re-attach to a key, accept a grant or clear a lost marker. A
   * key or marker written under another token belongs to another agent with the same node id.
   */
  token?: string;
  /** The node's failure domain (a rack, a zone), stored in its queue record: see `domain-max`. */
  domain?: string;
  /** TTL of the waiting lease, in seconds: a dead waiter leaves the queue after this. Default 30. */
  sessionTTL?: number;
  /** TTL of the hold lease, in seconds: must outlast a reboot. Default 3600. */
  holdTTL?: number;
  /** History records kept per group. Default 500. */
  historyLimit?: number;
  /** The node's own reboot windows, which must be open as well as the group's. */
  localWindows?: readonly WindowSpec[];
  /**
   * The backstop: how often a waiter asks etcd even when its mirror saw nothing, in ms (jittered
   * ±30 %, and stretched by one per thousand nodes queued so big groups are not read in a loop).
   * Default 60 s.
   */
  backstopMs?: number;
  /** etcd's `--max-txn-ops`. Default 128. */
  maxTxnOps?: number;
  /**
   * The clock guard, asked right before every admission txn: null when the node's clock may be
   * trusted, else why not (and nothing is admitted). See `checkClock`.
   */
  clockCheck?: () => Promise<string | null>;
  /** The clock. Tests may pass a fixed one. */
  now?: () => Date;
  /**
   * Called after every decision while waiting: queue position, wait reason. `source` says whether
   * it was etcd's answer or the local mirror's guess of it (between two asks).
   */
  onDecision?: (decision: Decision, source: 'etcd' | 'mirror') => void;
  /**
   * Called when a waiter finds its queue key gone (its session lease ran out while it was cut off
   * or paused, or someone deleted the key) and joins the queue again, at the back. `lost` is the
   * key it had.
   */
  onRequeued?: (lost: { key: string; createRevision: number }) => void;
  /** Called for each etcd error that a wait rides out (it retries with back-off). */
  onRetry?: (error: unknown) => void;
  /**
   * Set when the node is not a sluiced agent: `fleetlock` for a FleetLock client that
   * `sluice-fleetlock` queues on its behalf. Written into the queue record and the history.
   */
  client?: QueueRecord['client'];
  /**
   * Keep the leases alive while this object lives (the default). False for a caller whose client
   * refreshes its place by asking again (`tryAdmit`), as `sluice-fleetlock` does: each lease then
   * runs out its full TTL after it was granted, with no keep-alive stream.
   */
  keepAlive?: boolean;
  /**
   * The client whose shared group watch wakes this waiter (default: its own). Its mirror may run
   * behind this semaphore's answers from etcd, as any watch may: waiters must not mistake that
   * for their key being gone.
   */
  watchClient?: Etcd3;
}

export type { Grant, SlotRequest } from '@sluice/core';

/** The node's own key as found in etcd, for recovery after a restart or reboot. */
export interface OwnEntry {
  entry: QueueEntry;
  record: QueueRecord | null;
  holding: boolean;
  grant: Grant | null;
}

/** Counters of what a Semaphore did, for metrics and benchmarks. */
export interface SemaphoreStats {
  /** Admission reads sent to etcd (the server decides). */
  reads: number;
  /** Of those, the ones the backstop timer sent with no sign of a change. */
  backstops: number;
  /** Admission txns sent. */
  admitAttempts: number;
  /** Admission txns whose guard failed because the group changed after the read. */
  admitConflicts: number;
  /** Decisions taken while waiting, from etcd's answers and from the mirror. */
  decisions: number;
}

const DEFAULT_BACKSTOP_MS = 60_000;

/** How soon a node held back by its clock asks again. */
const CLOCK_RECHECK_MS = 30_000;

/** One node's view of one group's reboot semaphore: the etcd implementation of `SlotLock`. */
export class Semaphore implements SlotLock {
  readonly keys: GroupKeys;
  readonly stats: SemaphoreStats = {
    reads: 0,
    backstops: 0,
    admitAttempts: 0,
    admitConflicts: 0,
    decisions: 0,
  };
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

  /**
   * True when a queue record or marker was written by this agent (its instance token), not by
   * another agent with the same node id. Records written before tokens existed count as ours.
   */
  isOwn(written: { token?: string | undefined } | null): boolean {
    return this.#mine(written?.token);
  }

  /** True when a record or marker written with `token` belongs to this agent. */
  #mine(token: string | undefined): boolean {
    // Keys written before tokens existed carry none: they are taken to be this node's own.
    return token === undefined || token === this.#opts.token;
  }

  /** Reads the group in pages at one revision: for status and tests, never for admission. */
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
    const res = await etcdCall(`a read of ${queueKey}`, () =>
      this.#client.kv.txn({
        compare: [],
        success: [queueKey, holdingKey, this.keys.canaryRecord(this.node)].map((key) => ({
          request_range: { key: Buffer.from(key) },
        })),
      }),
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

  /**
   * What this node has in the group, as an agent sees it at start: its own key (or null), after
   * clearing the node's own lost marker if it finds one. A node whose slot was declared lost
   * during its reboot (its hold lease ran out) and that is back now clears that marker, guarded
   * on the marker's create revision, and records the outcome `returned` in history; the group
   * stays paused if it was halted for it. A marker of another agent with this node id is left
   * alone. Returns the lost marker it found, cleared or not, too.
   */
  async readOwn(): Promise<{ own: OwnEntry | null; lost: HoldingEntry | null; cleared: boolean }> {
    const snapshot = await this.ownSnapshot();
    // A slot recorded from locksmith's semaphore for this node: given back now, as locksmithd gave
    // back its lock when it started after the reboot.
    const migrated = snapshot.holding.find((h) => h.node === this.node && h.migrated);
    if (migrated) await this.#releaseMigrated(migrated);
    const own = this.own(snapshot);
    const lost = snapshot.holding.find((h) => h.node === this.node && h.orphan) ?? null;
    if (!lost) return { own, lost, cleared: false };
    return { own, lost, cleared: await this.#clearLost(lost) };
  }

  /**
   * What this node has in the group when its agent starts (see `SlotLock.recover`): its own key,
   * re-attached to this process's leases so that its place and slot are kept, unless it is
   * another agent's (another instance token) or a manual lock, which are left alone. A lost
   * marker of the node's own is cleared first (see `readOwn`).
   */
  async recover(bootId: string, signal?: AbortSignal): Promise<SlotRecovery> {
    throwIfAborted(signal);
    const { own: found, lost, cleared } = await this.readOwn();
    const recovery: SlotRecovery = {
      own: null,
      lost: lost ? { key: lost.key, outcome: cleared ? 'cleared' : 'foreign' } : null,
      leftAlone: null,
    };
    if (!found) return recovery;
    const foreign = !this.#mine(found.record?.token);
    if (foreign || found.record?.manual) {
      recovery.leftAlone = {
        key: found.entry.key,
        why: foreign ? 'foreign' : 'manual',
        hostname: found.record?.hostname ?? '',
        bootId: found.record?.bootId ?? '',
      };
      return recovery;
    }
    // Keep the key alive from this process, keeping its place and slot.
    await this.#attach(found, { bootId: found.record?.bootId ?? bootId });
    recovery.own = { record: found.record, holding: found.holding, grant: found.grant };
    return recovery;
  }

  /** `SlotLock.confirm`: see `setState`. */
  confirm(
    grant: Grant,
    state: NodeState,
    patch: Partial<QueueRecord> = {},
    options: ConfirmOptions = {},
  ): Promise<Grant> {
    throwIfAborted(options.signal);
    return this.setState(grant, state, patch, options.clearRequest === true);
  }

  /** Releases this node's slot migrated from locksmith, recording `released` in history. */
  async #releaseMigrated(slot: HoldingEntry): Promise<boolean> {
    const history = this.#history('released', null, slot.marker, slot.createRevision);
    history.record.reason = "slot migrated from locksmith's semaphore";
    const res = await etcdCall(`releasing migrated slot ${slot.key}`, () =>
      this.#client
        .if(slot.key, 'Mod', '==', slot.modRevision)
        .then(
          this.#client.delete().key(slot.key),
          this.#client.put(history.key).value(JSON.stringify(history.record)),
        )
        .commit(),
    );
    if (res.succeeded) await this.#pruneHistory();
    return res.succeeded;
  }

  /** Clears this node's own lost marker, recording `returned`. False if it is not ours. */
  async #clearLost(lost: HoldingEntry): Promise<boolean> {
    if (!lost.marker || !this.#mine(lost.marker.token)) return false;
    const history = this.#history('returned', null, lost.marker, lost.createRevision);
    const res = await etcdCall(`clearing lost marker ${lost.key}`, () =>
      this.#client
        .if(lost.key, 'Create', '==', lost.createRevision)
        .and(lost.key, 'Mod', '==', lost.modRevision)
        .then(
          this.#client.delete().key(lost.key),
          this.#client.put(history.key).value(JSON.stringify(history.record)),
        )
        .commit(),
    );
    if (res.succeeded) await this.#pruneHistory();
    return res.succeeded;
  }

  /** The TTL this process grants the hold lease (`holding`) or the session lease with. */
  #ttl(holding: boolean): number {
    return holding ? (this.#opts.holdTTL ?? 3600) : (this.#opts.sessionTTL ?? 30);
  }

  async #sessionLease(): Promise<Session> {
    if (this.#session?.alive) return this.#session;
    this.#session?.close();
    this.#session = await Session.open(this.#client, this.#ttl(false), {
      keepAlive: this.#opts.keepAlive ?? true,
    });
    return this.#session;
  }

  async #holdLease(): Promise<Session> {
    if (this.#hold?.alive) return this.#hold;
    this.#hold?.close();
    this.#hold = await Session.open(this.#client, this.#ttl(true), {
      keepAlive: this.#opts.keepAlive ?? true,
    });
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
    for (const field of [
      'fromVersion',
      'toVersion',
      'manual',
      'bootId',
      'expectedSlotMs',
    ] as const) {
      if (req[field] !== undefined) (record as Record<string, unknown>)[field] = req[field];
    }
    if (this.#opts.token !== undefined) record.token = this.#opts.token;
    if (this.#opts.client !== undefined) record.client = this.#opts.client;
    // The domain as configured now, also when re-attaching to a key written before a change.
    if (this.#opts.domain !== undefined) record.domain = this.#opts.domain;
    else delete record.domain;
    return record;
  }

  /**
   * Joins the queue, or re-attaches to this node's existing key: the key keeps its create revision,
   * so a restarted agent keeps its place, and a holder keeps its slot. Idempotent. A key written
   * by another agent with this node id (another instance token) is refused, never taken over. A
   * lost marker of this node's own is cleared first (see `recover()`).
   */
  async enqueue(req: SlotRequest = {}, signal?: AbortSignal): Promise<OwnEntry> {
    throwIfAborted(signal);
    const { own: found } = await this.readOwn();
    if (found) return this.#reattach(found, req);
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
    ).catch((error: unknown) => {
      // The session lease ran out at etcd before this process heard (cut off for longer than
      // its TTL, and back before its keep-alives said so): take a new lease and join again.
      const cause = error instanceof Error ? error.cause : undefined;
      if (!(error instanceof EtcdLeaseInvalidError || cause instanceof EtcdLeaseInvalidError)) {
        throw error;
      }
      if (this.#session === session) {
        session.close();
        this.#session = null;
      }
      return null;
    });
    if (res === null) return this.enqueue(req, signal);
    const { own } = await this.readOwn();
    if (!own) {
      // Our key vanished between the txn and the read (an operator removed it): try once more.
      if (!res.succeeded) return this.enqueue(req, signal);
      throw new SluiceError('refused', `queue key ${key} disappeared right after it was written`);
    }
    // Another writer created the key between the read and the txn.
    return res.succeeded ? own : this.#reattach(own, req);
  }

  /**
   * Re-attaches to this node's existing key (see `#attach`), refusing another agent's key and
   * never letting a manual lock and an agent's slot stand in for each other.
   */
  async #reattach(own: OwnEntry, req: SlotRequest): Promise<OwnEntry> {
    const key = own.entry.key;
    if (!this.#mine(own.record?.token)) {
      throw new SluiceError(
        'refused',
        `${key} belongs to another agent with node id ${this.node} (hostname ${own.record?.hostname || 'unknown'}, boot id ${own.record?.bootId ?? 'unknown'}); two machines share this id`,
        key,
      );
    }
    if (Boolean(own.record?.manual) !== Boolean(req.manual)) {
      throw new SluiceError(
        'refused',
        own.record?.manual
          ? `${key} is a manual lock (sluicectl lock); this node waits until it is unlocked`
          : `${key} belongs to this node's agent; a manual lock must wait until it is released`,
        key,
      );
    }
    await this.#attach(own, req);
    return own;
  }

  /**
   * Makes this process keep the node's existing key alive: the hold lease for a holder, the
   * session lease for a waiter. When the key's lease is still alive, was granted with the TTL
   * this process would grant, and the record would not change, the lease itself is adopted and
   * kept alive from here (see `Session.adopt`): no write at all, which is the common case of an
   * agent back from its reboot. Otherwise the key moves onto this process's lease in a txn
   * guarded on its create and mod revisions, so it never resurrects a key that was released or
   * lost meanwhile, nor overwrites another writer; the old lease is then revoked.
   */
  async #attach(own: OwnEntry, req: SlotRequest = {}): Promise<void> {
    const previous = own.entry.lease;
    const current = own.holding ? this.#hold : this.#session;
    if (current?.alive && current.id === previous) return;
    const record = own.record
      ? { ...this.#record(own.record.state, req, own.record) }
      : this.#record(own.holding ? 'holding' : 'waiting', req);
    // A caller that refreshes its place by asking again (keepAlive false) wants a fresh lease.
    const adopt = (this.#opts.keepAlive ?? true) && previous !== '0' && !current?.alive;
    if (adopt && isDeepStrictEqual(record, own.record)) {
      const adopted = await Session.adopt(this.#client, previous, this.#ttl(own.holding));
      if (adopted) {
        if (own.holding) this.#hold = adopted;
        else this.#session = adopted;
        return;
      }
    }
    // Not the key's lease: that case returned above, and a lease granted now is a new one.
    const lease = own.holding ? await this.#holdLease() : await this.#sessionLease();
    const res = await etcdCall(`re-attaching ${own.entry.key}`, () =>
      this.#client
        .if(own.entry.key, 'Create', '==', own.entry.createRevision)
        .and(own.entry.key, 'Mod', '==', own.entry.modRevision)
        .then(this.#client.put(own.entry.key).value(JSON.stringify(record)).lease(lease.id))
        .commit(),
    );
    if (!res.succeeded) {
      throw new SluiceError('refused', `${own.entry.key} changed while re-attaching; try again`);
    }
    own.entry.lease = lease.id;
    own.entry.modRevision = Number(res.header.revision);
    own.record = record;
    if (own.grant) own.grant.record = record;
    if (previous !== '0') {
      // The old lease belonged to this node's previous process and held only this key.
      await this.#client.leaseClient.leaseRevoke({ ID: previous }).catch(() => {});
    }
  }

  /**
   * Waits until this node holds a slot, and returns the grant. Joins the queue first if needed.
   * Each admission is decided by etcd (see the file's comment); the local mirror of the group
   * only wakes the waiter, and nothing polls but the slow backstop. Rejects only when aborted or
   * on an error a retry cannot fix; etcd outages are waited out.
   */
  async acquire(req: SlotRequest = {}, signal?: AbortSignal): Promise<Grant> {
    throwIfAborted(signal);
    const first = await this.enqueue(req, signal);
    if (first.grant) return first.grant;
    // Grant the hold lease now, so taking a slot is one txn when the turn comes. If etcd cannot
    // be reached just now, the admission grants it instead: an outage is waited out in the loop.
    await this.#holdLease().catch((error: unknown) => {
      if (!isTransient(error)) throw error;
    });
    const watch = await GroupWatch.open(this.#opts.watchClient ?? this.#client, this.keys);
    this.#waiting = watch;
    try {
      return await this.#waitLoop(watch, req, first, signal);
    } finally {
      this.#waiting = null;
      await watch.close();
    }
  }

  /**
   * How long this node's slots took, admission to release: the median of its last five released
   * slots in the group's history (history keys end in the node id, so one keys-only read finds
   * them), in ms; null when history has none.
   */
  async pastSlotMs(signal?: AbortSignal): Promise<number | null> {
    throwIfAborted(signal);
    const prefix = this.keys.historyPrefix;
    const keys = await etcdCall(`a read of ${prefix}`, () =>
      this.#client.getAll().prefix(prefix).keys(),
    );
    // `<prefix><15-digit ms>-<node>`: the node id is everything after the first dash.
    const mine = keys
      .filter((key) => key.slice(prefix.length).replace(/^\d{15}-/, '') === this.node)
      .slice(-5);
    const texts = await Promise.all(
      mine.map((key) => etcdCall(`a read of ${key}`, () => this.#client.get(key).string())),
    );
    const took: number[] = [];
    for (const text of texts) {
      const parsed = text === null ? null : parseRecord(HistoryRecordSchema, text);
      const record = parsed?.ok ? parsed.value : null;
      if (record?.outcome !== 'released' || !record.grantedAt) continue;
      const ms = Date.parse(record.endedAt) - Date.parse(record.grantedAt);
      if (ms > 0) took.push(ms);
    }
    if (took.length === 0) return null;
    took.sort((a, b) => a - b);
    return took[Math.floor(took.length / 2)]!;
  }

  /**
   * This node's place while `acquire()` waits: the number of waiters ahead of it (0 = next to be
   * admitted; `sluicectl status` shows it plus one), from the local mirror of the group, so it
   * costs no etcd call. Null when not waiting.
   */
  position(): number | null {
    const watch = this.#waiting;
    const place = watch ? queuePosition(watch.snapshot, this.node) : null;
    return place === null ? null : place - 1;
  }

  /**
   * The group as the local mirror has it while `acquire()` waits, for observers of decisions
   * (logs, notifications): a view, never a ground for admission. Null when not waiting.
   */
  groupView(): GroupSnapshot | null {
    return this.#waiting?.snapshot ?? null;
  }

  #waitLoop(
    watch: GroupWatch,
    req: SlotRequest,
    first: OwnEntry,
    signal?: AbortSignal,
  ): Promise<Grant> {
    return new Promise<Grant>((resolve, reject) => {
      let done = false;
      let own = first;
      let askTimer: NodeJS.Timeout | undefined;
      let backstopTimer: NodeJS.Timeout | undefined;
      let hintTimer: NodeJS.Timeout | undefined;
      /** The last wait reason reported, so each change of reason is reported once. */
      let reported: string | null = null;
      /** No ask on the mirror's word before this time (see `disagreed`). */
      let askNotBefore = 0;
      /** Admission txns that lost a race, and answers from etcd that the mirror contradicted. */
      const conflicts = new Backoff({ initialMs: 50, maxMs: 5000 });
      const disagreed = new Backoff({ initialMs: 200, maxMs: 10_000 });
      const failures = new Backoff({ initialMs: 250, maxMs: 4000 });
      const timers = () => [askTimer, backstopTimer, hintTimer];
      const finish = (fn: () => void) => {
        if (done) return;
        done = true;
        for (const t of timers()) clearTimeout(t);
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
      const after = (ms: number, fn: () => void): NodeJS.Timeout =>
        setTimeout(fn, Math.min(Math.max(0, ms), 2 ** 31 - 1));
      const report = (decision: Decision, source: 'etcd' | 'mirror') => {
        this.stats.decisions++;
        const reason = decision.kind === 'wait' ? `${decision.reason}:${decision.detail}` : null;
        if (source === 'mirror' && reason === reported) return;
        reported = reason;
        this.#opts.onDecision?.(decision, source);
      };
      /** Asks again later: at `at` ms from now, unless an earlier ask is already due. */
      const askIn = (ms: number) => {
        clearTimeout(askTimer);
        askTimer = after(ms, () => void ask());
      };
      const armBackstop = () => {
        clearTimeout(backstopTimer);
        const base = this.#opts.backstopMs ?? DEFAULT_BACKSTOP_MS;
        const stretch = Math.max(1, watch.queueSize / 1000);
        backstopTimer = after(jitter(base * stretch), () => {
          this.stats.backstops++;
          void ask();
        });
      };

      /** Asks etcd, decides on its answer, and takes the slot if the answer is yes. */
      const askOnce = async (): Promise<void> => {
        clearTimeout(askTimer);
        armBackstop();
        const max = watch.snapshot.max;
        const view = await readAdmission(this.#client, this.keys, this.node, {
          selfCreateRevision: own.entry.createRevision,
          holders: watch.snapshot.holding.map((h) => h.node),
          maxTxnOps: this.#opts.maxTxnOps ?? DEFAULT_MAX_TXN_OPS,
          ...(max.ok ? { maxHint: max.value } : {}),
        });
        this.stats.reads++;
        if (done) return;
        if (!view.self || view.self.createRevision !== own.entry.createRevision) {
          // Our key expired (the session lease was lost while cut off) or was removed: join again,
          // at the back, and read the group again so the mirror knows our new key. Not after the
          // wait was cancelled: then `leave()` removed it on purpose.
          if (signal?.aborted) return;
          const { key, createRevision } = own.entry;
          this.#opts.onRequeued?.({ key, createRevision });
          own = await this.enqueue(req, signal);
          await watch.resync();
          if (own.grant) finish(() => resolve(own.grant!));
          else askIn(0);
          return;
        }
        if (mustHalt(view)) await haltGroup(this.#client, view);
        let decision = decideAdmission(view, this.#now(), this.#opts.localWindows);
        const tooBig =
          decision.kind === 'admit' ? admissionTooBig(view, this.#opts.maxTxnOps) : null;
        if (tooBig) {
          decision = {
            kind: 'wait',
            reason: 'invalid-value',
            rank: null,
            detail: tooBig,
            wakeAt: null,
          };
        }
        if (decision.kind === 'admit' && this.#opts.clockCheck) {
          const skew = await this.#opts.clockCheck();
          if (skew) {
            // Asked again in a while: NTP may have put the clock right by then.
            const wakeAt = new Date(this.#now().getTime() + CLOCK_RECHECK_MS);
            const rank = decision.rank;
            decision = { kind: 'wait', reason: 'clock-skew', rank, detail: skew, wakeAt };
          }
        }
        report(decision, 'etcd');
        if (decision.kind === 'holding') {
          // Admitted already: our txn went through but its answer was lost, say.
          const grant = this.#grantOf(view);
          await this.#attach({ entry: view.self, record: view.self.record, holding: true, grant });
          finish(() => resolve(grant));
          return;
        }
        if (decision.kind === 'admit') {
          const grant = await this.#admit(view, decision);
          if (grant) {
            finish(() => resolve(grant));
            return;
          }
          // The group changed after the read. Ask again, backing off if it keeps happening.
          askIn(conflicts.next());
          return;
        }
        conflicts.reset();
        if (decision.wakeAt) askIn(decision.wakeAt.getTime() - this.#now().getTime() + 5);
        const hint = decide(watch.snapshot, this.node, this.#now(), this.#opts.localWindows);
        if (hint.kind === 'admit') {
          // etcd said no where the mirror said yes: the mirror is out of step. Read it again, and
          // do not take its word again before a back-off, so a lasting disagreement cannot spin.
          askNotBefore = Date.now() + disagreed.next();
          await watch.resync();
        } else {
          disagreed.reset();
        }
      };

      const asks = coalesce(askOnce, () => done);
      const ask = async (): Promise<void> => {
        try {
          await asks();
          failures.reset();
        } catch (error) {
          if (done) return;
          if (!isTransient(error)) {
            finish(() => reject(error));
            return;
          }
          // etcd is unreachable: nothing can be admitted. Ask again with jittered backoff.
          this.#opts.onRetry?.(error);
          askIn(failures.next());
        }
      };

      /**
       * On a change to the mirror: ask etcd only when the mirror thinks the node may be admitted
       * now, that its key has gone, or that the group must halt. Deep in the queue, sleep until a
       * place ahead frees up.
       */
      const onChange = () => {
        if (done) return;
        // A mirror that has not reached our key's revision has not seen it yet: it is behind,
        // and its event will come. Until then it can tell nothing, and deciding on it (or asking
        // etcd) on each change costs every such waiter a pass over the group per event: in a
        // busy process that work, or the reads, slow the watch further.
        if (watch.revision < own.entry.createRevision) return;
        clearTimeout(hintTimer);
        const snapshot = watch.snapshot;
        const hint = decide(snapshot, this.node, this.#now(), this.#opts.localWindows);
        if (hint.kind === 'wait') {
          report(hint, 'mirror');
          if (hint.wakeAt) {
            hintTimer = after(hint.wakeAt.getTime() - this.#now().getTime() + 5, onChange);
          }
          if (hint.wake) {
            // Only fewer places ahead (or the settings, or our own key) can change the decision:
            // sleep until then instead of deciding again on every change.
            const self = snapshot.queue.find((e) => e.node === this.node);
            if (self) watch.park(onChange, self.key, self.createRevision, hint.wake.aheadBelow);
          }
          // Our key gone, or a holder lost: etcd has to confirm it (and the group be halted).
          if (hint.reason !== 'not-queued' && hint.reason !== 'halted') return;
        }
        const wait = askNotBefore - Date.now();
        if (wait > 0) askIn(wait);
        else void ask();
      };

      const unsubscribe = watch.onChange(onChange);
      signal?.addEventListener('abort', onAbort, { once: true });
      // The first decision is etcd's when the mirror shows the node may go now, or cannot tell;
      // when it shows the node deep in the queue, nothing is asked: the answer would be "wait",
      // and the read costs etcd a scan of the whole queue (the keys ahead are found by create
      // revision), once per waiter as a big rollout starts. The mirror wakes the node when its
      // turn may have come, and the backstop asks in a while whatever the mirror says.
      armBackstop();
      onChange();
    });
  }

  /** The grant that a view shows this node holding. Refuses one of another agent's. */
  #grantOf(view: AdmissionView): Grant {
    const self = view.self!;
    const marker = view.holding.find((h) => h.node === this.node)!;
    if (!self.record || !this.#mine(self.record.token) || !this.#mine(marker.marker?.token)) {
      throw new SluiceError(
        'refused',
        `${self.key} is held by another agent with node id ${this.node} (hostname ${self.record?.hostname || 'unknown'}); two machines share this id`,
        self.key,
      );
    }
    return {
      node: this.node,
      revision: marker.createRevision,
      createRevision: self.createRevision,
      record: self.record,
    };
  }

  /**
   * Tries once to take a slot: the grant, or the decision that refused it. A refused node leaves
   * the queue again (for `sluicectl lock` without --wait).
   */
  async tryAcquire(req: SlotRequest = {}, signal?: AbortSignal): Promise<Grant | Decision> {
    const result = await this.tryAdmit(req, signal);
    if (!('revision' in result)) await this.leave();
    return result;
  }

  /**
   * One admission attempt that keeps the node's place: joins the queue (or re-attaches to the
   * node's key, which keeps its place and any slot), asks etcd once, and takes the slot when the
   * answer is yes, through the same guarded txn as `acquire()`. Returns the grant, or the decision
   * that refused it (an admission txn that lost a race is a `queue` wait), and the node stays
   * queued on this Semaphore's session lease. `close()` then stops refreshing that lease: the
   * place lasts `sessionTTL` seconds more unless another attempt refreshes it. For a client that
   * asks for a slot by polling, as `sluice-fleetlock` does for FleetLock clients.
   */
  async tryAdmit(req: SlotRequest = {}, signal?: AbortSignal): Promise<Grant | Decision> {
    const own = await this.enqueue(req, signal);
    if (own.grant) return own.grant;
    const view = await readAdmission(this.#client, this.keys, this.node, {
      selfCreateRevision: own.entry.createRevision,
      maxTxnOps: this.#opts.maxTxnOps ?? DEFAULT_MAX_TXN_OPS,
    });
    this.stats.reads++;
    if (mustHalt(view)) await haltGroup(this.#client, view);
    const decision = decideAdmission(view, this.#now(), this.#opts.localWindows);
    const skew =
      decision.kind === 'admit' && this.#opts.clockCheck ? await this.#opts.clockCheck() : null;
    if (skew) {
      const rank = decision.kind === 'admit' ? decision.rank : null;
      return { kind: 'wait', reason: 'clock-skew', rank, detail: skew, wakeAt: null };
    }
    if (decision.kind === 'admit') {
      const tooBig = admissionTooBig(view, this.#opts.maxTxnOps);
      if (tooBig) {
        return {
          kind: 'wait',
          reason: 'invalid-value',
          rank: decision.rank,
          detail: tooBig,
          wakeAt: null,
        };
      }
      const grant = await this.#admit(view, decision);
      if (grant) return grant;
      return {
        kind: 'wait',
        reason: 'queue',
        rank: decision.rank,
        detail: 'the group changed while taking the slot',
        wakeAt: null,
      };
    }
    return decision;
  }

  /**
   * The admission txn, guarded on the read the decision was taken on (see `admissionGuard`).
   * Moves our key to the hold lease and writes the lease-less holding marker. Returns null when
   * the guard failed.
   */
  async #admit(view: AdmissionView, decision: Decision): Promise<Grant | null> {
    const self = view.self!;
    const hold = await this.#holdLease();
    const holdingKey = this.keys.holding(this.node);
    const now = this.#now().toISOString();
    const base = this.#record('holding', {}, self.record);
    const record: QueueRecord = {
      ...base,
      grantedAt: now,
      // The slot's phases start here; each state adds its first time (see setState).
      phases: { waiting: base.enqueuedAt, holding: now },
    };
    const marker: HoldingMarker = {
      v: 1,
      node: this.node,
      hostname: this.hostname,
      createRevision: self.createRevision,
      grantedAt: now,
    };
    if (this.#opts.token !== undefined) marker.token = this.#opts.token;
    // The domain the decision counted the node in: its record as read (the guard pins it).
    if (self.record?.domain !== undefined) marker.domain = self.record.domain;
    // A manual lock that expires is reported as one, with its reason.
    if (self.record?.manual) {
      marker.manual = true;
      marker.reason = self.record.reason;
    }
    const res = await etcdCall(`taking a slot at ${self.key}`, () =>
      this.#client.kv.txn({
        compare: admissionGuard(view),
        success: [
          {
            request_put: {
              key: Buffer.from(self.key),
              value: Buffer.from(JSON.stringify(record)),
              lease: hold.id,
            },
          },
          {
            request_put: {
              key: Buffer.from(holdingKey),
              value: Buffer.from(JSON.stringify(marker)),
            },
          },
          ...(decision.kind === 'admit' && decision.canary
            ? canarySeatOps(view, decision.canary, this.#now())
            : []),
          ...(domainLimit(view) === null
            ? []
            : [
                {
                  request_put: {
                    key: Buffer.from(this.keys.admitted),
                    value: Buffer.from(this.node),
                  },
                },
              ]),
        ],
      }),
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
    return { node: this.node, revision, createRevision: self.createRevision, record };
  }

  /**
   * Updates this holder's record (draining, rebooting, ...), guarded on its create revision and on
   * its marker still being the one its admission wrote (the fencing token). Rejects with
   * `refused` if the node no longer holds that slot (released, lost, or taken by another agent).
   */
  async setState(
    grant: Grant,
    state: NodeState,
    patch: Partial<QueueRecord> = {},
    clearRequest = false,
  ): Promise<Grant> {
    const hold = await this.#holdLease();
    const key = this.keys.queue(this.node);
    const now = this.#now().toISOString();
    const record: QueueRecord = {
      ...grant.record,
      ...patch,
      state,
      since: grant.record.state === state ? grant.record.since : now,
      phases: { ...grant.record.phases, [state]: grant.record.phases?.[state] ?? now },
    };
    if (this.#opts.token !== undefined) record.token = this.#opts.token;
    const res = await etcdCall(`updating ${key}`, () =>
      this.#client
        .if(key, 'Create', '==', grant.createRevision)
        .and(this.keys.holding(this.node), 'Create', '==', grant.revision)
        .then(
          this.#client.put(key).value(JSON.stringify(record)).lease(hold.id),
          ...(clearRequest ? [this.#client.delete().key(this.keys.request(this.node))] : []),
        )
        .commit(),
    );
    if (!res.succeeded) {
      throw new SluiceError('refused', `${key} is gone: this node no longer holds its slot`, key);
    }
    if (state === 'post-checking' && patch.problem) await this.#failCanary(grant, patch.problem);
    return { ...grant, record };
  }

  /**
   * A canary whose post-checks fail past their deadline: its record says so (which stops the
   * group's admissions until an operator resets or skips the canary), and the group is halted
   * with the reason, unless it is paused already.
   */
  async #failCanary(grant: Grant, problem: string): Promise<void> {
    const key = this.keys.canaryRecord(this.node);
    const res = await etcdCall(`a read of ${key}`, () => this.#client.get(key).exec());
    const kv = res.kvs[0];
    const parsed = kv ? parseRecord(CanaryRecordSchema, kv.value.toString()) : null;
    if (!kv || !parsed?.ok || parsed.value.outcome !== undefined) return;
    const now = this.#now().toISOString();
    const failed = { ...parsed.value, outcome: 'failed', endedAt: now, problem };
    const marked = await etcdCall(`marking ${key} failed`, () =>
      this.#client
        .if(key, 'Mod', '==', Number(kv.mod_revision))
        .and(this.keys.holding(this.node), 'Create', '==', grant.revision)
        .then(this.#client.put(key).value(JSON.stringify(failed)))
        .commit(),
    );
    if (!marked.succeeded) return;
    const reason = `canary ${this.node} of ${parsed.value.version} failed: ${problem}`;
    await haltGroupFor(this.#client, this.keys, reason, this.#now());
  }

  /**
   * Gives the slot back: deletes the queue key and the holding marker and appends a history
   * record, in one txn guarded on the key's create revision and on the marker being the one that
   * belongs to that key. Returns false when there was nothing to release (already released). A
   * node that comes back after its slot was declared lost removes its own lost marker, recording
   * `returned`; the group stays paused. On the way it looks at the group's other markers and
   * halts the group if it sees lost holders beyond the loss budget.
   */
  async release(
    grant: Grant | null = null,
    outcome: 'released' | 'abandoned' = 'released',
    signal?: AbortSignal,
  ): Promise<boolean> {
    throwIfAborted(signal);
    const snapshot = await this.ownSnapshot();
    const own = this.own(snapshot);
    const marker = snapshot.holding.find((h) => h.node === this.node);
    const createRevision = grant?.createRevision ?? own?.entry.createRevision;
    if (own && createRevision === own.entry.createRevision && this.#mine(own.record?.token)) {
      // The marker goes only if it is this key's: a lost marker of an earlier slot stays.
      const ours = marker && !marker.orphan ? marker : null;
      const history = this.#history(
        outcome,
        own.record,
        ours?.marker ?? null,
        ours?.createRevision,
      );
      const compare: ICompare[] = [
        {
          key: Buffer.from(own.entry.key),
          target: 'Create',
          result: 'Equal',
          create_revision: own.entry.createRevision,
        },
      ];
      const success: IRequestOp[] = [{ request_delete_range: { key: Buffer.from(own.entry.key) } }];
      const canary = ours ? this.#endCanary(snapshot, outcome, compare) : [];
      if (ours) {
        compare.push({
          key: Buffer.from(ours.key),
          target: 'Mod',
          result: 'Equal',
          mod_revision: ours.modRevision,
        });
        success.push(
          { request_delete_range: { key: Buffer.from(ours.key) } },
          {
            request_put: {
              key: Buffer.from(history.key),
              value: Buffer.from(JSON.stringify(history.record)),
            },
          },
          ...canary,
          // The other markers, to see whether a holder was lost (see #haltIfLost).
          {
            request_range: {
              key: Buffer.from(this.keys.holdingPrefix),
              range_end: prefixEnd(this.keys.holdingPrefix),
              keys_only: true,
            },
          },
        );
      }
      const res = await etcdCall(`releasing ${own.entry.key}`, () =>
        this.#client.kv.txn({ compare, success }),
      );
      // The canary record changed meanwhile (an operator reset the canary): release again.
      if (!res.succeeded && canary.length > 0) return this.release(grant, outcome, signal);
      this.#dropLeases();
      if (res.succeeded && ours) {
        await this.#pruneHistory();
        const others = (res.responses.at(-1)?.response_range?.kvs ?? []).map((kv) =>
          kv.key.toString().slice(this.keys.holdingPrefix.length),
        );
        if (others.length > 0) await this.#haltIfLost(others);
      }
      return res.succeeded && ours !== null;
    }
    if (marker?.orphan && (!grant || marker.createRevision === grant.revision)) {
      await this.#clearLost(marker);
    }
    this.#dropLeases();
    return false;
  }

  /**
   * For a release: the write that ends this node's canary record with the slot (`released` means
   * its post-checks passed), guarded on the record as read. Nothing when it is no canary.
   */
  #endCanary(snapshot: GroupSnapshot, outcome: string, compare: ICompare[]): IRequestOp[] {
    const entry = snapshot.canaries.find((c) => c.node === this.node);
    if (!entry?.record || entry.record.outcome !== undefined) return [];
    compare.push({
      key: Buffer.from(entry.key),
      target: 'Mod',
      result: 'Equal',
      mod_revision: entry.modRevision,
    });
    const ended = { ...entry.record, outcome, endedAt: this.#now().toISOString() };
    return [
      { request_put: { key: Buffer.from(entry.key), value: Buffer.from(JSON.stringify(ended)) } },
    ];
  }

  /**
   * Reads the group's markers and holders' keys and halts it if it has lost too many holders: a
   * holder halts the group too, not only waiters. A failure here does not undo the release.
   */
  async #haltIfLost(holders: string[]): Promise<void> {
    try {
      const view = await readHalt(this.#client, this.keys, holders, this.#opts.maxTxnOps);
      if (mustHalt(view)) await haltGroup(this.#client, view);
    } catch {
      // Waiters and sluicectl halt the group as well, the next time they look.
    }
  }

  /**
   * Leaves the queue if this node is still only waiting, and returns `left`. If it holds a slot,
   * the slot is kept (`held`), unless `ifAdmitted` is `release`: a caller whose wait was cancelled
   * while its admission txn was in flight passes that, so a slot nobody waits for is given back
   * (as `abandoned`) instead of lingering. A lost marker from an earlier slot of this node is not
   * this key's and never goes with it.
   */
  async leave(
    ifAdmitted: 'keep' | 'release' = 'keep',
    signal?: AbortSignal,
  ): Promise<'left' | 'held' | 'released'> {
    throwIfAborted(signal);
    const snapshot = await this.ownSnapshot();
    const own = this.own(snapshot);
    if (own?.holding) {
      if (ifAdmitted === 'keep') return 'held';
      await this.release(own.grant, 'abandoned');
      return 'released';
    }
    if (own && this.#mine(own.record?.token)) {
      const res = await etcdCall(`leaving the queue at ${own.entry.key}`, () =>
        this.#client
          .if(own.entry.key, 'Create', '==', own.entry.createRevision)
          .then(this.#client.delete().key(own.entry.key))
          .commit(),
      );
      // Admitted between the read and the delete: decide again on what is there now.
      if (!res.succeeded) return this.leave(ifAdmitted);
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
    return slotHistory({
      keys: this.keys,
      node: this.node,
      hostname: this.hostname,
      outcome,
      at: this.#now(),
      record,
      marker,
      ...(markerRevision ? { markerRevision } : {}),
      ...(this.#opts.client !== undefined ? { client: this.#opts.client } : {}),
    });
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
