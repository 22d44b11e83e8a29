/**
 * Figures about a finished rollout, from the simulator's records: how long it took against the
 * ideal, how many nodes were down at once, what it cost etcd, and how fast a slot changed hands.
 */
import { cpuSeconds, type EtcdCluster } from '@sluice/testkit';
import type { RebootEntry } from './invariants.js';
import type { GroupTimeline } from './timeline.js';

/** etcd counters at one moment. Missing metrics (a member down) are null. */
export interface EtcdCounters {
  at: number;
  /** The store revision: it grows by one per put, delete or txn that changes something. */
  revision: number;
  /** Raft proposals committed: every write, including lease grants and revokes. */
  proposals: number | null;
  /** Watch events etcd sent to watchers (`etcd_debugging_mvcc_events_total`), every member. */
  watchEvents: number | null;
  /** CPU seconds the etcd processes have used (user plus system, from /proc). */
  cpuSeconds: number | null;
}

/**
 * Reads the revision (through `revision()`), the first running member's proposal counter, and the
 * watch-event and CPU counters of every running member.
 */
export async function sampleEtcd(
  etcd: EtcdCluster,
  revision: () => Promise<number>,
): Promise<EtcdCounters> {
  const rev = await revision();
  let proposals: number | null = null;
  let watchEvents: number | null = 0;
  let cpu: number | null = 0;
  for (const [i, member] of etcd.members.entries()) {
    if (!member.running) continue;
    proposals ??= await etcd.metric('etcd_server_proposals_committed_total', i).catch(() => null);
    const events = await etcd.metric('etcd_debugging_mvcc_events_total', i).catch(() => null);
    watchEvents = events === null || watchEvents === null ? null : watchEvents + events;
    const pid = member.pid;
    cpu = pid === undefined || cpu === null ? null : cpu + cpuSeconds(pid);
  }
  return { at: Date.now(), revision: rev, proposals, watchEvents, cpuSeconds: cpu };
}

/** p50, p99 and max of a sample, in the sample's unit. */
export interface Percentiles {
  count: number;
  p50: number | null;
  p99: number | null;
  max: number | null;
}

/** Nearest-rank percentiles. */
export function percentiles(values: readonly number[]): Percentiles {
  if (values.length === 0) return { count: 0, p50: null, p99: null, max: null };
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p: number) =>
    sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]!;
  return { count: sorted.length, p50: rank(0.5), p99: rank(0.99), max: sorted.at(-1)! };
}

/** Handoff latencies, in ms, from the agents' own transition times (one clock: this host's). */
export interface Handoffs {
  /** A node released its slot while others waited → the next node was admitted. */
  admission: Percentiles;
  /** The same release → the next logind Reboot call. */
  reboot: Percentiles;
}

/** One agent transition, as the fleets record them. */
export interface TransitionRecord {
  at: number;
  node: string;
  to: string;
  edge: string;
}

/**
 * For every release (an agent's `released` edge) while other agents were queued and the group
 * was not paused: how long until the next admission (an `admitted` edge), and until the next
 * Reboot call.
 */
export function handoffs(
  transitions: readonly TransitionRecord[],
  reboots: readonly RebootEntry[],
  timeline: GroupTimeline,
): Handoffs {
  const admission: number[] = [];
  const reboot: number[] = [];
  const sorted = [...transitions].sort((a, b) => a.at - b.at);
  const admissions = sorted.filter((t) => t.edge === 'admitted').map((t) => t.at);
  const downs = reboots.map((r) => r.downAt).sort((a, b) => a - b);
  const paused = (at: number) => {
    let raw: string | null = null;
    for (const change of timeline.pausedChanges) if (change.at <= at) raw = change.raw;
    return raw !== null;
  };
  const state = new Map<string, string>();
  let queued = 0;
  for (const t of sorted) {
    if (state.get(t.node) === 'queued') queued--;
    if (t.to === 'queued') queued++;
    state.set(t.node, t.to);
    if (t.edge !== 'released' || queued === 0 || paused(t.at)) continue;
    const next = admissions[upperBound(admissions, t.at - 1, (a) => a)];
    if (next !== undefined) admission.push(next - t.at);
    const down = downs[upperBound(downs, t.at - 1, (d) => d)];
    if (down !== undefined) reboot.push(down - t.at);
  }
  return { admission: percentiles(admission), reboot: percentiles(reboot) };
}

/** The index of the first element whose key is above `value`, in an array sorted by key. */
function upperBound<T>(sorted: readonly T[], value: number, key: (item: T) => number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (key(sorted[mid]!) <= value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Where a slot's time goes, in ms: from admission to the Reboot call (checks, drain, the
 * confirming write), the machine down, and from boot to release (the agent starting, recovering,
 * post-checks). Only the middle one is in the ideal makespan.
 */
export interface SlotPhases {
  beforeReboot: Percentiles;
  down: Percentiles;
  afterBoot: Percentiles;
}

/** Pairs each reboot with the slot it rebooted under (the node's marker around its Reboot call). */
export function slotPhases(reboots: readonly RebootEntry[], timeline: GroupTimeline): SlotPhases {
  const before: number[] = [];
  const down: number[] = [];
  const after: number[] = [];
  for (const r of reboots) {
    const slot = timeline.markers.find(
      (m) => m.node === r.node && m.createdAt <= r.downAt && (m.deletedAt ?? Infinity) >= r.downAt,
    );
    if (r.upAt !== null) down.push(r.upAt - r.downAt);
    if (!slot) continue;
    before.push(r.downAt - slot.createdAt);
    if (r.upAt !== null && slot.deletedAt !== null) after.push(slot.deletedAt - r.upAt);
  }
  return {
    beforeReboot: percentiles(before),
    down: percentiles(down),
    afterBoot: percentiles(after),
  };
}

/** The headline figures of a rollout. */
export interface RolloutStats {
  nodes: number;
  max: number;
  rebootSeconds: number;
  /** From the first staged update to the last slot released. */
  makespanMs: number;
  /** ceil(nodes / max) × reboot time: every slot busy with nothing but reboots. */
  idealMs: number;
  /** ideal / makespan. */
  efficiency: number;
  peakDown: number;
  reboots: number;
  /** Store revisions per reboot (puts, deletes and txns that changed something). */
  revisionsPerReboot: number | null;
  /** Raft proposals per reboot (those plus lease grants and revokes). */
  proposalsPerReboot: number | null;
  /** Watch events etcd sent per reboot, over every watcher. */
  watchEventsPerReboot: number | null;
  /** CPU seconds etcd used per reboot. */
  etcdCpuSecondsPerReboot: number | null;
  handoffs: Handoffs;
  phases: SlotPhases;
}

/**
 * The group's watch events per reboot by kind of key: what one watch of the whole group (each
 * waiting agent's, the simulator's timeline) receives for each reboot of the rollout.
 */
export interface GroupEventsPerReboot {
  total: number;
  /** `<kind> <put|delete>` (queue put, holding delete, nodes put, ...) to events per reboot. */
  byKind: Record<string, number>;
}

/** Counts the timeline's events from `since` (ms) on, per reboot, by kind of key. */
export function groupEventsPerReboot(
  timeline: GroupTimeline,
  reboots: number,
  since: number,
): GroupEventsPerReboot | null {
  if (reboots === 0) return null;
  const root = timeline.keys.root;
  const counts: Record<string, number> = {};
  let total = 0;
  for (const e of timeline.events) {
    if (e.at < since) continue;
    const rest = e.key.startsWith(root) ? e.key.slice(root.length) : e.key;
    const kind = `${rest.includes('/') ? rest.slice(0, rest.indexOf('/')) : rest} ${e.type}`;
    counts[kind] = (counts[kind] ?? 0) + 1;
    total++;
  }
  const byKind: Record<string, number> = {};
  for (const [kind, n] of Object.entries(counts).sort((a, b) => b[1] - a[1])) {
    byKind[kind] = Number((n / reboots).toFixed(2));
  }
  return { total: Number((total / reboots).toFixed(2)), byKind };
}

/** How much a counter grew per reboot, or null without reboots or without the counter. */
function perReboot(reboots: number, before: number | null, after: number | null): number | null {
  return reboots > 0 && before !== null && after !== null ? (after - before) / reboots : null;
}

/** Computes the figures of a rollout from its records. */
export function rolloutStats(input: {
  nodes: number;
  max: number;
  rebootSeconds: number;
  startAt: number;
  timeline: GroupTimeline;
  reboots: readonly RebootEntry[];
  transitions: readonly TransitionRecord[];
  peakDown: number;
  before: EtcdCounters;
  after: EtcdCounters;
}): RolloutStats {
  const releases = input.timeline.markers
    .map((m) => m.deletedAt)
    .filter((at): at is number => at !== null);
  const end = Math.max(input.startAt, ...releases);
  const idealMs = Math.ceil(input.nodes / Math.max(1, input.max)) * input.rebootSeconds * 1000;
  const n = input.reboots.length;
  const { before, after } = input;
  return {
    nodes: input.nodes,
    max: input.max,
    rebootSeconds: input.rebootSeconds,
    makespanMs: end - input.startAt,
    idealMs,
    efficiency: end > input.startAt ? idealMs / (end - input.startAt) : 0,
    peakDown: input.peakDown,
    reboots: n,
    revisionsPerReboot: perReboot(n, before.revision, after.revision),
    proposalsPerReboot: perReboot(n, before.proposals, after.proposals),
    watchEventsPerReboot: perReboot(n, before.watchEvents, after.watchEvents),
    etcdCpuSecondsPerReboot: perReboot(n, before.cpuSeconds, after.cpuSeconds),
    handoffs: handoffs(input.transitions, input.reboots, input.timeline),
    phases: slotPhases(input.reboots, input.timeline),
  };
}

/** Seconds with one decimal. */
export const secs = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

/** Milliseconds, or a dash. */
export const ms = (value: number | null): string =>
  value === null ? '-' : `${Math.round(value)} ms`;
