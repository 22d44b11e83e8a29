/**
 * Instants people type on the command line (`sluicectl windows check --at ...`): ISO-8601 in the
 * extended form with a zone, so they are never ambiguous, and only instants that exist.
 */
import { DateTime } from 'luxon';
import { err, ok, type Result, SluiceError } from './errors.js';

/** `YYYY-MM-DDTHH:MM[:SS[.fraction]]` then `Z` or `±HH:MM`; T and Z in either case. */
const SHAPE =
  /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;

/**
 * Parses an ISO-8601 instant such as `2025-03-30T01:30:00Z` or `2025-03-30T03:30+02:00`. The date
 * must exist (no February 30th), the time must be 00:00:00 to 23:59:59 (no `24:00`, no leap
 * second) and the zone is `Z` or an offset up to ±23:59. Fractions of a second are kept to the
 * millisecond. `flag` names the flag in the error, a SluiceError of kind `invalid-config`.
 */
export function parseInstant(text: string, flag: string): Result<Date> {
  const fail = () =>
    err(
      new SluiceError(
        'invalid-config',
        `${flag} ${JSON.stringify(text.length > 40 ? `${text.slice(0, 39)}…` : text)}: want an existing ISO-8601 instant with Z or an offset, e.g. 2025-03-30T01:30:00Z or 2025-03-30T03:30:00+02:00`,
        flag,
      ),
    );
  const match = SHAPE.exec(text.trim());
  if (!match) return fail();
  const [, y, mo, d, h, mi, s = '0', fraction = '', zulu, sign, oh = '0', om = '0'] = match;
  // luxon reads hour 24 as the end of the day; ISO-8601 (since 2019) and RFC 3339 do not.
  if (Number(h) > 23 || Number(oh) > 23 || Number(om) > 59) return fail();
  const offsetMinutes = zulu ? 0 : (sign === '-' ? -1 : 1) * (Number(oh) * 60 + Number(om));
  const local = DateTime.fromObject(
    {
      year: Number(y),
      month: Number(mo),
      day: Number(d),
      hour: Number(h),
      minute: Number(mi),
      second: Number(s),
      millisecond: Number(fraction.padEnd(3, '0').slice(0, 3)),
    },
    { zone: 'UTC' },
  );
  // luxon refuses what does not exist (2025-02-30, 24:00, second 60) instead of rolling it over.
  if (!local.isValid) return fail();
  return ok(new Date(local.toMillis() - offsetMinutes * 60_000));
}
