/**
 * A group as seen in one range read of `<prefix>groups/<g>/` at one revision, and the pure
 * decisions taken from it: a node's rank, whether it may take a slot, which holders are lost, and
 * the status shown to operators. No I/O here: the etcd adapter feeds key-values in.
 *
 * Why one file: the data model and the admission rule on it (`decideAdmission`), whose safety
 * argument (docs: DESIGN.md) refers to both.
 */
import type { z } from 'zod';
import { blackoutAt, describeBlackout, parseBlackouts } from './blackouts.js';
import {
  type CanaryEntry,
  type CanaryInputs,
  CanaryRecordSchema,
  type CanarySetting,
  type CanaryState,
  canaryVerdict,
  lostCanary,
  parseCanary,
  parseCanaryState,
} from './canary.js';
import { decideInDomains, domainLimit } from './domains.js';
import { formatDuration } from './duration.js';
import type { Result } from './errors.js';
import type { GroupKeys } from './keys.js';
import {
  type HoldingMarker,
  HoldingMarkerSchema,
  type NodeRegistration,
  NodeRegistrationSchema,
  parseRecord,
  type QueueRecord,
  QueueRecordSchema,
  type RebootRequest,
  RebootRequestSchema,
} from './records.js';
import { type Pause, parseDomainMax, parseLossBudget, parseMax, parsePaused } from './values.js';
import { parseWindowSpec, type WindowSpec, windowStateAll } from './window.js';

/** One key-value as etcd returns it. Revisions fit in a JS number for any real cluster. */
export interface RawKV {
  key: string;
  value: string;
  createRevision: number;
  modRevision: number;
  /** The lease id as a decimal string, `'0'` for none. */
  lease: string;
}

/** A key that could not be used, and why. Shown by `sluicectl status` under `errors`. */
export interface KeyError {
  key: string;
  message: string;
}

/** A queue key: a waiter or a holder. `record` is null when the value failed its schema. */
export interface QueueEntry {
  node: string;
  key: string;
  createRevision: number;
  modRevision: number;
  lease: string;
  record: QueueRecord | null;
  /** True when a matching holding marker exists: the node holds a slot. */
  holding: boolean;
}

/** A holding marker. `orphan` is true when its queue key is gone: the holder was lost. */
export interface HoldingEntry {
  node: string;
  key: string;
  /** The revision of the admission txn that wrote the marker: the slot's fencing token. */
  createRevision: number;
  modRevision: number;
  marker: HoldingMarker | null;
  orphan: boolean;
  /** A slot migrated from locksmith: no queue key, not lost, and ahead of every waiter. */
  migrated: boolean;
}

/** Everything about one group at one revision. */
export interface GroupSnapshot extends ParsedSettings {
  group: string;
  keys: GroupKeys;
  revision: number;
  /** Queue entries in queue order (by create revision). */
  queue: QueueEntry[];
  holding: HoldingEntry[];
  requests: Map<string, RebootRequest>;
  /** Registrations of live agents, by node (`nodes/<node>`). */
  nodes: Map<string, NodeRegistration>;
  /** Second agents with a node id that is registered already, by node (`conflicts/<node>`). */
  conflicts: Map<string, NodeRegistration>;
  /** The mod revision of `admitted` (0: absent); see `GroupKeys.admitted`. */
  admittedRevision: number;
  /** The canary records (`canaries/<node>`). */
  canaries: CanaryEntry[];
  errors: KeyError[];
}

/** The settings of a group as parsed from its keys, and the errors they gave. */
export interface ParsedSettings {
  max: Result<number>;
  lossBudget: Result<number>;
  /** Holders allowed per failure domain; null: no limit (the key is absent). */
  domainMax: Result<number | null>;
  /** The canary rule's setting (null: no canary) and the state canary admissions wrote. */
  canary: Result<CanarySetting | null>;
  canaryState: Result<CanaryState | null>;
  paused: Pause | null;
  windows: Result<WindowSpec | null>;
  /** Mod revisions of the settings keys (0 = absent), for the admission txn's guard. */
  settingsRevisions: Record<string, number>;
}

/**
 * The group's window from the values of its `windows` and `blackouts` keys (undefined: absent):
 * one spec carrying both, null when neither is set. A bad value of either fails closed as a bad
 * window does; the error's `where` names the key at fault.
 */
export function groupWindow(
  keys: GroupKeys,
  windowsText: string | undefined,
  blackoutsText: string | undefined,
): Result<WindowSpec | null> {
  const windows: Result<WindowSpec | null> =
    windowsText === undefined
      ? { ok: true, value: null }
      : parseWindowSpec(windowsText, `etcd key ${keys.windows}`);
  if (!windows.ok || blackoutsText === undefined) return windows;
  const blackouts = parseBlackouts(blackoutsText, `etcd key ${keys.blackouts}`);
  if (!blackouts.ok) return blackouts;
  const base = windows.value ?? { windows: [], source: `etcd key ${keys.windows}` };
  return { ok: true, value: { ...base, blackouts: blackouts.value } };
}

/** Parses a group's settings keys. `get` returns the key-value of a key, or undefined. */
export function parseSettings(
  keys: GroupKeys,
  get: (key: string) => RawKV | undefined,
  errors: KeyError[],
): ParsedSettings {
  const value = (key: string) => get(key)?.value;
  const max = parseMax(value(keys.max), keys.max);
  const lossBudget = parseLossBudget(value(keys.lossBudget), keys.lossBudget);
  const domainMax = parseDomainMax(value(keys.domainMax), keys.domainMax);
  const canary = parseCanary(value(keys.canary), keys.canary);
  const canaryState = parseCanaryState(value(keys.canaryState), keys.canaryState);
  const windowsText = value(keys.windows);
  const blackoutsText = value(keys.blackouts);
  const windows = groupWindow(keys, windowsText, blackoutsText);
  const settings: [Result<unknown>, string][] = [
    [max, keys.max],
    [lossBudget, keys.lossBudget],
    [domainMax, keys.domainMax],
    [canary, keys.canary],
    [canaryState, keys.canaryState],
  ];
  for (const [r, key] of settings) {
    if (!r.ok) errors.push({ key, message: r.error.message });
  }
  if (!windows.ok) {
    const key = windows.error.where?.includes(keys.blackouts) ? keys.blackouts : keys.windows;
    errors.push({ key, message: windows.error.message });
  }
  const settingsRevisions: Record<string, number> = {};
  for (const key of keys.settings) settingsRevisions[key] = get(key)?.modRevision ?? 0;
  const paused = parsePaused(value(keys.paused));
  return { max, lossBudget, domainMax, canary, canaryState, paused, windows, settingsRevisions };
}

/**
 * Parses holding markers. `liveCreateRevision(node)` is the create revision of the node's queue
 * key, or undefined when it has none: a marker whose queue key is gone (or was created again) is
 * an orphan, a lost holder.
 */
export function parseMarkers(
  keys: GroupKeys,
  kvs: Iterable<RawKV>,
  liveCreateRevision: (node: string) => number | undefined,
  errors: KeyError[],
): HoldingEntry[] {
  const holding: HoldingEntry[] = [];
  for (const kv of kvs) {
    const node = kv.key.slice(keys.holdingPrefix.length);
    const marker = parseJson(HoldingMarkerSchema, kv, errors);
    const migrated = marker?.migrated === 'locksmith';
    holding.push({
      node,
      key: kv.key,
      createRevision: kv.createRevision,
      modRevision: kv.modRevision,
      marker,
      // A malformed marker cannot be matched to its queue key, so it counts as lost: fail closed.
      // A migrated slot never had a queue key: it is held, not lost.
      orphan: marker === null || (!migrated && liveCreateRevision(node) !== marker.createRevision),
      migrated,
    });
  }
  return holding;
}

/** Parses canary records (`canaries/<node>`). */
export function parseCanaries(
  keys: GroupKeys,
  kvs: Iterable<RawKV>,
  errors: KeyError[],
): CanaryEntry[] {
  const entries: CanaryEntry[] = [];
  for (const kv of kvs) {
    const node = kv.key.slice(keys.canariesPrefix.length);
    const record = parseJson(CanaryRecordSchema, kv, errors);
    entries.push({ node, key: kv.key, modRevision: kv.modRevision, record });
  }
  return entries;
}

/** Groups raw key-values read under `keys.root` into a snapshot. Never throws. */
export function buildSnapshot(
  keys: GroupKeys,
  kvs: Iterable<RawKV>,
  revision: number,
): GroupSnapshot {
  const byKey = new Map<string, RawKV>();
  for (const kv of kvs) byKey.set(kv.key, kv);
  const errors: KeyError[] = [];
  const settings = parseSettings(keys, (key) => byKey.get(key), errors);

  const markerKVs: RawKV[] = [];
  const queueKVs: RawKV[] = [];
  const canaryKVs: RawKV[] = [];
  const requests = new Map<string, RebootRequest>();
  const nodes = new Map<string, NodeRegistration>();
  const conflicts = new Map<string, NodeRegistration>();
  for (const kv of byKey.values()) {
    if (kv.key.startsWith(keys.holdingPrefix)) {
      markerKVs.push(kv);
    } else if (kv.key.startsWith(keys.queuePrefix)) {
      queueKVs.push(kv);
    } else if (kv.key.startsWith(keys.canariesPrefix)) {
      canaryKVs.push(kv);
    } else if (kv.key.startsWith(keys.requestsPrefix)) {
      const request = parseJson(RebootRequestSchema, kv, errors);
      if (request) requests.set(kv.key.slice(keys.requestsPrefix.length), request);
    } else if (kv.key.startsWith(keys.nodesPrefix)) {
      const node = parseJson(NodeRegistrationSchema, kv, errors);
      if (node) nodes.set(kv.key.slice(keys.nodesPrefix.length), node);
    } else if (kv.key.startsWith(keys.conflictsPrefix)) {
      const node = parseJson(NodeRegistrationSchema, kv, errors);
      if (node) conflicts.set(kv.key.slice(keys.conflictsPrefix.length), node);
    }
  }
  queueKVs.sort((a, b) => a.createRevision - b.createRevision);
  const queueRevisions = new Map(
    queueKVs.map((kv) => [kv.key.slice(keys.queuePrefix.length), kv.createRevision]),
  );
  const holding = parseMarkers(keys, markerKVs, (node) => queueRevisions.get(node), errors);
  const markers = new Map(holding.map((h) => [h.node, h]));
  const queue: QueueEntry[] = queueKVs.map((kv) => {
    const node = kv.key.slice(keys.queuePrefix.length);
    return {
      node,
      key: kv.key,
      createRevision: kv.createRevision,
      modRevision: kv.modRevision,
      lease: kv.lease,
      record: parseJson(QueueRecordSchema, kv, errors),
      holding: markers.get(node)?.marker?.createRevision === kv.createRevision,
    };
  });

  return {
    group: keys.group,
    keys,
    revision,
    ...settings,
    queue,
    holding,
    requests,
    nodes,
    conflicts,
    admittedRevision: byKey.get(keys.admitted)?.modRevision ?? 0,
    canaries: parseCanaries(keys, canaryKVs, errors),
    errors,
  };
}

type Parsed = { value: unknown; error: KeyError | null };

// Parsed values by key-value object. A watcher's mirror keeps a key's RawKV until the key changes,
// so each value is parsed once, not once per snapshot.
const parsedCache = new WeakMap<RawKV, WeakMap<object, Parsed>>();

function parseJson<T>(schema: z.ZodType<T>, kv: RawKV, errors: KeyError[]): T | null {
  let bySchema = parsedCache.get(kv);
  if (!bySchema) {
    bySchema = new WeakMap();
    parsedCache.set(kv, bySchema);
  }
  let parsed = bySchema.get(schema);
  if (!parsed) {
    parsed = parseUncached(schema, kv);
    bySchema.set(schema, parsed);
  }
  if (parsed.error) errors.push(parsed.error);
  return parsed.value as T | null;
}

function parseUncached(schema: z.ZodType, kv: RawKV): Parsed {
  const parsed = parseRecord(schema, kv.value);
  if (parsed.ok) return { value: parsed.value, error: null };
  return { value: null, error: { key: kv.key, message: `${kv.key} ${parsed.error.message}` } };
}

/** What decides whether a group halts: its markers, its pause and its loss budget. */
type HaltInputs = Pick<GroupSnapshot, 'holding' | 'paused' | 'lossBudget'> &
  Partial<Pick<GroupSnapshot, 'canary' | 'canaries'>>;

/** Lost holders: markers whose queue key expired without a release. */
export function lostHolders(group: Pick<GroupSnapshot, 'holding'>): HoldingEntry[] {
  return group.holding.filter((h) => h.orphan);
}

/**
 * A node's rank: how many slots stand ahead of it. That is the queue keys created before its own,
 * plus lost holders whose original queue key was created before its own (a lost holder keeps its
 * place), plus slots migrated from locksmith (ahead of everyone). Ranks only fall: new keys always
 * come later. Returns null when the node is not queued.
 */
export function rankOf(snapshot: GroupSnapshot, node: string): number | null {
  const view = admissionView(snapshot, node);
  return view.self ? rankIn(view, view.self) : null;
}

function rankIn(view: AdmissionView, self: QueueEntry): number {
  let rank = view.ahead;
  for (const h of view.holding) {
    if (h.node === self.node) continue;
    // A lost holder whose marker is unreadable has no known place: it counts as ahead of everyone.
    if (h.orphan && (h.marker === null || h.marker.createRevision < self.createRevision)) rank++;
    // A slot migrated from locksmith stands ahead of every waiter, so rank < max alone keeps the
    // holders within max: the admission txn cannot guard a count of markers, and guards on
    // nothing of a migrated slot (it has no queue key). Its marker only ever leaves, so ranks
    // still only fall; the migration itself writes max, which fails every admission txn decided
    // on a read from before it.
    else if (h.migrated) rank++;
  }
  return rank;
}

/**
 * Everything `decideAdmission()` needs to know about one node's chances, at one revision. The
 * semaphore reads it from etcd in one round trip (the server decides); `admissionView()` derives
 * it from a full snapshot, as a waiter's local mirror does to know when to ask.
 */
export interface AdmissionView extends ParsedSettings {
  group: string;
  keys: GroupKeys;
  revision: number;
  node: string;
  /** The node's own queue key, or null when it has none. */
  self: QueueEntry | null;
  /** Every holding marker, orphans (lost holders) included. */
  holding: HoldingEntry[];
  /** Live queue keys created before the node's own. */
  ahead: number;
  /** True when more keys stand ahead than `ahead` says: the count was cut off. */
  aheadMore: boolean;
  /**
   * The create revision of each live holder's queue key, by node: the admission txn requires
   * each to be unchanged, so a holder lost between the read and the commit fails the txn.
   */
  holderKeys: ReadonlyMap<string, number>;
  /**
   * Under `domain-max` only (else null): the failure domain of each waiter ahead of the node (null
   * for one in no domain), in no particular order. Either all of them, or, when `aheadDomainsCut`,
   * at least as many whose domain has room as there are free slots: enough to know the node waits.
   */
  aheadDomains: (string | null)[] | null;
  aheadDomainsCut: boolean;
  /** The mod revision of `admitted` at this revision (0: absent); see `GroupKeys.admitted`. */
  admittedRevision: number;
  /** The canary records (`canaries/<node>`). */
  canaries: CanaryEntry[];
  errors: KeyError[];
}

/** The parts of an admission view as read from etcd: see `buildAdmissionView()`. */
export interface AdmissionRead {
  revision: number;
  /** The node's own queue key, or undefined. */
  self: RawKV | undefined;
  /** The settings keys that exist. */
  settings: RawKV[];
  /** Every holding marker. */
  markers: RawKV[];
  /** Live queue keys created before the node's own, counted by etcd, and whether it cut off. */
  ahead: number;
  aheadMore: boolean;
  /** The queue keys (values not needed) of the nodes that have a marker, where they exist. */
  holderKeys: RawKV[];
  /** `admitted`, if it exists. */
  admitted?: RawKV | undefined;
  /** The canary records (`canaries/<node>`). */
  canaries?: RawKV[];
  /**
   * Under domain-max: the domains of the waiters ahead (see `waiterDomains`), and whether the
   * reader stopped early (see `AdmissionView.aheadDomainsCut`).
   */
  aheadDomains?: (string | null)[];
  aheadDomainsCut?: boolean;
}

/** Builds an admission view from what one read at one revision returned. Never throws. */
export function buildAdmissionView(
  keys: GroupKeys,
  node: string,
  read: AdmissionRead,
): AdmissionView {
  const errors: KeyError[] = [];
  const settingsByKey = new Map(read.settings.map((kv) => [kv.key, kv]));
  const settings = parseSettings(keys, (key) => settingsByKey.get(key), errors);
  const live = new Map<string, number>();
  for (const kv of read.holderKeys) {
    live.set(kv.key.slice(keys.queuePrefix.length), kv.createRevision);
  }
  if (read.self) live.set(node, read.self.createRevision);
  const holding = parseMarkers(keys, read.markers, (n) => live.get(n), errors);
  const own = holding.find((h) => h.node === node);
  const self: QueueEntry | null = read.self
    ? {
        node,
        key: read.self.key,
        createRevision: read.self.createRevision,
        modRevision: read.self.modRevision,
        lease: read.self.lease,
        record: parseJson(QueueRecordSchema, read.self, errors),
        holding: own?.marker?.createRevision === read.self.createRevision,
      }
    : null;
  const holderKeys = new Map<string, number>();
  for (const h of holding) {
    if (!h.orphan && !h.migrated && h.node !== node) holderKeys.set(h.node, live.get(h.node)!);
  }
  // Under domain-max the reader lists them (readAdmission reads them in a second step).
  const aheadDomains = domainLimit(settings) === null ? null : (read.aheadDomains ?? []);
  return {
    group: keys.group,
    keys,
    revision: read.revision,
    node,
    ...settings,
    self,
    holding,
    ahead: read.ahead,
    aheadMore: read.aheadMore,
    holderKeys,
    aheadDomains,
    aheadDomainsCut: read.aheadDomainsCut ?? false,
    admittedRevision: read.admitted?.modRevision ?? 0,
    canaries: parseCanaries(keys, read.canaries ?? [], errors),
    errors,
  };
}

/** The admission view of `node` in a full snapshot (a waiter's mirror, or a test's store). */
export function admissionView(snapshot: GroupSnapshot, node: string): AdmissionView {
  const self = snapshot.queue.find((e) => e.node === node) ?? null;
  let ahead = 0;
  if (self) for (const e of snapshot.queue) if (e.createRevision < self.createRevision) ahead++;
  const live = new Map(snapshot.queue.map((e) => [e.node, e.createRevision]));
  const holderKeys = new Map<string, number>();
  for (const h of snapshot.holding) {
    if (!h.orphan && !h.migrated && h.node !== node) holderKeys.set(h.node, live.get(h.node)!);
  }
  return {
    group: snapshot.group,
    keys: snapshot.keys,
    revision: snapshot.revision,
    node,
    max: snapshot.max,
    lossBudget: snapshot.lossBudget,
    domainMax: snapshot.domainMax,
    canary: snapshot.canary,
    canaryState: snapshot.canaryState,
    paused: snapshot.paused,
    windows: snapshot.windows,
    settingsRevisions: snapshot.settingsRevisions,
    self,
    holding: snapshot.holding,
    ahead,
    aheadMore: false,
    holderKeys,
    aheadDomains:
      self && domainLimit(snapshot) !== null
        ? snapshot.queue
            .filter((e) => e.createRevision < self.createRevision && !e.holding)
            .map((e) => e.record?.domain ?? null)
        : null,
    aheadDomainsCut: false,
    admittedRevision: snapshot.admittedRevision,
    canaries: snapshot.canaries,
    errors: snapshot.errors,
  };
}

/** Why a node may not take a slot yet. */
export type WaitReason =
  | 'not-queued'
  /** The node's own earlier slot was declared lost, and its marker is still there. */
  | 'lost-marker'
  | 'invalid-value'
  | 'paused'
  | 'halted'
  | 'window-closed'
  /** The window is open but closes before this node's expected slot would end. */
  | 'window-closing'
  /** The node's failure domain has `domain-max` holders already; nodes of other domains may pass. */
  | 'domain-full'
  /** The group's canary for a new version is still soaking: nobody else goes until it is done. */
  | 'canary'
  /** A canary failed (post-checks, lost, forced off): nobody goes until an operator decides. */
  | 'canary-failed'
  /** The node's clock is too far from etcd's to trust its windows (the agent's clock guard). */
  | 'clock-skew'
  | 'queue';

/** The outcome of `decide()`. */
export type Decision =
  | { kind: 'holding' }
  | {
      kind: 'admit';
      rank: number;
      /** Set when the node goes as a canary: the admission txn takes its seat. */
      canary?: { version: string; start: boolean };
    }
  | {
      kind: 'wait';
      reason: WaitReason;
      rank: number | null;
      /** A human explanation, naming the key at fault when there is one. */
      detail: string;
      /** When the decision may change without any etcd event (a window opens), or null. */
      wakeAt: Date | null;
      /**
       * Which changes can alter the decision, for a waiter that would rather sleep than decide
       * again on every change: `aheadBelow: n` when only the number of queue keys ahead of the
       * node falling below n can (besides the settings keys and its own key). Absent: any change.
       */
      wake?: { aheadBelow: number };
      /** For `window-closed`: the blackout in force that shuts the window, in canonical form. */
      blackout?: string;
    };

/**
 * Decides whether `node` may take a slot in this snapshot: `decideAdmission()` on the node's view
 * of it. For a waiter's local mirror this is only a hint of when to ask etcd.
 */
export function decide(
  snapshot: GroupSnapshot,
  node: string,
  now: Date,
  localWindows: readonly WindowSpec[] = [],
): Decision {
  return decideAdmission(admissionView(snapshot, node), now, localWindows);
}

/**
 * Decides whether the node may take a slot. It may when it is queued and holds no marker from an
 * earlier slot, every settings value parses, the group is not paused or halted by lost holders,
 * the group's window and the node's own windows are open, fewer than max slots stand ahead of it
 * (its rank), and fewer than max slots are taken. Pure: the caller turns `admit` into a txn
 * guarded on the same view.
 */
export function decideAdmission(
  view: AdmissionView,
  now: Date,
  localWindows: readonly WindowSpec[] = [],
): Decision {
  const self = view.self;
  if (!self) {
    return { kind: 'wait', reason: 'not-queued', rank: null, detail: 'not queued', wakeAt: null };
  }
  if (self.holding) return { kind: 'holding' };
  const rank = rankIn(view, self);
  const wait = (
    reason: WaitReason,
    detail: string,
    wakeAt: Date | null = null,
    wake?: { aheadBelow: number },
  ): Decision => ({ kind: 'wait', reason, rank, detail, wakeAt, ...(wake ? { wake } : {}) });

  const { max, lossBudget, domainMax, windows } = view;
  if (!max.ok) return wait('invalid-value', max.error.message);
  if (!lossBudget.ok) return wait('invalid-value', lossBudget.error.message);
  if (!domainMax.ok) return wait('invalid-value', domainMax.error.message);
  if (!windows.ok) return wait('invalid-value', windows.error.message);
  if (!view.canary.ok) return wait('invalid-value', view.canary.error.message);
  if (!view.canaryState.ok) return wait('invalid-value', view.canaryState.error.message);
  if (view.paused) return wait('paused', `group is paused: ${view.paused.reason}`);
  if (mustHalt({ ...view, paused: null })) {
    return wait('halted', haltReason(lostHolders(view), view));
  }
  const own = view.holding.find((h) => h.node === view.node);
  if (own?.migrated) {
    return wait(
      'lost-marker',
      `${own.key} is this node's slot migrated from locksmith; its sluiced gives it back when it starts (or: sluicectl unlock ${view.node} --force)`,
    );
  }
  if (own) {
    return wait(
      'lost-marker',
      `${own.key} is left from an earlier slot of this node that was declared lost; it must be cleared (sluicectl unlock ${view.node} --force) before this node takes a slot again`,
    );
  }
  const specs = windows.value ? [windows.value, ...localWindows] : [...localWindows];
  if (specs.length > 0) {
    const state = windowStateAll(specs, now);
    if (!state.open) {
      const off = blackoutAt(
        specs.flatMap((s) => s.blackouts ?? []),
        now,
      );
      if (!off) return wait('window-closed', 'reboot window is closed', state.nextStart);
      const blackout = describeBlackout(off);
      const detail = `reboot window is closed (blackout ${blackout})`;
      return {
        kind: 'wait',
        reason: 'window-closed',
        rank,
        detail,
        wakeAt: state.nextStart,
        blackout,
      };
    }
    // No start near the window's end: the whole slot (reboot, boot, post-checks) must fit.
    const expected = self.record?.expectedSlotMs;
    if (expected && state.nextEnd && now.getTime() + expected > state.nextEnd.getTime()) {
      return wait(
        'window-closing',
        `the reboot window closes at ${state.nextEnd.toISOString()}, before this node's slot (expected to take ${formatDuration(expected)}) would end`,
        state.nextStart,
      );
    }
  }
  const canary = canaryVerdict(canaryInputs(view), self.record?.toVersion, now);
  if (canary.kind === 'wait') return wait(canary.reason, canary.detail, canary.wakeAt);
  const seat = canary.kind === 'seat' ? { version: canary.version, start: canary.start } : null;
  const decision =
    domainMax.value !== null
      ? decideInDomains(view, self, max.value, domainMax.value, wait)
      : decideByRank(view, self, rank, max.value, wait);
  return decision.kind === 'admit' && seat ? { ...decision, canary: seat } : decision;
}

/** What the canary rule reads of a view. */
export function canaryInputs(
  view: Pick<AdmissionView, 'holding' | 'canary' | 'canaryState' | 'canaries'>,
): CanaryInputs {
  const live = new Set<string>();
  const lost = new Set<string>();
  for (const h of view.holding) (h.orphan ? lost : live).add(h.node);
  return {
    canary: view.canary,
    canaryState: view.canaryState,
    canaries: view.canaries,
    liveHolders: live,
    lostHolders: lost,
  };
}

type Wait = (
  reason: WaitReason,
  detail: string,
  wakeAt?: Date | null,
  wake?: { aheadBelow: number },
) => Decision;

/** The FIFO rule without failure domains: fewer than max slots ahead, and a slot free. */
function decideByRank(
  view: AdmissionView,
  self: QueueEntry,
  rank: number,
  max: number,
  wait: Wait,
): Decision {
  if (view.aheadMore || rank >= max) {
    // Numbered as status numbers waiters: 1 is the next to be admitted (holders do not count).
    const holdersAhead = [...view.holderKeys.values()].filter(
      (revision) => revision < self.createRevision,
    ).length;
    const position = Math.max(0, view.ahead - holdersAhead) + 1;
    // At least max places stand ahead, and ranks only fall (FIFO): nothing but a place ahead
    // freeing up, a setting or this node's own key can change this.
    return wait(
      'queue',
      `position ${position}${view.aheadMore ? ' or later' : ''} in the queue, all ${max} slot(s) taken`,
      null,
      { aheadBelow: max },
    );
  }
  if (view.holding.length >= max) {
    // Holders admitted before max was lowered: nobody new until they drain below it.
    return wait('queue', `${view.holding.length} of ${max} slot(s) taken`);
  }
  return { kind: 'admit', rank };
}

/**
 * The pause reason written when lost holders halt a group. A manual lock (`sluicectl lock`) that
 * ran out is named as one, with its reason: nobody rebooted there.
 */
export function haltReason(
  lost: readonly HoldingEntry[],
  group: Partial<Pick<GroupSnapshot, 'canary' | 'canaries'>> = {},
): string {
  const manual = lost.filter((h) => h.marker?.manual);
  const rebooting = lost.filter((h) => !h.marker?.manual);
  const parts: string[] = [];
  const { canary: setting, canaries } = group;
  const canary =
    setting && canaries
      ? rebooting.filter((h) => lostCanary({ canary: setting, canaries }, h.node))
      : [];
  for (const h of canary) parts.push(`canary ${h.node} lost during reboot`);
  if (canary.length > 0) return parts.join('; ');
  if (rebooting.length > 0) {
    const names = rebooting.map((h) => h.node).join(', ');
    parts.push(
      rebooting.length === 1
        ? `node ${names} lost during reboot`
        : `nodes ${names} lost during reboot`,
    );
  }
  for (const h of manual) {
    const why = h.marker?.reason ? ` (${h.marker.reason})` : '';
    parts.push(`manual lock of ${h.node}${why} expired without sluicectl unlock`);
  }
  return parts.join('; ');
}

/** True when the group has more lost holders than it tolerates and is not paused: it must halt. */
export function mustHalt(group: HaltInputs): boolean {
  if (group.paused) return false;
  const budget = group.lossBudget.ok ? group.lossBudget.value : 0;
  const lost = lostHolders(group);
  if (lost.length > budget) return true;
  // A lost canary halts the group whatever the budget: finding that out is what it was for.
  const { canary, canaries } = group;
  return canary !== undefined && canaries !== undefined
    ? lost.some((h) => !h.marker?.manual && lostCanary({ canary, canaries }, h.node))
    : false;
}
