import { describe, expect, it } from 'vitest';
import { renderTimeline } from './html.js';
import type { FleetTimeline } from './model.js';

const t0 = Date.parse('2026-12-01T15:00:00Z');

const page: FleetTimeline = {
  title: 'group <web>',
  summary: ['7 reboots'],
  startAt: t0,
  endAt: t0 + 600_000,
  zone: 'Europe/Berlin',
  lanes: [
    {
      node: 'n<1>',
      segments: [
        { from: t0, to: t0 + 60_000, state: 'queued' },
        { from: t0 + 60_000, to: t0 + 120_000, state: 'down' },
      ],
    },
  ],
  down: [
    [t0 + 60_000, 1],
    [t0 + 120_000, 0],
  ],
  max: [[t0, 2]],
  markers: [
    { at: t0 + 30_000, kind: 'pause', label: 'paused', by: 'ann@ops', detail: '"BIOS" & more' },
  ],
  shades: [
    { from: t0 + 30_000, to: t0 + 300_000, kind: 'paused', reason: 'paused: BIOS (by ann@ops)' },
  ],
};

describe('renderTimeline', () => {
  it('escapes every text it is given', () => {
    const html = renderTimeline(page);
    expect(html).not.toContain('<web>');
    expect(html).not.toContain('n<1>');
    expect(html).toContain('group &#60;web&#62;');
    expect(html).toContain('&#34;BIOS&#34; &#38; more');
  });

  it('writes wall-clock times in the chosen zone', () => {
    const html = renderTimeline(page);
    // 15:00:30 UTC is 16:00:30 in Berlin in December.
    expect(html).toContain('2026-12-01 16:00:30 CET');
    expect(html).toContain('>16:00<');
    expect(renderTimeline({ ...page, zone: 'UTC' })).toContain('2026-12-01 15:00:30 UTC');
  });

  it('numbers each marker on the chart and in the table, and writes a shade its reason', () => {
    const html = renderTimeline(page);
    expect(html).toMatch(/<g class="marker" data-kind="pause" data-marker="1">/);
    expect(html).toMatch(/<tr data-marker="1">/);
    expect(html).toMatch(/<rect [^>]*class="shade" data-kind="paused"/);
    expect(html).toMatch(/class="shade-label"[^>]*>paused: BIOS/);
  });
});
