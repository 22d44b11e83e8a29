/**
 * Group metrics for Prometheus: what `sluicectl exporter` serves. One process per fleet (next to
 * Prometheus, with the read-only role `deploy/etcd/setup-rbac.sh` makes for dashboards) keeps a
 * live mirror of each group (one range read, then a watch: nothing polls) and turns it into
 * gauges at scrape time.
 *
 * Why not the agents: an idle agent watches nothing but its own request key, so that an idle
 * fleet costs etcd nothing; group-level facts (paused, halted, lost holders, holders over max,
 * the oldest waiter) are only known to agents that happen to be waiting. One exporter per fleet
 * sees every group all the time, gives one series per group instead of one per node, and keeps
 * working while every node of a group is down for its reboot. The agents export what only they
 * know: their own state, checks, reboots.
 *
 * Like `sluicectl status`, it halts a group that has more lost holders than its loss budget if
 * its etcd user may write; a read-only user cannot, and the agents halt the group themselves.
 */
import type { Server } from 'node:http';
import { serveMetrics } from '@sluice/agent';
import {
  BLOCKER_KINDS,
  CANARY_PHASES,
  GroupKeys,
  type GroupSnapshot,
  groupAdmission,
  groupStatus,
  isSluiceError,
  lostHolders,
  mustHalt,
  type SluiceError,
  windowStateAll,
} from '@sluice/core';
import { GroupWatch, haltGroup, toSluiceError } from '@sluice/etcd';
import { Counter, Gauge, Registry } from 'prom-client';
import type { EtcdClient } from './context.js';

/** One exported group. */
interface Watched {
  keys: GroupKeys;
  watch: GroupWatch;
  /** When this exporter first saw the current pause, for pauses without a `since` (etcdctl). */
  pauseSeen: { raw: string; at: number } | null;
}

/** Options of a GroupExporter. */
export interface ExporterOptions {
  prefix: string;
  /** The groups to export; with `discover`, the ones found under the prefix are added. */
  groups: readonly string[];
  /** Look for new groups under the prefix this often (ms); 0: only the `groups` given. */
  discoverEveryMs?: number;
  /** Lists the groups under the prefix (sluicectl's listGroups). */
  listGroups?: () => Promise<string[]>;
  /** Failures while watching or halting; the exporter goes on. */
  onError?: (error: SluiceError) => void;
  now?: () => Date;
}

/** The metrics and the mirrors they come from. `start()`, then `serve()`; `close()` at the end. */
export class GroupExporter {
  readonly registry = new Registry();
  readonly #client: EtcdClient;
  readonly #opts: ExporterOptions;
  readonly #groups = new Map<string, Watched>();
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  readonly #gauges: Gauge[] = [];
  readonly #g = (name: string, help: string, labelNames: string[] = ['group']): Gauge => {
    const gauge = new Gauge({ name, help, labelNames, registers: [this.registry] });
    this.#gauges.push(gauge);
    return gauge;
  };

  readonly max = this.#g(
    'sluice_group_max',
    'The max key: nodes that may hold a slot at once (absent while the key does not parse)',
  );
  readonly lossBudget = this.#g(
    'sluice_group_loss_budget',
    'Lost holders tolerated before the group halts (absent while the key does not parse)',
  );
  readonly holders = this.#g('sluice_group_holders', 'Slots taken: holders, lost holders included');
  readonly domainMax = this.#g(
    'sluice_group_domain_max',
    'The domain-max key: holders allowed per failure domain (absent while unset or invalid)',
  );
  readonly domainHolders = this.#g(
    'sluice_group_domain_holders',
    'Slots taken in each failure domain (lost holders included), while domain-max is set',
    ['group', 'domain'],
  );
  readonly canaryPhase = this.#g(
    'sluice_group_canary_phase',
    "Where the group's canary stands: 1 for the current phase (waiting, rebooting, soaking, done, failed), 0 for the others; absent without a canary",
    ['group', 'phase'],
  );
  readonly overMax = this.#g(
    'sluice_group_holders_over_max',
    'Holders beyond max, admitted before max was lowered (they drain away)',
  );
  readonly waiting = this.#g('sluice_group_waiting', 'Nodes waiting in the queue for a slot');
  readonly lost = this.#g(
    'sluice_group_lost_holders',
    'Holders lost during their reboot: hold lease expired without a release',
  );
  readonly admittable = this.#g(
    'sluice_group_admittable',
    'Slots a waiter could take right now: 0 while anything blocks admission',
  );
  readonly blocked = this.#g(
    'sluice_group_blocked',
    'Why the group admits nobody (more) now: 1 for the current reason, 0 for the others',
    ['group', 'reason'],
  );
  readonly paused = this.#g(
    'sluice_group_paused',
    '1 while the paused key exists (an operator pause or a halt)',
  );
  readonly halted = this.#g(
    'sluice_group_halted',
    '1 while the group is halted for lost holders (until sluicectl resume)',
  );
  readonly pausedSince = this.#g(
    'sluice_group_paused_since_timestamp_seconds',
    'When the current pause began: its recorded time, else when this exporter first saw it',
  );
  readonly windowOpen = this.#g(
    'sluice_group_window_open',
    "1 while the group's reboot window is open (no window: always open)",
  );
  readonly keyErrors = this.#g(
    'sluice_group_key_errors',
    'Keys of the group that cannot be used (an invalid setting admits nobody)',
  );
  readonly oldestWaiting = this.#g(
    'sluice_group_oldest_waiter_since_timestamp_seconds',
    'When the node that has waited longest joined the queue (absent: nobody waits)',
  );
  readonly problems = this.#g(
    'sluice_group_holders_with_problem',
    'Holders that report a problem, such as post-reboot checks failing past their deadline',
  );
  readonly registered = this.#g(
    'sluice_group_registered_nodes',
    'Agents registered in the group (nodes/): live agents, idle ones included',
  );
  readonly nodeProblems = this.#g(
    'sluice_group_node_problems',
    'Agents that cannot take part: a second agent with a node id (a cloned machine), a clock too far off',
  );
  readonly connected = this.#g(
    'sluice_exporter_watch_connected',
    "1 while the exporter's watch of the group is connected to etcd (0: figures may be stale)",
  );

  readonly admissions = new Counter({
    name: 'sluice_group_admissions_total',
    help: 'Slots granted (holding markers created) seen by this exporter since it started',
    labelNames: ['group'],
    registers: [this.registry],
  });
  readonly releases = new Counter({
    name: 'sluice_group_releases_total',
    help: 'Slots given back, forced or cleared (holding markers deleted) seen since it started',
    labelNames: ['group'],
    registers: [this.registry],
  });

  constructor(client: EtcdClient, opts: ExporterOptions) {
    this.#client = client;
    this.#opts = opts;
  }

  #now(): Date {
    return this.#opts.now?.() ?? new Date();
  }

  /** Starts watching the groups (and discovering new ones, if asked). */
  async start(): Promise<void> {
    await this.#discover();
    const every = this.#opts.discoverEveryMs ?? 0;
    if (every > 0 && this.#opts.listGroups) {
      this.#timer = setInterval(() => {
        void this.#discover().catch((error: unknown) => this.#error(error, 'listing groups'));
      }, every);
      this.#timer.unref();
    }
  }

  async #discover(): Promise<void> {
    const found = this.#opts.listGroups ? await this.#opts.listGroups() : [];
    const names = [...new Set([...this.#opts.groups, ...found])];
    await Promise.all(names.filter((n) => !this.#groups.has(n)).map((n) => this.#watch(n)));
  }

  async #watch(group: string): Promise<void> {
    const keys = new GroupKeys(this.#opts.prefix, group);
    const watch = await GroupWatch.start(this.#client, keys);
    if (this.#closed) {
      await watch.close();
      return;
    }
    const watched: Watched = { keys, watch, pauseSeen: null };
    this.#groups.set(group, watched);
    const halt = async () => {
      const snapshot = watch.snapshot;
      if (!mustHalt(snapshot)) return;
      try {
        await haltGroup(this.#client, snapshot);
      } catch (error) {
        // A read-only exporter cannot halt; the agents do.
        if (!(isSluiceError(error) && error.kind === 'etcd-denied')) {
          this.#error(error, `halting ${keys.root}`);
        }
      }
    };
    // Markers by key and create revision: a new one is an admission, a vanished one a release.
    const markers = (): Set<string> =>
      new Set(watch.snapshot.holding.map((h) => `${h.key}@${h.createRevision}`));
    let seen = markers();
    this.admissions.inc({ group }, 0);
    this.releases.inc({ group }, 0);
    watch.onChange(() => {
      const now = markers();
      for (const m of now) if (!seen.has(m)) this.admissions.inc({ group });
      for (const m of seen) if (!now.has(m)) this.releases.inc({ group });
      seen = now;
      void halt();
    });
    await halt();
  }

  #error(error: unknown, what: string): void {
    if (!this.#closed) this.#opts.onError?.(toSluiceError(error, what));
  }

  /** The groups being exported. */
  get groups(): string[] {
    return [...this.#groups.keys()].sort();
  }

  /** Sets every gauge from the mirrors as they stand now. Called before each scrape. */
  refresh(): void {
    const now = this.#now();
    for (const gauge of this.#gauges) gauge.reset();
    for (const [group, w] of this.#groups) {
      const snapshot = w.watch.snapshot;
      const labels = { group };
      const admission = groupAdmission(snapshot, now);
      const status = groupStatus(snapshot, now);
      if (snapshot.max.ok) this.max.set(labels, snapshot.max.value);
      if (snapshot.lossBudget.ok) this.lossBudget.set(labels, snapshot.lossBudget.value);
      this.holders.set(labels, admission.holders);
      if (status.domainMax !== null) this.domainMax.set(labels, status.domainMax);
      for (const d of status.domains)
        this.domainHolders.set({ group, domain: d.domain }, d.holders);
      const canary = status.canary;
      if (canary) {
        for (const phase of CANARY_PHASES) {
          this.canaryPhase.set({ group, phase }, canary.phase === phase ? 1 : 0);
        }
      }
      this.overMax.set(labels, admission.overMax);
      this.lost.set(labels, lostHolders(snapshot).length);
      this.admittable.set(labels, admission.admittable);
      for (const reason of BLOCKER_KINDS) {
        this.blocked.set({ group, reason }, admission.blocker?.kind === reason ? 1 : 0);
      }
      const raw = w.watch.get(snapshot.keys.paused)?.value ?? null;
      this.paused.set(labels, raw === null ? 0 : 1);
      this.halted.set(labels, admission.blocker?.kind === 'halted' ? 1 : 0);
      if (raw === null) {
        w.pauseSeen = null;
      } else {
        if (w.pauseSeen?.raw !== raw) w.pauseSeen = { raw, at: now.getTime() };
        const since = snapshot.paused?.since ? Date.parse(snapshot.paused.since) : Number.NaN;
        this.pausedSince.set(labels, (Number.isNaN(since) ? w.pauseSeen.at : since) / 1000);
      }
      this.windowOpen.set(labels, windowOpen(snapshot, now));
      this.keyErrors.set(labels, snapshot.errors.length);
      let waiting = 0;
      let oldest = Number.POSITIVE_INFINITY;
      let problems = 0;
      for (const e of snapshot.queue) {
        if (e.holding) {
          if (e.record?.problem) problems++;
          continue;
        }
        waiting++;
        const at = Date.parse(e.record?.enqueuedAt ?? '');
        if (!Number.isNaN(at)) oldest = Math.min(oldest, at);
      }
      this.waiting.set(labels, waiting);
      if (Number.isFinite(oldest)) this.oldestWaiting.set(labels, oldest / 1000);
      this.problems.set(labels, problems);
      this.registered.set(labels, status.registered);
      this.nodeProblems.set(labels, status.nodeProblems.length);
      this.connected.set(labels, w.watch.connected ? 1 : 0);
    }
  }

  /** The metrics text, freshly computed. */
  async metrics(): Promise<string> {
    this.refresh();
    return this.registry.metrics();
  }

  /** Serves /metrics and /healthz on `host:port`; port 0 picks a free one. */
  async serve(host: string, port: number): Promise<Server> {
    return serveMetrics(() => this.metrics(), this.registry.contentType, host, port);
  }

  /** Stops the watches. */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    await Promise.all([...this.#groups.values()].map((w) => w.watch.close()));
    this.#groups.clear();
  }
}

/** 1 when the group's window is open now or none is set; 0 when closed or invalid. */
function windowOpen(snapshot: GroupSnapshot, now: Date): number {
  const windows = snapshot.windows;
  if (!windows.ok) return 0;
  if (!windows.value) return 1;
  return windowStateAll([windows.value], now).open ? 1 : 0;
}
