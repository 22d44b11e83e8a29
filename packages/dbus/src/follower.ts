/**
 * What update_engine's and rpm-ostreed's clients share: following one service on the bus. A
 * `ServiceFollower` connects, subscribes to the service's signals and to `NameOwnerChanged` of its
 * name, reads its status when it starts and whenever the service appears, applies the service's
 * signals in between (in the order they were sent), and reconnects with backoff and jitter when
 * the bus connection drops, until `close()`. A client says which signals it wants, how to read
 * the status and what a signal means.
 */

import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { isSluiceError, SluiceError } from '@sluice/core';
import { ExponentialBackoff, type IBackoffFactory } from 'cockatiel';
import { type Message, type MessageBus, MessageType } from 'dbus-next';
import {
  abortedError,
  type BusAddress,
  callMethod,
  closeBus,
  connectBus,
  DEFAULT_CALL_TIMEOUT_MS,
  onBusClosed,
} from './bus.js';
import { addMatch, busMethod, DBUS_NAME, isNoOwner, nameOwnerChangedRule } from './helpers.js';

/**
 * The events of a follower:
 *
 * - `status`: the service's status changed (a signal, or a fresh read that differs from the last
 *   status). Fires for the first status too.
 * - `connected` / `disconnected`: the bus connection came back / was lost (it reconnects with
 *   backoff and jitter; meanwhile `connected` and `serviceUp` are false and `status` keeps the
 *   last value).
 * - `service-up`: the service is on the bus, with this unique name: seen at start, after a
 *   reconnect, or when it (re)starts. `service-down`: it left the bus.
 * - `problem`: something failed that the client gets over by itself (a read, a reconnect attempt,
 *   a malformed signal). Log it; no action is needed.
 */
export interface FollowerEvents<S> {
  status: [status: S];
  connected: [];
  disconnected: [error: SluiceError];
  'service-up': [owner: string];
  'service-down': [];
  problem: [error: SluiceError];
}

/** Options every follower takes. */
export interface FollowerOptions {
  /** The bus the service is on. Defaults to `'system'`. */
  address?: BusAddress;
  /** How long each D-Bus call, and connecting, may take. Defaults to 5 s. */
  callTimeoutMs?: number;
  /**
   * Delays between reconnect attempts after the connection is lost. Defaults to cockatiel's
   * exponential backoff with decorrelated jitter, from 250 ms up to 30 s.
   */
  reconnectBackoff?: IBackoffFactory<undefined>;
}

/** One connection to the bus, with what the follower learnt over it. */
export interface FollowerSession {
  bus: MessageBus;
  /** The service's unique name on this connection, if it is on the bus. */
  owner: string | undefined;
  /** Aborted when this connection is gone: stops work started for it. */
  done: AbortController;
}

/** Why the status is read in the background: the service appeared, the bus came back, or a signal said to. */
export type ReadReason = 'appeared' | 'reconnected' | 'changed';

/** Calls on a session: the signal that stops them and their timeout. */
export interface SessionCalls {
  signal: AbortSignal;
  timeoutMs: number;
}

/** Follows one service's status over D-Bus; see the file's comment. */
export abstract class ServiceFollower<S> extends EventEmitter<FollowerEvents<S>> {
  protected readonly address: BusAddress;
  protected readonly callTimeoutMs: number;
  private readonly reconnectBackoff: IBackoffFactory<undefined>;
  /** Aborted by close(): ends reconnecting and everything else. */
  protected readonly lifetime = new AbortController();
  protected session: FollowerSession | undefined;
  protected current: S | undefined;
  private started = false;

  constructor(
    /** The service's well-known name, such as `com.coreos.update1`. */
    protected readonly service: string,
    /** The service as messages name it, such as `update_engine`. */
    private readonly label: string,
    options: FollowerOptions,
  ) {
    super();
    this.address = options.address ?? 'system';
    this.callTimeoutMs = options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    this.reconnectBackoff =
      options.reconnectBackoff ?? new ExponentialBackoff({ initialDelay: 250, maxDelay: 30_000 });
  }

  /** Adds the match rules for the service's own signals. */
  protected abstract subscribe(session: FollowerSession, calls: SessionCalls): Promise<void>;
  /** Reads the status now; the answer is applied (`apply`) in order with the signals around it. */
  protected abstract readStatus(session: FollowerSession, signal?: AbortSignal): Promise<S>;
  /** Handles a signal from the service (anything but `NameOwnerChanged`). */
  protected abstract onServiceSignal(session: FollowerSession, message: Message): void;
  /** True when two statuses are the same, so that `status` fires only on a change. */
  protected abstract sameStatus(a: S, b: S): boolean;

  /**
   * Runs once the service's owner is looked up while connecting, before the session becomes the
   * current one: a client that must wake the service up or register with it does so here.
   * `lookUpOwner` asks the bus again.
   */
  protected async opened(
    _session: FollowerSession,
    _signal: AbortSignal,
    _lookUpOwner: () => Promise<void>,
  ): Promise<void> {}

  /** Runs before a background read: a client that must register again first does so here. */
  protected async beforeRead(_session: FollowerSession, _why: ReadReason): Promise<void> {}

  /** The last status seen, or undefined before the service first answered. */
  get status(): S | undefined {
    return this.current;
  }

  /** True while the client has a bus connection. */
  get connected(): boolean {
    return this.session !== undefined;
  }

  /** True while the service is known to be on the bus. */
  get serviceUp(): boolean {
    return this.session?.owner !== undefined;
  }

  /**
   * Connects, subscribes and reads the status. Resolves once that is done; the status is still
   * undefined if the service is not on the bus (it is read when the service appears). Call it
   * once.
   *
   * @throws SluiceError `dbus-unavailable` when the bus cannot be reached or the service is there
   *   but does not answer; `aborted` when `signal` fires first or the client is closed meanwhile.
   *   After a failure the client is closed: create a new one to try again.
   */
  async start(signal?: AbortSignal): Promise<void> {
    if (this.started) throw new Error(`${this.constructor.name}.start() may only be called once`);
    this.started = true;
    const combined = signal
      ? AbortSignal.any([signal, this.lifetime.signal])
      : this.lifetime.signal;
    try {
      const session = await this.openSession(combined);
      if (session.owner !== undefined) await this.readStatus(session, combined);
    } catch (error) {
      await this.close();
      throw error;
    }
  }

  /**
   * Resolves with the first status for which `predicate` is true: the current one if it matches,
   * or a later one.
   *
   * @throws SluiceError `aborted` when `signal` fires or the client is closed first.
   */
  waitFor(predicate: (status: S) => boolean, signal?: AbortSignal): Promise<S> {
    if (this.current !== undefined && predicate(this.current)) {
      return Promise.resolve(this.current);
    }
    const stop = signal ? AbortSignal.any([signal, this.lifetime.signal]) : this.lifetime.signal;
    if (stop.aborted) return Promise.reject(abortedError(stop));
    return new Promise((resolve, reject) => {
      const onStatus = (status: S) => {
        if (predicate(status)) {
          cleanup();
          resolve(status);
        }
      };
      const onAbort = () => {
        cleanup();
        reject(abortedError(stop));
      };
      const cleanup = () => {
        this.off('status', onStatus as never);
        stop.removeEventListener('abort', onAbort);
      };
      this.on('status', onStatus as never);
      stop.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Stops following: ends reconnecting, cancels pending work and closes the bus connection.
   * Resolves once the socket is closed. Safe to call more than once, and before `start`.
   * Listeners stay attached; no events fire afterwards.
   */
  async close(): Promise<void> {
    this.lifetime.abort();
    const session = this.session;
    this.session = undefined;
    if (session !== undefined) {
      session.done.abort();
      await closeBus(session.bus);
    }
  }

  /** The current session, or a `dbus-unavailable` error without one. */
  protected requireSession(): FollowerSession {
    const session = this.session;
    if (session === undefined) {
      throw new SluiceError(
        'dbus-unavailable',
        `not connected to the D-Bus daemon at ${this.address}`,
        this.address,
      );
    }
    return session;
  }

  /** Takes a status read or signalled on `session`, if that is still the current one. */
  protected apply(session: FollowerSession, status: S): void {
    if (session !== this.session) return;
    if (this.current !== undefined && this.sameStatus(this.current, status)) return;
    this.current = status;
    this.emit('status', ...([status] as FollowerEvents<S>['status']));
  }

  /** Reads the status in the background, reporting a failure as a `problem`. */
  protected readInBackground(session: FollowerSession, why: ReadReason): void {
    void (async () => {
      await this.beforeRead(session, why);
      await this.readStatus(session);
    })().catch((error: unknown) => {
      if (!session.done.signal.aborted) this.emit('problem', asSluiceError(error));
    });
  }

  /** Connects and subscribes; becomes the current session once the service's owner is known. */
  private async openSession(signal: AbortSignal): Promise<FollowerSession> {
    const bus = await connectBus(this.address, signal, this.callTimeoutMs);
    const session: FollowerSession = { bus, owner: undefined, done: new AbortController() };
    bus.on('message', (message: Message) => this.onMessage(session, message));
    onBusClosed(bus, (error) => this.onClosed(session, error));
    const calls = { signal, timeoutMs: this.callTimeoutMs };
    // Applied in order with NameOwnerChanged, so a later change is not undone by this answer.
    const lookUpOwner = async (): Promise<void> => {
      await callMethod(bus, busMethod('GetNameOwner', 's', [this.service]), {
        ...calls,
        onReply: (reply) => {
          session.owner = String(reply.body[0]);
        },
      }).catch((error: unknown) => {
        if (!isNoOwner(error)) throw error;
      });
    };
    try {
      await callMethod(bus, addMatch(nameOwnerChangedRule(this.service)), calls);
      await this.subscribe(session, calls);
      await lookUpOwner();
      await this.opened(session, signal, lookUpOwner);
    } catch (error) {
      session.done.abort();
      await closeBus(bus);
      throw error;
    }
    if (this.lifetime.signal.aborted || session.done.signal.aborted) {
      session.done.abort();
      await closeBus(bus);
      throw this.lifetime.signal.aborted
        ? abortedError(this.lifetime.signal)
        : new SluiceError(
            'dbus-unavailable',
            `the D-Bus connection to ${this.address} closed while subscribing to ${this.label}`,
            this.address,
          );
    }
    this.session = session;
    if (session.owner !== undefined) this.emit('service-up', session.owner);
    return session;
  }

  private onMessage(session: FollowerSession, message: Message): void {
    if (message.type !== MessageType.SIGNAL || session.done.signal.aborted) return;
    if (
      message.sender === DBUS_NAME &&
      message.interface === DBUS_NAME &&
      message.member === 'NameOwnerChanged' &&
      message.body[0] === this.service
    ) {
      const owner = String(message.body[2] ?? '');
      const wasUp = session.owner !== undefined;
      session.owner = owner === '' ? undefined : owner;
      // Still opening: openSession reports the owner.
      if (session !== this.session) return;
      if (wasUp) this.emit('service-down');
      if (session.owner !== undefined) {
        this.emit('service-up', session.owner);
        this.readInBackground(session, 'appeared');
      }
      return;
    }
    this.onServiceSignal(session, message);
  }

  private onClosed(session: FollowerSession, error: SluiceError): void {
    session.done.abort();
    if (session !== this.session || this.lifetime.signal.aborted) return;
    this.session = undefined;
    this.emit('disconnected', error);
    void this.reconnect();
  }

  /** Tries to connect again, with backoff and jitter, until it works or the client is closed. */
  private async reconnect(): Promise<void> {
    const stop = this.lifetime.signal;
    let backoff = this.reconnectBackoff.next(undefined);
    while (!stop.aborted) {
      try {
        await sleep(backoff.duration, undefined, { signal: stop });
      } catch {
        return;
      }
      try {
        const session = await this.openSession(stop);
        this.emit('connected');
        if (session.owner !== undefined) this.readInBackground(session, 'reconnected');
        return;
      } catch (error) {
        if (stop.aborted) return;
        this.emit('problem', asSluiceError(error));
        backoff = backoff.next(undefined);
      }
    }
  }
}

/** Any failure as a SluiceError (`dbus-unavailable` unless it is one already). */
export const asSluiceError = (error: unknown): SluiceError =>
  isSluiceError(error)
    ? error
    : new SluiceError('dbus-unavailable', String(error), undefined, { cause: error });
