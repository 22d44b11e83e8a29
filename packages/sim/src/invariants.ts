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
 * 5. **once**: every machine reboots exactly once for each update staged on it (at most once while
 *    a rollout is unfinished, or for a cloned machine, which is not part of the rollout), and never
 *    without an update. Two machines rebooting on one slot (one marker stint, which a cloned node
 *    id makes possible) is a reboot without a slot of its own (reported under slot-at-reboot).
 * 6. **halt** (exact, in revision order): no admission at a revision where more holders are lost
 *    (markers whose queue key is gone or newer) than the loss budget allows. Whether someone then
 *    pauses the group is a liveness question the chaos soak asks itself, with a grace period.
 * 7. **window**: no admission while the group's window at that revision is shut, and no reboot
 *    while every window in effect around it is shut. Time here is the simulator's: an admission
 *    is dated when the watcher saw it, so each check allows {@link WINDOW_SLACK_MS} either way and
 *    fires only for a window shut throughout. A node whose clock is set far off (hours) is caught;
 *    a few seconds of skew are within the slack. Only the simple specs the simulator writes
 *    (`Mon,Tue 04:00+30m UTC`; several joined by `;`) are evaluated, independently of core.
 * 8. **leak**: once a rollout is complete no queue key or holding marker is left (read directly
 *    from etcd by the caller, passed in as `leftover`).
 * 9. **observer**: the watchers saw every revision (etcd did not cancel a watch for compaction);
 *    otherwise nothing above can be vouched for.
 * 10. **canary** (in time, when the group has a canary fixed for the run): for each version, the
 *    first `count` machines to reboot into it are its canaries, and no other machine reboots into
 *    it before every canary is up again and `soak` has passed since the last came up. (A canary
 *    is back at its release, after it is up, so this is weaker than the rule, never stricter.)
 *
 * An operator's `sluicectl unlock --force` that was in flight at a node's Reboot call can take
 * the slot away between the agent's confirmation and the call: that reboot is the operator's
 * explicit doing, noted and not counted (see {@link UnlockEntry}). So is one that came after an
 * unlock of a slot whose record already said `rebooting` (a live reboot, which sluicectl makes
 * the operator acknowledge with `--yes`), judged on etcd's revisions: see confirmedThenUnlocked.
 *
 * Why one file: the independent checker reads the reboot log and the observer's samples once and
 * checks every invariant over them; the invariants share that timeline.
 */
import type {
  MarkerInterval,
  MaxChange,
  RecordState,
  SettingChange,
  TimelineEvent,
} from './timeline.js';

/** How far (ms) an admission's or reboot's time may be off for the window check. */
export const WINDOW_SLACK_MS = 10_000;

/** How close (ms) to a Reboot call an operator's force-unlock counts as in flight at it. */
const UNLOCK_RACE_MS = 1000;

/** One reboot in the simulator's log. */
export interface RebootEntry {
  /** The node id the machine's agent runs with (whose holding marker is its slot). */
  node: string;
  /** The machine that went down, when it is not simply `node` (a cloned machine). */
  machine?: string;
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
  /** When that read answered (ms, the simulator's clock); null or absent while unanswered. */
  admissionReadAt?: number | null;
  /** The instance token of the machine's agent (from its token file), when known. */
  token?: string;
}

/** An update staged on a machine. */
export interface StageEntry {
  /** The machine's name. */
  node: string;
  version: string;
  at: number;
  /** A machine outside the rollout (a clone): at most one reboot, none required. */
  optional?: boolean;
}

/** An operator's `sluicectl unlock --force` of a node's slot. */
export interface UnlockEntry {
  node: string;
  /** When the command was started and when it returned. */
  at: number;
  doneAt: number;
  /** Its exit code. */
  code: number;
  /**
   * etcd's revision read just before the command and just after it returned: what the unlock
   * deleted was deleted in between. Absent in older logs (times are used instead).
   */
  fromRevision?: number;
  toRevision?: number;
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
  /** Each node's queue record states over time (absent: no reboot is taken as confirmed). */
  records?: ReadonlyMap<string, readonly RecordState[]>;
  keys: { max: string; paused: string; holdingPrefix: string; queuePrefix: string };
  /** The windows key over time (its raw spec; null while absent). */
  windowChanges: readonly SettingChange[];
  maxAt(revision: number): number;
  maxAtTime(at: number): number;
  pausedAt(revision: number): string | null;
  windowsAt(revision: number): string | null;
  lossBudgetAt(revision: number): number;
  /** Set when the watcher's watch was cancelled: the timeline has a hole. */
  gap?: Error | null;
}

/** Everything the checker reads. */
export interface InvariantInput {
  reboots: readonly RebootEntry[];
  stages: readonly StageEntry[];
  maxSets: readonly MaxSetEntry[];
  timeline: TimelineData;
  /** True once the rollout is over: every staged update must then have exactly one reboot. */
  complete: boolean;
  /** Operator force-unlocks, each of which may excuse a reboot it raced with. */
  unlocks?: readonly UnlockEntry[];
  /** Set when the HolderObserver's watch was cancelled. */
  observerGap?: Error | null;
  /** Queue keys and markers found in etcd once the rollout was over (should be none). */
  leftover?: readonly string[];
  /**
   * Failure domains, when the group has a `domain-max` (fixed for the run): each node's domain as
   * the simulator assigned it, and the limit. Holders and nodes down per domain are then checked
   * against it, and the FIFO rank check gives way to it (nodes may pass one blocked by its domain).
   */
  domains?: { of: ReadonlyMap<string, string>; max: number };
  /** The group's canary, when one was set for the whole run: checked by rule 10. */
  canary?: { count: number; soakMs: number };
}

/** One broken invariant. */
export interface Violation {
  check:
    | 'slots'
    | 'rank'
    | 'paused'
    | 'down'
    | 'slot-at-reboot'
    | 'once'
    | 'halt'
    | 'window'
    | 'leak'
    | 'domain'
    | 'canary'
    | 'observer';
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
export function checkInvariants(given: InvariantInput): InvariantReport {
  const violations: Violation[] = [];
  const notes: string[] = [];
  const input = { ...given, reboots: given.reboots.map((r) => slotOfLateRead(given, r, notes)) };
  const slots = checkSlots(input.timeline, violations, input.domains);
  const peakDown = checkDown(input, violations);
  checkSlotAtReboot(input, violations, notes);
  checkOnce(input, violations);
  checkWindows(input, violations, notes);
  if (input.canary) checkCanary(input.reboots, input.canary, violations);
  if (input.complete && input.leftover && input.leftover.length > 0) {
    violations.push({
      check: 'leak',
      node: null,
      revision: null,
      at: null,
      message: `slot keys left in etcd after the rollout: ${input.leftover.join(', ')}`,
    });
  }
  for (const [who, gap] of [
    ['the timeline', input.timeline.gap],
    ['the holder observer', input.observerGap],
  ] as const) {
    if (gap) {
      violations.push({
        check: 'observer',
        node: null,
        revision: null,
        at: null,
        message: `${who} missed revisions (its watch was cancelled: ${gap.message}); nothing after that is checked`,
      });
    }
  }
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

/** `nodes` that have a domain, by domain. */
function perDomain(
  nodes: Iterable<string>,
  of: ReadonlyMap<string, string>,
): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const node of nodes) {
    const domain = of.get(node);
    if (domain !== undefined) out.set(domain, [...(out.get(domain) ?? []), node]);
  }
  return out;
}

function checkSlots(
  t: TimelineData,
  violations: Violation[],
  domains?: InvariantInput['domains'],
): { peak: number } {
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
  /** Holders other than `node` that are lost: their marker's queue key is gone or newer. */
  const lostBesides = (node: string) =>
    [...holders.keys()].filter((other) => {
      if (other === node) return false;
      const place = places.get(other) ?? null;
      return place === null || queue.get(other) !== place;
    });
  const checkHalt = (node: string, revision: number, at: number) => {
    const lost = lostBesides(node);
    const budget = t.lossBudgetAt(revision);
    if (lost.length > budget) {
      violations.push({
        check: 'halt',
        node,
        revision,
        at,
        message: `${node} was admitted at revision ${revision} although ${lost.length} holder(s) were lost (${lost.join(', ')}), beyond the loss budget ${budget}: the group should have halted`,
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
      if (domains) {
        for (const [domain, in_] of perDomain(holders.keys(), domains.of)) {
          if (in_.length <= domains.max) continue;
          violations.push({
            check: 'domain',
            node,
            revision: e.revision,
            at: e.at,
            message: `${in_.length} holders in domain ${domain} against domain-max ${domains.max} at revision ${e.revision}: ${in_.join(', ')}`,
          });
        }
      } else {
        checkRank(node, e.revision, e.at);
      }
      checkHalt(node, e.revision, e.at);
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

/** The machine a reboot entry is about. */
function machineOf(r: RebootEntry): string {
  return r.machine ?? r.node;
}

/**
 * The markers an operator's force-unlock removed: deleted at a revision between the ones read
 * just before and just after the command, which no watcher lag can blur. For an entry without
 * them, those seen created before it returned and deleted after it began (a lagging watcher can
 * then take a marker removed just before the unlock by someone else for the unlock's).
 */
function removedBy(t: TimelineData, u: UnlockEntry): MarkerInterval[] {
  const { fromRevision: from, toRevision: to } = u;
  return t.markers
    .filter((m) => {
      if (m.node !== u.node || m.deletedRevision === null) return false;
      if (from !== undefined && to !== undefined) {
        return m.deletedRevision > from && m.deletedRevision <= to;
      }
      return m.createdAt <= u.doneAt && m.deletedAt !== null && m.deletedAt >= u.at;
    })
    .sort((a, b) => a.createdRevision - b.createdRevision);
}

/**
 * A reboot whose direct read of the marker found nothing, but answered only after an operator's
 * force-unlock of that node had started (the read is retried while etcd is unreachable, so after
 * an outage it can answer seconds after the call): the unlock, not the agent, may have removed
 * the marker in between. Then the observer's timeline decides: the marker the unlock deleted
 * (see {@link removedBy}) is the slot the node rebooted on, provided the observer also showed
 * the node holding after the call. Returns the entry with that marker's revision, or the entry.
 */
function slotOfLateRead(input: InvariantInput, r: RebootEntry, notes: string[]): RebootEntry {
  const readAt = r.admissionReadAt;
  if (r.admissionRevision !== null || r.slotSeen !== true || readAt == null) return r;
  const unlock = input.unlocks?.find(
    (u) => u.node === r.node && u.at >= r.downAt && u.at <= readAt,
  );
  if (!unlock) return r;
  const removed = removedBy(input.timeline, unlock)[0];
  if (!removed) return r;
  notes.push(
    `${machineOf(r)} rebooted (#${r.seq}) on its marker of revision ${removed.createdRevision}, which an operator's force-unlock ${unlock.at - r.downAt} ms after the call removed before the simulator's read of it answered`,
  );
  return { ...r, admissionRevision: removed.createdRevision };
}

/** An operator's force-unlock of the node that was in flight at the reboot call, if any. */
function forcedAt(input: InvariantInput, r: RebootEntry): UnlockEntry | undefined {
  return input.unlocks?.find(
    (u) => u.node === r.node && u.at <= r.downAt + 100 && u.doneAt >= r.downAt - UNLOCK_RACE_MS,
  );
}

/**
 * A reboot without a slot at the call whose agent had confirmed it: the node's record turned
 * `rebooting` (the write guarded on its marker) while the marker was there, and then an
 * operator's force-unlock, begun before the call, removed that marker. sluicectl makes the
 * operator acknowledge exactly this (`--yes`: the node is rebooting now, and another may reboot
 * while it is down), so the reboot is the operator's doing, however long the confirmation's
 * answer or a pause of the agent took. The record must be the rebooting machine's: its instance
 * token, or without tokens the machine that owns the node id (not a clone). That the agent does
 * nothing slow between its confirmation and the call is tested on its own.
 */
function confirmedThenUnlocked(
  input: InvariantInput,
  r: RebootEntry,
): { unlock: UnlockEntry; marker: MarkerInterval; confirm: RecordState } | undefined {
  const states = input.timeline.records?.get(r.node) ?? [];
  for (const unlock of input.unlocks ?? []) {
    if (unlock.node !== r.node || unlock.at > r.downAt + 100) continue;
    for (const marker of removedBy(input.timeline, unlock)) {
      const confirm = states.find(
        (s) =>
          s.state === 'rebooting' &&
          s.revision > marker.createdRevision &&
          s.revision < marker.deletedRevision! &&
          (r.token !== undefined && s.token !== undefined
            ? s.token === r.token
            : machineOf(r) === r.node),
      );
      if (confirm) return { unlock, marker, confirm };
    }
  }
  return undefined;
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
      // No slot at all is counted (and reported by the slot-at-reboot check), unless an
      // operator's force-unlock took it away right at the reboot.
      if (!stint) return !forcedAt(input, o) && !confirmedThenUnlocked(input, o);
      if (stint.deletedAt !== null && stint.deletedAt <= at) return false;
      return t.maxAt(stint.createdRevision) <= max;
    });
    const domains = input.domains;
    if (domains) {
      // Counted as for max: a node whose slot an operator took away while it was down is theirs.
      const byDomain = perDomain(
        counted.map((o) => o.node),
        domains.of,
      );
      for (const [domain, in_] of byDomain) {
        if (in_.length <= domains.max) continue;
        violations.push({
          check: 'domain',
          node: machineOf(r),
          revision: null,
          at,
          message: `${in_.length} nodes of domain ${domain} down at once against domain-max ${domains.max} when ${machineOf(r)} went down: ${in_.join(', ')}`,
        });
      }
    }
    if (counted.length > max) {
      violations.push({
        check: 'down',
        node: machineOf(r),
        revision: null,
        at,
        message: `${counted.length} nodes down at once against max ${max} when ${machineOf(r)} went down: ${counted.map(machineOf).join(', ')}`,
      });
    }
  }
  return peak;
}

function checkSlotAtReboot(input: InvariantInput, violations: Violation[], notes: string[]): void {
  const bySlot = new Map<string, RebootEntry[]>();
  for (const r of input.reboots) {
    const who = r.machine && r.machine !== r.node ? `${r.machine} (node id ${r.node})` : r.node;
    const missing = r.slotSeen === false || r.admissionRevision === null;
    const forced = missing ? forcedAt(input, r) : undefined;
    if (forced) {
      notes.push(
        `${who} rebooted (#${r.seq}) as an operator force-unlocked its slot (sluicectl unlock --force, exit ${forced.code})`,
      );
      continue;
    }
    const overridden = missing ? confirmedThenUnlocked(input, r) : undefined;
    if (overridden) {
      notes.push(
        `${who} rebooted (#${r.seq}) after confirming its slot (record rebooting at revision ${overridden.confirm.revision}), which an operator then force-unlocked (revision ${overridden.marker.deletedRevision}; sluicectl unlock --force --yes, exit ${overridden.unlock.code})`,
      );
      continue;
    }
    if (r.slotSeen === false) {
      violations.push({
        check: 'slot-at-reboot',
        node: r.node,
        revision: null,
        at: r.downAt,
        message: `${who} rebooted (#${r.seq}) without the observer seeing its holding marker`,
      });
    }
    if (r.admissionRevision === null) {
      violations.push({
        check: 'slot-at-reboot',
        node: r.node,
        revision: null,
        at: r.downAt,
        message: `${who} rebooted (#${r.seq}) with no holding marker in etcd`,
      });
    } else if (!stintOf(input.timeline, r)) {
      violations.push({
        check: 'slot-at-reboot',
        node: r.node,
        revision: r.admissionRevision,
        at: r.downAt,
        message: `${who} rebooted (#${r.seq}) on a marker (revision ${r.admissionRevision}) the timeline never saw`,
      });
    } else {
      const slot = `${r.node}@${r.admissionRevision}`;
      bySlot.set(slot, [...(bySlot.get(slot) ?? []), r]);
    }
  }
  for (const [slot, reboots] of bySlot) {
    const machines = [...new Set(reboots.map(machineOf))];
    if (machines.length < 2) continue;
    const [node, revision] = slot.split('@') as [string, string];
    violations.push({
      check: 'slot-at-reboot',
      node,
      revision: Number(revision),
      at: reboots[1]!.downAt,
      message: `${machines.length} machines rebooted on one slot (${node}'s, admitted at revision ${revision}): ${machines.join(', ')}`,
    });
  }
}

/**
 * Reboots into one version in the order they went down: the first `count` are its canaries, and
 * `lastUpAt` is when the last of them came up (infinity while one is still down).
 */
export function canaryOrder(
  reboots: readonly RebootEntry[],
  count: number,
): { canaries: RebootEntry[]; rest: RebootEntry[]; lastUpAt: number } {
  const ordered = [...reboots].sort((a, b) => a.downAt - b.downAt);
  const canaries = ordered.slice(0, count);
  const lastUpAt = Math.max(...canaries.map((r) => r.upAt ?? Number.POSITIVE_INFINITY));
  return { canaries, rest: ordered.slice(count), lastUpAt };
}

/** Rule 10: nobody follows a version's canaries into it before they are all up and soaked. */
function checkCanary(
  reboots: readonly RebootEntry[],
  canary: { count: number; soakMs: number },
  violations: Violation[],
): void {
  const byVersion = new Map<string, RebootEntry[]>();
  for (const r of reboots) {
    if (r.versionAfter === r.versionBefore) continue;
    byVersion.set(r.versionAfter, [...(byVersion.get(r.versionAfter) ?? []), r]);
  }
  for (const [version, list] of byVersion) {
    const { canaries, rest, lastUpAt } = canaryOrder(list, canary.count);
    const soakedAt = lastUpAt + canary.soakMs;
    for (const r of rest) {
      if (r.downAt >= soakedAt) continue;
      violations.push({
        check: 'canary',
        node: machineOf(r),
        revision: null,
        at: r.downAt,
        message: `${machineOf(r)} rebooted into ${version} before its canaries (${canaries.map(machineOf).join(', ')}) were up and soaked for ${canary.soakMs} ms`,
      });
    }
  }
}

function checkOnce(input: InvariantInput, violations: Violation[]): void {
  const staged = new Map<string, StageEntry>();
  for (const s of input.stages) staged.set(`${s.node}\0${s.version}`, s);
  const counts = new Map<string, number>();
  for (const r of input.reboots) {
    const key = `${machineOf(r)}\0${r.versionAfter}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
    if (!staged.has(key)) {
      violations.push({
        check: 'once',
        node: machineOf(r),
        revision: null,
        at: r.downAt,
        message: `${machineOf(r)} rebooted (#${r.seq}) with no update staged (${r.versionBefore} -> ${r.versionAfter})`,
      });
    }
  }
  for (const [key, stage] of staged) {
    const n = counts.get(key) ?? 0;
    if (n > 1 || (input.complete && n === 0 && !stage.optional)) {
      violations.push({
        check: 'once',
        node: stage.node,
        revision: null,
        at: null,
        message: `${stage.node} rebooted ${n} times for update ${stage.version}; expected ${stage.optional ? 'at most' : 'exactly'} once`,
      });
    }
  }
}

function checkWindows(input: InvariantInput, violations: Violation[], notes: string[]): void {
  const t = input.timeline;
  const slack = WINDOW_SLACK_MS;
  const unreadable = new Set<string>();
  const shut = (spec: string, from: number, to: number): boolean => {
    const open = openIntervals(spec, from - 8 * DAY_MS, to + 8 * DAY_MS);
    if (open === null) {
      unreadable.add(spec);
      return false;
    }
    return !open.some(([a, b]) => a < to && b > from);
  };
  for (const m of t.markers) {
    const spec = t.windowsAt(m.createdRevision);
    if (spec === null || m.createdRevision <= t.startRevision) continue;
    if (shut(spec, m.createdAt - slack, m.createdAt + slack)) {
      violations.push({
        check: 'window',
        node: m.node,
        revision: m.createdRevision,
        at: m.createdAt,
        message: `${m.node} was admitted at revision ${m.createdRevision} while the group window (${spec}) was shut`,
      });
    }
  }
  for (const r of input.reboots) {
    const from = r.downAt - slack;
    const changes = t.windowChanges;
    const before = changes.filter((c) => c.at <= from).at(-1) ?? changes[0];
    const specs = [before, ...changes.filter((c) => c.at > from && c.at <= r.downAt)]
      .filter((c): c is SettingChange => c !== undefined)
      .map((c) => c.raw);
    if (specs.length === 0 || specs.some((spec) => spec === null)) continue;
    if (specs.every((spec) => shut(spec!, from, r.downAt + slack))) {
      violations.push({
        check: 'window',
        node: machineOf(r),
        revision: null,
        at: r.downAt,
        message: `${machineOf(r)} rebooted (#${r.seq}) while the group window was shut (${specs.join(' | ')})`,
      });
    }
  }
  for (const spec of unreadable) notes.push(`window spec not checked (not a simple spec): ${spec}`);
}

const DAY_MS = 86_400_000;
const DAYS = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'];

/**
 * The open periods of a simple window spec between `from` and `to` (ms), or null when the spec
 * is not of the simple form: `;`-separated entries `Day[,Day...] HH:MM+N(m|h) UTC`.
 */
export function openIntervals(spec: string, from: number, to: number): [number, number][] | null {
  const out: [number, number][] = [];
  for (const entry of spec.split(';')) {
    const m =
      /^\s*([A-Za-z]{3}(?:,[A-Za-z]{3})*) ([0-9]{2}):([0-9]{2})\+([0-9]+)([mh]) UTC\s*$/.exec(
        entry,
      );
    if (!m) return null;
    const days = m[1]!.split(',').map((d) => DAYS.indexOf(d));
    if (days.some((d) => d < 0)) return null;
    const start = (Number(m[2]) * 60 + Number(m[3])) * 60_000;
    const length = Number(m[4]) * (m[5] === 'h' ? 3_600_000 : 60_000);
    for (let day = Math.floor(from / DAY_MS) - 1; day * DAY_MS <= to; day++) {
      // Day 0 of the epoch was a Thursday: ISO weekday index (Mon = 0) is (day + 3) mod 7.
      if (!days.includes((((day + 3) % 7) + 7) % 7)) continue;
      const a = day * DAY_MS + start;
      if (a + length > from && a < to) out.push([a, a + length]);
    }
  }
  return out;
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
