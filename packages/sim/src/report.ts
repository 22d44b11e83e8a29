/**
 * Figures about a finished rollout, from the simulator's records: how long it took against the
 * ideal, how many nodes were down at once, what it cost etcd, and how fast a slot changed hands.
 */
import type { EtcdCluster } from '@sluice/testkit';
import type { RebootEntry } from './invariants.js';
import type { GroupTimeline } from './timeline.js';

/** etcd counters at one moment. Missing metrics (a member down) are null. */
export interface EtcdCounters {
  at: number;
  /** The store revision: it grows by one per put, delete or txn that changes something. */
  revision: number;
  /** Raft proposals committed: every write, including lease grants and revokes. */
  proposals: number | null;
}

/** Reads the revision (through `revision()`) and member 0's proposal counter. */
export async function sampleEtcd(
  etcd: EtcdCluster,
  revision: () => Promise<number>,
): Promise<EtcdCounters> {
  const rev = await revision();
  let proposals: number | null = null;
  for (let i = 0; i < etcd.members.length && proposals === null; i++) {
    if (!etcd.members[i]!.running) continue;
    proposals = await etcd.metric('etcd_server_proposals_committed_total', i).catch(() => null);
  }
  return { at: Date.now(), revision: rev, proposals };
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

/** Handoff latencies, in ms, measured on the simulator's own watcher. */
export interface Handoffs {
  /** A release (marker deleted) while others waited → the next admission (marker created). */
  admission: Percentiles;
  /** The same release → the next logind Reboot call. */
  reboot: Percentiles;
}

/**
 * For every release that happened while nodes waited and the group was not paused: how long until
 * the next node was admitted, and until the next Reboot call.
 */
export function handoffs(timeline: GroupTimeline, reboots: readonly RebootEntry[]): Handoffs {
  const admission: number[] = [];
  const reboot: number[] = [];
  // Every record state change in revision order, to know how many waited at each release.
  const changes: { revision: number; node: string; state: string | null }[] = [];
  for (const [node, states] of timeline.records) {
    for (const s of states) changes.push({ revision: s.revision, node, state: s.state });
  }
  changes.sort((a, b) => a.revision - b.revision);
  const created = [...timeline.markers].sort((a, b) => a.createdRevision - b.createdRevision);
  const downs = reboots.map((r) => r.downAt).sort((a, b) => a - b);
  const releases = timeline.markers
    .filter((m) => m.deletedRevision !== null && m.deletedAt !== null)
    .sort((a, b) => a.deletedRevision! - b.deletedRevision!);
  const state = new Map<string, string | null>();
  let waiting = 0;
  let c = 0;
  for (const release of releases) {
    const rev = release.deletedRevision!;
    for (; c < changes.length && changes[c]!.revision <= rev; c++) {
      const { node, state: next } = changes[c]!;
      if (state.get(node) === 'waiting') waiting--;
      if (next === 'waiting') waiting++;
      state.set(node, next);
    }
    if (waiting === 0 || timeline.pausedAt(rev) !== null) continue;
    const next = created[upperBound(created, rev, (m) => m.createdRevision)];
    if (next) admission.push(next.createdAt - release.deletedAt!);
    const down = downs[upperBound(downs, release.deletedAt! - 1, (d) => d)];
    if (down !== undefined) reboot.push(down - release.deletedAt!);
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
  handoffs: Handoffs;
}

/** Computes the figures of a rollout from its records. */
export function rolloutStats(input: {
  nodes: number;
  max: number;
  rebootSeconds: number;
  startAt: number;
  timeline: GroupTimeline;
  reboots: readonly RebootEntry[];
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
    revisionsPerReboot: n > 0 ? (after.revision - before.revision) / n : null,
    proposalsPerReboot:
      n > 0 && after.proposals !== null && before.proposals !== null
        ? (after.proposals - before.proposals) / n
        : null,
    handoffs: handoffs(input.timeline, input.reboots),
  };
}

/** Seconds with one decimal. */
export const secs = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

/** Milliseconds, or a dash. */
export const ms = (value: number | null): string =>
  value === null ? '-' : `${Math.round(value)} ms`;
