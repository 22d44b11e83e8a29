/**
 * The demo's HTML timeline: the simulator's records turned into a {@link FleetTimeline} and drawn
 * by the same renderer as `sluicectl report` (@sluice/report). Node states come from the agents'
 * etcd records as the simulator's own watcher saw them, and from the down/up times of its reboot
 * log; max, pauses (and halts) and windows from the watcher's record of those keys, whoever
 * changed them (the demo itself, or an operator with sluicectl or etcdctl in another terminal).
 * Faults the simulator caused are flagged too.
 */

import { parsePaused } from '@sluice/core';
import {
  compactSteps,
  describeMaxOverTime,
  downSeries,
  type FleetTimeline,
  invalidMaxShades,
  type Lane,
  type LaneMark,
  type LaneState,
  type Marker,
  maxSeries,
  mergeSegments,
  pauseShades,
  renderTimeline as render,
  type Segment,
  type SettingChange,
  windowShades,
} from '@sluice/report';
import type { FleetEvent } from './fleet.js';
import type { InvariantReport, RebootEntry, StageEntry } from './invariants.js';
import type { RolloutStats } from './report.js';
import { ms, secs } from './report.js';
import type { GroupTimeline } from './timeline.js';

/** What the timeline is drawn from. */
export interface TimelineInput {
  title: string;
  nodes: readonly string[];
  startAt: number;
  endAt: number;
  timeline: GroupTimeline;
  reboots: readonly RebootEntry[];
  stages: readonly StageEntry[];
  events: readonly FleetEvent[];
  stats?: RolloutStats;
  invariants?: InvariantReport;
  /** The zone wall-clock times are shown in. Default: this machine's. */
  zone?: string;
  /** Extra lines for the summary (flags of the run, say). */
  notes?: string[];
  /** Each node's failure domain, shown in its lane's label. */
  domains?: ReadonlyMap<string, string>;
}

/** A node's state at instant `t`, in the simulator's words (null: idle, nothing to draw). */
function stateAt(input: TimelineInput, node: string, t: number): LaneState | null {
  const reboots = input.reboots.filter((r) => r.node === node);
  if (reboots.some((r) => r.downAt <= t && (r.upAt === null || r.upAt > t))) return 'down';
  const records = input.timeline.records.get(node) ?? [];
  const rec = records.filter((r) => r.at <= t).at(-1);
  const lastUp = reboots.filter((r) => r.upAt !== null && r.upAt <= t).at(-1);
  switch (rec?.state) {
    case 'waiting':
      return 'queued';
    case 'holding':
    case 'draining':
      return 'holding';
    case 'rebooting':
      // The record says rebooting from the confirming write until the agent moves on after boot.
      return lastUp?.upAt && lastUp.upAt >= rec.at ? 'booting' : 'rebooting';
    case 'recovering':
      return 'booting';
    case 'post-checking':
      return 'post-checks';
    case 'releasing':
      return 'releasing';
    case undefined:
    case null:
      break;
    default:
      return 'holding';
  }
  if (lastUp) return 'updated';
  if (input.stages.some((s) => s.node === node && s.at <= t)) return 'staged';
  return null;
}

/** A node's states over [startAt, endAt] as merged segments. */
export function segmentsOf(input: TimelineInput, node: string): Segment[] {
  const points = new Set<number>([input.startAt]);
  for (const r of input.reboots) {
    if (r.node !== node) continue;
    points.add(r.downAt);
    if (r.upAt !== null) points.add(r.upAt);
  }
  for (const rec of input.timeline.records.get(node) ?? []) points.add(rec.at);
  for (const s of input.stages) if (s.node === node) points.add(s.at);
  const sorted = [...points]
    .filter((p) => p >= input.startAt && p < input.endAt)
    .sort((a, b) => a - b);
  const segments: Segment[] = [];
  for (const [i, from] of sorted.entries()) {
    const state = stateAt(input, node, from);
    if (state) segments.push({ from, to: sorted[i + 1] ?? input.endAt, state });
  }
  return mergeSegments(segments);
}

/** Kinds of the simulator's own events that are flagged on the chart, by FleetEvent kind. */
const FAULTS = new Set([
  'etcd-down',
  'etcd-up',
  'etcd-kill',
  'etcd-start',
  'etcd-member-kill',
  'etcd-member-start',
]);

/** The flags: changes of max, pauses, resumes, halts and windows as the watcher saw them; faults. */
function markersOf(input: TimelineInput): Marker[] {
  const t = input.timeline;
  const markers: Marker[] = [];
  const within = (at: number) => at > input.startAt && at <= input.endAt;
  let previous = t.maxChanges[0]?.raw ?? null;
  for (const c of t.maxChanges.slice(1)) {
    const from = previous ?? 'unset (1)';
    previous = c.raw;
    if (!within(c.at)) continue;
    markers.push({ at: c.at, kind: 'max', label: `max ${from} → ${c.raw ?? 'unset (1)'}` });
  }
  for (const c of t.pausedChanges.slice(1)) {
    if (!within(c.at)) continue;
    if (c.raw === null) {
      markers.push({ at: c.at, kind: 'resume', label: 'resumed' });
      continue;
    }
    const pause = parsePaused(c.raw);
    const halt = pause?.by === 'sluice';
    markers.push({
      at: c.at,
      kind: halt ? 'halt' : 'pause',
      label: halt ? 'halted' : 'paused',
      ...(pause?.by && !halt ? { by: pause.by } : {}),
      detail: pause?.reason ?? c.raw,
    });
  }
  for (const c of t.windowChanges.slice(1)) {
    if (!within(c.at)) continue;
    markers.push({
      at: c.at,
      kind: 'windows',
      label: c.raw === null ? 'windows cleared' : 'windows set',
      ...(c.raw !== null ? { detail: c.raw } : {}),
    });
  }
  for (const e of input.events) {
    if (!within(e.at)) continue;
    if (FAULTS.has(e.kind)) {
      markers.push({
        at: e.at,
        kind: 'fault',
        label: e.kind,
        ...(e.detail ? { detail: e.detail } : {}),
        ...(e.node ? { node: e.node } : {}),
      });
    } else if (e.kind === 'rollout-done') {
      markers.push({ at: e.at, kind: 'rollout', label: `rollout of ${e.detail ?? ''} done` });
    }
  }
  return markers.sort((a, b) => a.at - b.at);
}

/** Builds the page model from the simulator's records. */
export function timelineModel(input: TimelineInput): FleetTimeline {
  const zone = input.zone ?? Intl.DateTimeFormat().resolvedOptions().timeZone;
  const lanes: Lane[] = input.nodes.map((node) => {
    const marks: LaneMark[] = input.events
      .filter((e) => e.node === node && e.kind === 'agent-kill')
      .map((e) => ({ at: e.at, kind: 'agent-kill', label: `agent SIGKILLed ${e.detail ?? ''}` }));
    const domain = input.domains?.get(node);
    return { node, ...(domain ? { domain } : {}), segments: segmentsOf(input, node), marks };
  });
  const t = input.timeline;
  const settings = (changes: readonly { at: number; raw: string | null }[]): SettingChange[] =>
    changes.map((c) => ({ at: c.at, raw: c.raw }));
  const max = compactSteps(maxSeries(settings(t.maxChanges)));
  const { startAt, endAt } = input;
  const shades = [
    ...pauseShades(settings(t.pausedChanges), startAt, endAt),
    ...invalidMaxShades(settings(t.maxChanges), startAt, endAt),
    ...windowShades(settings(t.windowChanges), startAt, endAt),
  ].sort((a, b) => a.from - b.from);

  const summary: string[] = [...(input.notes ?? [])];
  const s = input.stats;
  if (s) {
    summary.push(
      `rollout: ${secs(s.makespanMs)} (ideal ceil(${s.nodes}/${s.max}) × ${s.rebootSeconds} s = ${secs(s.idealMs)}, efficiency ${(s.efficiency * 100).toFixed(0)} %)`,
      `peak nodes down at once: ${s.peakDown} (max ${describeMaxOverTime(max)})`,
      `etcd writes per reboot: ${s.revisionsPerReboot?.toFixed(1) ?? '-'} revisions, ${s.proposalsPerReboot?.toFixed(1) ?? '-'} raft proposals`,
      `handoff (release → next admission): p50 ${ms(s.handoffs.admission.p50)}, p99 ${ms(s.handoffs.admission.p99)}`,
    );
  }
  const warnings: string[] = [];
  const inv = input.invariants;
  if (inv) {
    if (inv.ok) summary.push(`invariants: all hold (${inv.reboots} reboots)`);
    else warnings.push(...inv.violations.map((v) => `invariant VIOLATED: ${v.message}`));
  }
  return {
    title: input.title,
    summary,
    startAt,
    endAt,
    zone,
    lanes,
    down: downSeries(lanes),
    max,
    markers: markersOf(input),
    shades,
    warnings,
  };
}

/** Renders the demo's timeline as one HTML document. */
export function renderTimeline(input: TimelineInput): string {
  return render(timelineModel(input));
}
