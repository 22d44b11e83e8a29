/**
 * The fleet timeline of a real group, for `sluicectl report`: its history (finished, forced and
 * lost reboots) and what is in flight now, turned into the model that @sluice/report draws. Pure.
 *
 * A reboot's lane shows the stretches its records allow: queued (from joining the queue to the
 * grant), then, when the record kept the times it entered each state, holding, rebooting, down
 * (from the confirming write before the reboot until the agent started again after boot), booting
 * and post-checks. A record without those times shows the slot as one `holding` stretch. A lost
 * holder's slot is drawn as `lost` until an operator cleared it.
 */
import {
  type GroupSnapshot,
  groupAdmission,
  type HistoryRecord,
  lostHolders,
  type QueueRecord,
} from '@sluice/core';
import {
  compactSteps,
  describeMaxOverTime,
  downSeries,
  type FleetTimeline,
  type Lane,
  type LaneState,
  type Marker,
  mergeSegments,
  pauseShades,
  peakOf,
  type Segment,
  type Shade,
  spoken,
  wallClock,
  windowShades,
} from '@sluice/report';

/** What a report is drawn from. */
export interface ReportInput {
  group: string;
  from: number;
  to: number;
  zone: string;
  /** History records written in [from, to], any order. */
  history: readonly HistoryRecord[];
  /** The group now. */
  snapshot: GroupSnapshot;
  /** Raw values of the settings keys now (the windows key is kept as written). */
  windowsText: string | null;
  pausedText: string | null;
  /** Unreadable history records, by key. */
  errors?: readonly { key: string; message: string }[];
}

/** The times a record says its node entered each state of its slot, if it kept them. */
type Phases = Partial<Record<string, string>>;

function phasesOf(record: { phases?: unknown }): Phases {
  const p = record.phases;
  return p && typeof p === 'object' ? (p as Phases) : {};
}

const t = (iso: string | undefined | null): number | null => {
  if (!iso) return null;
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? null : ms;
};

/**
 * The stretches of one slot, from its record's times up to `end`: queued, then each state the
 * record kept the start of. `lost` ends a slot whose node never came back.
 */
function slotSegments(
  record: {
    enqueuedAt?: string | undefined;
    grantedAt?: string | undefined;
    reason?: string;
    phases?: unknown;
  },
  end: number,
  last: LaneState | null,
): Segment[] {
  const segments: Segment[] = [];
  const enqueued = t(record.enqueuedAt);
  const granted = t(record.grantedAt);
  const detail = record.reason || undefined;
  if (enqueued !== null) {
    segments.push({
      from: enqueued,
      to: granted ?? end,
      state: 'queued',
      ...(detail ? { detail } : {}),
    });
  }
  if (granted === null) return segments;
  const phases = phasesOf(record);
  const steps: [number, LaneState][] = [[granted, 'holding']];
  const map: [string, LaneState][] = [
    ['draining', 'holding'],
    ['rebooting', 'down'],
    ['recovering', 'booting'],
    ['post-checking', 'post-checks'],
    ['releasing', 'releasing'],
  ];
  for (const [state, lane] of map) {
    const at = t(phases[state]);
    if (at !== null && at >= granted) steps.push([at, lane]);
  }
  steps.sort((a, b) => a[0] - b[0]);
  if (last === 'lost') {
    // The node went down (or at least took its slot) and never came back.
    const downAt = steps.find(([, s]) => s === 'down')?.[0] ?? granted;
    const before = steps.filter(([at]) => at < downAt);
    for (const [i, [from, state]] of before.entries()) {
      segments.push({ from, to: before[i + 1]?.[0] ?? downAt, state });
    }
    segments.push({ from: downAt, to: end, state: 'lost' });
    return segments;
  }
  for (const [i, [from, state]] of steps.entries()) {
    segments.push({
      from,
      to: steps[i + 1]?.[0] ?? end,
      state,
      ...(i === 0 && detail ? { detail } : {}),
    });
  }
  return segments;
}

/** Builds the report's model. */
export function reportModel(input: ReportInput): FleetTimeline {
  const { from, to, zone, snapshot } = input;
  const lanes = new Map<string, Lane>();
  const lane = (node: string, hostname: string): Lane => {
    let l = lanes.get(node);
    if (!l) {
      l = { node, ...(hostname && hostname !== node ? { hostname } : {}), segments: [], marks: [] };
      lanes.set(node, l);
    }
    return l;
  };
  const markers: Marker[] = [];
  const counts = { released: 0, forced: 0, lost: 0, abandoned: 0, returned: 0 };
  const waits: number[] = [];

  for (const r of input.history) {
    const ended = t(r.endedAt);
    if (ended === null) continue;
    counts[r.outcome]++;
    const l = lane(r.node, r.hostname);
    l.segments.push(...slotSegments(r, ended, r.outcome === 'lost' ? 'lost' : null));
    const enqueued = t(r.enqueuedAt);
    const granted = t(r.grantedAt);
    if (enqueued !== null && granted !== null) waits.push(granted - enqueued);
    if (r.outcome === 'forced' || (r.outcome === 'lost' && r.by)) {
      markers.push({
        at: ended,
        kind: 'unlock',
        label: r.outcome === 'lost' ? `lost ${r.node} cleared` : `${r.node} released by force`,
        node: r.node,
        ...(r.by ? { by: r.by } : {}),
        ...(r.reason ? { detail: r.reason } : {}),
      });
    } else if (r.outcome === 'released' && r.by) {
      markers.push({
        at: ended,
        kind: 'unlock',
        label: `manual lock of ${r.node} released`,
        node: r.node,
        by: r.by,
        ...(r.reason ? { detail: r.reason } : {}),
      });
    } else if (r.outcome === 'abandoned') {
      l.marks?.push({ at: ended, kind: 'abandoned', label: `${r.node} gave its slot back unused` });
    }
  }

  // What is in flight now: waiters, holders and lost holders, drawn up to now.
  for (const e of snapshot.queue) {
    const record: QueueRecord | null = e.record;
    if (!record) continue;
    const l = lane(e.node, record.hostname);
    l.segments.push(...slotSegments(record, to, null));
  }
  for (const lost of lostHolders(snapshot)) {
    const l = lane(lost.node, lost.marker?.hostname ?? '');
    const granted = t(lost.marker?.grantedAt) ?? from;
    l.segments.push({ from: granted, to, state: 'lost', detail: 'lost during its reboot' });
  }

  const sorted = [...lanes.values()]
    .map((l) => ({
      ...l,
      segments: mergeSegments(
        l.segments
          .map((s) => ({ ...s, from: Math.max(s.from, from), to: Math.min(s.to, to) }))
          .filter((s) => s.to > s.from),
      ),
    }))
    .filter((l) => l.segments.length > 0)
    .sort((a, b) => (a.segments[0]?.from ?? 0) - (b.segments[0]?.from ?? 0));

  // Settings: as they stand now (their changes are not in history), drawn over the period.
  const max = snapshot.max.ok ? snapshot.max.value : 0;
  const maxSteps: [number, number][] = [[from, max]];
  const shades: Shade[] = [];
  if (input.pausedText !== null) {
    const since = t(snapshot.paused?.since) ?? from;
    shades.push(...pauseShades([{ at: since, raw: input.pausedText }], from, to));
  }
  if (!snapshot.max.ok) {
    shades.push({ from, to, kind: 'invalid', reason: snapshot.max.error.message });
  }
  shades.push(...windowShades([{ at: from, raw: input.windowsText }], from, to));
  shades.sort((a, b) => a.from - b.from);

  const down = downSeries(sorted);
  const admission = groupAdmission(snapshot, new Date(to));
  const total = counts.released + counts.forced + counts.lost + counts.abandoned + counts.returned;
  const summary = [
    `group ${input.group}: ${wallClock(from, zone)} – ${wallClock(to, zone)}`,
    `${total} slot(s) ended: ${counts.released} released, ${counts.forced} forced, ${counts.lost} lost, ${counts.returned} came back after being declared lost, ${counts.abandoned} given back unused; ${snapshot.queue.filter((e) => e.holding).length} holding and ${snapshot.queue.filter((e) => !e.holding).length} waiting now`,
    `peak nodes down at once: ${peakOf(down, from, to)} (max now ${describeMaxOverTime(compactSteps(maxSteps))}${snapshot.max.ok ? '' : ', invalid'})`,
  ];
  if (waits.length > 0) {
    const sortedWaits = [...waits].sort((a, b) => a - b);
    summary.push(
      `queue wait before a slot: median ${spoken(sortedWaits[Math.floor(sortedWaits.length / 2)]!)}, longest ${spoken(sortedWaits.at(-1)!)}`,
    );
  }
  summary.push(
    admission.blocker
      ? `now: nothing can be admitted (${admission.blocker.kind})`
      : `now: ${admission.admittable} slot(s) free`,
    'max, pauses and windows are drawn as they stand now: history does not record their changes',
  );
  const warnings = (input.errors ?? []).map(
    (e) => `unreadable history record ${e.key}: ${e.message}`,
  );
  return {
    title: `sluice group ${input.group}: reboots`,
    summary,
    startAt: from,
    endAt: to,
    zone,
    lanes: sorted,
    down,
    max: maxSteps,
    markers: markers.filter((m) => m.at >= from && m.at <= to).sort((a, b) => a.at - b.at),
    shades,
    warnings,
  };
}
