/**
 * What a group can admit right now, and the one reason it cannot admit more: the operator's view
 * of the same rules `decide()` applies to each waiter. `sluicectl status`, the group metrics of
 * `sluicectl exporter` and the agents' log lines all say it the same way. Pure.
 *
 * The checks run in `decide()`'s order, and the first that stops admission is the reason:
 *
 * 1. `invalid-value`: a settings key does not parse (it names the key);
 * 2. `halted`: more lost holders than the loss budget, or the pause sluice wrote for them;
 * 3. `paused`: an operator's pause (who, since when, why);
 * 4. `window-closed`: the group's window is shut (until when);
 * 5. `canary`: a canary failed, or the canaries of a new version are out and soaking;
 * 6. `full`: every slot is taken (holders above max after a decrease are counted apart).
 */
import { canaryProgress, canaryVerdict } from './canary.js';
import { canaryInputs, type GroupSnapshot, lostHolders, mustHalt } from './snapshot.js';
import { windowStateAll } from './window.js';

/** Why a group admits nobody (more) right now. */
export type Blocker =
  | { kind: 'invalid-value'; key: string; message: string }
  | {
      kind: 'halted';
      /** Lost holders now (the halt stays until `sluicectl resume`, even once they are cleared). */
      lost: string[];
      reason: string;
      since: string | null;
    }
  | { kind: 'paused'; reason: string; by: string | null; since: string | null }
  | { kind: 'window-closed'; opensAt: string | null }
  | {
      kind: 'canary';
      /** True when a canary failed: nobody goes until `sluicectl canary reset` or `skip`. */
      failed: boolean;
      detail: string;
      /** When the soak ends, once every canary is back. */
      until: string | null;
    }
  | { kind: 'full'; holders: number; max: number };

/** The kinds of Blocker, in the order they are checked. */
export const BLOCKER_KINDS = [
  'invalid-value',
  'halted',
  'paused',
  'window-closed',
  'canary',
  'full',
] as const;

/** What the group can admit now. */
export interface Admission {
  /** Slots a waiter could take right now: 0 whenever anything blocks admission. */
  admittable: number;
  /** Why nothing (more) can be admitted; null while a slot is free and nothing blocks. */
  blocker: Blocker | null;
  /**
   * Slots taken: every holding marker, that is holders with a queue key, lost holders (which
   * keep their slot) and slots migrated from locksmith.
   */
  holders: number;
  /** Holders beyond max, admitted before max was lowered: they drain away. 0 when max is invalid. */
  overMax: number;
}

/** The group's admission state at `now`. */
export function groupAdmission(snapshot: GroupSnapshot, now: Date): Admission {
  const lost = lostHolders(snapshot);
  const holders = snapshot.holding.length;
  const max = snapshot.max.ok ? snapshot.max.value : null;
  const overMax = max === null ? 0 : Math.max(0, holders - max);
  const blocked = (blocker: Blocker): Admission => ({ admittable: 0, blocker, holders, overMax });

  for (const [result, key] of [
    [snapshot.max, snapshot.keys.max],
    [snapshot.lossBudget, snapshot.keys.lossBudget],
    [snapshot.domainMax, snapshot.keys.domainMax],
    [snapshot.windows, snapshot.keys.windows],
    [snapshot.canary, snapshot.keys.canary],
    [snapshot.canaryState, snapshot.keys.canaryState],
  ] as const) {
    if (!result.ok) {
      // A bad blackouts value comes as the window's error, naming its own key.
      const blackouts = snapshot.keys.blackouts;
      const at = result.error.where?.includes(blackouts) ? blackouts : key;
      return blocked({ kind: 'invalid-value', key: at, message: result.error.message });
    }
  }
  const budget = snapshot.lossBudget.ok ? snapshot.lossBudget.value : 0;
  const pause = snapshot.paused;
  // The pause sluice writes for lost holders says `by: sluice` (see haltGroup()).
  if (mustHalt(snapshot) || pause?.by === 'sluice') {
    return blocked({
      kind: 'halted',
      lost: lost.map((h) => h.node),
      reason: pause?.reason ?? `${lost.length} lost holder(s), loss budget ${budget}`,
      since: pause?.since ?? null,
    });
  }
  if (pause) {
    return blocked({ kind: 'paused', reason: pause.reason, by: pause.by, since: pause.since });
  }
  if (snapshot.windows.ok && snapshot.windows.value) {
    const state = windowStateAll([snapshot.windows.value], now);
    if (!state.open) {
      return blocked({ kind: 'window-closed', opensAt: state.nextStart?.toISOString() ?? null });
    }
  }
  const canary = canaryBlocker(snapshot, now);
  if (canary) return blocked(canary);
  const free = Math.max(0, (max ?? 0) - holders);
  if (free === 0) return blocked({ kind: 'full', holders, max: max ?? 0 });
  return { admittable: free, blocker: null, holders, overMax };
}

/**
 * The canary as a blocker of the whole group: a failed canary, or the seats of the version taken
 * and not all back and soaked. (Before the seats are taken only nodes of a newer version wait,
 * and `decide()` says so for each.)
 */
function canaryBlocker(snapshot: GroupSnapshot, now: Date): Blocker | null {
  const inputs = canaryInputs(snapshot);
  const progress = canaryProgress(inputs, now);
  if (!progress) return null;
  const failed = progress.failed.length > 0;
  if (!failed && (progress.settled || progress.seated.length < progress.count)) return null;
  // What a waiter of another version is told: it names the canary and where it stands.
  const verdict = canaryVerdict(inputs, undefined, now);
  if (verdict.kind !== 'wait') return null;
  return {
    kind: 'canary',
    failed,
    detail: verdict.detail,
    until: progress.soakEndsAt && !progress.settled ? progress.soakEndsAt.toISOString() : null,
  };
}

/**
 * The blocker in one line for people, with instants as ISO-8601 in UTC. `sluicectl` formats its
 * own instants with ages; logs and notifications use this.
 */
export function describeBlocker(blocker: Blocker): string {
  switch (blocker.kind) {
    case 'invalid-value':
      return `invalid value: ${blocker.message}`;
    case 'halted': {
      const since = blocker.since ? ` since ${blocker.since}` : '';
      const lost = blocker.lost.length > 0 ? ` (lost now: ${blocker.lost.join(', ')})` : '';
      return `halted${since}: ${blocker.reason}${lost}; an operator must unlock the lost node with --force and resume`;
    }
    case 'paused': {
      const by = blocker.by ? ` by ${blocker.by}` : '';
      const since = blocker.since ? ` since ${blocker.since}` : '';
      return `paused${by}${since}: ${blocker.reason}`;
    }
    case 'window-closed':
      return blocker.opensAt
        ? `reboot window closed until ${blocker.opensAt}`
        : 'reboot window closed, and it does not open in the next 16 days';
    case 'canary':
      return blocker.detail;
    case 'full':
      return blocker.max === 0
        ? 'max is 0: admissions are stopped'
        : `full: ${blocker.holders} of ${blocker.max} slot(s) taken`;
  }
}

/**
 * A waiting node's place among the waiters, 1 for the next to be admitted: the numbering
 * `sluicectl status`, `sluicectl lock` and the agents' logs all use. Holders and lost holders are
 * not counted (they are not waiting). Null when the node is not waiting.
 */
export function queuePosition(snapshot: GroupSnapshot, node: string): number | null {
  let position = 0;
  for (const e of snapshot.queue) {
    // As status counts them: a key with a marker, or a record past waiting, holds a slot.
    if (e.holding || (e.record && e.record.state !== 'waiting')) continue;
    position++;
    if (e.node === node) return position;
  }
  return null;
}
