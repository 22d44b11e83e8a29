/**
 * A group as seen in one range read of `<prefix>groups/<g>/` at one revision, and the pure
 * decisions taken from it: a node's rank, whether it may take a slot, which holders are lost, and
 * the status shown to operators. No I/O here: the etcd adapter feeds key-values in.
 */
import type { z } from 'zod';
import type { Result } from './errors.js';
import type { GroupKeys } from './keys.js';
import {
  describeZodError,
  type HoldingMarker,
  HoldingMarkerSchema,
  type QueueRecord,
  QueueRecordSchema,
  type RebootRequest,
  RebootRequestSchema,
} from './records.js';
import { type Pause, parseLossBudget, parseMax, parsePaused } from './values.js';
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
}

/** Everything about one group at one revision. */
export interface GroupSnapshot {
  group: string;
  keys: GroupKeys;
  revision: number;
  max: Result<number>;
  lossBudget: Result<number>;
  paused: Pause | null;
  windows: Result<WindowSpec | null>;
  /** Mod revisions of the settings keys (0 = absent), for the admission txn's guard. */
  settingsRevisions: Record<string, number>;
  /** Queue entries in queue order (by create revision). */
  queue: QueueEntry[];
  holding: HoldingEntry[];
  requests: Map<string, RebootRequest>;
  errors: KeyError[];
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
  const value = (key: string) => byKey.get(key)?.value;

  const max = parseMax(value(keys.max), keys.max);
  const lossBudget = parseLossBudget(value(keys.lossBudget), keys.lossBudget);
  const windowsText = value(keys.windows);
  const windows: Result<WindowSpec | null> =
    windowsText === undefined
      ? { ok: true, value: null }
      : parseWindowSpec(windowsText, `etcd key ${keys.windows}`);
  const settings: [Result<unknown>, string][] = [
    [max, keys.max],
    [lossBudget, keys.lossBudget],
    [windows, keys.windows],
  ];
  for (const [r, key] of settings) {
    if (!r.ok) errors.push({ key, message: r.error.message });
  }

  const settingsRevisions: Record<string, number> = {};
  for (const key of keys.settings) settingsRevisions[key] = byKey.get(key)?.modRevision ?? 0;

  const markers = new Map<string, { kv: RawKV; marker: HoldingMarker | null }>();
  const queueKVs: RawKV[] = [];
  const requests = new Map<string, RebootRequest>();
  for (const kv of byKey.values()) {
    if (kv.key.startsWith(keys.holdingPrefix)) {
      const marker = parseJson(HoldingMarkerSchema, kv, errors);
      markers.set(kv.key.slice(keys.holdingPrefix.length), { kv, marker });
    } else if (kv.key.startsWith(keys.queuePrefix)) {
      queueKVs.push(kv);
    } else if (kv.key.startsWith(keys.requestsPrefix)) {
      const request = parseJson(RebootRequestSchema, kv, errors);
      if (request) requests.set(kv.key.slice(keys.requestsPrefix.length), request);
    }
  }

  queueKVs.sort((a, b) => a.createRevision - b.createRevision);
  const queue: QueueEntry[] = queueKVs.map((kv) => {
    const node = kv.key.slice(keys.queuePrefix.length);
    const marker = markers.get(node)?.marker;
    return {
      node,
      key: kv.key,
      createRevision: kv.createRevision,
      modRevision: kv.modRevision,
      lease: kv.lease,
      record: parseJson(QueueRecordSchema, kv, errors),
      holding: marker?.createRevision === kv.createRevision,
    };
  });
  const queueRevisions = new Map(queue.map((e) => [e.node, e.createRevision]));
  const holding: HoldingEntry[] = [...markers].map(([node, { kv, marker }]) => ({
    node,
    key: kv.key,
    createRevision: kv.createRevision,
    modRevision: kv.modRevision,
    marker,
    // A malformed marker cannot be matched to its queue key, so it counts as lost: fail closed.
    orphan: marker === null || queueRevisions.get(node) !== marker.createRevision,
  }));

  return {
    group: keys.group,
    keys,
    revision,
    max,
    lossBudget,
    paused: parsePaused(value(keys.paused)),
    windows,
    settingsRevisions,
    queue,
    holding,
    requests,
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
  let json: unknown;
  try {
    json = JSON.parse(kv.value);
  } catch {
    return { value: null, error: { key: kv.key, message: `${kv.key} is not valid JSON` } };
  }
  const result = schema.safeParse(json);
  if (result.success) return { value: result.data, error: null };
  return {
    value: null,
    error: {
      key: kv.key,
      message: `${kv.key} is not a valid record: ${describeZodError(result.error)}`,
    },
  };
}

/** Lost holders: markers whose queue key expired without a release. */
export function lostHolders(snapshot: GroupSnapshot): HoldingEntry[] {
  return snapshot.holding.filter((h) => h.orphan);
}

/**
 * A node's rank: how many slots stand ahead of it. That is the queue keys created before its own,
 * plus lost holders whose original queue key was created before its own (a lost holder keeps its
 * place). Ranks only fall: new keys always come later. Returns null when the node is not queued.
 */
export function rankOf(snapshot: GroupSnapshot, node: string): number | null {
  const self = snapshot.queue.find((e) => e.node === node);
  if (!self) return null;
  let rank = 0;
  for (const e of snapshot.queue) if (e.createRevision < self.createRevision) rank++;
  for (const h of snapshot.holding) {
    // A lost holder whose marker is unreadable has no known place: it counts as ahead of everyone.
    if (h.orphan && (h.marker === null || h.marker.createRevision < self.createRevision)) rank++;
  }
  return rank;
}

/** Why a node may not take a slot yet. */
export type WaitReason =
  | 'not-queued'
  | 'invalid-value'
  | 'paused'
  | 'halted'
  | 'window-closed'
  | 'queue';

/** The outcome of `decide()`. */
export type Decision =
  | { kind: 'holding' }
  | { kind: 'admit'; rank: number }
  | {
      kind: 'wait';
      reason: WaitReason;
      rank: number | null;
      /** A human explanation, naming the key at fault when there is one. */
      detail: string;
      /** When the decision may change without any etcd event (a window opens), or null. */
      wakeAt: Date | null;
    };

/**
 * Decides whether `node` may take a slot in this snapshot. It may when it is queued, every
 * settings value parses, the group is not paused or halted by lost holders, the group's window and
 * the node's own windows are open, and its rank is below max. Pure: the caller turns `admit` into a
 * txn guarded on the same snapshot.
 */
export function decide(
  snapshot: GroupSnapshot,
  node: string,
  now: Date,
  localWindows: readonly WindowSpec[] = [],
): Decision {
  const self = snapshot.queue.find((e) => e.node === node);
  if (!self) {
    return { kind: 'wait', reason: 'not-queued', rank: null, detail: 'not queued', wakeAt: null };
  }
  if (self.holding) return { kind: 'holding' };
  const rank = rankOf(snapshot, node);
  const wait = (reason: WaitReason, detail: string, wakeAt: Date | null = null): Decision => ({
    kind: 'wait',
    reason,
    rank,
    detail,
    wakeAt,
  });

  const { max, lossBudget, windows } = snapshot;
  if (!max.ok) return wait('invalid-value', max.error.message);
  if (!lossBudget.ok) return wait('invalid-value', lossBudget.error.message);
  if (!windows.ok) return wait('invalid-value', windows.error.message);
  if (snapshot.paused) return wait('paused', `group is paused: ${snapshot.paused.reason}`);
  const lost = lostHolders(snapshot);
  if (lost.length > lossBudget.value) {
    return wait('halted', haltReason(lost));
  }
  const specs = windows.value ? [windows.value, ...localWindows] : [...localWindows];
  if (specs.length > 0) {
    const state = windowStateAll(specs, now);
    if (!state.open) {
      return wait('window-closed', 'reboot window is closed', state.nextStart);
    }
  }
  if (rank === null || rank >= max.value) {
    return wait('queue', `position ${(rank ?? 0) + 1} in the queue, ${max.value} slot(s)`);
  }
  return { kind: 'admit', rank };
}

/** The pause reason written when lost holders halt a group. */
export function haltReason(lost: readonly HoldingEntry[]): string {
  const names = lost.map((h) => h.node).join(', ');
  return lost.length === 1
    ? `node ${names} lost during reboot`
    : `nodes ${names} lost during reboot`;
}

/** True when the snapshot shows more lost holders than the group tolerates, so it must halt. */
export function mustHalt(snapshot: GroupSnapshot): boolean {
  if (snapshot.paused) return false;
  const budget = snapshot.lossBudget.ok ? snapshot.lossBudget.value : 0;
  return lostHolders(snapshot).length > budget;
}
