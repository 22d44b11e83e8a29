/**
 * Renders a {@link FleetTimeline} as one self-contained HTML page: inline CSS and SVG and a few
 * lines of script that only highlight things on hover, no network. Top to bottom:
 *
 * - the title, the summary lines and any warnings;
 * - a legend of the states, markers and shades the page uses;
 * - the chart: a wall-clock axis in the chosen zone, a numbered flag for every operator action
 *   (and, in the simulator, every fault), a lane per node with its states, shaded periods in which
 *   nobody could be admitted (paused, halted, window closed, invalid value) with their reason
 *   written on them, and below the lanes nodes down at once against max over time;
 * - a table of the actions, one row per flag, and a table of the blocked periods.
 *
 * Elements carry classes and data attributes (`g.lane[data-node]`, `rect.seg[data-state]`,
 * `g.marker[data-kind]`, `rect.shade[data-kind]`) so that tests and scripts can find them.
 */
import {
  type FleetTimeline,
  LANE_STATES,
  type LaneState,
  type MarkerKind,
  peakOf,
  type ShadeKind,
} from './model.js';
import { spoken, tickLabel, ticks, wallClock } from './time.js';

/** Fill colours of the lane states. */
export const STATE_COLOURS: Record<LaneState, string> = {
  staged: '#d0d7de',
  queued: '#f2cc60',
  holding: '#fb8f44',
  rebooting: '#cf222e',
  down: '#82071e',
  booting: '#8250df',
  'post-checks': '#0969da',
  releasing: '#54aeff',
  updated: '#2da44e',
  lost: '#000000',
};

/** What each state means, for the legend's tooltips. */
const STATE_HELP: Record<LaneState, string> = {
  staged: 'an update is staged; not queued yet (window closed or pre-checks)',
  queued: 'waiting in the queue for a slot',
  holding: 'holding a slot: checks and drain before the reboot',
  rebooting: 'the reboot was confirmed and asked for',
  down: 'the machine is down for its reboot',
  booting: 'back up: the agent started and recovers its slot',
  'post-checks': 'health checks after the boot, before the slot is given back',
  releasing: 'giving the slot back',
  updated: 'done: rebooted into the update',
  lost: 'lost during its reboot: the hold lease ran out without a release',
};

const SHADE_STYLE: Record<ShadeKind, { fill: string; text: string; label: string }> = {
  paused: { fill: 'url(#hatch-paused)', text: '#7d4e00', label: 'paused' },
  halted: { fill: 'url(#hatch-halted)', text: '#a40e26', label: 'halted (lost node)' },
  'window-closed': { fill: 'url(#hatch-window)', text: '#424a53', label: 'window closed' },
  invalid: { fill: 'url(#hatch-invalid)', text: '#6e2d00', label: 'invalid value' },
};

const MARKER_COLOURS: Record<MarkerKind, string> = {
  max: '#1f6feb',
  pause: '#bf8700',
  resume: '#1a7f37',
  halt: '#cf222e',
  windows: '#6e7781',
  lock: '#8250df',
  unlock: '#8250df',
  request: '#0969da',
  migrate: '#6e7781',
  fault: '#000000',
  rollout: '#1a7f37',
};

const esc = (text: string): string => text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);

const fixed = (n: number): string => n.toFixed(1);

/** Cuts `text` to about `chars` characters, with an ellipsis. */
function clip(text: string, chars: number): string {
  return text.length <= chars ? text : `${text.slice(0, Math.max(1, chars - 1))}…`;
}

/** Renders the page. Pure: the same input gives the same bytes. */
export function renderTimeline(t: FleetTimeline): string {
  const labelWidth = 170;
  const width = 1000;
  const right = 24;
  const row = 16;
  const flagsTop = 36;
  // Numbered flags closer than a badge's width take the next row down (up to three rows).
  const start0 = t.startAt;
  const span0 = Math.max(t.endAt, start0 + 1) - start0;
  const flagRows: number[] = [];
  const rowEnds: number[] = [];
  for (const m of t.markers) {
    const px =
      labelWidth + ((Math.min(Math.max(m.at, start0), start0 + span0) - start0) / span0) * width;
    let row = rowEnds.findIndex((end) => px - end >= 16);
    if (row === -1)
      row = rowEnds.length < 3 ? rowEnds.length : rowEnds.indexOf(Math.min(...rowEnds));
    rowEnds[row] = px;
    flagRows.push(row);
  }
  const rows = Math.max(1, rowEnds.length);
  const lanesTop = flagsTop + 10 + rows * 16;
  const lanesHeight = Math.max(row, t.lanes.length * row);
  const chartTop = lanesTop + lanesHeight + 44;
  const chartHeight = 110;
  const total = chartTop + chartHeight + 30;
  const start = t.startAt;
  const end = Math.max(t.endAt, start + 1);
  const span = end - start;
  const x = (at: number) =>
    labelWidth + ((Math.min(Math.max(at, start), end) - start) / span) * width;
  const svg: string[] = [];

  svg.push(
    '<defs>',
    hatch('hatch-paused', '#d4a72c', '#fff8c5'),
    hatch('hatch-halted', '#cf222e', '#ffebe9'),
    hatch('hatch-window', '#8c959f', '#f6f8fa'),
    hatch('hatch-invalid', '#bc4c00', '#fff1e5'),
    '</defs>',
  );

  // The wall-clock axis.
  const tk = ticks(start, end, t.zone);
  for (const at of tk.at) {
    const px = fixed(x(at));
    svg.push(
      `<line x1="${px}" x2="${px}" y1="${flagsTop - 4}" y2="${chartTop + chartHeight}" class="grid"/>`,
      `<text x="${px}" y="${flagsTop - 10}" class="tick">${esc(tickLabel(at, tk.step, span, t.zone))}</text>`,
    );
  }

  // Shades behind the lanes and the chart, each with its reason written on it.
  for (const [i, s] of t.shades.entries()) {
    const x1 = x(s.from);
    const w = Math.max(1.5, x(s.to) - x1);
    const style = SHADE_STYLE[s.kind];
    const title = `${s.reason}\n${wallClock(s.from, t.zone)} – ${wallClock(s.to, t.zone)} (${spoken(s.to - s.from)})`;
    svg.push(
      `<g class="shade-group" data-shade="${i}"><rect x="${fixed(x1)}" y="${lanesTop}" width="${fixed(w)}" height="${chartTop + chartHeight - lanesTop}" class="shade" data-kind="${s.kind}" fill="${style.fill}"><title>${esc(title)}</title></rect>`,
    );
    // Room for about one character per 6 px.
    if (w >= 36) {
      svg.push(
        `<text x="${fixed(x1 + 3)}" y="${lanesTop - 4}" class="shade-label" fill="${style.text}">${esc(clip(s.reason, Math.floor(w / 6)))}</text>`,
      );
    }
    svg.push('</g>');
  }

  // Lanes.
  for (const [i, lane] of t.lanes.entries()) {
    const y = lanesTop + i * row;
    const named =
      lane.hostname && lane.hostname !== lane.node ? `${lane.node} (${lane.hostname})` : lane.node;
    const name = lane.domain ? `${named} · ${lane.domain}` : named;
    svg.push(
      `<g class="lane" data-node="${esc(lane.node)}"><text x="${labelWidth - 6}" y="${y + row - 4}" class="label">${esc(clip(name, 26))}<title>${esc(name)}</title></text>`,
    );
    for (const seg of lane.segments) {
      const x1 = x(seg.from);
      const w = Math.max(0.8, x(seg.to) - x1);
      const title = `${lane.node}: ${seg.state} ${wallClock(seg.from, t.zone)} – ${wallClock(seg.to, t.zone)} (${spoken(seg.to - seg.from)})${seg.detail ? `\n${seg.detail}` : ''}`;
      svg.push(
        `<rect x="${fixed(x1)}" y="${y + 2}" width="${fixed(w)}" height="${row - 4}" class="seg" data-state="${seg.state}" fill="${STATE_COLOURS[seg.state]}"><title>${esc(title)}</title></rect>`,
      );
    }
    for (const mark of lane.marks ?? []) {
      const px = fixed(x(mark.at));
      svg.push(
        `<path d="M${px} ${y + 2} l4 -6 h-8 z" class="lane-mark" data-kind="${esc(mark.kind)}"><title>${esc(`${mark.label} at ${wallClock(mark.at, t.zone)}`)}</title></path>`,
      );
    }
    svg.push('</g>');
  }
  if (t.lanes.length === 0) {
    svg.push(
      `<text x="${labelWidth + width / 2}" y="${lanesTop + row - 4}" class="empty">no reboots in this period</text>`,
    );
  }

  // Numbered flags: one per marker, a line down through the lanes and the chart.
  for (const [i, m] of t.markers.entries()) {
    const px = fixed(x(m.at));
    const cy = flagsTop + 6 + (flagRows[i] ?? 0) * 16;
    const colour = MARKER_COLOURS[m.kind];
    const title = `${i + 1}. ${m.label}${m.by ? ` by ${m.by}` : ''}${m.detail ? `: ${m.detail}` : ''}\n${wallClock(m.at, t.zone)}`;
    svg.push(
      `<g class="marker" data-kind="${m.kind}" data-marker="${i + 1}"><title>${esc(title)}</title>`,
      `<line x1="${px}" x2="${px}" y1="${cy + 2}" y2="${chartTop + chartHeight}" stroke="${colour}" class="marker-line"/>`,
      `<circle cx="${px}" cy="${cy}" r="7" fill="${colour}"/>`,
      `<text x="${px}" y="${cy + 3.5}" class="marker-number">${i + 1}</text>`,
      '</g>',
    );
  }

  // Nodes down at once against max.
  const peak = Math.max(1, peakOf(t.down, start, end), peakOf(t.max, start, end));
  const y = (v: number) => chartTop + chartHeight - (Math.min(v, peak) / peak) * (chartHeight - 12);
  const step = (points: readonly [number, number][]) => {
    const sorted = [...points].sort((a, b) => a[0] - b[0]);
    let value = 0;
    for (const [at, v] of sorted) if (at <= start) value = v;
    let d = `M${fixed(x(start))} ${fixed(y(value))}`;
    for (const [at, v] of sorted) {
      if (at <= start || at > end) continue;
      d += ` L${fixed(x(at))} ${fixed(y(value))} L${fixed(x(at))} ${fixed(y(v))}`;
      value = v;
    }
    return `${d} L${fixed(x(end))} ${fixed(y(value))}`;
  };
  svg.push(
    `<text x="${labelWidth}" y="${chartTop - 8}" class="caption">nodes down at once (red) and max (dashed)</text>`,
    `<line x1="${labelWidth}" x2="${labelWidth + width}" y1="${y(0)}" y2="${y(0)}" class="axis"/>`,
    `<text x="${labelWidth - 6}" y="${fixed(y(peak) + 4)}" class="label">${peak}</text>`,
    `<text x="${labelWidth - 6}" y="${fixed(y(0))}" class="label">0</text>`,
  );
  if (t.max.length > 0) {
    svg.push(`<path d="${step(t.max)}" class="max-line"><title>max</title></path>`);
  }
  svg.push(`<path d="${step(t.down)}" class="down-line"><title>nodes down at once</title></path>`);

  const usedStates = new Set(t.lanes.flatMap((l) => l.segments.map((s) => s.state)));
  const legend = LANE_STATES.filter((s) => usedStates.has(s) || s !== 'lost')
    .map(
      (s) =>
        `<span title="${esc(STATE_HELP[s])}"><i style="background:${STATE_COLOURS[s]}"></i>${s}</span>`,
    )
    .join(' ');
  const shadeLegend = (Object.keys(SHADE_STYLE) as ShadeKind[])
    .map((k) => `<span><i class="swatch-${k}"></i>${esc(SHADE_STYLE[k].label)}</span>`)
    .join(' ');

  const markerRows = t.markers
    .map(
      (m, i) =>
        `<tr data-marker="${i + 1}"><td class="num"><b style="background:${MARKER_COLOURS[m.kind]}">${i + 1}</b></td><td>${esc(wallClock(m.at, t.zone))}</td><td>${esc(m.label)}</td><td>${esc(m.node ?? '')}</td><td>${esc(m.by ?? '')}</td><td>${esc(m.detail ?? '')}</td></tr>`,
    )
    .join('\n');
  const shadeRows = t.shades
    .map(
      (s, i) =>
        `<tr data-shade="${i}"><td>${esc(wallClock(s.from, t.zone))}</td><td>${esc(wallClock(s.to, t.zone))}</td><td>${esc(spoken(s.to - s.from))}</td><td>${esc(SHADE_STYLE[s.kind].label)}</td><td>${esc(s.reason)}</td></tr>`,
    )
    .join('\n');
  const warnings = (t.warnings ?? []).map((w) => `<li>${esc(w)}</li>`).join('');

  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(t.title)}</title>
<meta name="viewport" content="width=device-width">
<style>
body{font:14px system-ui,sans-serif;margin:24px;color:#1f2328}
h1{font-size:18px;margin:0 0 8px} h2{font-size:15px;margin:20px 0 6px} ul{padding-left:18px;margin:4px 0}
.warnings li{color:#cf222e;font-weight:600}
.legend{margin:8px 0;line-height:1.8} .legend span{margin-right:12px;white-space:nowrap}
.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px;border:1px solid #d0d7de}
.swatch-paused{background:repeating-linear-gradient(45deg,#fff8c5 0 3px,#d4a72c 3px 4px)}
.swatch-halted{background:repeating-linear-gradient(45deg,#ffebe9 0 3px,#cf222e 3px 4px)}
.swatch-window-closed{background:repeating-linear-gradient(45deg,#f6f8fa 0 3px,#8c959f 3px 4px)}
.swatch-invalid{background:repeating-linear-gradient(45deg,#fff1e5 0 3px,#bc4c00 3px 4px)}
svg text{font:11px system-ui,sans-serif} .label{text-anchor:end;fill:#57606a} .tick{text-anchor:middle;fill:#57606a}
.caption{fill:#57606a} .empty{fill:#57606a;text-anchor:middle} .grid{stroke:#eaeef2} .axis{stroke:#8c959f}
.shade{opacity:.55} .shade-label{font-weight:600}
.marker-line{stroke-width:1.5;stroke-dasharray:3 3} .marker-number{fill:#fff;text-anchor:middle;font-weight:700;font-size:10px}
.marker.hl .marker-line{stroke-width:3;stroke-dasharray:none} .shade-group.hl .shade{opacity:.9}
.lane-mark{fill:#000} .down-line{fill:none;stroke:#cf222e;stroke-width:2} .max-line{fill:none;stroke:#1f2328;stroke-dasharray:5 4;stroke-width:1.5}
table{border-collapse:collapse;font-size:13px} td,th{padding:3px 10px 3px 0;text-align:left;vertical-align:top}
th{border-bottom:1px solid #d0d7de} tr.hl td{background:#ddf4ff}
td.num b{display:inline-block;min-width:18px;border-radius:9px;color:#fff;text-align:center;font-size:11px}
.zone{color:#57606a}
</style></head><body>
<h1>${esc(t.title)}</h1>
<ul class="summary">${t.summary.map((line) => `<li>${esc(line)}</li>`).join('')}</ul>
${warnings ? `<ul class="warnings">${warnings}</ul>` : ''}
<p class="legend">${legend}</p>
<p class="legend">${shadeLegend} <span>▼ agent killed</span> <span class="zone">times in ${esc(t.zone)}</span></p>
<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="${labelWidth + width + right}" height="${total}" role="img" aria-label="${esc(t.title)}">
${svg.join('\n')}
</svg>
<h2>Operator actions and events</h2>
${t.markers.length > 0 ? `<table id="actions"><thead><tr><th>#</th><th>when (${esc(t.zone)})</th><th>what</th><th>node</th><th>by</th><th>detail</th></tr></thead><tbody>\n${markerRows}\n</tbody></table>` : '<p id="actions">none in this period</p>'}
<h2>Periods nobody could be admitted</h2>
${t.shades.length > 0 ? `<table id="blocked"><thead><tr><th>from</th><th>to</th><th>for</th><th>why</th><th>detail</th></tr></thead><tbody>\n${shadeRows}\n</tbody></table>` : '<p id="blocked">none in this period</p>'}
<script>
(function () {
  function pair(attr) {
    document.querySelectorAll('tr[' + attr + ']').forEach(function (tr) {
      var sel = '[' + attr + '="' + tr.getAttribute(attr) + '"]';
      var targets = document.querySelectorAll('g' + sel);
      function on() { tr.classList.add('hl'); targets.forEach(function (g) { g.classList.add('hl'); }); }
      function off() { tr.classList.remove('hl'); targets.forEach(function (g) { g.classList.remove('hl'); }); }
      tr.addEventListener('mouseenter', on);
      tr.addEventListener('mouseleave', off);
      targets.forEach(function (g) { g.addEventListener('mouseenter', on); g.addEventListener('mouseleave', off); });
    });
  }
  pair('data-marker');
  pair('data-shade');
  document.documentElement.setAttribute('data-ready', 'true');
})();
</script>
</body></html>
`;
}

function hatch(id: string, stroke: string, background: string): string {
  return `<pattern id="${id}" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="${background}"/><line x1="0" y1="0" x2="0" y2="6" stroke="${stroke}" stroke-width="2"/></pattern>`;
}
