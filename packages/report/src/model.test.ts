import { describe, expect, it } from 'vitest';
import {
  describeMaxOverTime,
  downSeries,
  invalidMaxShades,
  maxSeries,
  mergeSegments,
  pauseShades,
  windowShades,
} from './model.js';

const t0 = Date.parse('2026-12-01T00:00:00Z');
const H = 3_600_000;

describe('settings over time', () => {
  it('max as admission obeys it: absent 1, invalid 0', () => {
    expect(
      maxSeries([
        { at: t0, raw: null },
        { at: t0 + H, raw: '3' },
        { at: t0 + 2 * H, raw: 'abc' },
      ]),
    ).toEqual([
      [t0, 1],
      [t0 + H, 3],
      [t0 + 2 * H, 0],
    ]);
    expect(
      describeMaxOverTime([
        [t0, 2],
        [t0 + H, 2],
        [t0 + 2 * H, 3],
      ]),
    ).toBe('2 → 3');
    expect(describeMaxOverTime([[t0, 2]])).toBe('2');
  });

  it("tells an operator's pause from a halt, with who paused and why", () => {
    const shades = pauseShades(
      [
        {
          at: t0,
          raw: JSON.stringify({ reason: 'BIOS', by: 'ann@ops', since: '2026-12-01T00:00:00Z' }),
        },
        { at: t0 + H, raw: null },
        {
          at: t0 + 2 * H,
          raw: JSON.stringify({ reason: 'node n3 lost during reboot', by: 'sluice' }),
        },
        { at: t0 + 3 * H, raw: 'plain text reason' },
      ],
      t0,
      t0 + 4 * H,
    );
    expect(shades).toEqual([
      { from: t0, to: t0 + H, kind: 'paused', reason: 'paused: BIOS (by ann@ops)' },
      {
        from: t0 + 2 * H,
        to: t0 + 3 * H,
        kind: 'halted',
        reason: 'halted: node n3 lost during reboot',
      },
      { from: t0 + 3 * H, to: t0 + 4 * H, kind: 'paused', reason: 'paused: plain text reason' },
    ]);
  });

  it('shades an invalid max', () => {
    const shades = invalidMaxShades(
      [
        { at: t0, raw: '2' },
        { at: t0 + H, raw: 'two' },
        { at: t0 + 2 * H, raw: '2' },
      ],
      t0,
      t0 + 3 * H,
    );
    expect(shades).toEqual([
      expect.objectContaining({ from: t0 + H, to: t0 + 2 * H, kind: 'invalid' }),
    ]);
  });

  it('shades the hours a window was closed, in its zone', () => {
    // 02:00-05:00 Berlin is 01:00-04:00 UTC in December.
    const shades = windowShades(
      [{ at: t0, raw: 'Mon-Sun 02:00-05:00 Europe/Berlin' }],
      t0,
      t0 + 24 * H,
    );
    expect(shades.map((s) => [(s.from - t0) / H, (s.to - t0) / H, s.kind])).toEqual([
      [0, 1, 'window-closed'],
      [4, 24, 'window-closed'],
    ]);
    const bad = windowShades([{ at: t0, raw: 'Mon 25:00+1h' }], t0, t0 + H);
    expect(bad).toEqual([expect.objectContaining({ kind: 'invalid', from: t0, to: t0 + H })]);
  });
});

describe('lanes', () => {
  it('counts nodes down at once, lost nodes included', () => {
    const lanes = [
      { node: 'a', segments: [{ from: 0, to: 10, state: 'down' as const }] },
      { node: 'b', segments: [{ from: 5, to: 20, state: 'down' as const }] },
      { node: 'c', segments: [{ from: 10, to: 30, state: 'lost' as const }] },
    ];
    expect(downSeries(lanes)).toEqual([
      [0, 1],
      [5, 2],
      [20, 1],
      [30, 0],
    ]);
  });

  it('merges touching segments of one state', () => {
    expect(
      mergeSegments([
        { from: 5, to: 9, state: 'down' },
        { from: 0, to: 5, state: 'down' },
        { from: 9, to: 9, state: 'booting' },
        { from: 9, to: 12, state: 'booting' },
      ]),
    ).toEqual([
      { from: 0, to: 9, state: 'down' },
      { from: 9, to: 12, state: 'booting' },
    ]);
  });
});
