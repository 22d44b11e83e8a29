/**
 * Wall-clock times in an IANA zone for the timeline's axis and tables, through `Intl` (which
 * reads the tz database), and round tick steps aligned to the zone's own midnight.
 */

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** True when `zone` is an IANA zone `Intl` knows. */
export function isValidZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-GB', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function parts(at: number, zone: string): Record<string, string> {
  let f = formatters.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-GB', {
      timeZone: zone,
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      weekday: 'short',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
      hourCycle: 'h23',
      timeZoneName: 'short',
    });
    formatters.set(zone, f);
  }
  const out: Record<string, string> = {};
  for (const p of f.formatToParts(new Date(at))) out[p.type] = p.value;
  return out;
}

/** `2026-12-01 15:34:00 CET`: an instant in the zone, to the second, with the zone's short name. */
export function wallClock(at: number, zone: string): string {
  const p = parts(at, zone);
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second} ${p.timeZoneName}`;
}

/** The zone's offset from UTC at `at`, in ms (positive east of Greenwich). */
export function zoneOffset(at: number, zone: string): number {
  const p = parts(at, zone);
  const local = Date.UTC(
    Number(p.year),
    Number(p.month) - 1,
    Number(p.day),
    Number(p.hour),
    Number(p.minute),
    Number(p.second),
  );
  return local - Math.floor(at / 1000) * 1000;
}

const STEPS = [
  SECOND,
  2 * SECOND,
  5 * SECOND,
  10 * SECOND,
  15 * SECOND,
  30 * SECOND,
  MINUTE,
  2 * MINUTE,
  5 * MINUTE,
  10 * MINUTE,
  15 * MINUTE,
  30 * MINUTE,
  HOUR,
  2 * HOUR,
  3 * HOUR,
  6 * HOUR,
  12 * HOUR,
  DAY,
  2 * DAY,
  7 * DAY,
];

/** Tick instants for [from, to] with about `count` ticks, on round wall-clock times in `zone`. */
export function ticks(
  from: number,
  to: number,
  zone: string,
  count = 10,
): { step: number; at: number[] } {
  const span = Math.max(1, to - from);
  const step = STEPS.find((s) => s >= span / count) ?? 30 * DAY;
  const offset = zoneOffset(from, zone);
  let t = Math.ceil((from + offset) / step) * step - offset;
  const at: number[] = [];
  while (t <= to && at.length < 100) {
    at.push(t);
    t += step;
  }
  return { step, at };
}

/** A tick's label: seconds when the step is under a minute, the day when the span crosses days. */
export function tickLabel(at: number, step: number, spanMs: number, zone: string): string {
  const p = parts(at, zone);
  const time = step < MINUTE ? `${p.hour}:${p.minute}:${p.second}` : `${p.hour}:${p.minute}`;
  if (step >= DAY) return `${p.weekday} ${p.day}.${p.month}.`;
  if (spanMs > DAY) return `${p.weekday} ${p.day} ${time}`;
  return time;
}

/** A duration as people say it: `45 s`, `3 min 20 s`, `2 h 05 min`, `3 d 4 h`. */
export function spoken(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, '0')} s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${String(m % 60).padStart(2, '0')} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}
