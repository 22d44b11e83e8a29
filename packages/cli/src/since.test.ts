import { describe, expect, it } from 'vitest';
import { parseSince } from './since.js';

const now = new Date('2026-12-01T12:00:00Z');
const back = (text: string) => {
  const r = parseSince(text, '--since', now);
  if (!r.ok) throw r.error;
  return (now.getTime() - r.value.getTime()) / 3_600_000;
};

describe('--since', () => {
  it('takes days, weeks and Go durations, and instants', () => {
    expect(back('7d')).toBe(168);
    expect(back('2w')).toBe(336);
    expect(back('1d12h')).toBe(36);
    expect(back('90m')).toBe(1.5);
    const at = parseSince('2026-11-30T08:00:00Z', '--since', now);
    expect(at.ok && at.value.toISOString()).toBe('2026-11-30T08:00:00.000Z');
  });

  it('names the flag and the bad value', () => {
    for (const bad of ['', 'soon', '7x', '0d', '2027-01-01']) {
      const r = parseSince(bad, '--since', now);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.error.message).toContain(`--since ${JSON.stringify(bad)}`);
    }
  });
});
