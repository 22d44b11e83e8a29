/**
 * The JSON records sluice stores in etcd, as zod schemas. Records are parsed, never trusted: a
 * record that fails its schema is reported with its key and treated in the way that keeps the
 * fleet safe (a malformed queue record still occupies its place in the queue).
 */
import { z } from 'zod';
import type { Result } from './errors.js';
import { isValidDomain } from './keys.js';

/** The `client` of a node queued by `sluice-fleetlock` for a FleetLock client. */
export const FLEETLOCK_CLIENT = 'fleetlock';

/**
 * The instance token sluice-fleetlock writes into its clients' records and markers: every
 * replica of the server may act on them, and no sluiced agent takes them for its own.
 */
export const FLEETLOCK_TOKEN = 'sluice-fleetlock';

/** Where a node is in its reboot, as stored in its queue record and shown by `sluicectl status`. */
export const NODE_STATES = [
  'waiting',
  'holding',
  'draining',
  'rebooting',
  'recovering',
  'post-checking',
  'releasing',
] as const;

/** A state from NODE_STATES. Everything but `waiting` means the node holds a slot. */
export type NodeState = (typeof NODE_STATES)[number];

const isoDate = z.iso.datetime({ offset: true });

/** A failure domain as stored in records: see `isValidDomain`. */
const domain = z.string().refine(isValidDomain, 'is not a valid failure domain name');

/**
 * The record at `groups/<g>/queue/<node>`. It is all an agent needs to carry on after a reboot or a
 * restart, so it holds the boot id at admission and the versions involved.
 */
export const QueueRecordSchema = z.looseObject({
  v: z.literal(1),
  node: z.string().min(1),
  hostname: z.string(),
  state: z.enum(NODE_STATES),
  /** When the node entered `state`. */
  since: isoDate,
  /** When the node joined the queue. */
  enqueuedAt: isoDate,
  /** Why the node wants a slot, e.g. `update 3815.2.0` or `manual: kernel parameters`. */
  reason: z.string().default(''),
  /** When the slot was granted. */
  grantedAt: isoDate.optional(),
  /** The kernel boot id when the slot was granted: a different one after restart means a reboot happened. */
  bootId: z.string().optional(),
  /**
   * systemd's `SoftRebootsCount` when the record was written: a higher count after restart means a
   * soft reboot happened (it keeps the boot id).
   */
  softReboots: z.number().int().nonnegative().optional(),
  /** The OS version before and after the update, when known. */
  fromVersion: z.string().optional(),
  toVersion: z.string().optional(),
  /** True for a slot taken by hand with `sluicectl lock`. */
  manual: z.boolean().optional(),
  /**
   * How long this node's slot is expected to take, admission to release, in ms: it is admitted
   * only if that fits before the window closes (see `decideAdmission`). Absent: no such check.
   */
  expectedSlotMs: z.number().int().nonnegative().optional(),
  /**
   * The node's failure domain (`node.domain`: a rack, a zone): `groups/<g>/domain-max` caps the
   * holders of each domain. Absent: the node is in no domain, and only max applies to it.
   */
  domain: domain.optional(),
  /** What keeps the node from going on, e.g. post-reboot checks still failing past their deadline. */
  problem: z.string().optional(),
  /**
   * The instance token of the agent that wrote the record (see `nodes/<id>`): a node id alone is
   * no proof of identity, since cloned machines share their machine-id.
   */
  token: z.string().optional(),
  /**
   * When the node first entered each state of this slot (`holding`, `rebooting`, `recovering`,
   * ...): kept into history, so that the fleet timeline can draw each reboot's phases.
   */
  phases: z.record(z.string(), isoDate).optional(),
  /**
   * How the node takes part, when not through its own sluiced: `fleetlock` for a FleetLock client
   * (Zincati, Flatcar's fleetlock) queued by `sluice-fleetlock` on its behalf.
   */
  client: z.literal(FLEETLOCK_CLIENT).optional(),
});
/** A queue record as parsed. */
export type QueueRecord = z.infer<typeof QueueRecordSchema>;

/**
 * The lease-less marker at `groups/<g>/holding/<node>`, written in the admission txn and deleted at
 * release. A marker whose queue key is gone (or was re-created) is a lost holder. It keeps the
 * create revision of the queue key it belonged to, so the lost slot keeps its place in the queue.
 * The marker's own create revision is the revision of the admission txn: the fencing token.
 */
export const HoldingMarkerSchema = z.looseObject({
  v: z.literal(1),
  node: z.string().min(1),
  hostname: z.string().default(''),
  createRevision: z.number().int().positive(),
  grantedAt: isoDate,
  /** The instance token of the agent that was admitted. */
  token: z.string().optional(),
  /**
   * Set on a slot `sluicectl migrate-locksmith` recorded for a holder of locksmith's semaphore.
   * It has no queue key and is not lost: it counts against max (ahead of every waiter) until the
   * node's own sluiced releases it at start, as locksmithd would have after its reboot.
   */
  migrated: z.literal('locksmith').optional(),
  /**
   * True for a slot taken by hand (`sluicectl lock`), with its reason: when its lease runs out it
   * is reported as an expired manual lock, not as a node lost during its reboot.
   */
  manual: z.boolean().optional(),
  reason: z.string().optional(),
  /** The holder's failure domain, from its queue record: a lost holder still counts in it. */
  domain: domain.optional(),
});
/** A holding marker as parsed. */
export type HoldingMarker = z.infer<typeof HoldingMarkerSchema>;

/**
 * How a slot ended: released by its node, released by an operator with --force, lost (cleared by
 * an operator), given back unused (`abandoned`), or lost and then cleared by the node itself when
 * it came back (`returned`).
 */
export const OUTCOMES = ['released', 'forced', 'lost', 'abandoned', 'returned'] as const;
/** How a slot ended. */
export type Outcome = (typeof OUTCOMES)[number];

/** One finished or lost reboot at `<prefix>history/<g>/<ms>-<node>`. */
export const HistoryRecordSchema = z.looseObject({
  v: z.literal(1),
  node: z.string().min(1),
  hostname: z.string().default(''),
  group: z.string(),
  outcome: z.enum(OUTCOMES),
  enqueuedAt: isoDate.optional(),
  grantedAt: isoDate.optional(),
  endedAt: isoDate,
  reason: z.string().default(''),
  /** Who ended it when an operator did (`sluicectl unlock`, with or without --force): `user@host`. */
  by: z.string().optional(),
  grantedRevision: z.number().int().positive().optional(),
  /** True for a slot taken by hand with `sluicectl lock`. */
  manual: z.boolean().optional(),
  /** The OS version the node rebooted into, when known. */
  toVersion: z.string().optional(),
  /** When the node entered each state of the slot (see QueueRecord). */
  phases: z.record(z.string(), isoDate).optional(),
  /** `fleetlock` when the slot was a FleetLock client's (see QueueRecord.client). */
  client: z.literal(FLEETLOCK_CLIENT).optional(),
});
/** A history record of an ended slot, as parsed. */
export type HistoryRecord = z.infer<typeof HistoryRecordSchema>;

/**
 * Operator actions recorded in history, next to the reboots: `set-max`, `set-domain-max`, `pause`, `resume`,
 * `windows-set`, `windows-clear`, `blackouts-set`, `blackouts-clear`, `canary-set`, `canary-clear`,
 * `canary-reset`, `canary-skip`, `lock` (a slot taken by hand; its release is a reboot record
 * with `by`), `request-reboot`, `cancel-request`, `migrate-locksmith`, and `halt` (the pause
 * sluice itself writes for a lost node).
 */
export const ACTIONS = [
  'set-max',
  'set-domain-max',
  'pause',
  'resume',
  'windows-set',
  'windows-clear',
  'blackouts-set',
  'blackouts-clear',
  'canary-set',
  'canary-clear',
  'canary-reset',
  'canary-skip',
  'lock',
  'request-reboot',
  'cancel-request',
  'migrate-locksmith',
  'halt',
] as const;
/** An operator action's name. */
export type Action = (typeof ACTIONS)[number];

/** One operator action at `<prefix>history/<g>/<ms>-@<action>-<id>`. */
export const ActionRecordSchema = z.looseObject({
  v: z.literal(1),
  kind: z.literal('action'),
  action: z.enum(ACTIONS),
  group: z.string(),
  at: isoDate,
  /** Who: `user@host`, or `sluice` for a halt. */
  by: z.string().default(''),
  /** The node acted on, for lock and reboot requests. */
  node: z.string().optional(),
  /** The value before and after, for set-max and windows (null: absent). */
  old: z.string().nullable().optional(),
  new: z.string().nullable().optional(),
  /** Why: the pause's reason, the lock's, the request's, the halt's. */
  reason: z.string().optional(),
});
/** A history record of an operator action, as parsed. */
export type ActionRecord = z.infer<typeof ActionRecordSchema>;

/**
 * A request for a coordinated reboot of one node, at `groups/<g>/requests/<node>`. The key sits
 * on a lease that runs out at `expiresAt`, and readers ignore a request past `expiresAt` even
 * before etcd deletes it. Requests written before expiry existed have no `expiresAt`.
 */
export const RebootRequestSchema = z.looseObject({
  v: z.literal(1),
  node: z.string().min(1),
  reason: z.string().default(''),
  requestedAt: isoDate,
  by: z.string().default(''),
  expiresAt: isoDate.optional(),
});
/** A reboot request as parsed. */
export type RebootRequest = z.infer<typeof RebootRequestSchema>;

/**
 * The registration of a live agent at `groups/<g>/nodes/<node>`, on the agent's own lease: it
 * goes when the agent does. Written once per agent start (and again when `problem` changes).
 * The same shape, at `groups/<g>/conflicts/<node>`, is a second agent with that node id that
 * stays out of the group.
 */
export const NodeRegistrationSchema = z.looseObject({
  v: z.literal(1),
  node: z.string().min(1),
  hostname: z.string().default(''),
  bootId: z.string().default(''),
  /** The agent's instance token: see QueueRecord.token. */
  token: z.string().min(1),
  osVersion: z.string().optional(),
  agentVersion: z.string().optional(),
  startedAt: isoDate,
  /** Why the agent cannot take part right now (clock skew, a twin with its id), if it cannot. */
  problem: z.string().optional(),
  /** The node's failure domain (`node.domain`), if it has one. */
  domain: domain.optional(),
});
/** A node's registration as parsed. */
export type NodeRegistration = z.infer<typeof NodeRegistrationSchema>;

/** True when a request has an expiry and it has passed at `now`: act as if it were gone. */
export function requestExpired(request: RebootRequest, now: Date): boolean {
  return request.expiresAt !== undefined && Date.parse(request.expiresAt) <= now.getTime();
}

/** The optional JSON form of `groups/<g>/paused`, written by `sluicectl pause`. */
export const PauseRecordSchema = z.looseObject({
  reason: z.string(),
  since: isoDate.optional(),
  by: z.string().optional(),
});

/** Formats a zod error as one line: `field: problem; field: problem`. */
export function describeZodError(error: z.ZodError): string {
  return error.issues
    .map((issue) => `${issue.path.length > 0 ? issue.path.join('.') : 'value'}: ${issue.message}`)
    .join('; ');
}

/**
 * The largest record sluice reads. Its own records are well under 1 KiB; a bigger value was
 * written by hand or by something else, and counts as malformed (it never admits anyone).
 */
export const MAX_RECORD_BYTES = 64 * 1024;

/** Why a value is not a record of its schema: `message` follows the key's name; `detail` is the schema's complaint. */
export type RecordProblem = {
  kind: 'too-big' | 'not-json' | 'invalid';
  message: string;
  detail?: string;
};

/** Reads a stored value as JSON, refusing one over `MAX_RECORD_BYTES`. */
export function readJson(text: string): Result<unknown, RecordProblem> {
  if (text.length > MAX_RECORD_BYTES) {
    const message = `is ${text.length} bytes, over the ${MAX_RECORD_BYTES}-byte limit for a record`;
    return { ok: false, error: { kind: 'too-big', message } };
  }
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return { ok: false, error: { kind: 'not-json', message: 'is not valid JSON' } };
  }
}

/**
 * Parses a JSON record against its schema: the one way sluice reads the values it stores (queue
 * records, markers, registrations, history, pauses). The problem's message follows the key's
 * name: `<key> is not valid JSON`, `<key> is not a valid record: ...`.
 */
export function parseRecord<T>(schema: z.ZodType<T>, text: string): Result<T, RecordProblem> {
  const json = readJson(text);
  return json.ok ? checkRecord(schema, json.value) : json;
}

/** Checks JSON already read (`readJson`) against a record's schema. */
export function checkRecord<T>(schema: z.ZodType<T>, json: unknown): Result<T, RecordProblem> {
  const result = schema.safeParse(json);
  if (result.success) return { ok: true, value: result.data };
  const detail = describeZodError(result.error);
  return {
    ok: false,
    error: { kind: 'invalid', message: `is not a valid record: ${detail}`, detail },
  };
}
