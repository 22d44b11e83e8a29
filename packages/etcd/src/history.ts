/**
 * A group's history, written in the same txn as what it records: the record of a slot that
 * ended (by its agent, by an operator, or lost), the halt for lost holders, and the pruning that
 * keeps history bounded. The semaphore and the operators' commands both write through here.
 */
import { randomUUID } from 'node:crypto';
import {
  type ActionRecord,
  type GroupKeys,
  type GroupSnapshot,
  type HistoryRecord,
  type HoldingMarker,
  haltReason,
  lostHolders,
  mustHalt,
  type QueueRecord,
} from '@sluice/core';
import { type ComparatorBuilder, type Etcd3, Range } from 'etcd3';
import { etcdCall } from './errors.js';

/** What ended a slot, for `slotHistory()`. */
export interface SlotEnd {
  keys: GroupKeys;
  node: string;
  outcome: HistoryRecord['outcome'];
  at: Date;
  /** The queue record and the holding marker as read (either may be gone or unreadable). */
  record: QueueRecord | null;
  marker: HoldingMarker | null;
  /** The marker's create revision: the slot's grant. */
  markerRevision?: number;
  /** The host name when neither record nor marker has one. */
  hostname?: string;
  /** Who ended it, for an operator's release. */
  by?: string;
  /** `fleetlock` for a slot a FleetLock client took. */
  client?: HistoryRecord['client'];
}

/** The history record of a slot that ended, and its key. */
export function slotHistory(end: SlotEnd): { key: string; record: HistoryRecord } {
  const { record, marker } = end;
  const history: HistoryRecord = {
    v: 1,
    node: end.node,
    hostname: record?.hostname || marker?.hostname || end.hostname || '',
    group: end.keys.group,
    outcome: end.outcome,
    endedAt: end.at.toISOString(),
    reason: record?.reason || marker?.reason || '',
  };
  if (end.by !== undefined) history.by = end.by;
  if (record?.enqueuedAt) history.enqueuedAt = record.enqueuedAt;
  const grantedAt = record?.grantedAt ?? marker?.grantedAt;
  if (grantedAt) history.grantedAt = grantedAt;
  if (end.markerRevision) history.grantedRevision = end.markerRevision;
  if (record?.toVersion) history.toVersion = record.toVersion;
  // An expired manual lock stays a manual lock in history, with its reason.
  if (record?.manual || marker?.manual) history.manual = true;
  if (record?.phases) history.phases = record.phases;
  if (end.client !== undefined) history.client = end.client;
  return { key: end.keys.history(end.at.getTime(), end.node), record: history };
}

/** What `haltGroup()` needs: the group's keys, markers, pause and loss budget. */
export type HaltView = Pick<GroupSnapshot, 'keys' | 'holding' | 'paused' | 'lossBudget'> &
  Partial<Pick<GroupSnapshot, 'canary' | 'canaries'>>;

/**
 * Pauses a group for its lost holders, if it has more than its loss budget and is not paused.
 * Guarded so that it never overwrites an operator's pause and never acts on a stale view.
 */
export async function haltGroup(client: Etcd3, view: HaltView): Promise<boolean> {
  if (!mustHalt(view)) return false;
  const lost = lostHolders(view);
  const keys = view.keys;
  let txn = client.if(keys.paused, 'Create', '==', 0);
  for (const h of lost) txn = txn.and(h.key, 'Mod', '==', h.modRevision);
  return haltTxn(client, txn, keys, haltReason(lost, view), new Date());
}

/**
 * Pauses a group for `reason` (a canary that failed), as sluice's own halt, unless it is paused
 * already: never over an operator's pause.
 */
export function haltGroupFor(
  client: Etcd3,
  keys: GroupKeys,
  reason: string,
  now: Date,
): Promise<boolean> {
  return haltTxn(client, client.if(keys.paused, 'Create', '==', 0), keys, reason, now);
}

async function haltTxn(
  client: Etcd3,
  txn: ComparatorBuilder,
  keys: GroupKeys,
  reason: string,
  now: Date,
): Promise<boolean> {
  const value = JSON.stringify({ reason, since: now.toISOString(), by: 'sluice' });
  // The halt goes into history with the pause, so the fleet timeline can shade it.
  const action: ActionRecord = {
    v: 1,
    kind: 'action',
    action: 'halt',
    group: keys.group,
    at: now.toISOString(),
    by: 'sluice',
    reason,
  };
  const historyKey = keys.actionHistory(now.getTime(), 'halt', randomUUID().slice(0, 8));
  const res = await etcdCall(`halting ${keys.root}`, () =>
    txn
      .then(
        client.put(keys.paused).value(value),
        client.put(historyKey).value(JSON.stringify(action)),
      )
      .commit(),
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
