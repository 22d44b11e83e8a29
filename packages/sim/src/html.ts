/**
 * The HTML timeline of a rollout: one self-contained file (inline SVG and CSS, no scripts, no
 * network) with a Gantt chart of every node's states over time and, below it, the number of
 * nodes down at once against max. Node states come from the agents' etcd records (as the
 * simulator's watcher saw them) and the down/up times of the reboot log.
 */
import type { FleetEvent } from './fleet.js';
import type { InvariantReport, RebootEntry, StageEntry } from './invariants.js';
import type { RolloutStats } from './report.js';
import { ms, secs } from './report.js';
import type { GroupTimeline } from './timeline.js';

/** Colours of the states, in lifecycle order (also the legend). */
export const STATE_COLOURS: Record<string, string> = {
  idle: '#eaeef2',
  staged: '#d0d7de',
  waiting: '#f2cc60',
  holding: '#fb8f44',
  draining: '#fd8c73',
  rebooting: '#cf222e',
  down: '#82071e',
  booting: '#8250df',
  'post-checking': '#0969da',
  releasing: '#54aeff',
  updated: '#2da44e',
};

/** One stretch of a node in one state. */
export interface Segment {
  from: number;
  to: number;
  state: string;
}

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
  /** Extra lines for the summary (flags of the run, say). */
  notes?: string[];
}

/** A node's state at instant `t`. */
function stateAt(input: TimelineInput, node: string, t: number): string {
  const reboots = input.reboots.filter((r) => r.node === node);
  if (reboots.some((r) => r.downAt <= t && (r.upAt === null || r.upAt > t))) return 'down';
  const records = input.timeline.records.get(node) ?? [];
  const rec = records.filter((r) => r.at <= t).at(-1);
  const lastUp = reboots.filter((r) => r.upAt !== null && r.upAt <= t).at(-1);
  if (rec?.state) {
    if (rec.state === 'rebooting' && lastUp?.upAt && lastUp.upAt >= rec.at) return 'booting';
    return rec.state === 'recovering' ? 'booting' : rec.state;
  }
  if (lastUp) return 'updated';
  if (input.stages.some((s) => s.node === node && s.at <= t)) return 'staged';
  return 'idle';
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
    const to = sorted[i + 1] ?? input.endAt;
    const state = stateAt(input, node, from);
    const last = segments.at(-1);
    if (last && last.state === state) last.to = to;
    else segments.push({ from, to, state });
  }
  return segments;
}

/** Nodes down over time as a step function: [time, count] at every change. */
export function downSteps(reboots: readonly RebootEntry[], endAt: number): [number, number][] {
  const changes: [number, number][] = [];
  for (const r of reboots) {
    changes.push([r.downAt, 1]);
    changes.push([r.upAt ?? endAt, -1]);
  }
  changes.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const steps: [number, number][] = [];
  let count = 0;
  for (const [at, d] of changes) {
    count += d;
    if (steps.at(-1)?.[0] === at) steps[steps.length - 1] = [at, count];
    else steps.push([at, count]);
  }
  return steps;
}

const esc = (text: string): string => text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** A round tick step for a span of `spanMs`. */
function tickStep(spanMs: number): number {
  const target = spanMs / 10;
  for (const step of [500, 1000, 2000, 5000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000]) {
    if (step >= target) return step;
  }
  return 600_000;
}

/** Renders the timeline as one HTML document. */
export function renderTimeline(input: TimelineInput): string {
  const left = 80;
  const width = 960;
  const row = 18;
  const top = 28;
  const span = Math.max(1, input.endAt - input.startAt);
  const x = (t: number) => left + ((t - input.startAt) / span) * width;
  const ganttHeight = top + input.nodes.length * row + 8;
  const chartTop = ganttHeight + 30;
  const chartHeight = 120;
  const total = chartTop + chartHeight + 40;
  const svg: string[] = [];
  const step = tickStep(span);
  for (let t = 0; t <= span; t += step) {
    const px = x(input.startAt + t).toFixed(1);
    svg.push(
      `<line x1="${px}" x2="${px}" y1="${top - 4}" y2="${chartTop + chartHeight}" class="grid"/>`,
      `<text x="${px}" y="${top - 8}" class="tick">${(t / 1000).toFixed(t % 1000 ? 1 : 0)}s</text>`,
    );
  }
  // Pause intervals and max changes from the simulator's watcher.
  const paused = input.timeline.pausedChanges;
  for (const [i, change] of paused.entries()) {
    if (change.raw === null) continue;
    const from = Math.max(change.at, input.startAt);
    const to = paused[i + 1]?.at ?? input.endAt;
    svg.push(
      `<rect x="${x(from).toFixed(1)}" y="${top}" width="${Math.max(1, x(to) - x(from)).toFixed(1)}" height="${input.nodes.length * row}" class="paused"><title>paused: ${esc(change.raw)}</title></rect>`,
    );
  }
  for (const [i, node] of input.nodes.entries()) {
    const y = top + i * row;
    svg.push(`<text x="${left - 6}" y="${y + row - 5}" class="label">${esc(node)}</text>`);
    for (const seg of segmentsOf(input, node)) {
      const w = Math.max(0.5, x(seg.to) - x(seg.from));
      const colour = STATE_COLOURS[seg.state] ?? '#000';
      const title = `${node}: ${seg.state} from +${secs(seg.from - input.startAt)} for ${secs(seg.to - seg.from)}`;
      svg.push(
        `<rect x="${x(seg.from).toFixed(1)}" y="${y + 2}" width="${w.toFixed(1)}" height="${row - 4}" fill="${colour}"><title>${esc(title)}</title></rect>`,
      );
    }
  }
  for (const e of input.events) {
    if (e.at < input.startAt || e.at > input.endAt) continue;
    const px = x(e.at).toFixed(1);
    const i = e.node ? input.nodes.indexOf(e.node) : -1;
    if (e.kind === 'agent-kill' && i >= 0) {
      const y = top + i * row;
      svg.push(
        `<path d="M${px} ${y + 2} l4 -6 h-8 z" class="kill"><title>${esc(`agent SIGKILLed ${e.detail ?? ''} at +${secs(e.at - input.startAt)}`)}</title></path>`,
      );
    } else if (!e.node && !['fleet-started', 'rollout-done'].includes(e.kind)) {
      svg.push(
        `<line x1="${px}" x2="${px}" y1="${top}" y2="${chartTop + chartHeight}" class="event"><title>${esc(`${e.kind}: ${e.detail ?? ''} at +${secs(e.at - input.startAt)}`)}</title></line>`,
      );
    }
  }
  // Nodes down at once, and max, below the Gantt chart.
  const steps = downSteps(input.reboots, input.endAt);
  const maxes = input.timeline.maxChanges.map((c) => [c.at, c.value] as [number, number]);
  const peak = Math.max(1, ...steps.map((s) => s[1]), ...maxes.map((m) => m[1]));
  const y = (v: number) => chartTop + chartHeight - (v / peak) * (chartHeight - 10);
  const path = (points: [number, number][]) => {
    let d = `M${x(input.startAt).toFixed(1)} ${y(0).toFixed(1)}`;
    let value = 0;
    for (const [at, v] of points) {
      const px = x(Math.min(Math.max(at, input.startAt), input.endAt)).toFixed(1);
      d += ` L${px} ${y(value).toFixed(1)} L${px} ${y(v).toFixed(1)}`;
      value = v;
    }
    return `${d} L${x(input.endAt).toFixed(1)} ${y(value).toFixed(1)}`;
  };
  svg.push(
    `<line x1="${left}" x2="${left + width}" y1="${y(0)}" y2="${y(0)}" class="axis"/>`,
    `<text x="${left - 6}" y="${chartTop + 10}" class="label">${peak}</text>`,
    `<text x="${left - 6}" y="${y(0)}" class="label">0</text>`,
    `<path d="${path(maxes)}" class="max"><title>max</title></path>`,
    `<path d="${path(steps)}" class="down"><title>nodes down at once</title></path>`,
    `<text x="${left}" y="${chartTop - 8}" class="caption">nodes down at once (red) and max (dashed)</text>`,
  );
  const legend = Object.entries(STATE_COLOURS)
    .map(([state, colour]) => `<span><i style="background:${colour}"></i>${esc(state)}</span>`)
    .join(' ');
  const summary: string[] = [...(input.notes ?? [])];
  const s = input.stats;
  if (s) {
    summary.push(
      `rollout: ${secs(s.makespanMs)} (ideal ceil(${s.nodes}/${s.max}) × ${s.rebootSeconds} s = ${secs(s.idealMs)}, efficiency ${(s.efficiency * 100).toFixed(0)} %)`,
      `peak nodes down at once: ${s.peakDown}`,
      `etcd writes per reboot: ${s.revisionsPerReboot?.toFixed(1) ?? '-'} revisions, ${s.proposalsPerReboot?.toFixed(1) ?? '-'} raft proposals`,
      `handoff (release → next admission): p50 ${ms(s.handoffs.admission.p50)}, p99 ${ms(s.handoffs.admission.p99)}`,
    );
  }
  const inv = input.invariants;
  if (inv) {
    summary.push(
      inv.ok
        ? `invariants: all hold (${inv.reboots} reboots)`
        : `invariants: ${inv.violations.length} VIOLATED: ${inv.violations.map((v) => v.message).join('; ')}`,
    );
  }
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(input.title)}</title>
<style>
body{font:14px system-ui,sans-serif;margin:24px;color:#1f2328}
h1{font-size:18px} ul{padding-left:18px}
.legend span{margin-right:12px;white-space:nowrap} .legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px}
svg text{font:11px system-ui,sans-serif} .label{text-anchor:end;fill:#57606a} .tick{text-anchor:middle;fill:#57606a}
.caption{fill:#57606a} .grid{stroke:#eaeef2} .axis{stroke:#8c959f}
.paused{fill:#0000000f} .event{stroke:#57606a;stroke-dasharray:2 3} .kill{fill:#000}
.down{fill:none;stroke:#cf222e;stroke-width:2} .max{fill:none;stroke:#1f2328;stroke-dasharray:5 4}
</style></head><body>
<h1>${esc(input.title)}</h1>
<ul>${summary.map((line) => `<li>${esc(line)}</li>`).join('')}</ul>
<p class="legend">${legend} <span>▼ agent SIGKILLed</span> <span>shaded: paused</span> <span>dotted: operator or fault event</span></p>
<svg xmlns="http://www.w3.org/2000/svg" width="${left + width + 20}" height="${total}">
${svg.join('\n')}
</svg>
</body></html>
`;
}
