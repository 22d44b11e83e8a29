/**
 * `--since` of `history` and `report`: how far back, as a duration (Go's `36h`, `90m`, plus days
 * and weeks: `7d`, `2w`, `1d12h`), or an instant (`2026-11-30`, `2026-11-30T08:00:00Z`).
 */
import { err, ok, parseDurationText, type Result, SluiceError } from '@sluice/core';

const DAY = 24 * 3_600_000;

/** The instant `text` stands for, counted back from `now`; errors name `flag`. */
export function parseSince(text: string, flag: string, now: Date): Result<Date> {
  const value = text.trim();
  const fail = (why: string) =>
    err(
      new SluiceError(
        'invalid-config',
        `${flag} ${JSON.stringify(text)}: ${why}; give a duration such as 7d, 36h or 90m, or an instant such as 2026-11-30T08:00:00Z`,
        flag,
      ),
    );
  if (/^\d{4}-\d{2}-\d{2}/.test(value)) {
    const at = Date.parse(value);
    if (Number.isNaN(at)) return fail('not an instant');
    if (at > now.getTime()) return fail('it is in the future');
    return ok(new Date(at));
  }
  // Days and weeks up front (`2w3d12h`), then whatever Go's duration syntax takes.
  const match = /^(?:(\d+)w)?(?:(\d+)d)?(.*)$/.exec(value)!;
  const [, weeks, days, rest] = match;
  let ms = (Number(weeks ?? 0) * 7 + Number(days ?? 0)) * DAY;
  if (rest) {
    const parsed = parseDurationText(rest);
    if (!parsed.ok) return fail(parsed.error);
    ms += parsed.value;
  } else if (weeks === undefined && days === undefined) {
    return fail('it is empty');
  }
  if (ms <= 0) return fail('it must be more than 0');
  return ok(new Date(now.getTime() - ms));
}
