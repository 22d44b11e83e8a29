/**
 * The agent runtime: it owns the lifecycle state, feeds events to the pure `transition()` from
 * core, and carries out the effects it returns through its ports (the slot lock, the group's
 * settings, its registration), the checks and the rebooter. Every transition is logged and
 * counted. The whole reboot lifecycle reads in core/lifecycle.ts and its rules in core/rules.ts;
 * this file is wiring, and it never sees an etcd client.
 *
 * Why one file: the effect runner is one switch over the lifecycle's effects, each next to the
 * event it sends back; split by effect, the order of a step's effects would be hard to follow.
 */
import {
  type AgentEvent,
  type AgentState,
  type CheckPhase,
  type Context,
  type Edge,
  type Effect,
  type Grant,
  type GroupSettings,
  holdsSlot,
  INITIAL_STATE,
  isSluiceError,
  neededInOrder,
  pickUpdate,
  type RecoveredRecord,
  type Registration,
  type SlotLock,
  throwIfAborted,
  transition,
  type UpdateInfo,
  windowContext,
} from '@sluice/core';
import { LogindClient, SystemdClient } from '@sluice/dbus';
import { Backoff } from '@sluice/etcd';
import type { Logger } from 'pino';
import { runChecks } from './checks.js';
import type { AgentConfig, CheckSpec } from './config/index.js';
import { readBootId } from './identity.js';
import type { AgentMetrics } from './metrics.js';
import {
  configuredRebooter,
  type Rebooter,
  shutdownBlockers,
  viaLogind,
  warningText,
  warnUsers,
} from './reboot.js';
import type { RebootLoopGuard } from './reboot-guard.js';
import type { UpdateSignal, UpdateSource } from './sources.js';
import { after, describe, sleep } from './time.js';

export { DEFAULT_BOOT_ID_FILE, readBootId } from './identity.js';

/** What the agent is built from. `wire.ts` builds it on etcd; tests pass fakes. */
export interface AgentDeps {
  config: AgentConfig;
  /** The reboot semaphore; null for the `reboot` and `off` strategies, which take no slot. */
  lock: SlotLock | null;
  /** The group's window (and the node's reboot request); null without etcd. */
  settings: GroupSettings | null;
  /**
   * This agent's registration in its group: it registers before anything else, and stays out of
   * the group while another live agent holds its node id. Null without etcd.
   */
  registration?: Registration | null;
  /**
   * The clock guard (see `checkClock`): null when the clock may be trusted, else why not. Asked
   * before the confirmation that precedes every reboot call (never between the two); a problem
   * keeps the slot and retries later.
   */
  clockCheck?: (() => Promise<string | null>) | null;
  sources: UpdateSource[];
  logger: Logger;
  metrics: AgentMetrics;
  /** Where the kernel's boot id is read. A different id after restart means a reboot happened. */
  bootIdFile?: string;
  /** The boot id, when already read (`readBootId`); otherwise it is read from `bootIdFile`. */
  bootId?: string;
  /** Back-off after a failed check, drain or etcd call. Default 60 s. */
  retryDelayMs?: number;
  /**
   * How to reboot. Default: the configured method (`configuredRebooter`), and a soft reboot
   * instead when `reboot.softReboot` is `auto` and the sources say that is enough. A Rebooter
   * given here is used for every reboot, and nothing is asked of logind or systemd unless
   * `inhibitors` or `softReboots` are given too.
   */
  rebooter?: Rebooter;
  /**
   * Lists who holds a block inhibitor lock on shutdown, right before a reboot (empty: nothing
   * blocks). Default: logind's `ListInhibitors`, for the logind methods with `reboot.inhibitors:
   * wait`; null: never look.
   */
  inhibitors?: ((signal: AbortSignal) => Promise<string[]>) | null;
  /**
   * Reads systemd's soft-reboot count, to recognise a soft reboot (which keeps the boot id).
   * Default: `SystemdClient` on the configured bus; null (or an error): not known.
   */
  softReboots?: (() => Promise<number | null>) | null;
  /** The guard against reboot loops (see reboot-guard.ts); none when absent. */
  rebootGuard?: RebootLoopGuard | null;
  /**
   * Reports a problem of this agent by kind (`reboot-loop`), or clears it with null: shown in
   * `sluicectl status` with the node's registration.
   */
  reportProblem?: (kind: string, problem: string | null) => void;
  /** The program, as its start and stop lines name it. Default `sluiced`. */
  program?: string;
  now?: () => Date;
}

/** Events whose arrival means the effects after them in the same step must not run. */
const STOPS: readonly AgentEvent['type'][] = [
  'checks-failed',
  'slot-lost',
  'reboot-failed',
  'reboot-blocked',
];

/** When a step was decided: the wall clock it read, and the monotonic clock then. */
interface StepTime {
  wall: number;
  mono: number;
}

/** One node's agent. `start()` it once; `stop()` on SIGTERM. */
export class Agent {
  #state: AgentState = INITIAL_STATE;
  readonly #deps: AgentDeps;
  readonly #log: Logger;
  readonly #rebooter: Rebooter;
  /** The Rebooter for a soft reboot, when sources may ask for one (`reboot.softReboot: auto`). */
  readonly #softRebooter: Rebooter | null;
  /** logind, for its inhibitor locks and the users' warning; null without the logind methods. */
  readonly #logind: LogindClient | null;
  readonly #inhibitors: ((signal: AbortSignal) => Promise<string[]>) | null;
  #grant: Grant | null = null;
  #bootId = '';
  /** systemd's soft-reboot count at start; null when not known. */
  #softReboots: number | null = null;
  /** The reboot-loop guard's reason to hold this node back, as last reported. */
  #halted: string | null = null;
  #rebootsRequested = 0;
  #update: UpdateInfo | null = null;
  readonly #signals = new Map<string, UpdateSignal>();
  readonly #queue: AgentEvent[] = [];
  /** The running pass over `#queue`, if any. */
  #draining: Promise<void> | null = null;
  #stopped = false;
  #wakeTimer: NodeJS.Timeout | undefined;
  #windowTimer: NodeJS.Timeout | undefined;
  #slotAbort: AbortController | null = null;
  readonly #sourceTimers = new Set<NodeJS.Timeout>();
  /** When the combined window (node and group) next opens or closes, as of the last context. */
  #windowChange: Date | null = null;
  readonly #stop = new AbortController();
  readonly #listeners = new Set<(state: AgentState, edge: Edge) => void>();
  /** Effect chains still running. */
  #running = 0;
  readonly #settleListeners = new Set<(state: AgentState) => void>();

  constructor(deps: AgentDeps) {
    this.#deps = deps;
    this.#log = deps.logger;
    const cfg = deps.config;
    const own = deps.rebooter === undefined;
    this.#rebooter = deps.rebooter ?? configuredRebooter(cfg);
    this.#softRebooter =
      own && cfg.reboot.softReboot === 'auto' && cfg.reboot.method === 'logind'
        ? configuredRebooter(cfg, 'soft-reboot')
        : null;
    this.#logind =
      own && viaLogind(cfg.reboot.method) ? new LogindClient({ address: cfg.dbus.address }) : null;
    const logind = this.#logind;
    this.#inhibitors =
      deps.inhibitors !== undefined
        ? deps.inhibitors
        : logind && cfg.reboot.inhibitors === 'wait'
          ? async (signal) => shutdownBlockers(await logind.listInhibitors(signal))
          : null;
  }

  /** How many reboots logind (or the reboot command) accepted in this run. */
  get rebootsRequested(): number {
    return this.#rebootsRequested;
  }

  /** The current lifecycle state. */
  get state(): AgentState {
    return this.#state;
  }

  /** The slot lock, when the strategy takes slots. */
  get lock(): SlotLock | null {
    return this.#deps.lock;
  }

  /** Calls `listener` after every transition. */
  onTransition(listener: (state: AgentState, edge: Edge) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Calls `listener` whenever the agent has settled: no event waits and no effect runs (timers
   * may be set). A one-shot run ends on it (once.ts). Returns an unsubscribe function.
   */
  onSettle(listener: (state: AgentState) => void): () => void {
    this.#settleListeners.add(listener);
    return () => this.#settleListeners.delete(listener);
  }

  /** True when no event waits and no effect runs. */
  get settled(): boolean {
    return this.#draining === null && this.#queue.length === 0 && this.#running === 0;
  }

  #maybeSettled(): void {
    if (!this.settled || this.#stopped) return;
    for (const listener of [...this.#settleListeners]) listener(this.#state);
  }

  #now(): Date {
    return this.#deps.now?.() ?? new Date();
  }

  /** Registers, recovers from the etcd record, then starts following the update sources. */
  async start(): Promise<void> {
    this.#bootId = this.#deps.bootId ?? (await readBootId(this.#deps.bootIdFile));
    // Read alongside the rest of the start; only recovery needs it.
    const softReboots = this.#readSoftReboots();
    // The logger names the node on every line already.
    this.#log.info(
      { bootId: this.#bootId, strategy: this.#deps.config.strategy },
      `${this.#deps.program ?? 'sluiced'} starting`,
    );
    const guardProblem = await this.#deps.rebootGuard?.load();
    if (guardProblem) this.#log.warn(guardProblem);
    // One node, one agent: nothing else happens until this agent holds its node id.
    if (this.#deps.registration) await this.#register(this.#deps.registration);
    if (this.#stopped) return;
    // Read the sources (alongside the record) before acting on the record, so that a node that
    // was queued or holding for an update that has since gone away does not reboot for it.
    const [own, ...started] = await Promise.all([
      this.#recover(),
      ...this.#deps.sources.map((source) => this.#startSource(source)),
    ]);
    const known = started.every(Boolean);
    this.#softReboots = await softReboots;
    if (this.#softReboots !== null) {
      this.#log.info({ softReboots: this.#softReboots }, "systemd's soft-reboot count");
    }
    this.#dispatch({
      type: 'recovered',
      own,
      bootId: this.#bootId,
      softReboots: this.#softReboots,
      ...(known ? { update: this.#update } : {}),
    });
    // A source that could not be read says nothing yet: no "not needed" from it. It is told once
    // it starts (see #startSource).
    if (known) this.#dispatch({ type: 'update', update: this.#update });
    // Started means recovered: the record has been acted on.
    await this.#draining;
  }

  /**
   * Registers this agent, trying again with back-off while etcd cannot be reached or another
   * live agent holds the node id (this one then stays out and says why, once per change). Once
   * registered, a registration lost later (cut off longer than its lease) is made again in the
   * background.
   */
  async #register(registration: Registration): Promise<void> {
    const backoff = new Backoff({ initialMs: 1000, maxMs: 60_000 });
    const node = this.#deps.config.node.id;
    let said = '';
    while (!this.#stopped) {
      try {
        const result = await registration.register();
        if (result.ok) {
          this.#deps.metrics.identityConflict.set(0);
          if (said) {
            this.#log.info(
              { key: registration.key },
              'registered: this agent now holds its node id',
            );
          }
          this.#followRegistration(registration);
          return;
        }
        this.#deps.metrics.identityConflict.set(1);
        const other = result.other;
        const message = `not taking part: ${result.reason} (hostname ${other?.hostname || 'unknown'}, boot id ${other?.bootId || 'unknown'}, started ${other?.startedAt ?? 'unknown'}); two machines share node id ${node}: give each its own /etc/machine-id or node.id. Trying again later`;
        if (message !== said) this.#log.error({ other }, message);
        said = message;
      } catch (error) {
        this.#deps.metrics.etcdErrors.inc();
        this.#log.warn({ err: describe(error) }, 'cannot register this agent in etcd; retrying');
      }
      await sleep(backoff.next(), this.#stop.signal).catch(() => {});
    }
  }

  /** Registers again, in the background, whenever the registration's lease is lost. */
  #followRegistration(registration: Registration): void {
    registration.lost?.addEventListener(
      'abort',
      () => {
        if (this.#stopped) return;
        this.#log.warn('the registration lease was lost (cut off from etcd); registering again');
        void this.#register(registration);
      },
      { once: true },
    );
  }

  /**
   * Starts an update source; one that fails (bus or etcd down) is retried with back-off, and once
   * it starts the lifecycle hears the update as it then stands. Resolves with whether the first
   * attempt worked.
   */
  async #startSource(
    source: UpdateSource,
    backoff = new Backoff({ maxMs: 60_000 }),
  ): Promise<boolean> {
    if (this.#stopped) return false;
    try {
      await source.start((signal) => this.#onSignal(signal));
      if (backoff.attempts > 0) {
        this.#log.info(
          { source: source.name, attempts: backoff.attempts + 1 },
          'update source started',
        );
        this.#dispatch({ type: 'update', update: this.#update });
      }
      return true;
    } catch (error) {
      if (source.name === 'update-engine') this.#deps.metrics.dbusErrors.inc();
      else this.#deps.metrics.etcdErrors.inc();
      const delay = backoff.next();
      this.#log.error(
        { source: source.name, err: describe(error), retryInMs: Math.round(delay) },
        'update source failed to start; retrying',
      );
      const timer = after(delay, () => {
        this.#sourceTimers.delete(timer);
        void this.#startSource(source, backoff);
      });
      this.#sourceTimers.add(timer);
      return false;
    }
  }

  /** Reads this node's record, retrying while etcd is unreachable: nothing happens until then. */
  async #recover(): Promise<RecoveredRecord | null> {
    const lock = this.#deps.lock;
    if (!lock) return null;
    const backoff = new Backoff({ initialMs: 500, maxMs: 30_000 });
    for (;;) {
      try {
        const { own, lost, leftAlone } = await lock.recover(this.#bootId, this.#stop.signal);
        if (lost?.outcome === 'cleared') {
          this.#log.warn(
            { marker: lost.key },
            'this node was declared lost during its reboot and is back: cleared its lost marker (recorded in history as returned); if the group was halted for it, an operator resumes it with sluicectl resume',
          );
        } else if (lost) {
          this.#log.error(
            { marker: lost.key },
            "this node's id holds a lost marker of another agent; an operator must run sluicectl unlock --force and resume",
          );
        }
        if (leftAlone?.why === 'foreign') {
          // Written by another agent with this node id: never acted on, never released.
          const message = `${leftAlone.key} was written by another agent with this node id (hostname ${leftAlone.hostname || 'unknown'}, boot id ${leftAlone.bootId || 'unknown'}); this agent leaves it alone: two machines share node id ${lock.node}`;
          this.#deps.metrics.identityConflict.set(1);
          this.#log.error({ key: leftAlone.key }, message);
          await this.#deps.registration?.setProblem(message).catch(() => {});
        } else if (leftAlone) {
          // An operator's `sluicectl lock` for this node: theirs to release, not ours to use.
          this.#log.warn(
            { key: leftAlone.key },
            'this node holds a manual lock (sluicectl lock); not rebooting until it is unlocked',
          );
        }
        if (!own) return null;
        this.#grant = own.grant;
        const record = own.record;
        return {
          holding: own.holding,
          state: record?.state ?? (own.holding ? 'holding' : 'waiting'),
          bootId: record?.bootId ?? null,
          softReboots: record?.softReboots ?? null,
          revision: own.grant?.revision ?? null,
          update: { source: 'recovered', detail: record?.reason ?? '', version: record?.toVersion },
        };
      } catch (error) {
        if (this.#stop.signal.aborted) return null;
        this.#deps.metrics.etcdErrors.inc();
        this.#log.warn(
          { err: describe(error), attempt: backoff.attempts + 1 },
          "cannot read this node's record from etcd; retrying",
        );
        await sleep(backoff.next(), this.#stop.signal).catch(() => {}); // Stopped: return below.
        if (this.#stop.signal.aborted) return null;
      }
    }
  }

  #onSignal(signal: UpdateSignal): void {
    this.#signals.set(signal.source, signal);
    const update = this.#guardUpdate(pickUpdate(this.#signals.values()));
    this.#deps.metrics.updateStaged.set(update ? 1 : 0);
    const changed = JSON.stringify(update) !== JSON.stringify(this.#update);
    this.#update = update;
    if (changed) {
      this.#log.info({ update, signal }, update ? 'reboot needed' : 'no reboot needed');
      this.#dispatch({ type: 'update', update });
    }
  }

  /**
   * The reboot-loop guard: an update still needed after `reboot.loopLimit` reboots in a row is
   * not acted on (null), and the reason is reported. Once every source has read and none needs a
   * reboot or is unsure, the count is cleared.
   */
  #guardUpdate(update: UpdateInfo | null): UpdateInfo | null {
    const guard = this.#deps.rebootGuard;
    if (!guard) return update;
    const reason = update ? guard.halted(update) : null;
    if (reason !== this.#halted) {
      this.#halted = reason;
      if (reason) this.#log.error({ update }, reason);
      else this.#log.info('the reboot loop guard lets this node reboot again');
      this.#deps.reportProblem?.('reboot-loop', reason);
    }
    // Only once every source has spoken, and none is unsure: one that has not read yet (or
    // cannot) may be the one that still wants the reboot.
    const allKnown =
      this.#deps.sources.every((s) => this.#signals.has(s.name)) &&
      [...this.#signals.values()].every((s) => !s.unknown);
    if (update === null && allKnown) {
      guard
        .clear()
        .catch((error: unknown) =>
          this.#log.warn({ err: describe(error) }, 'cannot clear the reboot loop count'),
        );
    }
    return reason ? null : update;
  }

  /** systemd's soft-reboot count, or null when it cannot be read (an old systemd, no bus). */
  async #readSoftReboots(): Promise<number | null> {
    const read =
      this.#deps.softReboots !== undefined
        ? this.#deps.softReboots
        : this.#deps.rebooter === undefined
          ? () => new SystemdClient({ address: this.#deps.config.dbus.address }).softRebootsCount()
          : null;
    if (!read) return null;
    try {
      return await read();
    } catch (error) {
      this.#log.debug({ err: describe(error) }, "cannot read systemd's soft-reboot count");
      return null;
    }
  }

  #dispatch(event: AgentEvent): void {
    if (this.#stopped) return;
    this.#queue.push(event);
    this.#draining ??= this.#drain();
  }

  async #drain(): Promise<void> {
    try {
      while (this.#queue.length > 0 && !this.#stopped) {
        const event = this.#queue.shift()!;
        const ctx = await this.#context();
        const step = transition(this.#state, event, ctx);
        if (step.edge === null) {
          // Nothing changed, but a timer may just have fired: keep waking up for the window.
          this.#scheduleWindowTick(ctx);
          continue;
        }
        const from = this.#state.name;
        this.#state = step.state;
        this.#log.info(
          { edge: step.edge, from, to: step.state.name, event: event.type, state: step.state },
          `${from} -> ${step.state.name} (${step.edge})`,
        );
        const m = this.#deps.metrics;
        m.transitions.inc({ edge: step.edge, to: step.state.name });
        m.setState(step.state.name);
        m.slotHeld.set(holdsSlot(step.state) ? 1 : 0);
        for (const listener of this.#listeners) listener(step.state, step.edge);
        this.#run(step.effects, { wall: ctx.now.getTime(), mono: performance.now() });
        this.#scheduleWindowTick(ctx);
        this.#deps.settings?.followWindow(this.#following(), () =>
          this.#dispatch({ type: 'tick' }),
        );
        // Back to idle with an update still pending (e.g. a newer one arrived during the reboot).
        if (step.state.name === 'idle' && this.#update) {
          this.#queue.push({ type: 'update', update: this.#update });
        }
      }
    } finally {
      this.#draining = null;
      this.#maybeSettled();
    }
  }

  /**
   * How long this node's slot is expected to take (`reboot.expectedSlot`): the setting, or with
   * `auto` its past slots in the group's history; null for no check. A failed history read means
   * no check this time, never no reboot.
   */
  async #expectedSlot(lock: SlotLock, signal: AbortSignal): Promise<number | null> {
    const setting = this.#deps.config.reboot.expectedSlotMs;
    if (setting !== 'auto') return setting;
    try {
      return (await lock.pastSlotMs?.(signal)) ?? null;
    } catch (error) {
      this.#log.debug({ err: describe(error) }, "cannot read this node's past slots");
      return null;
    }
  }

  /** True while the group's window matters: an update is pending and the agent runs. */
  #following(): boolean {
    return this.#state.name !== 'idle' && !this.#stopped;
  }

  /** The context for a transition: time, the combined window, settings. */
  async #context(): Promise<Context> {
    const cfg = this.#deps.config;
    const settings = cfg.strategy === 'etcd-lock' ? this.#deps.settings : null;
    const group = settings ? await settings.window() : null;
    // Read after the window, which may wait on etcd: the step is decided at this time.
    const now = this.#now();
    const { window, nextChange } = windowContext(now, cfg.windows, group, this.#retryDelay());
    this.#windowChange = nextChange;
    return {
      now,
      strategy: cfg.strategy,
      window,
      requested: Boolean(this.#signals.get('manual')?.needed),
      retryDelayMs: this.#retryDelay(),
      postDeadlineMs: cfg.checks.postDeadlineMs,
      postIntervalMs: cfg.checks.postIntervalMs,
      releaseDelayMs: cfg.checks.releaseDelayMs,
      checkInhibitors: this.#inhibitors !== null,
      inhibitorWaitMs: cfg.reboot.inhibitorWaitMs,
      inhibitorRecheckMs: Math.min(15_000, Math.max(200, cfg.reboot.inhibitorWaitMs / 10)),
      slowPhases: {
        drain: cfg.checks.drain !== null || cfg.reboot.warnDelayMs > 0,
        post: cfg.checks.post.length > 0 || cfg.checks.releaseDelayMs > 0,
      },
    };
  }

  #retryDelay(): number {
    return this.#deps.retryDelayMs ?? 60_000;
  }

  /** While an update is pending, wake up when the window opens or closes. */
  #scheduleWindowTick(ctx: Context): void {
    clearTimeout(this.#windowTimer);
    if (this.#state.name === 'idle' || this.#stopped) return;
    const next = this.#windowChange;
    if (!next) return;
    this.#windowTimer = after(next.getTime() - ctx.now.getTime() + 10, () =>
      this.#dispatch({ type: 'tick' }),
    );
  }

  /**
   * Runs a step's effects in order. An effect that fails, or whose outcome is a failure (checks
   * failed, the slot gone, the reboot call refused), stops the rest: a reboot never follows a
   * failed confirmation that this node still holds its slot.
   */
  #run(effects: readonly Effect[], step: StepTime): void {
    if (effects.length === 0) return;
    this.#running++;
    void (async () => {
      for (const effect of effects) {
        let event: AgentEvent | null;
        try {
          event = await this.#execute(effect, step);
        } catch (error) {
          if (this.#stopped || (isSluiceError(error) && error.kind === 'aborted')) return;
          if (isSluiceError(error) && error.kind.startsWith('etcd'))
            this.#deps.metrics.etcdErrors.inc();
          this.#log.error({ effect: effect.type, err: describe(error) }, 'effect failed');
          this.#dispatch({ type: 'effect-failed', effect: effect.type, detail: describe(error) });
          return;
        }
        if (event) this.#dispatch(event);
        if (event && STOPS.includes(event.type)) return;
      }
    })().finally(() => {
      this.#running--;
      this.#maybeSettled();
    });
  }

  async #execute(effect: Effect, step: StepTime): Promise<AgentEvent | null> {
    const cfg = this.#deps.config;
    const lock = this.#deps.lock;
    const signal = this.#stop.signal;
    switch (effect.type) {
      case 'run-checks':
        return this.#checks(effect.phase);
      case 'warn-users':
        // At the end of the drain, so that the window is checked once more after the warning's
        // delay, right before the reboot.
        await this.#warnUsers();
        return { type: 'drained' };
      case 'acquire-slot': {
        if (!lock) {
          return { type: 'effect-failed', effect: 'acquire-slot', detail: 'no etcd configured' };
        }
        this.#slotAbort?.abort();
        const abort = new AbortController();
        this.#slotAbort = abort;
        const expectedSlotMs = await this.#expectedSlot(lock, signal);
        const grant = await lock.acquire(
          {
            reason: describeUpdate(effect.update),
            ...(effect.update.version ? { toVersion: effect.update.version } : {}),
            bootId: this.#bootId,
            ...(expectedSlotMs !== null ? { expectedSlotMs } : {}),
          },
          AbortSignal.any([abort.signal, signal]),
        );
        this.#grant = grant;
        return { type: 'admitted', revision: grant.revision };
      }
      case 'leave-queue':
        this.#slotAbort?.abort();
        this.#slotAbort = null;
        // A slot granted just as the wait was cancelled is given back at once.
        await lock?.leave('release');
        return { type: 'left-queue' };
      case 'release-slot':
        // Stopped during the delay: no release; the next start recovers and releases.
        if (effect.delayMs > 0) await sleep(effect.delayMs, signal);
        if (lock) await lock.release(this.#grant, effect.outcome);
        this.#grant = null;
        return { type: 'released' };
      case 'record-state': {
        // Without a grant there is no slot to confirm: fail closed.
        if (!lock || !this.#grant) return { type: 'slot-lost', detail: 'this node holds no slot' };
        try {
          const patch = {
            bootId: this.#grant.record.bootId ?? this.#bootId,
            // This boot's count: a higher one after a restart means a soft reboot happened.
            ...(this.#softReboots !== null ? { softReboots: this.#softReboots } : {}),
            // null clears an earlier problem (undefined drops the key from the JSON).
            ...(effect.problem !== undefined ? { problem: effect.problem ?? undefined } : {}),
          };
          this.#grant = await lock.confirm(this.#grant, effect.state, patch, {
            clearRequest: effect.clearRequest === true,
          });
        } catch (error) {
          if (isSluiceError(error) && error.kind === 'refused') {
            return { type: 'slot-lost', detail: error.message };
          }
          if (effect.confirm) throw error;
          // Only informative: carry on with the next effects (the checks, the drain).
          this.#deps.metrics.etcdErrors.inc();
          this.#log.warn({ state: effect.state, err: describe(error) }, 'cannot update the record');
        }
        return null;
      }
      case 'clear-request':
        // If the request cannot be cleared now, the node reboots anyway and the request is seen
        // as already served after boot.
        await this.#deps.settings?.clearRequest(signal).catch((error: unknown) => {
          this.#deps.metrics.etcdErrors.inc();
          this.#log.warn({ err: describe(error) }, 'cannot clear the reboot request');
        });
        return null;
      case 'check-clock': {
        // Windows were checked on this node's clock: never reboot on a clock that is far off.
        const skew = await this.#deps.clockCheck?.();
        return skew ? { type: 'reboot-failed', detail: skew } : null;
      }
      case 'check-inhibitors': {
        const blockers = await this.#inhibitors?.(signal);
        if (!blockers || blockers.length === 0) return null;
        const detail = blockers.join('; ');
        this.#log.warn({ blockers }, `reboot held back by an inhibitor lock: ${detail}`);
        return { type: 'reboot-blocked', detail };
      }
      case 'reboot':
        return this.#reboot(cfg.reboot.method);
      case 'wake-at': {
        // The step set the time by its own clock reading: measure the wait from that reading on
        // the monotonic clock, so a wall clock that stepped since (NTP putting it right) neither
        // delays the wake-up by the step nor brings it forward.
        const waitMs = Date.parse(effect.at) - step.wall - (performance.now() - step.mono);
        clearTimeout(this.#wakeTimer);
        this.#wakeTimer = after(waitMs + 5, () => this.#dispatch({ type: 'tick', due: effect.at }));
        return null;
      }
    }
  }

  /** The checks of a phase, run; their outcome as an event. The drain is one optional command. */
  async #checks(phase: CheckPhase): Promise<AgentEvent> {
    const checks = this.#deps.config.checks;
    const specs: readonly CheckSpec[] =
      phase === 'post'
        ? checks.post
        : phase === 'drain'
          ? checks.drain
            ? [checks.drain]
            : []
          : checks.pre;
    if (phase === 'drain' && specs.length === 0) return { type: 'checks-passed', phase };
    const { ok, results } = await runChecks(specs, this.#stop.signal);
    const failed = results.find((r) => !r.ok);
    if (ok) {
      this.#log.info({ phase, checks: results.map((r) => r.name) }, `${phase} checks passed`);
      return { type: 'checks-passed', phase };
    }
    this.#deps.metrics.checkFailures.inc({ phase });
    const detail = failed ? `${failed.name}: ${failed.detail}` : 'check failed';
    this.#log.warn({ phase, results }, `${phase} check failed: ${detail}`);
    return { type: 'checks-failed', phase, detail };
  }

  /**
   * Tells logged-in users about the coming reboot and waits `warnDelay` (abortable): through
   * logind's scheduled shutdown and wall message where it answers (a dry run: logind warns, the
   * agent reboots), else with `wall`. Stopped during the wait, it cancels logind's warning.
   */
  async #warnUsers(): Promise<void> {
    const { warnDelayMs, warnMessage } = this.#deps.config.reboot;
    if (warnDelayMs <= 0) return;
    const message = warningText(warnMessage, warnDelayMs);
    const how = await warnUsers(this.#logind, message, new Date(Date.now() + warnDelayMs));
    try {
      await sleep(warnDelayMs, this.#stop.signal);
    } catch (error) {
      if (how === 'logind') await this.#logind?.cancelScheduledShutdown().catch(() => {});
      throw error;
    }
  }

  async #reboot(method: string): Promise<AgentEvent | null> {
    // Never reboot once stopping: the slot stays recorded and the next start carries on.
    throwIfAborted(this.#stop.signal);
    // Nothing here waits on the network before the Reboot call: the confirmation just before it
    // must stay the last word on the slot (the clock was checked before it).
    const needed = neededInOrder(this.#signals.values());
    // Automatic soft reboots only where one can be told from a restart afterwards.
    const softReboot =
      this.#softRebooter !== null &&
      this.#softReboots !== null &&
      needed.length > 0 &&
      needed.every((s) => s.softReboot === true);
    const chosen = softReboot ? 'soft-reboot' : method;
    if (chosen === 'soft-reboot' && this.#softReboots === null) {
      // After it the boot id would be the same: the agent could not tell it happened.
      return {
        type: 'reboot-failed',
        detail:
          "cannot soft-reboot: systemd's SoftRebootsCount cannot be read (systemd 254 or newer is needed), so the agent could not tell the soft reboot happened",
      };
    }
    const guard = this.#deps.rebootGuard;
    const update = this.#update ?? (this.#state.name === 'rebooting' ? this.#state.update : null);
    let uncount = async () => {};
    if (guard && update) {
      uncount = await guard.noteReboot(update, this.#now()).catch((error: unknown) => {
        this.#log.warn({ err: describe(error), file: guard.file }, 'cannot count this reboot');
        return async () => {};
      });
    }
    this.#deps.metrics.reboots.inc();
    try {
      // An update held back until now (finalization locked) is let go only here: the slot is
      // held and was just confirmed. Applying may reboot the machine by itself.
      for (const reading of needed) {
        const source = this.#deps.sources.find((s) => s.name === reading.source);
        if (!source?.apply) continue;
        const applied = await source.apply(this.#stop.signal);
        if (applied === 'rebooting') {
          this.#log.warn(
            { source: source.name, grant: this.#grant?.revision },
            `rebooting now: ${source.name} applies the update and reboots`,
          );
          this.#rebootsRequested++;
          return null;
        }
      }
      this.#log.warn({ method: chosen, grant: this.#grant?.revision }, 'rebooting now');
      await (softReboot ? this.#softRebooter! : this.#rebooter).reboot(this.#stop.signal);
    } catch (error) {
      // No reboot happened: it does not count towards a loop.
      await uncount().catch(() => {});
      if (this.#stop.signal.aborted) throw error;
      this.#deps.metrics.dbusErrors.inc();
      return { type: 'reboot-failed', detail: describe(error) };
    }
    this.#rebootsRequested++;
    return null;
  }

  /**
   * Stops cleanly: timers and sources stop, keep-alives stop without revoking, so the node's key
   * (and its place or slot) stays until its lease runs out. A restart within that time carries on.
   * The registration goes at once.
   */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#stop.abort();
    this.#slotAbort?.abort();
    clearTimeout(this.#wakeTimer);
    clearTimeout(this.#windowTimer);
    for (const timer of this.#sourceTimers) clearTimeout(timer);
    await this.#deps.settings?.close();
    await Promise.all(this.#deps.sources.map((s) => s.close().catch(() => {})));
    this.#deps.lock?.close();
    await this.#deps.registration?.deregister();
    this.#log.info({ state: this.#state.name }, `${this.#deps.program ?? 'sluiced'} stopped`);
  }
}

function describeUpdate(update: UpdateInfo): string {
  return update.version
    ? `${update.source}: ${update.version}`
    : `${update.source}: ${update.detail}`;
}
