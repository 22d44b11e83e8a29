/**
 * Notifications, as Kured sends them: a JSON POST to each configured webhook when something an
 * operator must hear about happens in the group. The agent that observes the event sends it, and
 * one event gives one notification fleet-wide, however many agents see it: before sending, an
 * agent claims the event's id with a create-if-absent txn at
 * `<prefix>notifications/<group>/<id>` (on a lease that expires after a week, so the keys do not
 * pile up), and only the agent whose txn succeeded sends.
 *
 * Events, who observes them, and the id that makes them one:
 *
 * | event | observed by | id |
 * |---|---|---|
 * | `group-halted` | agents waiting in the group, when the pause sluice wrote for a lost node appears | `group-halted-<rev>` |
 * | `node-lost` | agents waiting in the group, for each lost holder | `node-lost-<node>-<rev>` |
 * | `post-checks-failing` | the node itself, when its post-reboot checks fail past their deadline | `post-checks-failing-<node>-<rev>` |
 * | `rollout-finished` | the node that released the last slot after its reboot, with nobody left waiting or holding | `rollout-finished-<rev>` |
 * | `group-paused`, `group-resumed` | agents waiting in the group | `group-paused-<rev>`, `group-resumed-<rev>` |
 *
 * (`<rev>` is the etcd revision of the fact: the pause's mod revision, the lost marker's or the
 * slot's create revision, the revision of the last history record.)
 *
 * Sending never blocks the lifecycle: `notify()` returns at once, and delivery runs on its own
 * with a timeout per attempt and retries with exponential back-off (cockatiel). A webhook that
 * answers 4xx (other than 429) is not asked again. Webhook URLs often carry a token: logs name a
 * webhook only by its origin.
 *
 * The body is the notification as JSON (with `text`, a line for chat tools), or the configured
 * `template`: JSON text in which `{{field}}` is replaced by the field's value, escaped for a JSON
 * string. Slack and Mattermost: `{"text": "{{text}}"}`; Discord: `{"content": "{{text}}"}`.
 */
import {
  type AgentState,
  type Decision,
  type GroupKeys,
  type GroupSnapshot,
  lostHolders,
  type NotifyStore,
} from '@sluice/core';
import { ExponentialBackoff, handleWhen, retry, TimeoutStrategy, timeout, wrap } from 'cockatiel';
import type { Logger } from 'pino';
import { describe } from './time.js';

/** The events an agent notifies about. */
export const NOTIFY_EVENTS = [
  'group-halted',
  'node-lost',
  'post-checks-failing',
  'rollout-finished',
  'group-paused',
  'group-resumed',
] as const;

/** One of NOTIFY_EVENTS. */
export type NotifyEvent = (typeof NOTIFY_EVENTS)[number];

/** The `notify` settings, with defaults filled in. No webhooks: no notifications. */
export interface NotifySettings {
  webhooks: string[];
  /** JSON text with `{{field}}` placeholders; null: the notification itself as JSON. */
  template: string | null;
  /** The events to send; the others are ignored. */
  events: NotifyEvent[];
  /** How long one POST may take. */
  timeoutMs: number;
  /** Attempts per webhook, the first included. */
  attempts: number;
}

/** The defaults of `notify`. */
export const DEFAULT_NOTIFY: NotifySettings = {
  webhooks: [],
  template: null,
  events: [...NOTIFY_EVENTS],
  timeoutMs: 10_000,
  attempts: 5,
};

/** What is POSTed (without a template). */
export interface Notification {
  /** The same event has the same id on every agent that sees it. */
  id: string;
  event: NotifyEvent;
  group: string;
  /** The node the event is about; null for group events. */
  node: string | null;
  /** One line for people. */
  summary: string;
  /** `[sluice] <summary>`: what chat webhooks show. */
  text: string;
  detail: string | null;
  /** The OS version involved, when known. */
  version: string | null;
  /** Who paused, for pauses written by sluicectl. */
  by: string | null;
  /** When the agent observed it (ISO-8601). */
  at: string;
  /** The node whose agent sent it. */
  observedBy: string;
}

/** The fields a template may name. */
export const TEMPLATE_FIELDS = [
  'id',
  'event',
  'group',
  'node',
  'summary',
  'text',
  'detail',
  'version',
  'by',
  'at',
  'observedBy',
] as const satisfies readonly (keyof Notification)[];

/** Renders the body of a notification: the template filled in, or the notification as JSON. */
export function renderBody(template: string | null, n: Notification): string {
  if (template === null) return JSON.stringify(n);
  return template.replace(/\{\{\s*([A-Za-z]+)\s*\}\}/g, (_all, field: string) => {
    const value = (n as unknown as Record<string, unknown>)[field];
    return JSON.stringify(value === null || value === undefined ? '' : String(value)).slice(1, -1);
  });
}

/**
 * Why a template cannot be used, or null: it must name only known fields and, filled in, be
 * valid JSON. For the config loader, which names the key.
 */
export function checkTemplate(template: string): string | null {
  const unknown = [...template.matchAll(/\{\{\s*([A-Za-z]+)\s*\}\}/g)]
    .map((m) => m[1]!)
    .filter((f) => !(TEMPLATE_FIELDS as readonly string[]).includes(f));
  if (unknown.length > 0) {
    return `unknown field ${JSON.stringify(unknown[0])} (fields: ${TEMPLATE_FIELDS.join(', ')})`;
  }
  const sample: Notification = {
    id: 'x',
    event: 'group-halted',
    group: 'g"\\',
    node: 'n',
    summary: 's"\n',
    text: 't',
    detail: null,
    version: null,
    by: null,
    at: new Date(0).toISOString(),
    observedBy: 'n',
  };
  try {
    JSON.parse(renderBody(template, sample));
  } catch (error) {
    return `filled in, it is not JSON (${error instanceof Error ? error.message : String(error)}); placeholders go inside JSON strings, as in {"text": "{{text}}"}`;
  }
  return null;
}

/** How long a claim lives: long after any agent could still observe the same event. */
const CLAIM_TTL_SECONDS = 7 * 24 * 3600;

/** What happened to one notification on one agent. */
export type NotifyOutcome = 'sent' | 'failed' | 'duplicate';

/** What a Notifier needs. */
export interface NotifierOptions {
  settings: NotifySettings;
  /** Claims events fleet-wide; null (no etcd): every observed event is sent. */
  store: NotifyStore | null;
  keys: GroupKeys;
  /** This node's id. */
  node: string;
  logger: Logger;
  /** Called once per notification with what became of it (metrics). */
  onOutcome?: (event: NotifyEvent, outcome: NotifyOutcome) => void;
  /** First back-off between attempts, in ms. Default 1000. */
  backoffMs?: number;
  now?: () => Date;
}

/** A webhook's answer that a retry will not change. */
class PermanentError extends Error {}

/** Sends notifications. One per agent; `close()` on stop. */
export class Notifier {
  readonly #o: NotifierOptions;
  readonly #seen = new Set<string>();
  readonly #inFlight = new Set<Promise<void>>();
  readonly #stop = new AbortController();

  constructor(options: NotifierOptions) {
    this.#o = options;
  }

  /** True when `event` is configured to be sent. */
  wants(event: NotifyEvent): boolean {
    return this.#o.settings.webhooks.length > 0 && this.#o.settings.events.includes(event);
  }

  /**
   * Sends a notification unless this agent already handled `id` or another agent claimed it.
   * Returns at once; delivery runs in the background.
   */
  notify(input: {
    event: NotifyEvent;
    id: string;
    summary: string;
    node?: string | null;
    detail?: string | null;
    version?: string | null;
    by?: string | null;
  }): void {
    if (!this.wants(input.event) || this.#seen.has(input.id) || this.#stop.signal.aborted) return;
    this.#seen.add(input.id);
    const n: Notification = {
      id: input.id,
      event: input.event,
      group: this.#o.keys.group,
      node: input.node ?? null,
      summary: input.summary,
      text: `[sluice] ${input.summary}`,
      detail: input.detail ?? null,
      version: input.version ?? null,
      by: input.by ?? null,
      at: (this.#o.now?.() ?? new Date()).toISOString(),
      observedBy: this.#o.node,
    };
    const run = this.#deliver(n).catch((error: unknown) => {
      this.#o.logger.warn(
        { event: n.event, id: n.id, err: describe(error) },
        'notification failed',
      );
      this.#o.onOutcome?.(n.event, 'failed');
    });
    this.#inFlight.add(run);
    void run.finally(() => this.#inFlight.delete(run));
  }

  /** Notifications still being claimed or sent. */
  get pending(): number {
    return this.#inFlight.size;
  }

  /** Resolves once nothing is in flight (for tests). */
  async idle(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
  }

  /**
   * Waits up to `graceMs` for notifications in flight, then cancels the rest: a POST under way is
   * aborted, and no further attempt starts.
   */
  async close(graceMs = 2000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise((resolve) => {
      timer = setTimeout(resolve, graceMs);
    });
    await Promise.race([this.idle(), grace]);
    clearTimeout(timer);
    this.#stop.abort();
  }

  #policy() {
    const { attempts, timeoutMs } = this.#o.settings;
    const retryable = handleWhen((e) => !(e instanceof PermanentError));
    return wrap(
      retry(retryable, {
        maxAttempts: Math.max(0, attempts - 1),
        backoff: new ExponentialBackoff({
          initialDelay: this.#o.backoffMs ?? 1000,
          maxDelay: 60_000,
        }),
      }),
      timeout(timeoutMs, TimeoutStrategy.Aggressive),
    );
  }

  async #deliver(n: Notification): Promise<void> {
    if (!(await this.#claim(n))) {
      this.#o.logger.debug({ event: n.event, id: n.id }, 'notification sent by another agent');
      this.#o.onOutcome?.(n.event, 'duplicate');
      return;
    }
    const body = renderBody(this.#o.settings.template, n);
    const results = await Promise.allSettled(
      this.#o.settings.webhooks.map((url) => this.#post(url, body)),
    );
    const failed = results.flatMap((r, i) =>
      r.status === 'rejected'
        ? [{ webhook: origin(this.#o.settings.webhooks[i]!), err: describe(r.reason) }]
        : [],
    );
    if (failed.length === results.length) {
      this.#o.logger.warn(
        { event: n.event, id: n.id, failed },
        `notification failed: ${n.summary}`,
      );
      this.#o.onOutcome?.(n.event, 'failed');
      return;
    }
    if (failed.length > 0) {
      this.#o.logger.warn(
        { event: n.event, id: n.id, failed },
        'notification failed for some webhooks',
      );
    }
    this.#o.logger.info({ event: n.event, id: n.id }, `notification sent: ${n.summary}`);
    this.#o.onOutcome?.(n.event, 'sent');
  }

  /** Claims the event for this agent: true when this agent's txn created the key. */
  async #claim(n: Notification): Promise<boolean> {
    const store = this.#o.store;
    if (!store) return true;
    const value = JSON.stringify({ event: n.event, by: this.#o.node, at: n.at });
    return this.#policy().execute(
      () => store.claim(n.id, value, CLAIM_TTL_SECONDS),
      this.#stop.signal,
    );
  }

  async #post(url: string, body: string): Promise<void> {
    await this.#policy().execute(async ({ signal }) => {
      let res: Response;
      try {
        res = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'user-agent': 'sluiced' },
          body,
          signal,
        });
      } catch (error) {
        // Node's fetch says only "fetch failed"; the reason is in the cause.
        const cause =
          error instanceof Error && error.cause instanceof Error ? `: ${error.cause.message}` : '';
        throw new Error(`${describe(error)}${cause}`);
      }
      await res.arrayBuffer().catch(() => {});
      if (res.ok) return;
      const message = `${origin(url)} answered ${res.status} ${res.statusText}`.trim();
      if (res.status >= 400 && res.status < 500 && res.status !== 429) {
        throw new PermanentError(message);
      }
      throw new Error(message);
    }, this.#stop.signal);
  }
}

/** A webhook for logs: its origin only (the path and query often hold a token). */
function origin(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return '(invalid URL)';
  }
}

/**
 * Turns what an agent observes into notifications: its own transitions (post-reboot checks
 * failing past their deadline; the release that drained the group) and the group as each wait
 * decision saw it (halts, lost holders, pauses and resumes). The agent calls it; it never calls
 * back into the agent, and every call returns at once.
 */
export class NotifyObserver {
  readonly #notifier: Notifier;
  readonly #store: NotifyStore | null;
  readonly #keys: GroupKeys;
  readonly #node: string;
  readonly #log: Logger;
  /** The pause last seen in a decision: its mod revision and how it read. */
  #pause: { revision: number; reason: string; by: string | null } | null = null;
  /** This process rebooted the node and is on its way to releasing the slot. */
  #rebooted = false;

  constructor(options: {
    notifier: Notifier;
    store: NotifyStore | null;
    keys: GroupKeys;
    node: string;
    logger: Logger;
  }) {
    this.#notifier = options.notifier;
    this.#store = options.store;
    this.#keys = options.keys;
    this.#node = options.node;
    this.#log = options.logger;
  }

  /** After every transition of the agent. */
  transition(state: AgentState, edge: string): void {
    if (edge === 'recovered-rebooted') this.#rebooted = true;
    if (state.name === 'post-checking' && state.failed && edge === 'post-checks-failed') {
      this.#notifier.notify({
        event: 'post-checks-failing',
        id: `post-checks-failing-${this.#node}-${state.revision ?? 0}`,
        node: this.#node,
        summary: `${this.#node} rebooted, but its post-reboot checks fail past their deadline; it keeps its slot in group ${this.#keys.group}`,
        detail: state.lastError,
      });
    }
    if (state.name === 'idle' && edge === 'released' && this.#rebooted) {
      this.#rebooted = false;
      if (this.#notifier.wants('rollout-finished')) void this.#checkDrained();
    }
    if (state.name === 'idle' && edge !== 'released') this.#rebooted = false;
  }

  /** After every decision while waiting for a slot, with the snapshot it was taken on. */
  decision(_decision: Decision, snapshot: GroupSnapshot): void {
    const group = this.#keys.group;
    for (const lost of lostHolders(snapshot)) {
      this.#notifier.notify({
        event: 'node-lost',
        id: `node-lost-${lost.node}-${lost.createRevision}`,
        node: lost.node,
        summary: `${lost.node} was lost during its reboot in group ${group}: its hold lease expired without a release`,
        detail: lost.marker?.grantedAt ? `it took its slot at ${lost.marker.grantedAt}` : null,
      });
    }
    const pause = snapshot.paused;
    const revision = snapshot.settingsRevisions[snapshot.keys.paused] ?? 0;
    if (pause && revision > 0) {
      if (this.#pause?.revision !== revision) {
        this.#pause = { revision, reason: pause.reason, by: pause.by };
        if (pause.by === 'sluice') {
          this.#notifier.notify({
            event: 'group-halted',
            id: `group-halted-${revision}`,
            summary: `group ${group} halted: ${pause.reason}; nothing reboots until an operator unlocks the node with --force and resumes`,
            detail: pause.reason,
          });
        } else {
          this.#notifier.notify({
            event: 'group-paused',
            id: `group-paused-${revision}`,
            summary: `group ${group} paused${pause.by ? ` by ${pause.by}` : ''}: ${pause.reason}`,
            detail: pause.reason,
            by: pause.by,
          });
        }
      }
    } else if (!pause && this.#pause) {
      const was = this.#pause;
      this.#pause = null;
      this.#notifier.notify({
        event: 'group-resumed',
        id: `group-resumed-${was.revision}`,
        summary: `group ${group} resumed: reboots go on (it was ${was.by === 'sluice' ? 'halted' : 'paused'}: ${was.reason})`,
        detail: was.reason,
      });
    }
  }

  /**
   * After this node released its slot following its reboot: if nobody waits or holds a slot any
   * more, the rollout in the group is done. The id is the revision of the newest history record,
   * which every agent that finds the group drained at the same time also sees.
   */
  async #checkDrained(): Promise<void> {
    const store = this.#store;
    if (!store) return;
    try {
      const { drained, newest: last } = await store.drained();
      if (!drained || !last) return;
      let version: string | null = null;
      let record: { toVersion?: unknown; reason?: unknown } = {};
      try {
        record = JSON.parse(last.value);
      } catch {
        // An unreadable record names no version.
      }
      if (typeof record.toVersion === 'string') version = record.toVersion;
      else if (typeof record.reason === 'string') {
        version = /^update-engine: (\S+)$/.exec(record.reason)?.[1] ?? null;
      }
      this.#notifier.notify({
        event: 'rollout-finished',
        id: `rollout-finished-${last.modRevision}`,
        version,
        summary: `rollout${version ? ` of ${version}` : ''} finished in group ${this.#keys.group}: the last node released its slot and none waits`,
      });
    } catch (error) {
      this.#log.warn({ err: describe(error) }, 'cannot tell whether the rollout finished');
    }
  }
}
