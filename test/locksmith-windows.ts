/**
 * Reboot windows as locksmith users have them: the twelve cases of locksmith's own
 * pkg/timeutil/periodic_test.go (TestToStart, all in America/Los_Angeles, May 2015) and four
 * daylight-saving cases in the same zone. Each gives locksmith's REBOOT_WINDOW_START and
 * REBOOT_WINDOW_LENGTH, an instant, and what the node's local wall clock makes of it: whether the
 * window is open, and when it next closes (if open) or opens (if closed), in UTC.
 *
 * Two of locksmith's cases check the closing edge itself: locksmith counted the instant a window
 * ends as inside it, sluice does not (open periods are half-open, as documented), so there the
 * window is closed and the next one is given.
 */

/** One case. */
export interface LocksmithWindowCase {
  name: string;
  start: string;
  length: string;
  /** The instant, in UTC. */
  at: string;
  open: boolean;
  /** nextEnd when open, nextStart when closed. */
  next: string;
}

/** The zone every case is written in, as `TZ` or `/etc/localtime` gives it. */
export const CASES_ZONE = 'America/Los_Angeles';

// biome-ignore format: one case per line reads as a table
export const LOCKSMITH_WINDOW_CASES: readonly LocksmithWindowCase[] = [
  // locksmith's TestToStart, times in PDT (UTC-7)
  { name: 'daily window in 15 minutes', start: '00:15', length: '10s', at: '2015-05-21T07:00:00Z', open: false, next: '2015-05-21T07:15:00.000Z' },
  { name: 'daily window now', start: '00:00', length: '1h', at: '2015-05-21T07:00:00Z', open: true, next: '2015-05-21T08:00:00.000Z' },
  { name: 'daily window started 1 second ago', start: '00:00', length: '1h', at: '2015-05-21T07:00:01Z', open: true, next: '2015-05-21T08:00:00.000Z' },
  { name: 'daily window at its closing edge (closed in sluice)', start: '02:33', length: '10h', at: '2015-05-21T19:33:00Z', open: false, next: '2015-05-22T09:33:00.000Z' },
  { name: 'daily window just closed, expect the next', start: '02:33', length: '10h', at: '2015-05-21T19:33:01Z', open: false, next: '2015-05-22T09:33:00.000Z' },
  { name: 'daily window started last night, open into today', start: '23:05', length: '11h', at: '2015-05-21T16:33:01Z', open: true, next: '2015-05-21T17:05:00.000Z' },
  { name: 'weekly window in 15 minutes', start: 'Thu 00:15', length: '10s', at: '2015-05-21T07:00:00Z', open: false, next: '2015-05-21T07:15:00.000Z' },
  { name: 'weekly window now', start: 'Thu 00:00', length: '1h', at: '2015-05-21T07:00:00Z', open: true, next: '2015-05-21T08:00:00.000Z' },
  { name: 'weekly window started 1 second ago', start: 'Sun 00:00', length: '1h', at: '2015-05-17T07:00:01Z', open: true, next: '2015-05-17T08:00:00.000Z' },
  { name: 'weekly window at its closing edge (closed in sluice)', start: 'Sun 02:33', length: '10h', at: '2015-05-17T19:33:00Z', open: false, next: '2015-05-24T09:33:00.000Z' },
  { name: 'weekly window from last week, open into today', start: 'Sat 23:05', length: '11h', at: '2015-05-17T16:33:01Z', open: true, next: '2015-05-17T17:05:00.000Z' },
  { name: 'weekly window whose next period is next month', start: 'Mon 9:00', length: '1h', at: '2015-05-31T06:00:00Z', open: false, next: '2015-06-01T16:00:00.000Z' },
  // Daylight saving time in America/Los_Angeles
  { name: 'Thu 04:00 in winter is 12:00 UTC', start: 'Thu 04:00', length: '1h30m', at: '2025-03-06T11:00:00Z', open: false, next: '2025-03-06T12:00:00.000Z' },
  { name: 'Thu 04:00 after the spring change is 11:00 UTC', start: 'Thu 04:00', length: '1h30m', at: '2025-03-13T10:30:00Z', open: false, next: '2025-03-13T11:00:00.000Z' },
  { name: 'a start that happens twice (fall back) counts the first time', start: 'Sun 01:30', length: '1h', at: '2025-11-02T08:00:00Z', open: false, next: '2025-11-02T08:30:00.000Z' },
  { name: 'a start in the spring gap opens when the clocks jump', start: '02:00', length: '3h', at: '2025-03-09T09:30:00Z', open: false, next: '2025-03-09T10:00:00.000Z' },
];
