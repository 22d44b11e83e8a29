/**
 * The operator's view of a group, as `sluicectl status` prints it and `-o json` emits it. Built
 * from a snapshot plus the seconds left on each holder's lease; pure.
 */

import { type Blocker, describeBlocker, groupAdmission } from './admission.js';
import { blackoutAt, describeBlackout, formatBlackouts } from './blackouts.js';
import { canaryProgress } from './canary.js';
import { domainHolders } from './domains.js';
import { formatDuration } from './duration.js';
import { FLEETLOCK_CLIENT, FLEETLOCK_TOKEN, type NodeState, requestExpired } from './records.js';
import { canaryInputs, type GroupSnapshot, lostHolders } from './snapshot.js';
import { formatWindowSpec, windowStateAll } from './window.js';

/**
 * One holder of a slot. Lost holders appear with state `lost`, slots recorded from locksmith's
 * semaphore (`sluicectl migrate-locksmith`) with state `migrated`.
 */
export interface HolderStatus {
  node: string;
  hostname: string;
  state: NodeState | 'lost' | 'migrated' | 'unknown';
  since: string | null;
  /** Seconds left on the hold lease; null when unknown or lost. */
  leaseSecondsLeft: number | null;
  reason: string;
  /** The revision of the admission txn: the slot's fencing token. */
  grantedRevision: number | null;
  /** What keeps the holder from finishing (failing post-reboot checks, say); null if nothing. */
  problem: string | null;
  /**
   * True for a holder beyond max (in queue order): admitted before max was lowered, it finishes
   * and drains, and nobody new is admitted meanwhile.
   */
  aboveMax: boolean;
  /** `fleetlock` for a FleetLock client served by sluice-fleetlock; null for an agent. */
  client: 'fleetlock' | null;
  /** The holder's failure domain (`node.domain`); null when it has none. */
  domain: string | null;
}

/** One node waiting for a slot. */
export interface WaiterStatus {
  node: string;
  hostname: string;
  /** 1-based position among waiters. */
  position: number;
  since: string | null;
  reason: string;
  /** `fleetlock` for a FleetLock client served by sluice-fleetlock; null for an agent. */
  client: 'fleetlock' | null;
  /**
   * Why this waiter is held back on its own, null otherwise: its failure domain is full (nodes of
   * other domains may pass it), or its expected slot does not fit before the group's window
   * closes (it is asked again when the next window opens).
   */
  heldBack: string | null;
  /** The waiter's failure domain (`node.domain`); null when it has none. */
  domain: string | null;
}

/** A pending reboot request (from `sluicectl request-reboot`) that has not expired. */
export interface RequestStatus {
  node: string;
  reason: string;
  by: string;
  requestedAt: string;
  /** When the request lapses; null for requests written without an expiry. */
  expiresAt: string | null;
}

/**
 * Where a group's canary stands: `waiting` (no version canaried yet), `rebooting` (seats taken,
 * canaries in their slots), `soaking` (all back, the soak running), `done` (soaked; the version is
 * proven), or `failed` (a canary failed: nobody goes until `sluicectl canary reset` or `skip`).
 */
export const CANARY_PHASES = ['waiting', 'rebooting', 'soaking', 'done', 'failed'] as const;

/** The canary part of a group's status (`canary` in `sluicectl status -o json`). */
export interface CanaryStatus {
  count: number;
  soak: string;
  phase: (typeof CANARY_PHASES)[number];
  /** The version being canaried; null before the first. */
  version: string | null;
  seated: string[];
  back: string[];
  failed: { node: string; why: string }[];
  /** When the soak ends (or ended), once every canary is back. */
  soakEndsAt: string | null;
  /** Versions proven before, newest last. */
  done: string[];
}

function canaryStatus(snapshot: GroupSnapshot, now: Date): CanaryStatus | null {
  if (!snapshot.canary.ok || !snapshot.canary.value) return null;
  const { count, soakMs } = snapshot.canary.value;
  const base = { count, soak: formatDuration(soakMs) };
  const progress = canaryProgress(canaryInputs(snapshot), now);
  if (!progress) {
    const empty = { version: null, seated: [], back: [], failed: [], soakEndsAt: null, done: [] };
    return { ...base, phase: 'waiting', ...empty };
  }
  const phase: CanaryStatus['phase'] =
    progress.failed.length > 0
      ? 'failed'
      : progress.settled
        ? 'done'
        : progress.soakEndsAt
          ? 'soaking'
          : progress.seated.length > 0
            ? 'rebooting'
            : 'waiting';
  return {
    ...base,
    phase,
    version: progress.version,
    seated: progress.seated,
    back: progress.back,
    failed: progress.failed,
    soakEndsAt: progress.soakEndsAt?.toISOString() ?? null,
    done: [...progress.done],
  };
}

/** The status of one group: the shape of `sluicectl status -o json`. */
export interface GroupStatus {
  group: string;
  /** null when the max key does not parse (see errors). */
  max: number | null;
  /**
   * Slots a waiter could take right now: 0 whenever anything blocks admission (a pause, a halt,
   * an invalid value, a closed window), not only when every slot is taken.
   */
  available: number;
  /** Why nothing (more) can be admitted now, with the same text agents log; null when a slot is free. */
  blocker: (Blocker & { message: string }) | null;
  /** Holders beyond max, admitted before it was lowered (they drain). */
  holdersOverMax: number;
  /** `domain-max`: holders allowed per failure domain; null when unset or invalid (see errors). */
  domainMax: number | null;
  /** Under domain-max: each failure domain with a holder or a waiter, and its holders. */
  domains: { domain: string; holders: number; waiting: number; full: boolean }[];
  /** The group's canary (`groups/<g>/canary`), and where the current one stands; null without one. */
  canary: CanaryStatus | null;
  /**
   * While holders are above max: max before its last change, as etcd's history of the key has it
   * (null when that revision was compacted away, or the key was absent before).
   */
  maxBefore: number | null;
  paused: { reason: string; since: string | null; by: string | null } | null;
  /**
   * The group's window: `spec` as stored in etcd, `canonical` as the agents read it (every entry
   * with its zone; null when there is none or it does not parse).
   */
  window: {
    open: boolean;
    nextChange: string | null;
    spec: string | null;
    canonical: string | null;
    /** The group's blackouts (`groups/<g>/blackouts`) in canonical form; null when none. */
    blackouts: string | null;
    /** The blackout in force now, as one canonical entry; null when none is. */
    blackout: string | null;
  };
  holders: HolderStatus[];
  waiting: WaiterStatus[];
  /** How many agents are registered (`nodes/`): live agents of the group. */
  registered: number;
  /**
   * Nodes whose agent cannot take part: a second live agent with the node id (a cloned machine),
   * or a registered agent that reports a problem (its clock is off, say).
   */
  nodeProblems: { node: string; hostname: string; problem: string }[];
  /** Pending reboot requests, by node. */
  requests: RequestStatus[];
  errors: { key: string; message: string }[];
  revision: number;
}

/** Builds the status of a group. `leaseSecondsLeft` maps lease ids to their remaining TTL. */
export function groupStatus(
  snapshot: GroupSnapshot,
  now: Date,
  leaseSecondsLeft: ReadonlyMap<string, number> = new Map(),
  windowText: string | null = null,
): GroupStatus {
  const holders: HolderStatus[] = [];
  const waiting: WaiterStatus[] = [];
  const markers = new Map(snapshot.holding.map((h) => [h.node, h]));
  const domainTaken = domainHolders(snapshot.holding).inDomain;
  for (const entry of snapshot.queue) {
    const record = entry.record;
    if (entry.holding || (record && record.state !== 'waiting')) {
      holders.push({
        node: entry.node,
        hostname: record?.hostname ?? '',
        state: record?.state ?? 'unknown',
        since: record?.since ?? null,
        leaseSecondsLeft: leaseSecondsLeft.get(entry.lease) ?? null,
        reason: record?.reason ?? '',
        grantedRevision: markers.get(entry.node)?.createRevision ?? null,
        problem: record?.problem ?? null,
        aboveMax: false,
        client: record?.client ?? null,
        domain: markers.get(entry.node)?.marker?.domain ?? record?.domain ?? null,
      });
    } else {
      waiting.push({
        node: entry.node,
        hostname: record?.hostname ?? '',
        position: waiting.length + 1,
        since: record?.since ?? null,
        reason: record?.reason ?? '',
        client: record?.client ?? null,
        heldBack:
          domainFull(snapshot, record?.domain, domainTaken) ??
          slotTooLong(snapshot, record?.expectedSlotMs, now),
        domain: record?.domain ?? null,
      });
    }
  }
  for (const slot of snapshot.holding.filter((h) => h.migrated)) {
    holders.push({
      node: slot.node,
      hostname: slot.marker?.hostname ?? '',
      state: 'migrated',
      since: slot.marker?.grantedAt ?? null,
      leaseSecondsLeft: null,
      reason: "held in locksmith's semaphore when it was migrated",
      grantedRevision: slot.createRevision,
      problem: null,
      aboveMax: false,
      client: null,
      domain: null,
    });
  }
  for (const lost of lostHolders(snapshot)) {
    holders.push({
      node: lost.node,
      hostname: lost.marker?.hostname ?? '',
      state: 'lost',
      since: lost.marker?.grantedAt ?? null,
      leaseSecondsLeft: null,
      reason: lost.marker?.manual
        ? (lost.marker.reason ?? '')
        : 'hold lease expired without a release',
      grantedRevision: lost.createRevision,
      problem: lost.marker?.manual
        ? 'manual lock expired: its hold lease ran out without sluicectl unlock'
        : 'lost during its reboot: the hold lease expired without a release',
      aboveMax: false,
      client: lost.marker?.token === FLEETLOCK_TOKEN ? FLEETLOCK_CLIENT : null,
      domain: lost.marker?.domain ?? null,
    });
  }
  const admission = groupAdmission(snapshot, now);
  if (snapshot.max.ok) {
    // Holders in the order they joined the queue: the last ones beyond max are those above it.
    const ordered = [...holders].sort(
      (a, b) =>
        (a.grantedRevision ?? Number.MAX_SAFE_INTEGER) -
        (b.grantedRevision ?? Number.MAX_SAFE_INTEGER),
    );
    for (const h of ordered.slice(snapshot.max.value)) h.aboveMax = true;
  }
  const max = snapshot.max.ok ? snapshot.max.value : null;
  const none = { spec: windowText, canonical: null, blackouts: null, blackout: null };
  let window: GroupStatus['window'] = { open: true, nextChange: null, ...none };
  if (!snapshot.windows.ok) {
    window = { open: false, nextChange: null, ...none };
  } else if (snapshot.windows.value) {
    const spec = snapshot.windows.value;
    const state = windowStateAll([spec], now);
    const off = spec.blackouts ?? [];
    const current = blackoutAt(off, now);
    window = {
      open: state.open,
      nextChange: state.nextChange?.toISOString() ?? null,
      spec: windowText,
      canonical: windowText === null ? null : formatWindowSpec(spec),
      blackouts: off.length > 0 ? formatBlackouts(off) : null,
      blackout: current ? describeBlackout(current) : null,
    };
  }
  return {
    group: snapshot.group,
    max,
    available: admission.admittable,
    blocker: admission.blocker
      ? { ...admission.blocker, message: describeBlocker(admission.blocker) }
      : null,
    holdersOverMax: admission.overMax,
    maxBefore: null,
    domainMax: snapshot.domainMax.ok ? snapshot.domainMax.value : null,
    domains: domainsOf(snapshot, holders, waiting),
    canary: canaryStatus(snapshot, now),
    paused: snapshot.paused
      ? { reason: snapshot.paused.reason, since: snapshot.paused.since, by: snapshot.paused.by }
      : null,
    window,
    holders,
    waiting,
    registered: snapshot.nodes.size,
    nodeProblems: nodeProblems(snapshot),
    requests: [...snapshot.requests]
      .filter(([, r]) => !requestExpired(r, now))
      .map(([node, r]) => ({
        node,
        reason: r.reason,
        by: r.by,
        requestedAt: r.requestedAt,
        expiresAt: r.expiresAt ?? null,
      }))
      .sort((a, b) => a.node.localeCompare(b.node)),
    errors: snapshot.errors,
    revision: snapshot.revision,
  };
}

/** Registered agents that report a problem, and second agents with a node id already taken. */
function nodeProblems(snapshot: GroupSnapshot): GroupStatus['nodeProblems'] {
  const problems: GroupStatus['nodeProblems'] = [];
  for (const [node, reg] of snapshot.nodes) {
    if (reg.problem) problems.push({ node, hostname: reg.hostname, problem: reg.problem });
  }
  for (const [node, twin] of snapshot.conflicts) {
    const holder = snapshot.nodes.get(node);
    problems.push({
      node,
      hostname: twin.hostname,
      problem: `a second agent with this node id (hostname ${twin.hostname || 'unknown'}, boot id ${twin.bootId || 'unknown'}) stays out: ${twin.problem ?? 'node id taken'}${holder ? `; registered: hostname ${holder.hostname || 'unknown'}, boot id ${holder.bootId || 'unknown'}` : ''}`,
    });
  }
  return problems.sort((a, b) => a.node.localeCompare(b.node));
}

/** Why a waiter's failure domain keeps it back (domain-max holders in it already), or null. */
function domainFull(
  snapshot: GroupSnapshot,
  domain: string | undefined,
  inDomain: (domain: string) => number,
): string | null {
  const limit = snapshot.domainMax.ok ? snapshot.domainMax.value : null;
  if (limit === null || domain === undefined) return null;
  const taken = inDomain(domain);
  if (taken < limit) return null;
  return `its failure domain ${domain} has ${taken} of ${limit} slot(s) taken (domain-max); nodes of other domains may pass it, and it keeps its place`;
}

/** The failure domains with a holder or a waiter, under domain-max; empty without it. */
function domainsOf(
  snapshot: GroupSnapshot,
  holders: readonly HolderStatus[],
  waiting: readonly WaiterStatus[],
): GroupStatus['domains'] {
  const limit = snapshot.domainMax.ok ? snapshot.domainMax.value : null;
  if (limit === null) return [];
  const { inDomain } = domainHolders(snapshot.holding);
  const names = new Set<string>();
  for (const n of [...holders, ...waiting]) if (n.domain !== null) names.add(n.domain);
  return [...names].sort().map((domain) => ({
    domain,
    holders: inDomain(domain),
    waiting: waiting.filter((w) => w.domain === domain).length,
    full: inDomain(domain) >= limit,
  }));
}

/** Why a waiter's expected slot does not fit before the group's window closes, or null. */
function slotTooLong(
  snapshot: GroupSnapshot,
  expected: number | undefined,
  now: Date,
): string | null {
  if (!expected || !snapshot.windows.ok || !snapshot.windows.value) return null;
  const state = windowStateAll([snapshot.windows.value], now);
  if (!state.open || !state.nextEnd || now.getTime() + expected <= state.nextEnd.getTime())
    return null;
  return `its slot (expected ${formatDuration(expected)}) does not fit before the window closes at ${state.nextEnd.toISOString()}`;
}
