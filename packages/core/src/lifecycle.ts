/**
 * The agent's reboot lifecycle as data: a discriminated union of states, the events that move it,
 * and one pure transition function that returns the next state and the effects to carry out.
 * The agent runtime executes effects (etcd, D-Bus, checks, timers) and feeds their outcomes back
 * as events. Nothing here does I/O, so every edge is testable on its own.
 *
 * Every edge is a name from `EDGES`, and every step it may take is a row of `TRANSITIONS` (from,
 * edge, to). A test checks each step `transition()` returns against that table, and the state
 * diagram in docs/sluiced.md is drawn from it (`renderTransitions()`), so the three agree.
 *
 * Why one file: it is the whole state machine (states, the edge table, `transition()` and the
 * diagram drawn from the table), so a state's edges read in one place.
 */
import type { NodeState } from './records.js';

/** What the agent wants to reboot for. */
export interface UpdateInfo {
  /** The source that asked: update-engine, sentinel, command, manual. */
  source: string;
  detail: string;
  version?: string | undefined;
}

/** How the agent coordinates, with locksmith's names. */
export type Strategy = 'etcd-lock' | 'reboot' | 'off';

/** The agent's state. Each carries only its own data. */
export type AgentState =
  | { name: 'idle' }
  | {
      name: 'update-staged';
      update: UpdateInfo;
      notBefore: string | null;
      lastError: string | null;
    }
  | { name: 'waiting-window'; update: UpdateInfo; nextOpen: string | null }
  | { name: 'checking'; update: UpdateInfo }
  | { name: 'queued'; update: UpdateInfo }
  | { name: 'holding'; update: UpdateInfo; revision: number | null }
  | { name: 'draining'; update: UpdateInfo; revision: number | null }
  | {
      name: 'rebooting';
      update: UpdateInfo;
      revision: number | null;
      attempt: number;
      /** After a failed reboot call: when to ask again. */
      retryAt: string | null;
      /**
       * While a logind block inhibitor lock holds the reboot back: since when, and who holds it.
       * The slot is kept until `Context.inhibitorWaitMs` has passed, then given back.
       */
      blocked?: { since: string; by: string } | null;
    }
  | {
      /**
       * Giving back a slot taken for `update` because the window shut before the reboot: then on
       * like a node whose update was just staged (or to idle once `cancelled`).
       */
      name: 'returning-slot';
      update: UpdateInfo;
      /** The update went away meanwhile: idle once the slot is back. */
      cancelled: boolean;
      /** After a failed release: when to try again. */
      retryAt: string | null;
    }
  | { name: 'recovering' }
  | {
      name: 'post-checking';
      revision: number | null;
      attempt: number;
      deadline: string;
      /** True once the deadline passed with checks still failing: reported, slot kept. */
      failed: boolean;
      lastError: string | null;
      /** When the next attempt runs; null while one is running. */
      nextCheckAt: string | null;
    }
  | { name: 'releasing'; revision: number | null; retryAt: string | null };

/** The name of a state. */
export type StateName = AgentState['name'];

/** Every state name, in lifecycle order (for metrics and docs). */
export const STATE_NAMES: readonly StateName[] = [
  'idle',
  'update-staged',
  'waiting-window',
  'checking',
  'queued',
  'holding',
  'draining',
  'rebooting',
  'returning-slot',
  'recovering',
  'post-checking',
  'releasing',
];

/** Every edge: the name of a transition, in logs, metrics (`edge` label) and the docs. */
export const EDGES = [
  'recovered-idle',
  'recovered-queued',
  'recovered-holding',
  'recovered-rebooting',
  'recovered-rebooted',
  'recovered-update-gone',
  'update-staged',
  'update-changed',
  'update-cleared',
  'window-open',
  'window-closed',
  'window-moved',
  'pre-checks-passed',
  'pre-checks-failed',
  'queue-failed',
  'admitted',
  'admitted-checks-passed',
  'admitted-checks-failed',
  'slot-lost',
  'drained',
  'drain-failed',
  'reboot-failed',
  'reboot-blocked',
  'inhibitor-timeout',
  'reboot-retry',
  'release-failed',
  'release-retry',
  'slot-returned',
  'post-checks-passed',
  'post-checks-retry',
  'post-checks-failed',
  'post-checks-run',
  'released',
] as const;

/** An edge name from `EDGES`. */
export type Edge = (typeof EDGES)[number];

/**
 * Every step the lifecycle may take: from a state, by an edge, to a state. `transition()` takes
 * no step outside this table (a test checks it), and the docs' diagram is drawn from it.
 */
export const TRANSITIONS: readonly { from: StateName; edge: Edge; to: StateName }[] = [
  { from: 'recovering', edge: 'recovered-idle', to: 'idle' },
  { from: 'recovering', edge: 'recovered-queued', to: 'queued' },
  { from: 'recovering', edge: 'recovered-holding', to: 'holding' },
  { from: 'recovering', edge: 'recovered-rebooting', to: 'rebooting' },
  { from: 'recovering', edge: 'window-closed', to: 'returning-slot' },
  { from: 'recovering', edge: 'recovered-rebooted', to: 'post-checking' },
  { from: 'recovering', edge: 'recovered-update-gone', to: 'releasing' },
  { from: 'idle', edge: 'update-staged', to: 'update-staged' },
  { from: 'idle', edge: 'update-staged', to: 'waiting-window' },
  { from: 'idle', edge: 'update-staged', to: 'checking' },
  { from: 'update-staged', edge: 'update-changed', to: 'update-staged' },
  { from: 'update-staged', edge: 'update-cleared', to: 'idle' },
  { from: 'update-staged', edge: 'window-open', to: 'checking' },
  { from: 'update-staged', edge: 'window-closed', to: 'waiting-window' },
  { from: 'waiting-window', edge: 'update-changed', to: 'waiting-window' },
  { from: 'waiting-window', edge: 'update-cleared', to: 'idle' },
  { from: 'waiting-window', edge: 'window-open', to: 'checking' },
  { from: 'waiting-window', edge: 'window-moved', to: 'waiting-window' },
  { from: 'checking', edge: 'pre-checks-passed', to: 'queued' },
  { from: 'checking', edge: 'pre-checks-passed', to: 'draining' },
  { from: 'checking', edge: 'pre-checks-failed', to: 'update-staged' },
  { from: 'checking', edge: 'update-cleared', to: 'idle' },
  { from: 'queued', edge: 'admitted', to: 'holding' },
  { from: 'queued', edge: 'update-cleared', to: 'idle' },
  { from: 'queued', edge: 'window-closed', to: 'waiting-window' },
  { from: 'queued', edge: 'queue-failed', to: 'update-staged' },
  { from: 'holding', edge: 'admitted-checks-passed', to: 'draining' },
  { from: 'holding', edge: 'admitted-checks-failed', to: 'update-staged' },
  { from: 'holding', edge: 'update-cleared', to: 'releasing' },
  { from: 'holding', edge: 'slot-lost', to: 'update-staged' },
  { from: 'draining', edge: 'drained', to: 'rebooting' },
  { from: 'draining', edge: 'window-closed', to: 'returning-slot' },
  { from: 'draining', edge: 'window-closed', to: 'waiting-window' },
  { from: 'draining', edge: 'drain-failed', to: 'update-staged' },
  { from: 'draining', edge: 'slot-lost', to: 'update-staged' },
  { from: 'rebooting', edge: 'reboot-failed', to: 'rebooting' },
  { from: 'rebooting', edge: 'reboot-blocked', to: 'rebooting' },
  { from: 'rebooting', edge: 'inhibitor-timeout', to: 'update-staged' },
  { from: 'rebooting', edge: 'reboot-retry', to: 'rebooting' },
  { from: 'rebooting', edge: 'window-closed', to: 'returning-slot' },
  { from: 'rebooting', edge: 'window-closed', to: 'waiting-window' },
  { from: 'rebooting', edge: 'slot-lost', to: 'update-staged' },
  { from: 'returning-slot', edge: 'update-changed', to: 'returning-slot' },
  { from: 'returning-slot', edge: 'update-cleared', to: 'returning-slot' },
  { from: 'returning-slot', edge: 'update-cleared', to: 'idle' },
  { from: 'returning-slot', edge: 'release-failed', to: 'returning-slot' },
  { from: 'returning-slot', edge: 'release-retry', to: 'returning-slot' },
  { from: 'returning-slot', edge: 'slot-returned', to: 'update-staged' },
  { from: 'returning-slot', edge: 'slot-returned', to: 'waiting-window' },
  { from: 'returning-slot', edge: 'slot-returned', to: 'checking' },
  { from: 'post-checking', edge: 'post-checks-passed', to: 'releasing' },
  { from: 'post-checking', edge: 'post-checks-retry', to: 'post-checking' },
  { from: 'post-checking', edge: 'post-checks-failed', to: 'post-checking' },
  { from: 'post-checking', edge: 'post-checks-run', to: 'post-checking' },
  { from: 'post-checking', edge: 'slot-lost', to: 'idle' },
  { from: 'releasing', edge: 'released', to: 'idle' },
  { from: 'releasing', edge: 'release-failed', to: 'releasing' },
  { from: 'releasing', edge: 'release-retry', to: 'releasing' },
];

/** What the node's own etcd record said at start-up. */
export interface RecoveredRecord {
  holding: boolean;
  state: NodeState;
  /** The boot id stored when the node went to reboot. */
  bootId: string | null;
  /** systemd's soft-reboot count stored then, when known: a soft reboot keeps the boot id. */
  softReboots?: number | null;
  revision: number | null;
  update: UpdateInfo;
}

/** Something that happened: an input, or the outcome of an effect. */
export type AgentEvent =
  | {
      type: 'recovered';
      own: RecoveredRecord | null;
      bootId: string;
      /** systemd's soft-reboot count now, when known. */
      softReboots?: number | null;
      /**
       * What the update sources said at start: an update, null for none, undefined when some
       * source could not be read yet.
       */
      update?: UpdateInfo | null;
    }
  | { type: 'update'; update: UpdateInfo | null }
  /**
   * Time has passed. `due` is the time a `wake-at` timer was set for, when one fired: that time
   * has come, whatever the wall clock says now (it may have been stepped back since).
   */
  | { type: 'tick'; due?: string }
  | { type: 'checks-passed'; phase: CheckPhase }
  | { type: 'checks-failed'; phase: CheckPhase; detail: string }
  | { type: 'admitted'; revision: number }
  | { type: 'slot-lost'; detail: string }
  | { type: 'drained' }
  | { type: 'reboot-failed'; detail: string }
  /** A logind block inhibitor lock on shutdown is held by something else: who, in words. */
  | { type: 'reboot-blocked'; detail: string }
  | { type: 'released' }
  | { type: 'left-queue' }
  | { type: 'effect-failed'; effect: Effect['type']; detail: string };

/** Which checks: before queueing, once admitted, the drain, or after boot. */
export type CheckPhase = 'pre' | 'admitted' | 'drain' | 'post';

/**
 * Work for the runtime, run in order; an effect whose outcome is a failure (checks failed, the
 * slot lost, an error) stops the ones after it in the same step.
 */
export type Effect =
  | { type: 'run-checks'; phase: CheckPhase }
  | { type: 'acquire-slot'; update: UpdateInfo }
  | { type: 'leave-queue' }
  | { type: 'release-slot'; outcome: 'released' | 'abandoned'; delayMs: number }
  /**
   * Rewrite the node's queue record with `state`, guarded on its key. With `confirm`, the write
   * proves the slot is still held, and its failure stops the effects after it (the reboot).
   * Without, it only informs operators: an etcd error is logged and the next effects run.
   * `problem` is shown in status; null clears one written before. With `clearRequest`, the same
   * write deletes the node's reboot request, which the reboot it confirms serves.
   */
  | {
      type: 'record-state';
      state: NodeState;
      confirm: boolean;
      problem?: string | null;
      clearRequest?: true;
    }
  /**
   * Compare this node's clock with etcd's before the confirmation that precedes the reboot:
   * `reboot-failed` (and nothing after it) if it is too far off or cannot be compared.
   */
  | { type: 'check-clock' }
  /**
   * Look for logind block inhibitor locks on shutdown held by others, right before the reboot.
   * `reboot-blocked` if there are (and the effects after it do not run), nothing if not.
   */
  | { type: 'check-inhibitors' }
  /** Tell logged-in users about the coming reboot and wait the warning delay; then `drained`. */
  | { type: 'warn-users' }
  /** Delete this node's reboot request: the reboot about to happen serves it. Never fails. */
  | { type: 'clear-request' }
  | { type: 'reboot' }
  | { type: 'wake-at'; at: string };

/** What the transition function may know besides the event: time, windows, settings. */
export interface Context {
  now: Date;
  strategy: Strategy;
  /**
   * Whether the node's and the group's windows are both open now, and when that changes.
   * `unknown` when the group's window could not be read (etcd unreachable): closed for any
   * decision to reboot, but no reason to give up a place in the queue. See `windowContext()`.
   */
  window: { open: boolean; nextOpen: Date | null; unknown?: boolean };
  /** True while a reboot request from `sluicectl request-reboot` is pending for this node. */
  requested?: boolean;
  /** Back-off before trying again after a failed check, drain or etcd call. */
  retryDelayMs: number;
  postDeadlineMs: number;
  postIntervalMs: number;
  releaseDelayMs: number;
  /** Whether to look for logind inhibitor locks before the reboot. Default false. */
  checkInhibitors?: boolean;
  /**
   * Whether the drain takes time (a drain command, or a delay warning logged-in users) and
   * whether the time after boot does (post checks, or a release delay). A phase that takes no
   * time passes in moments, so the record is not rewritten for it: `draining` and
   * `post-checking` each cost an etcd revision per reboot only where an operator could see them.
   * Default: both take time.
   */
  slowPhases?: { drain: boolean; post: boolean };
  /** The longest wait for inhibitors, holding the slot, before giving it back. Default 10 min. */
  inhibitorWaitMs?: number;
  /** How often to look again while blocked. Default 15 s. */
  inhibitorRecheckMs?: number;
}

/** The result of a transition: the next state, effects to run, and the edge's name. */
export interface Step {
  state: AgentState;
  effects: Effect[];
  /** The transition taken, e.g. `window-open`; null when the event changed nothing. */
  edge: Edge | null;
}

const stay = (state: AgentState): Step => ({ state, effects: [], edge: null });
const go = (edge: Edge, state: AgentState, ...effects: Effect[]): Step => ({
  state,
  effects,
  edge,
});
const later = (ctx: Context, ms: number): string => new Date(ctx.now.getTime() + ms).toISOString();

/** The initial state: every agent starts by recovering from its etcd record. */
export const INITIAL_STATE: AgentState = { name: 'recovering' };

/**
 * The one transition function. Pure: the same state, event and context always give the same step.
 * Events a state does not expect leave it unchanged (edge null). Any change, even to a state's own
 * data, is a named edge: the runtime applies, logs and counts named edges only.
 */
export function transition(state: AgentState, event: AgentEvent, ctx: Context): Step {
  switch (state.name) {
    case 'recovering':
      return event.type === 'recovered'
        ? recover(event.own, event.bootId, event.update, ctx, event.softReboots ?? null)
        : stay(state);

    case 'idle':
      if (event.type === 'update' && event.update) return stage(event.update, ctx);
      return stay(state);

    case 'update-staged':
      if (event.type === 'update') {
        if (!event.update) return go('update-cleared', { name: 'idle' });
        return sameUpdate(state.update, event.update)
          ? stay(state)
          : go('update-changed', { ...state, update: event.update });
      }
      if (event.type === 'tick') return evaluate(state, ctx, event.due);
      return stay(state);

    case 'waiting-window':
      if (event.type === 'update' && !event.update) return go('update-cleared', { name: 'idle' });
      if (event.type === 'update' && event.update) {
        return sameUpdate(state.update, event.update)
          ? stay(state)
          : go('update-changed', { ...state, update: event.update });
      }
      if (event.type === 'tick' && ctx.window.open) return preChecks('window-open', state.update);
      if (
        event.type === 'tick' &&
        state.nextOpen !== (ctx.window.nextOpen?.toISOString() ?? null)
      ) {
        return waitForWindow('window-moved', state.update, ctx);
      }
      return stay(state);

    case 'returning-slot':
      if (event.type === 'update') {
        if (!event.update) {
          return state.cancelled
            ? stay(state)
            : go('update-cleared', { ...state, cancelled: true });
        }
        return sameUpdate(state.update, event.update) && !state.cancelled
          ? stay(state)
          : go('update-changed', { ...state, update: event.update, cancelled: false });
      }
      if (event.type === 'released') {
        if (state.cancelled) return go('update-cleared', { name: 'idle' });
        // The slot is back: carry on like a node whose update was just staged (wait for the
        // window, or start over at once if it has opened again meanwhile).
        const staged = { update: state.update, notBefore: null, lastError: null };
        const next = evaluate({ name: 'update-staged', ...staged }, ctx);
        return next.edge === null
          ? go('slot-returned', next.state)
          : { ...next, edge: 'slot-returned' };
      }
      if (event.type === 'effect-failed' && event.effect === 'release-slot') {
        const retryAt = later(ctx, ctx.retryDelayMs);
        return go('release-failed', { ...state, retryAt }, { type: 'wake-at', at: retryAt });
      }
      if (event.type === 'tick' && due(state.retryAt, ctx, event)) {
        return go('release-retry', { ...state, retryAt: null }, releaseEffect('abandoned', 0));
      }
      return stay(state);

    case 'checking':
      if (event.type === 'checks-passed' && event.phase === 'pre') {
        if (ctx.strategy === 'reboot') {
          return go(
            'pre-checks-passed',
            { name: 'draining', update: state.update, revision: null },
            ...DRAIN,
          );
        }
        return go(
          'pre-checks-passed',
          { name: 'queued', update: state.update },
          { type: 'acquire-slot', update: state.update },
        );
      }
      if (event.type === 'checks-failed' && event.phase === 'pre')
        return retry(state.update, event.detail, ctx, 'pre-checks-failed');
      if (event.type === 'update' && !event.update) return go('update-cleared', { name: 'idle' });
      return stay(state);

    case 'queued':
      if (event.type === 'admitted') {
        return go(
          'admitted',
          { name: 'holding', update: state.update, revision: event.revision },
          { type: 'run-checks', phase: 'admitted' },
        );
      }
      if (event.type === 'update' && !event.update)
        return go('update-cleared', { name: 'idle' }, { type: 'leave-queue' });
      if (event.type === 'tick' && !ctx.window.open && !ctx.window.unknown) {
        // Our own window closed while waiting: give our place up rather than block the queue.
        return go('window-closed', waitingWindow(state.update, ctx), { type: 'leave-queue' });
      }
      if (event.type === 'effect-failed' && event.effect === 'acquire-slot') {
        return retry(state.update, event.detail, ctx, 'queue-failed');
      }
      return stay(state);

    case 'holding':
      if (event.type === 'checks-passed' && event.phase === 'admitted') {
        return go(
          'admitted-checks-passed',
          { name: 'draining', update: state.update, revision: state.revision },
          ...phaseRecord(ctx, 'drain', 'draining'),
          ...DRAIN,
        );
      }
      if (event.type === 'checks-failed' && event.phase === 'admitted') {
        return releaseAndRetry(state.update, event.detail, ctx, 'admitted-checks-failed');
      }
      if (event.type === 'update' && !event.update) {
        // Nothing to reboot for any more (say, a request withdrawn): give the slot back.
        return go(
          'update-cleared',
          { name: 'releasing', revision: state.revision, retryAt: null },
          releaseEffect('abandoned', 0),
        );
      }
      if (event.type === 'slot-lost') return retry(state.update, event.detail, ctx, 'slot-lost');
      return stay(state);

    case 'draining':
      if (event.type === 'drained')
        return rebootInWindow('drained', state.update, state.revision, 1, ctx);
      if (event.type === 'checks-failed' && event.phase === 'drain') {
        return ctx.strategy === 'etcd-lock'
          ? releaseAndRetry(state.update, event.detail, ctx, 'drain-failed')
          : retry(state.update, event.detail, ctx, 'drain-failed');
      }
      if (event.type === 'slot-lost') return retry(state.update, event.detail, ctx, 'slot-lost');
      return stay(state);

    case 'rebooting':
      if (event.type === 'reboot-blocked') return rebootBlocked(state, event.detail, ctx);
      if (
        event.type === 'reboot-failed' ||
        (event.type === 'effect-failed' &&
          (event.effect === 'record-state' || event.effect === 'check-inhibitors'))
      ) {
        // The reboot call failed, or etcd could not confirm the slot just before it: keep the
        // slot (the node is drained) and try again after the back-off.
        const retryAt = later(ctx, ctx.retryDelayMs);
        return go('reboot-failed', { ...state, retryAt }, { type: 'wake-at', at: retryAt });
      }
      if (event.type === 'tick' && due(state.retryAt, ctx, event)) {
        return rebootInWindow(
          'reboot-retry',
          state.update,
          state.revision,
          state.attempt + 1,
          ctx,
          state.blocked ?? null,
        );
      }
      if (event.type === 'slot-lost') return retry(state.update, event.detail, ctx, 'slot-lost');
      return stay(state);

    case 'post-checking':
      if (event.type === 'checks-passed' && event.phase === 'post') {
        return go(
          'post-checks-passed',
          { name: 'releasing', revision: state.revision, retryAt: null },
          releaseEffect('released', ctx.releaseDelayMs),
        );
      }
      if (event.type === 'checks-failed' && event.phase === 'post') {
        // Keep the slot so the rollout stops; after the deadline report the failure, and go on
        // checking so that a node that recovers still gives its slot back.
        const failed = state.failed || ctx.now.getTime() >= Date.parse(state.deadline);
        const nextCheckAt = later(ctx, ctx.postIntervalMs);
        const report: Effect[] =
          failed && !state.failed
            ? [
                {
                  type: 'record-state',
                  state: 'post-checking',
                  confirm: false,
                  problem: `post-reboot checks failing past their deadline: ${event.detail}`,
                },
              ]
            : [];
        return go(
          failed ? 'post-checks-failed' : 'post-checks-retry',
          { ...state, failed, lastError: event.detail, nextCheckAt },
          { type: 'wake-at', at: nextCheckAt },
          ...report,
        );
      }
      if (event.type === 'tick' && due(state.nextCheckAt, ctx, event)) {
        return go(
          'post-checks-run',
          { ...state, attempt: state.attempt + 1, nextCheckAt: null },
          { type: 'run-checks', phase: 'post' },
        );
      }
      if (event.type === 'slot-lost') return go('slot-lost', { name: 'idle' });
      return stay(state);

    case 'releasing':
      if (event.type === 'released') return go('released', { name: 'idle' });
      if (event.type === 'effect-failed' && event.effect === 'release-slot') {
        const retryAt = later(ctx, ctx.retryDelayMs);
        return go('release-failed', { ...state, retryAt }, { type: 'wake-at', at: retryAt });
      }
      if (event.type === 'tick' && due(state.retryAt, ctx, event)) {
        return go('release-retry', { ...state, retryAt: null }, releaseEffect('released', 0));
      }
      return stay(state);
  }
}

/**
 * What a drain consists of: the drain check (a command such as `kubectl drain`; it passes when
 * none is configured), then the warning to logged-in users and its delay, which ends in `drained`.
 * The window is checked once more after both, right before the reboot.
 */
const DRAIN: readonly Effect[] = [{ type: 'run-checks', phase: 'drain' }, { type: 'warn-users' }];

/** The record's rewrite on entering a phase's state, unless the phase takes no time (`slowPhases`). */
function phaseRecord(ctx: Context, phase: 'drain' | 'post', state: NodeState): Effect[] {
  return ctx.slowPhases?.[phase] === false ? [] : [{ type: 'record-state', state, confirm: false }];
}

/**
 * Reboots now if the window is open: it is checked once more right before every reboot call.
 * If it has shut, give the slot back and wait for the next window (Flatcar#407).
 */
function rebootInWindow(
  edge: Edge,
  update: UpdateInfo,
  revision: number | null,
  attempt: number,
  ctx: Context,
  blocked: { since: string; by: string } | null = null,
): Step {
  if (!ctx.window.open) {
    if (ctx.strategy !== 'etcd-lock') {
      return waitForWindow('window-closed', update, ctx);
    }
    return go(
      'window-closed',
      { name: 'returning-slot', update, cancelled: false, retryAt: null },
      releaseEffect('abandoned', 0),
    );
  }
  return go(
    edge,
    {
      name: 'rebooting',
      update,
      revision,
      attempt,
      retryAt: null,
      ...(blocked ? { blocked } : {}),
    },
    ...rebootEffects(ctx, blocked !== null),
  );
}

/**
 * The reboot itself. First, when asked to, a look at logind's inhibitor locks (blocked: nothing
 * after it runs). With a slot, then the clock check against etcd, and then the record rewritten
 * as `rebooting`, guarded on the key's create revision: that write succeeding is the proof that
 * the slot is still ours, and it is the last thing that talks to etcd before the Reboot call.
 * Anything between the two would leave a gap in which an operator's force-unlock lands unseen
 * and the node reboots on a slot another may hold. If it fails the runtime stops and the reboot
 * does not happen. After a wait for an inhibitor, the same write clears the wait from the record;
 * a pending reboot request is deleted by it too (this reboot serves it, and a failed confirmation
 * keeps it). Without a lock the request is cleared just before the reboot.
 */
function rebootEffects(ctx: Context, wasBlocked = false): Effect[] {
  const check: Effect[] = ctx.checkInhibitors ? [{ type: 'check-inhibitors' }] : [];
  return ctx.strategy === 'etcd-lock'
    ? [
        ...check,
        { type: 'check-clock' },
        {
          type: 'record-state',
          state: 'rebooting',
          confirm: true,
          ...(wasBlocked ? { problem: null } : {}),
          ...(ctx.requested ? { clearRequest: true as const } : {}),
        },
        { type: 'reboot' },
      ]
    : [
        ...check,
        ...(ctx.requested ? [{ type: 'clear-request' } as const] : []),
        { type: 'reboot' },
      ];
}

/**
 * A block inhibitor holds the reboot back: keep the slot and look again shortly, saying who holds
 * it in the record (once per holder); past the bound, give the slot back (fail closed: the node
 * queues again later) rather than block the group.
 */
function rebootBlocked(
  state: Extract<AgentState, { name: 'rebooting' }>,
  by: string,
  ctx: Context,
): Step {
  const since = state.blocked?.since ?? ctx.now.toISOString();
  const waitMs = ctx.inhibitorWaitMs ?? 600_000;
  const waited = ctx.now.getTime() - Date.parse(since);
  if (waited >= waitMs) {
    const detail = `reboot held back by an inhibitor lock for ${Math.round(waited / 1000)} s, gave the slot back: ${by}`;
    return ctx.strategy === 'etcd-lock'
      ? releaseAndRetry(state.update, detail, ctx, 'inhibitor-timeout')
      : retry(state.update, detail, ctx, 'inhibitor-timeout');
  }
  const retryAt = later(ctx, Math.min(ctx.inhibitorRecheckMs ?? 15_000, waitMs - waited));
  const report: Effect[] =
    ctx.strategy === 'etcd-lock' && state.blocked?.by !== by
      ? [
          {
            type: 'record-state',
            state: 'rebooting',
            confirm: false,
            problem: `waiting for an inhibitor lock on shutdown (since ${since}, at most ${Math.round(waitMs / 1000)} s): ${by}`,
          },
        ]
      : [];
  return go(
    'reboot-blocked',
    { ...state, retryAt, blocked: { since, by } },
    { type: 'wake-at', at: retryAt },
    ...report,
  );
}

function sameUpdate(a: UpdateInfo, b: UpdateInfo): boolean {
  return a.source === b.source && a.detail === b.detail && a.version === b.version;
}

/**
 * True when a retry time is set and has come: by the clock, or because the timer set for it fired
 * (a clock stepped back after the time was set must not delay it by the step).
 */
function due(at: string | null, ctx: Context, event?: { due?: string }): boolean {
  if (at !== null && event?.due === at) return true;
  return at !== null && ctx.now.getTime() >= Date.parse(at);
}

function releaseEffect(outcome: 'released' | 'abandoned', delayMs: number): Effect {
  return { type: 'release-slot', outcome, delayMs };
}

/** A staged update: decide at once what to do about it, as one `update-staged` edge. */
function stage(update: UpdateInfo, ctx: Context): Step {
  const staged: AgentState = { name: 'update-staged', update, notBefore: null, lastError: null };
  const next = evaluate(staged, ctx);
  return next.edge === null ? go('update-staged', staged) : { ...next, edge: 'update-staged' };
}

/** update-staged: wait out a back-off, then the window, then run the pre-checks. */
function evaluate(
  state: Extract<AgentState, { name: 'update-staged' }>,
  ctx: Context,
  fired?: string,
): Step {
  if (ctx.strategy === 'off') return stay(state); // Report only: never reboot.
  const backingOff = state.notBefore !== null && state.notBefore !== fired;
  if (backingOff && ctx.now.getTime() < Date.parse(state.notBefore!)) return stay(state);
  if (!ctx.window.open) return waitForWindow('window-closed', state.update, ctx);
  return preChecks('window-open', state.update);
}

function preChecks(edge: Edge, update: UpdateInfo): Step {
  return go(edge, { name: 'checking', update }, { type: 'run-checks', phase: 'pre' });
}

function waitingWindow(update: UpdateInfo, ctx: Context): AgentState {
  return { name: 'waiting-window', update, nextOpen: ctx.window.nextOpen?.toISOString() ?? null };
}

function waitForWindow(edge: Edge, update: UpdateInfo, ctx: Context): Step {
  const state = waitingWindow(update, ctx);
  return ctx.window.nextOpen
    ? go(edge, state, { type: 'wake-at', at: ctx.window.nextOpen.toISOString() })
    : go(edge, state);
}

/** Back to update-staged, to try again after the back-off. */
function retry(update: UpdateInfo, detail: string, ctx: Context, edge: Edge): Step {
  const notBefore = later(ctx, ctx.retryDelayMs);
  return go(
    edge,
    { name: 'update-staged', update, notBefore, lastError: detail },
    { type: 'wake-at', at: notBefore },
  );
}

/** Give the slot back (fail closed), then try again after the back-off. */
function releaseAndRetry(update: UpdateInfo, detail: string, ctx: Context, edge: Edge): Step {
  const step = retry(update, detail, ctx, edge);
  // The timer first: if the release fails (etcd down), the retry still comes.
  return { ...step, effects: [...step.effects, releaseEffect('abandoned', 0)] };
}

/** On start: carry on from the node's record in etcd (kured's "restore from the record"). */
function recover(
  own: RecoveredRecord | null,
  bootId: string,
  update: UpdateInfo | null | undefined,
  ctx: Context,
  softReboots: number | null,
): Step {
  if (!own) return go('recovered-idle', { name: 'idle' });
  if (own.holding) {
    // A soft reboot keeps the kernel and so the boot id; only systemd's count of them moves.
    const softRebooted =
      own.softReboots != null && softReboots !== null && softReboots > own.softReboots;
    const rebooted = (own.bootId !== null && own.bootId !== bootId) || softRebooted;
    if (rebooted) {
      // Back from the reboot: check health, then release. The release does not depend on whether
      // another update is staged already (locksmith's Flatcar#408).
      return go(
        'recovered-rebooted',
        {
          name: 'post-checking',
          revision: own.revision,
          attempt: 1,
          deadline: later(ctx, ctx.postDeadlineMs),
          failed: false,
          lastError: null,
          nextCheckAt: null,
        },
        ...phaseRecord(ctx, 'post', 'post-checking'),
        { type: 'run-checks', phase: 'post' },
      );
    }
    if (own.state === 'rebooting') {
      if (update === null) {
        // The reboot was asked for, this boot is the same one, and no source wants a reboot any
        // more (the update went away): give the slot back rather than reboot for nothing.
        return go(
          'recovered-update-gone',
          { name: 'releasing', revision: own.revision, retryAt: null },
          releaseEffect('abandoned', 0),
        );
      }
      // The reboot was asked for but this boot is the same one: ask again, in the window.
      return rebootInWindow('recovered-rebooting', own.update, own.revision, 1, ctx);
    }
    // Restarted while holding: run the admitted checks again and carry on.
    return go(
      'recovered-holding',
      { name: 'holding', update: own.update, revision: own.revision },
      { type: 'run-checks', phase: 'admitted' },
    );
  }
  // Still queued from before the restart: re-attach and keep our place.
  return go(
    'recovered-queued',
    { name: 'queued', update: own.update },
    { type: 'acquire-slot', update: own.update },
  );
}

/** True in states where the node holds, or may hold, a slot. */
export function holdsSlot(state: AgentState): boolean {
  return [
    'holding',
    'draining',
    'rebooting',
    'returning-slot',
    'post-checking',
    'releasing',
  ].includes(state.name);
}

/**
 * Draws the lifecycle from `TRANSITIONS` as a Mermaid state diagram, for docs/sluiced.md: one
 * arrow per (from, to) pair, labelled with its edges.
 */
export function renderTransitions(): string {
  const arrows = new Map<string, Edge[]>();
  for (const t of TRANSITIONS) {
    const key = `${t.from} --> ${t.to}`;
    const edges = arrows.get(key) ?? [];
    if (!edges.includes(t.edge)) edges.push(t.edge);
    arrows.set(key, edges);
  }
  const id = (name: string) => name.replaceAll('-', '_');
  const lines = ['stateDiagram-v2'];
  for (const name of STATE_NAMES) {
    if (name.includes('-')) lines.push(`  state "${name}" as ${id(name)}`);
  }
  lines.push('  [*] --> recovering');
  for (const [key, edges] of arrows) {
    const [from, to] = key.split(' --> ') as [string, string];
    lines.push(`  ${id(from)} --> ${id(to)}: ${edges.join(', ')}`);
  }
  return lines.join('\n');
}
