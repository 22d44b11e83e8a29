/**
 * The canary rule: for each new update version in a group, the first `count` nodes to reboot into
 * it go first (the canaries); once that many have been admitted, nobody else is admitted until
 * every canary is back (released, so its post-reboot checks passed) and `soak` has passed since
 * the last came back. A canary that fails its post-checks, is lost, or whose slot ends without its
 * own release stops the group until an operator resets or skips the canary. Pure: the etcd
 * adapter reads the keys and writes what `canarySeat()` says.
 *
 * Keys (under `groups/<g>/`):
 * - `canary`: the setting, `{"count":K,"soak":"30m"}`, edited by operators; absent = no canary.
 * - `canary-state`: the version being canaried, the seats taken and the versions proven before,
 *   written only by the admission txns that seat a canary. It is a settings key, so every
 *   admission txn is guarded on it: seats are taken one at a time, and no admission decided
 *   before a seat was taken commits after it.
 * - `canaries/<node>`: one record per canary, written with its marker and ended with it (the
 *   release txn writes `outcome`).
 *
 * A node's version is the `toVersion` of its queue record. A reboot with no version (a manual
 * request, a source that does not say) starts no canary; it is held back like everyone else while
 * a canary soaks.
 */
import { z } from 'zod';
import { formatDuration, parseDurationText } from './duration.js';
import { err, ok, type Result, SluiceError } from './errors.js';
import { parseRecord } from './records.js';
import { quoteValue } from './values.js';

/** The most canaries per version. */
export const MAX_CANARY_COUNT = 1000;
/** The longest soak accepted: 30 days. */
export const MAX_CANARY_SOAK_MS = 30 * 24 * 3_600_000;
/** How many proven versions `canary-state` remembers. */
export const CANARY_DONE_KEPT = 32;

/** The parsed `canary` setting. */
export interface CanarySetting {
  count: number;
  soakMs: number;
}

const SettingSchema = z.strictObject({
  count: z.number().int().min(1).max(MAX_CANARY_COUNT),
  soak: z.string().max(64),
});

/**
 * Parses `groups/<g>/canary`: JSON `{"count":K,"soak":"30m"}`; absent means no canary. Anything
 * else fails closed with an error naming the key.
 */
export function parseCanary(raw: string | undefined, key: string): Result<CanarySetting | null> {
  if (raw === undefined) return ok(null);
  const bad = (why: string) =>
    err(
      new SluiceError(
        'invalid-value',
        `${key} is ${quoteValue(raw)}: ${why}; expected {"count":K,"soak":"30m"}, nobody is admitted until it is fixed`,
        key,
      ),
    );
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    return bad('not JSON');
  }
  const parsed = SettingSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = issue?.path.join('.') || 'value';
    return bad(`${field}: ${issue?.message ?? 'invalid'}`);
  }
  const soak = parseDurationText(parsed.data.soak);
  if (!soak.ok) return bad(`soak: ${soak.error}`);
  if (soak.value > MAX_CANARY_SOAK_MS) return bad('soak: more than 30 days');
  return ok({ count: parsed.data.count, soakMs: soak.value });
}

/** The canonical text of a canary setting, as `sluicectl canary` writes it. */
export function formatCanary(setting: CanarySetting): string {
  return JSON.stringify({ count: setting.count, soak: formatDuration(setting.soakMs) });
}

const isoDate = z.iso.datetime({ offset: true });

/** `groups/<g>/canary-state`: the version being canaried and those proven before it. */
export const CanaryStateSchema = z.looseObject({
  v: z.literal(1),
  version: z.string().min(1),
  /** Canaries seated for `version` (their records are under `canaries/`). */
  seats: z.number().int().nonnegative(),
  startedAt: isoDate,
  /** Versions whose canary finished (newest last), at most CANARY_DONE_KEPT. */
  done: z.array(z.string()).max(CANARY_DONE_KEPT).default([]),
});
/** Parsed `canary-state`. */
export type CanaryState = z.infer<typeof CanaryStateSchema>;

/** How a canary's slot ended: released (its checks passed), given back unused, or failed. */
export const CANARY_OUTCOMES = ['released', 'abandoned', 'failed'] as const;

/** `groups/<g>/canaries/<node>`: one canary of the version in `canary-state`. */
export const CanaryRecordSchema = z.looseObject({
  v: z.literal(1),
  node: z.string().min(1),
  version: z.string().min(1),
  grantedAt: isoDate,
  /** Absent while the canary holds its slot. */
  outcome: z.enum(CANARY_OUTCOMES).optional(),
  endedAt: isoDate.optional(),
  /** Why it failed: its post-checks' complaint. */
  problem: z.string().optional(),
});
/** A parsed canary record. */
export type CanaryRecord = z.infer<typeof CanaryRecordSchema>;

/** Parses `canary-state` (absent: null); a bad value fails closed, naming the key. */
export function parseCanaryState(raw: string | undefined, key: string): Result<CanaryState | null> {
  if (raw === undefined) return ok(null);
  const parsed = parseRecord(CanaryStateSchema, raw);
  if (parsed.ok) return ok(parsed.value);
  return err(
    new SluiceError(
      'invalid-value',
      `${key} ${parsed.error.message}; nobody is admitted until it is fixed (sluicectl canary reset)`,
      key,
    ),
  );
}

/** A canary record as the group holds it: `record` null when it does not parse. */
export interface CanaryEntry {
  node: string;
  key: string;
  modRevision: number;
  record: CanaryRecord | null;
}

/** What the canary rule needs of a group at one revision. */
export interface CanaryInputs {
  canary: Result<CanarySetting | null>;
  canaryState: Result<CanaryState | null>;
  canaries: readonly CanaryEntry[];
  /** Nodes holding a live (not lost) marker. */
  liveHolders: ReadonlySet<string>;
  /** Nodes holding a lost marker. */
  lostHolders: ReadonlySet<string>;
}

/** Where the current canary stands. */
export interface CanaryProgress {
  version: string;
  count: number;
  soakMs: number;
  /** Canaries seated (abandoned seats do not count). */
  seated: string[];
  /** Canaries still in their slot. */
  inFlight: string[];
  /** Canaries back, their checks passed. */
  back: string[];
  /** Canaries that failed, with why. */
  failed: { node: string; why: string }[];
  /** When the soak ends: the last canary back plus soak; null while any is not back. */
  soakEndsAt: Date | null;
  /** True once every seated canary is back and the soak has passed (with at least one seated). */
  settled: boolean;
  /** Versions proven before. */
  done: readonly string[];
}

/** The current canary at `now`, or null when the group has no canary setting or state. */
export function canaryProgress(inputs: CanaryInputs, now: Date): CanaryProgress | null {
  if (!inputs.canary.ok || !inputs.canary.value) return null;
  if (!inputs.canaryState.ok || !inputs.canaryState.value) return null;
  const { count, soakMs } = inputs.canary.value;
  const state = inputs.canaryState.value;
  const progress: CanaryProgress = {
    version: state.version,
    count,
    soakMs,
    seated: [],
    inFlight: [],
    back: [],
    failed: [],
    soakEndsAt: null,
    settled: false,
    done: state.done,
  };
  if (state.done.includes(state.version)) {
    // Proven already: an operator skipped its canary (sluicectl canary skip).
    progress.settled = true;
    return progress;
  }
  let lastBack = 0;
  for (const entry of inputs.canaries) {
    const record = entry.record;
    if (record === null) {
      // An unreadable record is a seat whose fate is unknown: it fails closed.
      progress.seated.push(entry.node);
      progress.failed.push({ node: entry.node, why: `${entry.key} is not a valid record` });
      continue;
    }
    if (record.version !== state.version || record.outcome === 'abandoned') continue;
    progress.seated.push(entry.node);
    if (record.outcome === 'released') {
      progress.back.push(entry.node);
      lastBack = Math.max(lastBack, Date.parse(record.endedAt ?? record.grantedAt));
    } else if (record.outcome === 'failed') {
      progress.failed.push({ node: entry.node, why: record.problem ?? 'its post-checks failed' });
    } else if (inputs.lostHolders.has(entry.node)) {
      progress.failed.push({ node: entry.node, why: 'lost during its reboot' });
    } else if (inputs.liveHolders.has(entry.node)) {
      progress.inFlight.push(entry.node);
    } else {
      // The marker went without the canary's own release: forced off, or lost and cleared.
      progress.failed.push({ node: entry.node, why: 'its slot ended without its own release' });
    }
  }
  const allBack = progress.seated.length > 0 && progress.back.length === progress.seated.length;
  if (allBack) {
    progress.soakEndsAt = new Date(lastBack + soakMs);
    progress.settled = now.getTime() >= lastBack + soakMs;
  }
  return progress;
}

/** What the canary rule says of one waiter. */
export type CanaryVerdict =
  /** The rule does not hold the node back; it goes by the other rules. */
  | { kind: 'free' }
  /** The node may take a canary seat: the admission txn writes `state` and its record. */
  | { kind: 'seat'; version: string; start: boolean }
  | { kind: 'wait'; reason: 'canary' | 'canary-failed'; detail: string; wakeAt: Date | null };

/** The canary rule for a waiter whose update is `version` (undefined: none known). */
export function canaryVerdict(
  inputs: CanaryInputs,
  version: string | undefined,
  now: Date,
): CanaryVerdict {
  if (!inputs.canary.ok || !inputs.canary.value) return { kind: 'free' };
  if (!inputs.canaryState.ok) return { kind: 'free' }; // reported as an invalid value first
  const progress = canaryProgress(inputs, now);
  if (!progress) {
    return version === undefined ? { kind: 'free' } : { kind: 'seat', version, start: true };
  }
  if (progress.failed.length > 0) {
    const first = progress.failed[0]!;
    return {
      kind: 'wait',
      reason: 'canary-failed',
      detail: `the canary of ${progress.version} failed: ${first.node} ${first.why}; nobody is admitted until an operator runs sluicectl canary reset (try again) or sluicectl canary skip (accept the version)`,
      wakeAt: null,
    };
  }
  const full = progress.seated.length >= progress.count;
  const waitCanary = (): CanaryVerdict => ({
    kind: 'wait',
    reason: 'canary',
    detail: canaryWaitDetail(progress, now),
    wakeAt: progress.soakEndsAt && !progress.settled ? progress.soakEndsAt : null,
  });
  if (progress.settled) {
    if (version === undefined || version === progress.version || progress.done.includes(version)) {
      return { kind: 'free' };
    }
    return { kind: 'seat', version, start: true };
  }
  if (version === progress.version && !full) return { kind: 'seat', version, start: false };
  if (full) return waitCanary();
  if (version === undefined || version === progress.version || progress.done.includes(version)) {
    return { kind: 'free' };
  }
  // A newer version waits for the canary in progress: one canary at a time.
  if (progress.seated.length === 0) return { kind: 'seat', version, start: true };
  return waitCanary();
}

function canaryWaitDetail(progress: CanaryProgress, now: Date): string {
  const head = `canary of ${progress.version}: ${progress.back.length} of ${progress.seated.length} back`;
  if (progress.soakEndsAt) {
    const left = Math.max(
      0,
      Math.ceil((progress.soakEndsAt.getTime() - now.getTime()) / 1000) * 1000,
    );
    return `${head}, soaking until ${progress.soakEndsAt.toISOString()} (${formatDuration(left)} left)`;
  }
  return `${head} (${progress.inFlight.join(', ')} still rebooting)`;
}

/**
 * The `canary-state` an admission txn writes for a seat (`canarySeat` verdict), from the state as
 * read. Starting a new canary records the version before it as proven when its canary settled.
 */
export function seatState(
  inputs: CanaryInputs,
  seat: { version: string; start: boolean },
  now: Date,
): CanaryState {
  const state = inputs.canaryState.ok ? inputs.canaryState.value : null;
  const progress = canaryProgress(inputs, now);
  if (!seat.start && state) {
    return { ...state, seats: (progress?.seated.length ?? 0) + 1 };
  }
  const done = [...(state?.done ?? [])];
  if (state && progress?.settled && !done.includes(state.version)) done.push(state.version);
  return {
    v: 1,
    version: seat.version,
    seats: 1,
    startedAt: now.toISOString(),
    done: done.slice(-CANARY_DONE_KEPT),
  };
}

/**
 * True when a lost holder is a canary still in its slot: it halts the group whatever the loss
 * budget (a canary is there to find out whether the version comes back).
 */
export function lostCanary(
  inputs: Pick<CanaryInputs, 'canaries' | 'canary'>,
  node: string,
): boolean {
  if (!inputs.canary.ok || !inputs.canary.value) return false;
  return inputs.canaries.some(
    (c) => c.node === node && c.record !== null && c.record.outcome === undefined,
  );
}
