/**
 * The invariant checker: what must hold after any rollout, whatever failed during it. It reads
 * only what the simulator recorded itself (the reboot log, the staged updates, its own changes of
 * max) and what its independent watchers saw in etcd (the {@link GroupTimeline}, and the testkit's
 * HolderObserver at each Reboot call). It never asks the code under test.
 *
 * Definitions. A *holder* is a node with a marker at `groups/<g>/holding/<node>`; its *admission
 * revision* a(h) is the marker's create revision. max(r) is the max admission obeys at revision r
 * (absent 1, unreadable 0). A node is *down* from its logind Reboot call until the simulator
 * boots it again.
 *
 * 1. **slots** (exact, in revision order). At every revision r:
 *    |{ h holding at r : max(a(h)) ≤ max(r) }| ≤ max(r).
 *    In words: at most max(r) holders, not counting holders admitted while max was higher than it
 *    is now. Those are the nodes "already holding when max was lowered"; they may finish and
 *    drain, but while they do, nobody who counts against the lower max is admitted beyond it.
 *    Why this is what the semaphore guarantees: a holder's place in the queue only falls, and it
 *    was below max(a(h)) at admission; a holder at place ≥ max(r) therefore had max(a(h)) > max(r).
 *    The holders left over sit at places below max(r), and there are only max(r) of those.
 * 2. **rank**: the admission rule itself. When h is admitted at revision r, fewer than max(r)
 *    places stand ahead of it: queue keys created before h's queue key, plus lost holders
 *    (markers whose queue key is gone or newer) whose key was created before it. Places only fall (new
 *    keys come last), so together with this, check 1 follows; it is checked anyway.
 *    **paused**: no admission (marker creation) at a revision where `paused` exists.
 * 3. **down** (in time): at every instant t, |{ n down at t : max(a(n)) ≤ m(t) }| ≤ m(t), where
 *    m(t) is max as the simulator's watcher had seen it by t, and a(n) is the admission of the
 *    slot the node rebooted with. Without max changes this is simply "never more than max nodes
 *    down at once". A down node counts while that slot is held: a node that never comes back
 *    stops counting once an operator force-unlocks it (`sluicectl unlock --force`), which is the
 *    operator's explicit call. A watcher that lags can only make this check more lenient, never
 *    fail a correct run; check 1 is the exact one.
 * 4. **slot at reboot**: at each Reboot call the HolderObserver (a separate etcd watcher) shows
 *    the node's holding marker, and a direct read of the marker with the simulator's own client
 *    finds it (its create revision is recorded as the reboot's admission; see slot-check.ts for
 *    why both answers are sound although they come a little after the call). The timeline must
 *    hold that marker stint too.
 * 5. **once**: every node reboots exactly once for each update staged on it (at most once while a
 *    rollout is unfinished), and never without an update.
 */
import type { MarkerInterval, MaxChange, SettingChange, TimelineEvent } from './timeline.js';

/** One reboot in the simulator's log. */
export interface RebootEntry {
  node: string;
  /** 1-based count of this node's reboots. */
  seq: number;
  /** When logind's Reboot was called (the agent was killed then). */
  downAt: number;
  /** When the machine booted again and its agent started; null while down. */
  upAt: number | null;
  versionBefore: string;
  versionAfter: string;
  /** Whether the HolderObserver showed the node's marker at the call; null while checking. */
  slotSeen: boolean | null;
  /** How long after the call the observer showed it (0 = at once). */
  slotSeenAfterMs: number | null;
  /**
   * The create revision of the node's holding marker, read from etcd at the call (the slot's
   * admission); null if there was none.
   */
  admissionRevision: number | null;
}

/** An update staged on a node. */
export interface StageEntry {
  node: string;
  version: string;
  at: number;
}

/** A change of max made by the simulator (or by a test through it). */
export interface MaxSetEntry {
  /** When the write was issued, and when it returned. */
  at: number;
  doneAt: number;
  value: string;
  /** `client`, `etcdctl` or `sluicectl`. */
  via: string;
}

/** What the checker needs from the timeline (a {@link GroupTimeline} has it all). */
export interface TimelineData {
  startRevision: number;
  /** Keys found by the first read. */
  initial: readonly TimelineEvent[];
  events: readonly TimelineEvent[];
  maxChanges: readonly MaxChange[];
  pausedChanges: readonly SettingChange[];
  markers: readonly MarkerInterval[];
  keys: { max: string; paused: string; holdingPrefix: string; queuePrefix: string };
  maxAt(revision: number): number;
  maxAtTime(at: number): number;
  pausedAt(revision: number): string | null;
}

/** Everything the checker reads. */
export interface InvariantInput {
  reboots: readonly RebootEntry[];
  stages: readonly StageEntry[];
  maxSets: readonly MaxSetEntry[];
  timeline: TimelineData;
  /** True once the rollout is over: every staged update must then have exactly one reboot. */
  complete: boolean;
}

/** One broken invariant. */
export interface Violation {
  check: 'slots' | 'rank' | 'paused' | 'down' | 'slot-at-reboot' | 'once';
  node: string | null;
  revision: number | null;
  at: number | null;
  message: string;
}

/** The result of a check. */
export interface InvariantReport {
  ok: boolean;
  violations: Violation[];
  /** Most nodes down at one instant. */
  peakDown: number;
  /** Most holding markers at one revision. */
  peakHolders: number;
  reboots: number;
  /** Notes that are not violations (e.g. a max write the watcher never saw). */
  notes: string[];
}

/** Checks every invariant; see the module comment for their exact definitions. */
export function checkInvariants(input: InvariantInput): InvariantReport {
  const violations: Violation[] = [];
  const notes: string[] = [];
  const slots = checkSlots(input.timeline, violations);
  const peakDown = checkDown(input, violations);
  checkSlotAtReboot(input, violations);
  checkOnce(input, violations);
  for (const set of input.maxSets) {
    const seen = input.timeline.maxChanges.some(
      (c) => c.raw !== null && c.raw.trim() === set.value.trim() && c.at >= set.at - 1000,
    );
    if (!seen) notes.push(`max ${set.value} set by ${set.via} was never seen by the watcher`);
  }
  return {
    ok: violations.length === 0,
    violations,
    peakDown,
    peakHolders: slots.peak,
    reboots: input.reboots.length,
    notes,
  };
}

/** The queue key's create revision a marker records (its place), or null if unreadable. */
function markerPlace(value: string | null): number | null {
  try {
    const parsed = JSON.parse(value ?? '') as { createRevision?: unknown };
    return typeof parsed.createRevision === 'number' ? parsed.createRevision : null;
  } catch {
    return null;
  }
}

function checkSlots(t: TimelineData, violations: Violation[]): { peak: number } {
  /** Holders: node → admission revision. */
  const holders = new Map<string, number>();
  /** Holders' places (their queue keys' create revisions), as their markers record them. */
  const places = new Map<string, number | null>();
  /** Queue keys: node → create revision. */
  const queue = new Map<string, number>();
  for (const e of t.initial) {
    if (e.key.startsWith(t.keys.queuePrefix)) {
      queue.set(e.key.slice(t.keys.queuePrefix.length), e.createRevision);
    } else if (e.key.startsWith(t.keys.holdingPrefix)) {
      const node = e.key.slice(t.keys.holdingPrefix.length);
      holders.set(node, e.createRevision);
      places.set(node, markerPlace(e.value));
    }
  }
  let peak = holders.size;
  const check = (revision: number, at: number, admitted: string | null) => {
    const max = t.maxAt(revision);
    const counted = [...holders].filter(([, a]) => t.maxAt(a) <= max).map(([node]) => node);
    if (counted.length > max) {
      violations.push({
        check: 'slots',
        node: admitted,
        revision,
        at,
        message: `${counted.length} holders count against max ${max} at revision ${revision}: ${counted.join(', ')}`,
      });
    }
  };
  const checkRank = (node: string, revision: number, at: number) => {
    const max = t.maxAt(revision);
    const own = queue.get(node);
    if (own === undefined) {
      violations.push({
        check: 'rank',
        node,
        revision,
        at,
        message: `${node} was admitted at revision ${revision} without a queue key`,
      });
      return;
    }
    let ahead = 0;
    for (const [other, created] of queue) if (other !== node && created < own) ahead++;
    for (const [other] of holders) {
      if (other === node) continue;
      // Lost: the marker's queue key is gone or is a newer one (or the marker is unreadable).
      const place = places.get(other) ?? null;
      const lost = place === null || queue.get(other) !== place;
      if (lost && (place === null || place < own)) ahead++;
    }
    if (ahead >= max) {
      violations.push({
        check: 'rank',
        node,
        revision,
        at,
        message: `${node} was admitted at revision ${revision} with ${ahead} places ahead of it and max ${max}`,
      });
    }
  };
  for (const e of t.events) {
    if (e.key.startsWith(t.keys.queuePrefix)) {
      const node = e.key.slice(t.keys.queuePrefix.length);
      if (e.type === 'delete') queue.delete(node);
      else queue.set(node, e.createRevision);
    } else if (e.key.startsWith(t.keys.holdingPrefix)) {
      const node = e.key.slice(t.keys.holdingPrefix.length);
      if (e.type === 'delete') {
        holders.delete(node);
        places.delete(node);
        continue;
      }
      if (holders.has(node)) continue; // a rewrite of the marker, not an admission
      holders.set(node, e.revision);
      places.set(node, markerPlace(e.value));
      peak = Math.max(peak, holders.size);
      const paused = t.pausedAt(e.revision);
      if (paused !== null) {
        violations.push({
          check: 'paused',
          node,
          revision: e.revision,
          at: e.at,
          message: `${node} was admitted at revision ${e.revision} while the group was paused (${paused})`,
        });
      }
      checkRank(node, e.revision, e.at);
      check(e.revision, e.at, node);
    } else if (e.key === t.keys.max) {
      check(e.revision, e.at, null);
    }
  }
  return { peak };
}

/** The marker stint a reboot happened in, by the admission recorded at the call. */
function stintOf(t: TimelineData, r: RebootEntry): MarkerInterval | undefined {
  if (r.admissionRevision === null) return undefined;
  return t.markers.find((m) => m.node === r.node && m.createdRevision === r.admissionRevision);
}

function checkDown(input: InvariantInput, violations: Violation[]): number {
  const t = input.timeline;
  const stints = new Map<RebootEntry, MarkerInterval | undefined>();
  for (const r of input.reboots) stints.set(r, stintOf(t, r));
  let peak = 0;
  for (const r of input.reboots) {
    const at = r.downAt;
    const down = input.reboots.filter((o) => o.downAt <= at && (o.upAt === null || o.upAt > at));
    peak = Math.max(peak, down.length);
    const max = t.maxAtTime(at);
    const counted = down.filter((o) => {
      const stint = stints.get(o);
      // No slot at all is counted (and reported by the slot-at-reboot check).
      if (!stint) return true;
      if (stint.deletedAt !== null && stint.deletedAt <= at) return false;
      return t.maxAt(stint.createdRevision) <= max;
    });
    if (counted.length > max) {
      violations.push({
        check: 'down',
        node: r.node,
        revision: null,
        at,
        message: `${counted.length} nodes down at once against max ${max} when ${r.node} went down: ${counted.map((o) => o.node).join(', ')}`,
      });
    }
  }
  return peak;
}

function checkSlotAtReboot(input: InvariantInput, violations: Violation[]): void {
  for (const r of input.reboots) {
    if (r.slotSeen === false) {
      violations.push({
        check: 'slot-at-reboot',
        node: r.node,
        revision: null,
        at: r.downAt,
        message: `${r.node} rebooted (#${r.seq}) without the observer seeing its holding marker`,
      });
    }
    if (r.admissionRevision === null) {
      violations.push({
        check: 'slot-at-reboot',
        node: r.node,
        revision: null,
        at: r.downAt,
        message: `${r.node} rebooted (#${r.seq}) with no holding marker in etcd`,
      });
    } else if (!stintOf(input.timeline, r)) {
      violations.push({
        check: 'slot-at-reboot',
        node: r.node,
        revision: r.admissionRevision,
        at: r.downAt,
        message: `${r.node} rebooted (#${r.seq}) on a marker (revision ${r.admissionRevision}) the timeline never saw`,
      });
    }
  }
}

function checkOnce(input: InvariantInput, violations: Violation[]): void {
  const staged = new Set(input.stages.map((s) => `${s.node}\0${s.version}`));
  const counts = new Map<string, number>();
  for (const r of input.reboots) {
    const key = `${r.node}\0${r.versionAfter}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
    if (!staged.has(key)) {
      violations.push({
        check: 'once',
        node: r.node,
        revision: null,
        at: r.downAt,
        message: `${r.node} rebooted (#${r.seq}) with no update staged (${r.versionBefore} -> ${r.versionAfter})`,
      });
    }
  }
  for (const key of staged) {
    const [node, version] = key.split('\0') as [string, string];
    const n = counts.get(key) ?? 0;
    if (n > 1 || (input.complete && n === 0)) {
      violations.push({
        check: 'once',
        node,
        revision: null,
        at: null,
        message: `${node} rebooted ${n} times for update ${version}; expected exactly once`,
      });
    }
  }
}

/** Formats a report for people: one line when all is well, one line per violation otherwise. */
export function formatReport(report: InvariantReport, origin = 0): string {
  if (report.ok) {
    return `invariants hold: ${report.reboots} reboots, at most ${report.peakDown} down at once, at most ${report.peakHolders} holders`;
  }
  const lines = report.violations.map((v) => {
    const when = v.at === null ? '' : ` at +${((v.at - origin) / 1000).toFixed(1)}s`;
    const rev = v.revision === null ? '' : ` rev ${v.revision}`;
    return `  [${v.check}]${when}${rev}: ${v.message}`;
  });
  return `${report.violations.length} invariant violation(s):\n${lines.join('\n')}`;
}
