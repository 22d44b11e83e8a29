/**
 * The fleet timeline of a real group, for `sluicectl report`: its history (finished, forced and
 * lost reboots) and what is in flight now, turned into the model that @sluice/report draws. Pure.
 *
 * A reboot's lane shows the stretches its records allow: queued (from joining the queue to the
 * grant), then, when the record kept the times it entered each state, holding, rebooting, down
 * (from the confirming write before the reboot until the agent started again after boot), booting
 * and post-checks. A record without those times shows the slot as one `holding` stretch. A lost
 * holder's slot is drawn as `lost` until an operator cleared it.
 *
 * Operator actions in history become numbered markers, and give max, pauses (and halts) and the
 * window over time: each change's old value says what held before it. Without any recorded
 * change in the period, a setting is drawn as it stands now.
 */
import {
  type ActionRecord,
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
  invalidMaxShades,
  type Lane,
  type LaneState,
  type Marker,
  maxSeries,
  mergeSegments,
  pauseShades,
  peakOf,
  type Segment,
  type SettingChange,
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
  /** Reboot records written in [from, to], any order. */
  history: readonly HistoryRecord[];
  /** Operator actions recorded in [from, to], any order. */
  actions?: readonly ActionRecord[];
  /** The group now. */
  snapshot: GroupSnapshot;
  /** Raw values of the settings keys now (the windows key is kept as written). */
  windowsText: string | null;
  pausedText: string | null;
  maxText: string | null;
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

  // Settings over time, from the recorded changes; the value now where nothing was recorded.
  const actions = [...(input.actions ?? [])].sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
  for (const a of actions) {
    const at = t(a.at);
    if (at !== null) markers.push(actionMarker(a, at));
  }
  const maxChanges = settingOverTime(
    actions.filter((a) => a.action === 'set-max'),
    from,
    input.maxText,
    (a) => ({ before: a.old ?? null, after: a.new ?? null }),
  );
  const pauses = actions.filter((a) => ['pause', 'resume', 'halt'].includes(a.action));
  const pauseChanges = settingOverTime(pauses, from, input.pausedText, (a) => ({
    before: a.action === 'resume' ? (a.old ?? JSON.stringify({ reason: a.reason ?? '' })) : null,
    after:
      a.action === 'resume'
        ? null
        : JSON.stringify({ reason: a.reason ?? '', by: a.by, since: a.at }),
  }));
  // A pause recorded before the period (or written with etcdctl) that still holds: from its time.
  if (pauses.length === 0 && input.pausedText !== null) {
    const since = t(snapshot.paused?.since);
    if (since !== null && since > from)
      pauseChanges.splice(0, 1, { at: from, raw: null }, { at: since, raw: input.pausedText });
  }
  const windowChanges = settingOverTime(
    actions.filter((a) => a.action === 'windows-set' || a.action === 'windows-clear'),
    from,
    input.windowsText,
    (a) => ({ before: a.old ?? null, after: a.new ?? null }),
  );
  const maxSteps = compactSteps(maxSeries(maxChanges));
  const shades: Shade[] = [
    ...pauseShades(pauseChanges, from, to),
    ...invalidMaxShades(maxChanges, from, to),
    ...windowShades(windowChanges, from, to),
  ];
  shades.sort((a, b) => a.from - b.from);

  const down = downSeries(sorted);
  const admission = groupAdmission(snapshot, new Date(to));
  const total = counts.released + counts.forced + counts.lost + counts.abandoned + counts.returned;
  const summary = [
    `group ${input.group}: ${wallClock(from, zone)} – ${wallClock(to, zone)}`,
    `${total} slot(s) ended: ${counts.released} released, ${counts.forced} forced, ${counts.lost} lost, ${counts.returned} came back after being declared lost, ${counts.abandoned} given back unused; ${snapshot.queue.filter((e) => e.holding).length} holding and ${snapshot.queue.filter((e) => !e.holding).length} waiting now`,
    `peak nodes down at once: ${peakOf(down, from, to)} (max ${describeMaxOverTime(maxSteps)}${snapshot.max.ok ? '' : ', invalid now'})`,
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
    `${actions.length} operator action(s) recorded in the period`,
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

/**
 * A setting's value over [from, now] from its recorded changes: before the first change it held
 * that change's old value; after each, its new one. Without changes, it held `now` throughout.
 */
function settingOverTime(
  changes: readonly ActionRecord[],
  from: number,
  now: string | null,
  values: (a: ActionRecord) => { before: string | null; after: string | null },
): SettingChange[] {
  const first = changes[0];
  const out: SettingChange[] = [{ at: from, raw: first ? values(first).before : now }];
  for (const c of changes) {
    const at = t(c.at);
    if (at !== null) out.push({ at: Math.max(at, from), raw: values(c).after });
  }
  return out;
}

/** The chart's marker for an operator action. */
function actionMarker(a: ActionRecord, at: number): Marker {
  const by = a.by ? { by: a.by } : {};
  const node = a.node ? { node: a.node } : {};
  const reason = a.reason ? { detail: a.reason } : {};
  switch (a.action) {
    case 'set-max':
      return {
        at,
        kind: 'max',
        label: `max ${a.old ?? 'unset (1)'} → ${a.new ?? 'unset (1)'}`,
        ...by,
      };
    case 'pause':
      return { at, kind: 'pause', label: 'paused', ...by, ...reason };
    case 'resume':
      return {
        at,
        kind: 'resume',
        label: 'resumed',
        ...by,
        ...(a.reason ? { detail: `was: ${a.reason}` } : {}),
      };
    case 'halt':
      return { at, kind: 'halt', label: 'halted', ...by, ...reason };
    case 'blackouts-set':
    case 'blackouts-clear':
      return {
        at,
        kind: 'windows',
        label: a.action === 'blackouts-set' ? 'blackouts set' : 'blackouts cleared',
        ...by,
        detail: `${a.old ?? 'none'} → ${a.new ?? 'none'}`,
      };
    case 'set-domain-max':
      return {
        at,
        kind: 'max',
        label: `domain-max ${a.old ?? 'unset'} → ${a.new ?? 'unset'}`,
        ...by,
      };
    case 'canary-set':
    case 'canary-clear':
    case 'canary-reset':
    case 'canary-skip':
      return {
        at,
        kind: 'max',
        label: a.action.replace('-', ' '),
        ...by,
        detail:
          a.action === 'canary-set' || a.action === 'canary-clear'
            ? `${a.old ?? 'none'} → ${a.new ?? 'none'}`
            : `version ${a.old ?? '?'}`,
      };
    case 'windows-set':
      return {
        at,
        kind: 'windows',
        label: 'windows set',
        ...by,
        detail: `${a.old ?? 'always open'} → ${a.new ?? ''}`,
      };
    case 'windows-clear':
      return {
        at,
        kind: 'windows',
        label: 'windows cleared',
        ...by,
        detail: `${a.old ?? ''} → always open`,
      };
    case 'lock':
      return {
        at,
        kind: 'lock',
        label: `${a.node ?? '?'} locked by hand`,
        ...by,
        ...node,
        ...reason,
      };
    case 'request-reboot':
      return {
        at,
        kind: 'request',
        label: `reboot of ${a.node ?? '?'} requested`,
        ...by,
        ...node,
        ...reason,
      };
    case 'cancel-request':
      return {
        at,
        kind: 'request',
        label: `reboot request of ${a.node ?? '?'} cancelled`,
        ...by,
        ...node,
        ...reason,
      };
    case 'migrate-locksmith':
      return { at, kind: 'migrate', label: 'migrated from locksmith', ...by, ...reason };
  }
}
