/**
 * What the two FleetLock endpoints do to sluice's semaphore. A FleetLock client id is a node in
 * the queue of the sluice group of the same name, marked as a FleetLock client (`client:
 * "fleetlock"` in its record), so sluiced agents and FleetLock clients share one max, one FIFO
 * queue, the windows, pauses, halts and the loss budget. All state is in etcd and every grant goes
 * through the Semaphore's guarded admission txn, so any number of servers may answer.
 *
 * Places are kept across polls: a pre-reboot that cannot be admitted yet leaves the id queued on
 * a lease of `placeTTL` seconds that only its polls refresh (each poll moves the key onto a fresh
 * lease; it keeps its create revision, so its place). A queued id that stops polling drops out when
 * that lease runs out, and its turn passes to the next one that polls; so a freed slot waits for
 * the head of the queue at most about one poll interval. A granted id holds its slot on a hold
 * lease of `holdTTL` seconds, which a repeated pre-reboot renews, as an agent's does while it
 * runs; a holder that never calls steady-state lets it run out and becomes a lost holder, which
 * halts the group as for agents.
 */
import {
  DEFAULT_GROUP,
  type Decision,
  FLEETLOCK_CLIENT,
  FLEETLOCK_TOKEN,
  type Grant,
  GroupKeys,
  isSluiceError,
} from '@sluice/core';
import { type EtcdClient, groupExists, isTransient, Semaphore } from '@sluice/etcd';
import { ExponentialBackoff, handleWhen, retry } from 'cockatiel';
import { type ClientParams, failure, type Reply, success } from './protocol.js';

/**
 * The seconds a queued id keeps its place without polling, for clients that poll every
 * `pollMs`: the interval plus Zincati's 10 % jitter, plus a tenth more (at most 10 s) for the
 * request itself. For Zincati's 300 s that is 340 s.
 */
export function placeTTLFor(pollMs: number): number {
  return Math.ceil((pollMs * 1.1 + Math.min(10_000, pollMs * 0.1)) / 1000);
}

/** How a FleetLockService is set up. */
export interface ServiceOptions {
  /** The etcd key prefix (default `/sluice/v1/`). */
  prefix: string;
  /** Seconds a queued id keeps its place without polling. */
  placeTTL: number;
  /** Seconds a granted id holds its slot without steady-state (renewed by a pre-reboot). */
  holdTTL: number;
  /** Hold a pre-reboot that cannot be admitted open this many ms, answering once granted. 0 = off. */
  longPollMs: number;
  /** Accept groups other than `default` that have no keys in etcd yet (default: refused, as a typo). */
  allowNewGroups: boolean;
  /** etcd's `--max-txn-ops`. */
  maxTxnOps?: number;
  /** The clock guard: null when this server's clock may be trusted, else why not. */
  clockCheck?: () => Promise<string | null>;
  /** The clock, for tests. */
  now?: () => Date;
}

/** The outcome of one request, for the reply, the log and the metrics. */
export interface Outcome extends Reply {
  /** True when this request took the slot (not a repeated pre-reboot of a holder). */
  granted?: boolean;
}

/** The refusals a long poll waits out: they change without the client doing anything. */
const WAITS: ReadonlySet<string> = new Set([
  'full',
  'window_closed',
  'paused',
  'halted',
  'invalid_settings',
  'clock_skew',
]);

/** How many times one request tries again after a lost race or a transient etcd error. */
const ATTEMPTS = 4;

/** The FleetLock endpoints on top of sluice's semaphore. One per server process. */
export class FleetLockService {
  readonly #client: EtcdClient;
  readonly #opts: ServiceOptions;
  /** Groups seen to exist: they are not read again (a group's keys do not go away). */
  readonly #known = new Set<string>();
  readonly #retry = retry(
    handleWhen((e) => isTransient(e) || (isSluiceError(e) && e.kind === 'refused')),
    {
      maxAttempts: ATTEMPTS - 1,
      backoff: new ExponentialBackoff({ initialDelay: 20, maxDelay: 500 }),
    },
  );

  constructor(client: EtcdClient, opts: ServiceOptions) {
    this.#client = client;
    this.#opts = opts;
  }

  /** A semaphore for one request; `keepAlive` only while a long poll waits. */
  #semaphore(params: ClientParams, keepAlive = false): Semaphore {
    return new Semaphore(this.#client, {
      node: params.id,
      hostname: '',
      prefix: this.#opts.prefix,
      group: params.group,
      token: FLEETLOCK_TOKEN,
      client: FLEETLOCK_CLIENT,
      sessionTTL: this.#opts.placeTTL,
      holdTTL: this.#opts.holdTTL,
      keepAlive,
      ...(this.#opts.maxTxnOps ? { maxTxnOps: this.#opts.maxTxnOps } : {}),
      ...(this.#opts.clockCheck ? { clockCheck: this.#opts.clockCheck } : {}),
      ...(this.#opts.now ? { now: this.#opts.now } : {}),
    });
  }

  /** Null when the group may be used, else the `unknown_group` reply. */
  async #checkGroup(group: string): Promise<Outcome | null> {
    // The default group needs no keys, as for sluicectl: it is every client's unless configured.
    if (this.#opts.allowNewGroups || group === DEFAULT_GROUP || this.#known.has(group)) return null;
    const keys = new GroupKeys(this.#opts.prefix, group);
    if (await groupExists(this.#client, keys)) {
      this.#known.add(group);
      return null;
    }
    return failure(
      'unknown_group',
      `group ${JSON.stringify(group)} has no keys under ${keys.root}; create it with "sluicectl set-max N --group ${group} --create", or start the server with --allow-new-groups`,
    );
  }

  /**
   * `POST /v1/pre-reboot`: 200 once `params.id` holds a slot (again, if it holds one already),
   * else the reason it waits, with its place kept. With long polling, a request that would wait
   * is held open until the id is granted or `longPollMs` has passed. `signal` is aborted when the
   * client goes away.
   */
  async preReboot(params: ClientParams, from: string, signal?: AbortSignal): Promise<Outcome> {
    return this.#guard(async () => {
      const unknown = await this.#checkGroup(params.group);
      if (unknown) return unknown;
      const request = { reason: `FleetLock pre-reboot from ${from}` };
      const first = await this.#attempt(params, request);
      if (first.status === 200 || this.#opts.longPollMs <= 0 || !first.waits) return first.outcome;
      // Long poll: wait on the group's watch with the semaphore the id is queued on, then answer
      // from a fresh attempt, which also leaves the place on a full-length lease.
      const deadline = AbortSignal.timeout(this.#opts.longPollMs);
      const stop = signal ? AbortSignal.any([deadline, signal]) : deadline;
      const sem = this.#semaphore(params, true);
      try {
        const grant = await sem.acquire(request, stop);
        return this.#granted(params, grant, true, true);
      } catch (error) {
        if (!(isSluiceError(error) && error.kind === 'aborted')) throw error;
      } finally {
        sem.close();
      }
      return (await this.#attempt(params, request)).outcome;
    });
  }

  /** One admission attempt, tried again after lost races; the place is kept either way. */
  async #attempt(
    params: ClientParams,
    request: { reason: string },
  ): Promise<{ status: number; outcome: Outcome; waits: boolean }> {
    for (let i = 0; ; i++) {
      const sem = this.#semaphore(params);
      let result: Grant | Decision;
      try {
        result = await this.#retry.execute(() => sem.tryAdmit(request));
      } finally {
        sem.close();
      }
      if ('revision' in result) {
        // A fresh grant took an admission txn; a holder asking again is answered from its key.
        const outcome = this.#granted(params, result, sem.stats.admitAttempts > 0, false);
        return { status: 200, outcome, waits: false };
      }
      // An admission txn that lost a race: a slot may still be free for us. Read again.
      if (sem.stats.admitConflicts > 0 && i + 1 < ATTEMPTS) continue;
      const outcome = this.#refusal(params, result);
      return { status: outcome.status, outcome, waits: WAITS.has(outcome.kind) };
    }
  }

  #granted(params: ClientParams, grant: Grant, fresh: boolean, longPoll: boolean): Outcome {
    return {
      ...success(
        `${params.id} holds a slot in group ${params.group} (granted at revision ${grant.revision}${longPoll ? ', after a long poll' : ''}); call /v1/steady-state after the reboot`,
      ),
      granted: fresh,
    };
  }

  /** The reply for a decision that refused the slot. */
  #refusal(params: ClientParams, decision: Decision): Outcome {
    if (decision.kind !== 'wait') {
      // `holding` without a grant or `admit` not taken: the attempt above never returns these.
      return failure('internal', `unexpected decision ${decision.kind} for ${params.id}`);
    }
    const place = decision.rank === null ? '' : '; its place in the queue is kept';
    switch (decision.reason) {
      case 'queue':
      case 'domain-full':
      case 'canary':
        // A canary soaking holds everyone back as a full group would: the place is kept.
        return failure('full', `${decision.detail}; the place is kept: poll again`);
      case 'canary-failed':
        return failure('halted', `${decision.detail}${place}`);
      case 'window-closed': {
        const opens = decision.wakeAt ? `; it opens at ${decision.wakeAt.toISOString()}` : '';
        return failure(
          'window_closed',
          `the reboot window of group ${params.group} is closed${opens}${place}`,
        );
      }
      case 'window-closing': {
        // FleetLock clients send no expected slot time, so this only comes from a record that
        // says one: report it as the closed window it amounts to.
        return failure('window_closed', `${decision.detail}${place}`);
      }
      case 'paused':
        return failure('paused', `${decision.detail}${place}`);
      case 'halted':
        return failure(
          'halted',
          `${decision.detail}: the group is halted until an operator clears it${place}`,
        );
      case 'lost-marker':
        return failure('lost_slot', decision.detail);
      case 'invalid-value':
        return failure(
          'invalid_settings',
          `${decision.detail}: nobody is admitted until it is fixed`,
        );
      case 'clock-skew':
        return failure('clock_skew', decision.detail);
      case 'not-queued':
        return failure('unavailable', `${params.id} left the queue while asking; poll again`);
    }
  }

  /**
   * `POST /v1/steady-state`: gives back the slot `params.id` holds, or its place in the queue, and
   * answers 200 either way (also when it has neither). A slot of the id's that was declared lost
   * is cleared (history: `returned`), and the group stays paused if it halted for it. A key of a
   * sluiced agent or a manual lock with this id is left alone.
   */
  async steadyState(params: ClientParams): Promise<Outcome> {
    return this.#guard(async () => {
      const sem = this.#semaphore(params);
      try {
        const snapshot = await this.#retry.execute(() => sem.ownSnapshot());
        const own = sem.own(snapshot);
        const foreign = own && (!sem.isOwn(own.record) || own.record?.client !== FLEETLOCK_CLIENT);
        if (foreign) {
          return success(
            `${params.id} holds nothing as a FleetLock client (its key in group ${params.group} is ${own.record?.manual ? 'a manual lock' : "a sluiced agent's"}, left alone)`,
          );
        }
        const released = await this.#retry.execute(() =>
          sem.release(own?.grant ?? null, 'released'),
        );
        if (released) return success(`${params.id} released its slot in group ${params.group}`);
        if (own) return success(`${params.id} left the queue of group ${params.group}`);
        return success(`${params.id} holds nothing in group ${params.group}`);
      } finally {
        sem.close();
      }
    });
  }

  /** Turns errors into replies: nothing escapes as a 5xx but etcd outages and bugs. */
  async #guard(fn: () => Promise<Outcome>): Promise<Outcome> {
    try {
      return await fn();
    } catch (error) {
      if (isSluiceError(error)) {
        if (error.kind === 'refused') return failure('id_conflict', error.message);
        if (error.kind.startsWith('etcd-')) return failure('unavailable', error.message);
        if (error.kind === 'aborted') return failure('unavailable', 'the request was cancelled');
        return failure('internal', error.message);
      }
      if (isTransient(error)) return failure('unavailable', String(error));
      throw error;
    }
  }
}
