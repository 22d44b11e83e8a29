/**
 * What a fleet timeline shows, independent of where it came from: `sluicectl report` builds it
 * from a group's history in etcd, the simulator's demo from its own watcher of the group. Both
 * hand it to `renderTimeline()`.
 *
 * All times are milliseconds since the epoch. The helpers here turn "a settings key over time"
 * (max, paused, windows, as values from some instant on) into what the page draws: max as a step
 * line, pauses and halts as shaded periods with their reason, closed windows and invalid values as
 * blocked periods.
 */
import { parseMax, parsePaused, parseWindowSpec, type WindowSpec, windowState } from '@sluice/core';

/**
 * A node's state in a lane. `queued` is waiting for a slot, `holding` admitted (pre-checks,
 * drain), `rebooting` the last moments before the reboot call, `down` the machine away, `booting`
 * the agent back and recovering, `post-checks` checking health before the release.
 */
export const LANE_STATES = [
  'staged',
  'queued',
  'holding',
  'rebooting',
  'down',
  'booting',
  'post-checks',
  'releasing',
  'updated',
  'lost',
] as const;

/** A state from LANE_STATES. */
export type LaneState = (typeof LANE_STATES)[number];

/** One stretch of a node in one state. `detail` shows in its tooltip. */
export interface Segment {
  from: number;
  to: number;
  state: LaneState;
  detail?: string;
}

/** Something that happened to one node at one instant: a SIGKILL, a forced release. */
export interface LaneMark {
  at: number;
  kind: string;
  label: string;
}

/** One node's row. */
export interface Lane {
  node: string;
  /** Shown after the id when it says more (a hostname). */
  hostname?: string;
  /** The node's failure domain, shown after its name. */
  domain?: string;
  segments: Segment[];
  marks?: LaneMark[];
}

/** Kinds of labelled markers across the whole chart. */
export type MarkerKind =
  | 'max'
  | 'pause'
  | 'resume'
  | 'halt'
  | 'windows'
  | 'lock'
  | 'unlock'
  | 'request'
  | 'migrate'
  | 'fault'
  | 'rollout';

/** An operator action (or a fault, in the simulator) at one instant, numbered on the chart. */
export interface Marker {
  at: number;
  kind: MarkerKind;
  /** Short text: `max 2 → 3`, `paused`. */
  label: string;
  /** Who did it: `user@host`, or `sluice` for the agents' own halts. */
  by?: string;
  /** The rest: a reason, a window spec. */
  detail?: string;
  node?: string;
}

/** Why nobody could be admitted for a while. */
export type ShadeKind = 'paused' | 'halted' | 'window-closed' | 'invalid';

/** A shaded period with the reason nobody was admitted. */
export interface Shade {
  from: number;
  to: number;
  kind: ShadeKind;
  reason: string;
}

/** Everything one page shows. */
export interface FleetTimeline {
  title: string;
  /** Lines under the title: the group, the period, figures. */
  summary: string[];
  startAt: number;
  endAt: number;
  /** IANA zone the wall-clock times are shown in. */
  zone: string;
  lanes: Lane[];
  /** Nodes down at once, as [instant, count] from that instant on. */
  down: [number, number][];
  /** Max as admission obeyed it, as [instant, value] from that instant on. */
  max: [number, number][];
  markers: Marker[];
  shades: Shade[];
  /** Problems worth a red line at the top (invariant violations, unreadable records). */
  warnings?: string[];
}

/** A settings key's value from `at` on; `raw` is null while the key is absent. */
export interface SettingChange {
  at: number;
  raw: string | null;
}

/** Max over time as admission obeys it: absent is 1, a value that does not parse admits nobody. */
export function maxSeries(changes: readonly SettingChange[]): [number, number][] {
  return changes.map((c) => {
    const parsed = parseMax(c.raw ?? undefined, 'max');
    return [c.at, parsed.ok ? parsed.value : 0];
  });
}

/** Merges runs of equal values in a step series, keeping the first instant of each run. */
export function compactSteps(steps: readonly [number, number][]): [number, number][] {
  // The last value given for an instant wins; then runs of one value keep their first instant.
  const byInstant = new Map<number, number>();
  for (const [at, value] of [...steps].sort((a, b) => a[0] - b[0])) byInstant.set(at, value);
  const out: [number, number][] = [];
  for (const [at, value] of byInstant) {
    if (out.at(-1)?.[1] !== value) out.push([at, value]);
  }
  return out;
}

/** The periods `changes` holds a value, clipped to [from, to]: [start, end, raw]. */
function periods(
  changes: readonly SettingChange[],
  from: number,
  to: number,
): [number, number, string][] {
  const sorted = [...changes].sort((a, b) => a.at - b.at);
  const out: [number, number, string][] = [];
  for (const [i, change] of sorted.entries()) {
    if (change.raw === null) continue;
    const start = Math.max(change.at, from);
    const end = Math.min(sorted[i + 1]?.at ?? to, to);
    if (end > start) out.push([start, end, change.raw]);
  }
  return out;
}

/**
 * Paused periods: `halted` when the agents (or sluicectl status) paused the group for lost nodes
 * (the pause written by sluice itself), `paused` otherwise, each with its reason and who paused.
 */
export function pauseShades(changes: readonly SettingChange[], from: number, to: number): Shade[] {
  return periods(changes, from, to).map(([start, end, raw]) => {
    const pause = parsePaused(raw);
    const halted = pause?.by === 'sluice';
    const by = pause?.by && !halted ? ` (by ${pause.by})` : '';
    return {
      from: start,
      to: end,
      kind: halted ? 'halted' : 'paused',
      reason: `${halted ? 'halted' : 'paused'}: ${pause?.reason ?? raw}${by}`,
    };
  });
}

/** Periods in which max did not parse: nobody was admitted. */
export function invalidMaxShades(
  changes: readonly SettingChange[],
  from: number,
  to: number,
): Shade[] {
  return periods(changes, from, to)
    .filter(([, , raw]) => !parseMax(raw, 'max').ok)
    .map(([start, end, raw]) => ({
      from: start,
      to: end,
      kind: 'invalid',
      reason: `max is ${JSON.stringify(raw)}, which does not parse: nobody admitted`,
    }));
}

/**
 * Periods in which the group's window was closed (or its spec did not parse), from the windows
 * key over time. At most `limit` periods: a minute-long window every day for years stops there.
 */
export function windowShades(
  changes: readonly SettingChange[],
  from: number,
  to: number,
  limit = 2000,
): Shade[] {
  const out: Shade[] = [];
  for (const [start, end, raw] of periods(changes, from, to)) {
    const parsed = parseWindowSpec(raw, 'windows');
    if (!parsed.ok) {
      out.push({
        from: start,
        to: end,
        kind: 'invalid',
        reason: `the window spec does not parse: nobody admitted (${parsed.error.message})`,
      });
      continue;
    }
    out.push(...closedPeriods(parsed.value, raw, start, end, limit - out.length));
    if (out.length >= limit) break;
  }
  return out;
}

function closedPeriods(
  spec: WindowSpec,
  raw: string,
  from: number,
  to: number,
  limit: number,
): Shade[] {
  const out: Shade[] = [];
  if (spec.windows.length === 0) return out;
  let t = from;
  while (t < to && out.length < limit) {
    const state = windowState(spec, new Date(t));
    if (state.open) {
      const end = state.nextEnd?.getTime();
      if (end === undefined || end <= t) break;
      t = end;
      continue;
    }
    const opens = state.nextStart?.getTime() ?? to;
    const until = Math.min(opens, to);
    out.push({ from: t, to: until, kind: 'window-closed', reason: `window closed [${raw}]` });
    if (opens <= t) break;
    t = opens;
  }
  return out;
}

/** Nodes down at once over time, from the lanes' `down` and `lost` segments. */
export function downSeries(lanes: readonly Lane[]): [number, number][] {
  const changes: [number, number][] = [];
  for (const lane of lanes) {
    for (const s of lane.segments) {
      if (s.state !== 'down' && s.state !== 'lost') continue;
      changes.push([s.from, 1], [s.to, -1]);
    }
  }
  changes.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const steps: [number, number][] = [];
  let count = 0;
  for (const [at, d] of changes) {
    count += d;
    steps.push([at, count]);
  }
  return compactSteps(steps);
}

/** Merges touching segments of the same state, drops empty ones, and sorts by time. */
export function mergeSegments(segments: readonly Segment[]): Segment[] {
  const out: Segment[] = [];
  for (const s of [...segments].sort((a, b) => a.from - b.from)) {
    if (s.to <= s.from) continue;
    const last = out.at(-1);
    if (last && last.state === s.state && last.to >= s.from && last.detail === s.detail) {
      last.to = Math.max(last.to, s.to);
    } else {
      out.push({ ...s });
    }
  }
  return out;
}

/** The highest value of a step series within [from, to]. */
export function peakOf(steps: readonly [number, number][], from: number, to: number): number {
  let value = 0;
  let peak = 0;
  for (const [at, v] of [...steps].sort((a, b) => a[0] - b[0])) {
    if (at > to) break;
    if (at <= from) value = v;
    else peak = Math.max(peak, v);
  }
  return Math.max(peak, value);
}

/**
 * Max over a run as people say it: `2`, or `2 → 3` when it changed, with every distinct step in
 * order (`2 → 3 → 1`).
 */
export function describeMaxOverTime(steps: readonly [number, number][]): string {
  const values = compactSteps(steps).map(([, v]) => v);
  return values.length === 0 ? '1' : values.join(' → ');
}
