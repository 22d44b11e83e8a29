/**
 * Operator actions on a group, for `sluicectl` and tests: status, max, pause and resume, forced
 * release, reboot requests, history. Every write is a guarded txn or a single put, so two
 * operators cannot silently undo each other.
 *
 * Why one file: GroupAdmin is every operator command on one group, each a short guarded txn;
 * they share the group's keys, history and the halt check.
 */
import { randomUUID } from 'node:crypto';
import {
  type Action,
  type ActionRecord,
  ActionRecordSchema,
  CANARY_DONE_KEPT,
  CanaryStateSchema,
  checkRecord,
  formatPause,
  type GroupKeys,
  type GroupSnapshot,
  type GroupStatus,
  groupStatus,
  type HistoryRecord,
  HistoryRecordSchema,
  isSluiceError,
  parseDomainMax,
  parseMax,
  parsePaused,
  parseRecord,
  type RebootRequest,
  type Result,
  readJson,
  SluiceError,
} from '@sluice/core';
import { type Etcd3, Range } from 'etcd3';
import { etcdCall, toSluiceError } from './errors.js';
import { coalesce, GroupWatch, readGroup } from './group-watch.js';
import { haltGroup, pruneHistory, slotHistory } from './history.js';
import { prefixEnd } from './reads.js';

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

/** One readable history record: a reboot (or a slot given back) or an operator action. */
export type HistoryEntry =
  | { kind: 'reboot'; key: string; record: HistoryRecord }
  | { kind: 'action'; key: string; record: ActionRecord };

/** History records kept per group, reboots and actions together. */
const HISTORY_LIMIT = 500;

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
    const status = groupStatus(snapshot, this.now(), ttls, windowText);
    if (status.holdersOverMax > 0) status.maxBefore = await this.#maxBefore(snapshot);
    return status;
  }

  /**
   * The value of the max key before its last write, read from etcd's history at the revision
   * before it: null when that revision was compacted away or did not hold a valid max.
   */
  async #maxBefore(snapshot: GroupSnapshot): Promise<number | null> {
    const modRevision = snapshot.settingsRevisions[this.keys.max] ?? 0;
    if (modRevision <= 1) return null;
    const text = await this.client
      .get(this.keys.max)
      .revision(modRevision - 1)
      .string()
      .catch(() => null);
    const before = parseMax(text ?? undefined, this.keys.max);
    return text !== null && before.ok ? before.value : null;
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

  /** An operator action's history key and value, at `now`. */
  #action(
    action: Action,
    by: string,
    fields: Partial<Omit<ActionRecord, 'v' | 'kind' | 'action' | 'group' | 'at' | 'by'>>,
    now: Date,
  ): { key: string; value: string } {
    const record: ActionRecord = {
      v: 1,
      kind: 'action',
      action,
      group: this.keys.group,
      at: now.toISOString(),
      by,
      ...fields,
    };
    const key = this.keys.actionHistory(now.getTime(), action, randomUUID().slice(0, 8));
    return { key, value: JSON.stringify(record) };
  }

  /** A key's value and mod revision (0 when absent). */
  async #read(key: string): Promise<{ value: string | null; mod: number }> {
    const res = await etcdCall(`a read of ${key}`, () => this.client.get(key).exec());
    const kv = res.kvs[0];
    return kv
      ? { value: kv.value.toString(), mod: Number(kv.mod_revision) }
      : { value: null, mod: 0 };
  }

  /**
   * Changes one settings key and records the action in history, in one txn guarded on the value
   * read before (so the old value in history is the one replaced). `change` gets the old value
   * and returns the new one (null: delete), or undefined to do nothing. Tries again a few times
   * when another write got in between.
   */
  async #change(
    key: string,
    what: string,
    change: (
      old: string | null,
    ) => { next: string | null; record: { key: string; value: string } } | undefined,
  ): Promise<{ old: string | null; changed: boolean }> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const { value: old, mod } = await this.#read(key);
      const plan = change(old);
      if (!plan) return { old, changed: false };
      const write =
        plan.next === null ? this.client.delete().key(key) : this.client.put(key).value(plan.next);
      const res = await etcdCall(what, () =>
        this.client
          .if(key, 'Mod', '==', mod)
          .then(write, this.client.put(plan.record.key).value(plan.record.value))
          .commit(),
      );
      if (res.succeeded) {
        await pruneHistory(this.client, this.keys, HISTORY_LIMIT);
        return { old, changed: true };
      }
    }
    throw new SluiceError(
      'refused',
      `${key} kept changing while writing it; run the command again`,
      key,
    );
  }

  /**
   * Sets max, after validating it like the agents will, and records `set-max` (old → new, by) in
   * history in the same txn. Returns the old raw value.
   */
  async setMax(value: string, by = ''): Promise<{ old: string | null; new: number }> {
    const parsed: Result<number> = parseMax(value, this.keys.max);
    if (!parsed.ok) throw new SluiceError('invalid-config', parsed.error.message, 'N');
    const next = String(parsed.value);
    const now = this.now();
    const { old } = await this.#change(this.keys.max, `a write of ${this.keys.max}`, (old) => ({
      next,
      record: this.#action('set-max', by, { old, new: next }, now),
    }));
    return { old, new: parsed.value };
  }

  /**
   * Sets `domain-max` (holders allowed per failure domain), or clears it with null (no limit),
   * after validating it like the agents will, and records `set-domain-max` (old → new, by) in
   * history in the same txn. Returns the old raw value and the new one.
   */
  async setDomainMax(
    value: string | null,
    by = '',
  ): Promise<{ old: string | null; new: number | null }> {
    let next: string | null = null;
    if (value !== null) {
      const parsed = parseDomainMax(value, this.keys.domainMax);
      if (!parsed.ok) throw new SluiceError('invalid-config', parsed.error.message, 'N');
      next = String(parsed.value);
    }
    const now = this.now();
    const key = this.keys.domainMax;
    const { old } = await this.#change(key, `a write of ${key}`, (old) => ({
      next,
      record: this.#action('set-domain-max', by, { old, new: next }, now),
    }));
    return { old, new: next === null ? null : Number(next) };
  }

  /**
   * Pauses the group: no new slots until `resume()`. Records `pause` with its reason in history.
   * Returns false if it was already paused.
   */
  async pause(reason: string, by: string): Promise<boolean> {
    const now = this.now();
    const record = this.#action('pause', by, { reason }, now);
    const res = await etcdCall(`a write of ${this.keys.paused}`, () =>
      this.client
        .if(this.keys.paused, 'Create', '==', 0)
        .then(
          this.client.put(this.keys.paused).value(formatPause(reason, by, now)),
          this.client.put(record.key).value(record.value),
        )
        .commit(),
    );
    if (res.succeeded) await pruneHistory(this.client, this.keys, HISTORY_LIMIT);
    return res.succeeded;
  }

  /**
   * Resumes the group, recording `resume` in history with the reason of the pause it lifted.
   * Returns false if it was not paused.
   */
  async resume(by = ''): Promise<boolean> {
    const now = this.now();
    const { changed } = await this.#change(
      this.keys.paused,
      `a delete of ${this.keys.paused}`,
      (old) =>
        old === null
          ? undefined
          : {
              next: null,
              record: this.#action(
                'resume',
                by,
                { reason: parsePaused(old)?.reason ?? old, old },
                now,
              ),
            },
    );
    return changed;
  }

  /** Sets the group's window spec (validated by the caller), recording old → new in history. */
  setWindows(spec: string, by = ''): Promise<void> {
    return this.#setText(this.keys.windows, 'windows-set', spec, by);
  }

  /** Removes the group's window (always open), recording the old spec in history. */
  clearWindows(by = ''): Promise<boolean> {
    return this.#clearText(this.keys.windows, 'windows-clear', by);
  }

  /** Sets the group's blackouts (validated by the caller), recording old → new in history. */
  setBlackouts(spec: string, by = ''): Promise<void> {
    return this.#setText(this.keys.blackouts, 'blackouts-set', spec, by);
  }

  /** Removes the group's blackouts, recording the old ones in history. */
  clearBlackouts(by = ''): Promise<boolean> {
    return this.#clearText(this.keys.blackouts, 'blackouts-clear', by);
  }

  /** Sets the group's canary setting (validated by the caller), recording old → new in history. */
  setCanary(text: string, by = ''): Promise<void> {
    return this.#setText(this.keys.canary, 'canary-set', text, by);
  }

  /** Removes the group's canary setting (no canary any more), recording the old one in history. */
  clearCanary(by = ''): Promise<boolean> {
    return this.#clearText(this.keys.canary, 'canary-clear', by);
  }

  /**
   * Ends the current canary: `reset` forgets it (the next nodes of the version are its canaries
   * again), `skip` accepts its version as proven. Both drop the canary records, so a failed canary
   * no longer stops the group (a halt it caused stays until `resume`). Recorded in history with
   * the version; false when there was no canary.
   */
  async endCanary(how: 'reset' | 'skip', by = ''): Promise<{ version: string | null }> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const res = await etcdCall(`a read of ${this.keys.canaryState}`, () =>
        this.client.kv.txn({
          compare: [],
          success: [
            { request_range: { key: Buffer.from(this.keys.canaryState) } },
            {
              request_range: {
                key: Buffer.from(this.keys.canariesPrefix),
                range_end: prefixEnd(this.keys.canariesPrefix),
                keys_only: true,
              },
            },
          ],
        }),
      );
      const stateKv = res.responses[0]?.response_range?.kvs[0];
      const records = res.responses[1]?.response_range?.kvs ?? [];
      const parsed = stateKv ? parseRecord(CanaryStateSchema, stateKv.value.toString()) : null;
      const state = parsed?.ok ? parsed.value : null;
      if (!stateKv && records.length === 0) return { version: null };
      const version = state?.version ?? null;
      const now = this.now();
      const record = this.#action(`canary-${how}`, by, { old: version, new: null }, now);
      const ops = [
        ...records.map((kv) => this.client.delete().key(kv.key.toString())),
        this.client.put(record.key).value(record.value),
      ];
      if (how === 'skip' && state) {
        const done = [...state.done.filter((v) => v !== state.version), state.version];
        const skipped = { ...state, done: done.slice(-CANARY_DONE_KEPT) };
        ops.push(this.client.put(this.keys.canaryState).value(JSON.stringify(skipped)));
      } else if (state) {
        // Reset: the version's next nodes are its canaries again; the versions proven stay proven.
        const again = { ...state, seats: 0, startedAt: now.toISOString() };
        ops.push(this.client.put(this.keys.canaryState).value(JSON.stringify(again)));
      } else {
        ops.push(this.client.delete().key(this.keys.canaryState));
      }
      const mod = stateKv ? Number(stateKv.mod_revision) : 0;
      const done = await etcdCall(`a write of ${this.keys.canaryState}`, () =>
        this.client
          .if(this.keys.canaryState, 'Mod', '==', mod)
          .then(...ops)
          .commit(),
      );
      if (done.succeeded) return { version };
    }
    throw new SluiceError(
      'refused',
      `${this.keys.canaryState} kept changing while ending the canary; run the command again`,
      this.keys.canaryState,
    );
  }

  /** Writes a text setting, with `action` (old → new) in history in the same txn. */
  async #setText(key: string, action: Action, value: string, by: string): Promise<void> {
    const now = this.now();
    await this.#change(key, `a write of ${key}`, (old) => ({
      next: value,
      record: this.#action(action, by, { old, new: value }, now),
    }));
  }

  /** Deletes a text setting, with `action` (old → unset) in history; false if it was unset. */
  async #clearText(key: string, action: Action, by: string): Promise<boolean> {
    const now = this.now();
    const { changed } = await this.#change(key, `a delete of ${key}`, (old) =>
      old === null
        ? undefined
        : { next: null, record: this.#action(action, by, { old, new: null }, now) },
    );
    return changed;
  }

  /**
   * Records an operator action that is not a change of a settings key (a manual lock taken, a
   * migration from locksmith) in history.
   */
  async recordAction(
    action: Action,
    by: string,
    fields: { node?: string; reason?: string; old?: string | null; new?: string | null } = {},
  ): Promise<void> {
    const record = this.#action(action, by, fields, this.now());
    await etcdCall(`a write of ${record.key}`, () =>
      this.client.put(record.key).value(record.value).exec(),
    );
    await pruneHistory(this.client, this.keys, HISTORY_LIMIT);
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
    const history = slotHistory({
      keys: this.keys,
      node,
      outcome: marker?.orphan ? 'lost' : 'forced',
      at: this.now(),
      record: entry?.record ?? null,
      marker: marker?.marker ?? null,
      ...(marker ? { markerRevision: marker.createRevision } : {}),
      by,
    });
    const res = await this.#releaseTxn(
      node,
      entry?.modRevision ?? 0,
      marker?.modRevision ?? 0,
      history,
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
   * Deletes a node's queue key and marker and records the end of its slot, in one txn guarded on
   * both as read (mod revision 0: absent), so it acts on exactly what the operator looked at.
   */
  #releaseTxn(
    node: string,
    queueRevision: number,
    markerRevision: number,
    history: { key: string; record: HistoryRecord },
  ) {
    const queue = this.keys.queue(node);
    const holding = this.keys.holding(node);
    return etcdCall(`a release of ${node}'s slot`, () =>
      this.client
        .if(queue, 'Mod', '==', queueRevision)
        .and(holding, 'Mod', '==', markerRevision)
        .then(
          this.client.delete().key(queue),
          this.client.delete().key(holding),
          this.client.put(history.key).value(JSON.stringify(history.record)),
        )
        .commit(),
    );
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

    const history = slotHistory({
      keys: this.keys,
      node,
      outcome: 'released',
      at: this.now(),
      record: entry.record,
      marker: marker?.marker ?? null,
      ...(marker ? { markerRevision: marker.createRevision } : {}),
      by,
    });
    const res = await this.#releaseTxn(node, entry.modRevision, marker?.modRevision ?? 0, history);
    if (!res.succeeded) throw changed();
    await pruneHistory(this.client, this.keys, historyLimit);
    return { outcome: 'released' };
  }

  /**
   * Asks a node's agent for a coordinated reboot, and records `request-reboot` in history in the
   * same txn. With `ttlSeconds` the request sits on a lease of its own that nobody renews, so etcd
   * deletes it when it runs out (set `expiresAt` to match: readers ignore a request past it even
   * before etcd gets round to the delete).
   */
  async requestReboot(request: RebootRequest, ttlSeconds?: number): Promise<void> {
    const key = this.keys.request(request.node);
    const value = JSON.stringify(request);
    const record = this.#action(
      'request-reboot',
      request.by,
      { node: request.node, reason: request.reason },
      this.now(),
    );
    const lease =
      ttlSeconds === undefined ? null : this.client.lease(ttlSeconds, { autoKeepAlive: false });
    try {
      const leaseId = lease ? await etcdCall(`a lease for ${key}`, () => lease.grant()) : null;
      const put = this.client.put(key).value(value);
      await etcdCall(`a write of ${key}`, () =>
        this.client
          // Always true: a txn only so that the request and its record are written together.
          .if(key, 'Version', '>', -1)
          .then(
            leaseId === null ? put : put.lease(leaseId),
            this.client.put(record.key).value(record.value),
          )
          .commit(),
      );
    } finally {
      // Stop the local handle only: the lease itself runs on in etcd until its TTL is up.
      lease?.release();
    }
    await pruneHistory(this.client, this.keys, HISTORY_LIMIT);
  }

  /**
   * Withdraws a reboot request an operator made, recording `cancel-request` in history. Returns
   * false when the node had no request (its agent may have acted on it already).
   */
  async cancelRebootRequest(node: string, by: string): Promise<boolean> {
    const now = this.now();
    const key = this.keys.request(node);
    const { changed } = await this.#change(key, `a delete of ${key}`, (old) => {
      if (old === null) return undefined;
      let reason = '';
      try {
        reason = String((JSON.parse(old) as { reason?: unknown }).reason ?? '');
      } catch {
        // A hand-written request: no reason to keep.
      }
      return { next: null, record: this.#action('cancel-request', by, { node, reason }, now) };
    });
    return changed;
  }

  /** The newest `limit` readable reboot records, newest first. See `readHistory()`. */
  async history(limit = 20): Promise<HistoryRecord[]> {
    return (await this.readHistory(limit)).records;
  }

  /**
   * The newest `limit` readable reboot records (no operator actions), newest first, and every
   * unreadable record met on the way. See `readEntries()`.
   */
  async readHistory(
    limit = 20,
    since: Date | null = null,
  ): Promise<{ records: HistoryRecord[]; errors: HistoryError[] }> {
    const { entries, errors } = await this.readEntries(limit, since, (e) => e.kind === 'reboot');
    return {
      records: entries.flatMap((e) => (e.kind === 'reboot' ? [e.record] : [])),
      errors,
    };
  }

  /**
   * The newest `limit` readable history entries (reboots and operator actions) that `keep`
   * accepts, newest first, and every unreadable record met on the way (a hand-written value,
   * say), by key. Neither unreadable nor skipped records count against `limit`: it reads on, page
   * by page, until it has `limit` or the history ends. With `since`, only records written from
   * then on.
   */
  async readEntries(
    limit = 20,
    since: Date | null = null,
    keep: (entry: HistoryEntry) => boolean = () => true,
  ): Promise<{ entries: HistoryEntry[]; errors: HistoryError[] }> {
    const entries: HistoryEntry[] = [];
    const errors: HistoryError[] = [];
    const whole = Range.prefix(this.keys.historyPrefix);
    // Keys start with their time in ms: records from `since` on sort from its key on.
    const prefix = since
      ? new Range(this.keys.history(since.getTime(), '').slice(0, -1), whole.end)
      : whole;
    // Keys sort by time: each page reads below the oldest key of the one before.
    let end = prefix.end;
    while (entries.length < limit) {
      const range = new Range(prefix.start, end);
      const res = await etcdCall(`a read of ${this.keys.historyPrefix}`, () =>
        this.client
          .getAll()
          .inRange(range)
          .sort('Key', 'Descend')
          .limit(limit - entries.length)
          .exec(),
      );
      for (const kv of res.kvs) {
        const key = kv.key.toString();
        const parsed = parseHistory(key, kv.value.toString());
        if ('error' in parsed) errors.push({ key, message: parsed.error });
        else if (keep(parsed)) entries.push(parsed);
      }
      const last = res.kvs.at(-1);
      if (!res.more || !last) break;
      end = last.key;
    }
    return { entries, errors };
  }
}

/** Parses one history value: a reboot or an action, or why it cannot be read. */
function parseHistory(key: string, text: string): HistoryEntry | { error: string } {
  const json = readJson(text);
  if (!json.ok) {
    if (json.error.kind !== 'not-json') return { error: json.error.message };
    return {
      error: `not JSON: ${JSON.stringify(text.length > 60 ? `${text.slice(0, 60)}…` : text)}`,
    };
  }
  if ((json.value as { kind?: unknown } | null)?.kind === 'action') {
    const action = checkRecord(ActionRecordSchema, json.value);
    if (action.ok) return { kind: 'action', key, record: action.value };
    return { error: `not an action record: ${action.error.detail}` };
  }
  const parsed = checkRecord(HistoryRecordSchema, json.value);
  if (parsed.ok) return { kind: 'reboot', key, record: parsed.value };
  return { error: `not a history record: ${parsed.error.detail}` };
}
