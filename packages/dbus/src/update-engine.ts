/**
 * Following update_engine (Flatcar, CoreOS Container Linux) over D-Bus: read its status once,
 * then keep up with every `StatusUpdate` signal, across update_engine restarts and across the bus
 * connection dropping and coming back.
 */

import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { err, isSluiceError, ok, type Result, SluiceError } from '@sluice/core';
import { ExponentialBackoff, type IBackoffFactory } from 'cockatiel';
import { Message, type MessageBus, MessageType } from 'dbus-next';
import {
  abortedError,
  type BusAddress,
  callMethod,
  closeBus,
  connectBus,
  DEFAULT_CALL_TIMEOUT_MS,
  onBusClosed,
} from './bus.js';

/** The well-known bus name update_engine owns. */
export const UPDATE_ENGINE_NAME = 'com.coreos.update1';
/** The object path of update_engine's manager object. */
export const UPDATE_ENGINE_PATH = '/com/coreos/update1';
/** The interface with `GetStatus` and `StatusUpdate`. */
export const UPDATE_ENGINE_INTERFACE = 'com.coreos.update1.Manager';
/** The operation update_engine reports once an update is installed and waits for a reboot. */
export const NEED_REBOOT = 'UPDATE_STATUS_UPDATED_NEED_REBOOT';

const STATUS_SIGNATURE = 'xdssx';

const DBUS_NAME = 'org.freedesktop.DBus';
const DBUS_PATH = '/org/freedesktop/DBus';

/**
 * One reading of update_engine's status, as `GetStatus` returns it and `StatusUpdate` announces
 * it. D-Bus 64-bit integers are converted to numbers, exact up to 2^53.
 */
export interface UpdateStatus {
  /** When update_engine last checked for an update, in seconds since the Unix epoch; 0 if never. */
  lastCheckedTime: number;
  /** Progress of the current operation, from 0 to 1. */
  progress: number;
  /** What update_engine is doing, such as `UPDATE_STATUS_IDLE` or {@link NEED_REBOOT}. */
  currentOperation: string;
  /** The version being downloaded or installed; empty when there is none. */
  newVersion: string;
  /** Size of the update payload in bytes. */
  newSize: number;
}

/** True iff update_engine has installed an update and is waiting for a reboot to apply it. */
export function needsReboot(status: UpdateStatus): boolean {
  return status.currentOperation === NEED_REBOOT;
}

/** Reads the `(x d s s x)` body of `GetStatus` or `StatusUpdate`. */
export function parseStatus(signature: string, body: readonly unknown[]): Result<UpdateStatus> {
  const [lastChecked, progress, operation, version, size] = body;
  if (
    signature !== STATUS_SIGNATURE ||
    typeof progress !== 'number' ||
    typeof operation !== 'string' ||
    typeof version !== 'string'
  ) {
    return err(
      new SluiceError(
        'dbus-unavailable',
        `update_engine sent a status with signature '${signature}', expected '${STATUS_SIGNATURE}'`,
        UPDATE_ENGINE_NAME,
      ),
    );
  }
  return ok({
    lastCheckedTime: Number(lastChecked),
    progress,
    currentOperation: operation,
    newVersion: version,
    newSize: Number(size),
  });
}

const sameStatus = (a: UpdateStatus | undefined, b: UpdateStatus): boolean =>
  a !== undefined &&
  a.lastCheckedTime === b.lastCheckedTime &&
  a.progress === b.progress &&
  a.currentOperation === b.currentOperation &&
  a.newVersion === b.newVersion &&
  a.newSize === b.newSize;

/**
 * The events of {@link UpdateEngineClient}, with their arguments.
 *
 * - `status`: update_engine's status changed: a `StatusUpdate` signal or a `GetStatus` answer
 *   differs from the last status seen. Fires for the first status too.
 * - `connected`: the client connected to the bus again after losing it and is subscribed.
 *   (`start()` resolving stands for the first connection.)
 * - `disconnected`: the bus connection was lost; the client reconnects with backoff and jitter.
 *   Meanwhile `connected` and `serviceUp` are false and `status` keeps the last value seen.
 * - `service-up`: update_engine is on the bus, with this unique name: seen at start, after a
 *   reconnect, or when it (re)starts.
 * - `service-down`: update_engine left the bus (it stopped or restarted).
 * - `problem`: something failed that the client will get over by itself (a `GetStatus` that
 *   failed, a reconnect attempt, a malformed signal). Log it; no action is needed.
 */
export interface UpdateEngineEvents {
  status: [status: UpdateStatus];
  connected: [];
  disconnected: [error: SluiceError];
  'service-up': [owner: string];
  'service-down': [];
  problem: [error: SluiceError];
}

/** Options for {@link UpdateEngineClient}. */
export interface UpdateEngineClientOptions {
  /** The bus update_engine is on. Defaults to `'system'`. */
  address?: BusAddress;
  /** How long each D-Bus call, and connecting, may take. Defaults to 5 s. */
  callTimeoutMs?: number;
  /**
   * Delays between reconnect attempts after the connection is lost. Defaults to cockatiel's
   * exponential backoff with decorrelated jitter, from 250 ms up to 30 s.
   */
  reconnectBackoff?: IBackoffFactory<undefined>;
}

/** One connection to the bus, with what the client learnt over it. */
interface Session {
  bus: MessageBus;
  /** update_engine's unique name on this connection, if it is on the bus. */
  owner: string | undefined;
  /** Aborted when this connection is gone: stops work started for it. */
  done: AbortController;
}

/**
 * Follows update_engine's status over D-Bus. Call {@link UpdateEngineClient.start} once, read
 * {@link UpdateEngineClient.status} or listen for {@link UpdateEngineEvents | events}, and call
 * {@link UpdateEngineClient.close} when done.
 *
 * The client reads `GetStatus` when it starts and whenever update_engine appears on the bus, and
 * applies every `StatusUpdate` signal in between, in the order they were sent. When update_engine
 * restarts, it notices through `NameOwnerChanged` and reads the status again. When the bus
 * connection drops, it reconnects with backoff and jitter until {@link UpdateEngineClient.close}.
 *
 * @example
 * const engine = new UpdateEngineClient();
 * engine.on('status', (s) => log.info(s, 'update_engine status'));
 * await engine.start(signal);
 * await engine.waitFor(needsReboot, signal);
 */
export class UpdateEngineClient extends EventEmitter<UpdateEngineEvents> {
  private readonly address: BusAddress;
  private readonly callTimeoutMs: number;
  private readonly reconnectBackoff: IBackoffFactory<undefined>;
  /** Aborted by close(): ends reconnecting and everything else. */
  private readonly lifetime = new AbortController();
  private session: Session | undefined;
  private current: UpdateStatus | undefined;
  private started = false;

  constructor(options: UpdateEngineClientOptions = {}) {
    super();
    this.address = options.address ?? 'system';
    this.callTimeoutMs = options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    this.reconnectBackoff =
      options.reconnectBackoff ?? new ExponentialBackoff({ initialDelay: 250, maxDelay: 30_000 });
  }

  /** The last status seen, or undefined before update_engine first answered. */
  get status(): UpdateStatus | undefined {
    return this.current;
  }

  /** True while the client has a bus connection. */
  get connected(): boolean {
    return this.session !== undefined;
  }

  /** True while update_engine is known to be on the bus. */
  get serviceUp(): boolean {
    return this.session?.owner !== undefined;
  }

  /**
   * Connects, subscribes to update_engine's signals and reads its status. Resolves once that is
   * done; the status is still undefined if update_engine is not on the bus yet (it is read when
   * update_engine appears). Call it once.
   *
   * @throws SluiceError `dbus-unavailable` when the bus cannot be reached or update_engine is on
   *   the bus but does not answer `GetStatus`; `aborted` when `signal` fires first or the client
   *   is closed meanwhile. After a failure the client is closed: create a new one to try again.
   */
  async start(signal?: AbortSignal): Promise<void> {
    if (this.started) {
      throw new Error('UpdateEngineClient.start() may only be called once');
    }
    this.started = true;
    const combined = signal
      ? AbortSignal.any([signal, this.lifetime.signal])
      : this.lifetime.signal;
    try {
      const session = await this.openSession(combined);
      if (session.owner !== undefined) {
        await this.readStatus(session, combined);
      }
    } catch (error) {
      await this.close();
      throw error;
    }
  }

  /**
   * Reads `GetStatus` now and returns the status, which also becomes {@link status}. The client
   * does this by itself when needed; call it to be sure the status is fresh.
   *
   * @throws SluiceError `dbus-unavailable` when the client has no connection, update_engine is not
   *   on the bus or does not answer in time; `aborted` when `signal` fires first.
   */
  async refresh(signal?: AbortSignal): Promise<UpdateStatus> {
    const session = this.session;
    if (session === undefined) {
      throw new SluiceError(
        'dbus-unavailable',
        `not connected to the D-Bus daemon at ${this.address}`,
        this.address,
      );
    }
    return this.readStatus(session, signal);
  }

  /**
   * Resolves with the first status for which `predicate` is true: the current one if it matches,
   * or a later one. For example `await client.waitFor(needsReboot, signal)`.
   *
   * @throws SluiceError `aborted` when `signal` fires or the client is closed first.
   */
  waitFor(
    predicate: (status: UpdateStatus) => boolean,
    signal?: AbortSignal,
  ): Promise<UpdateStatus> {
    if (this.current !== undefined && predicate(this.current)) {
      return Promise.resolve(this.current);
    }
    const stop = signal ? AbortSignal.any([signal, this.lifetime.signal]) : this.lifetime.signal;
    if (stop.aborted) {
      return Promise.reject(abortedError(stop));
    }
    return new Promise((resolve, reject) => {
      const onStatus = (status: UpdateStatus) => {
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
        this.off('status', onStatus);
        stop.removeEventListener('abort', onAbort);
      };
      this.on('status', onStatus);
      stop.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Stops following update_engine: ends reconnecting, cancels pending work and closes the bus
   * connection. Resolves once the socket is closed. Safe to call more than once, and before
   * {@link start}. Listeners stay attached; no events fire afterwards.
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

  /** Connects and subscribes; becomes the current session once update_engine's owner is known. */
  private async openSession(signal: AbortSignal): Promise<Session> {
    const bus = await connectBus(this.address, signal, this.callTimeoutMs);
    const session: Session = { bus, owner: undefined, done: new AbortController() };
    bus.on('message', (message: Message) => this.onMessage(session, message));
    onBusClosed(bus, (error) => this.onClosed(session, error));
    try {
      const calls = { signal, timeoutMs: this.callTimeoutMs };
      await callMethod(bus, addMatch(nameOwnerChangedRule), calls);
      await callMethod(bus, addMatch(statusUpdateRule), calls);
      // Applied in order with NameOwnerChanged, so a later change is not undone by this answer.
      await callMethod(bus, busMethod('GetNameOwner', 's', [UPDATE_ENGINE_NAME]), {
        ...calls,
        onReply: (reply) => {
          session.owner = String(reply.body[0]);
        },
      }).catch((error: unknown) => {
        if (!isNoOwner(error)) {
          throw error;
        }
      });
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
            `the D-Bus connection to ${this.address} closed while subscribing to update_engine`,
            this.address,
          );
    }
    this.session = session;
    if (session.owner !== undefined) {
      this.emit('service-up', session.owner);
    }
    return session;
  }

  /** Calls GetStatus; the answer is applied in order with the signals around it. */
  private async readStatus(session: Session, signal?: AbortSignal): Promise<UpdateStatus> {
    let parsed: Result<UpdateStatus> | undefined;
    await callMethod(
      session.bus,
      new Message({
        destination: UPDATE_ENGINE_NAME,
        path: UPDATE_ENGINE_PATH,
        interface: UPDATE_ENGINE_INTERFACE,
        member: 'GetStatus',
      }),
      {
        signal,
        timeoutMs: this.callTimeoutMs,
        onReply: (reply) => {
          parsed = parseStatus(reply.signature, reply.body);
          if (parsed.ok) {
            this.apply(session, parsed.value);
          }
        },
      },
    );
    if (parsed === undefined) {
      throw new SluiceError(
        'dbus-unavailable',
        'update_engine answered GetStatus without a status',
        UPDATE_ENGINE_NAME,
      );
    }
    if (!parsed.ok) {
      throw parsed.error;
    }
    return parsed.value;
  }

  /** Reads the status in the background, reporting a failure as a `problem`. */
  private readStatusInBackground(session: Session): void {
    this.readStatus(session).catch((error: unknown) => {
      if (!session.done.signal.aborted) {
        this.emit('problem', asSluiceError(error));
      }
    });
  }

  private apply(session: Session, status: UpdateStatus): void {
    if (session !== this.session || sameStatus(this.current, status)) {
      return;
    }
    this.current = status;
    this.emit('status', status);
  }

  private onMessage(session: Session, message: Message): void {
    if (message.type !== MessageType.SIGNAL || session.done.signal.aborted) {
      return;
    }
    if (
      message.sender === DBUS_NAME &&
      message.interface === DBUS_NAME &&
      message.member === 'NameOwnerChanged' &&
      message.body[0] === UPDATE_ENGINE_NAME
    ) {
      const owner = String(message.body[2] ?? '');
      const wasUp = session.owner !== undefined;
      session.owner = owner === '' ? undefined : owner;
      if (session !== this.session) {
        return; // Still opening: openSession reports the owner.
      }
      if (wasUp) {
        this.emit('service-down');
      }
      if (session.owner !== undefined) {
        this.emit('service-up', session.owner);
        this.readStatusInBackground(session);
      }
      return;
    }
    if (
      message.path === UPDATE_ENGINE_PATH &&
      message.interface === UPDATE_ENGINE_INTERFACE &&
      message.member === 'StatusUpdate' &&
      message.sender === session.owner
    ) {
      const parsed = parseStatus(message.signature, message.body);
      if (parsed.ok) {
        this.apply(session, parsed.value);
      } else if (session === this.session) {
        this.emit('problem', parsed.error);
      }
    }
  }

  private onClosed(session: Session, error: SluiceError): void {
    session.done.abort();
    if (session !== this.session || this.lifetime.signal.aborted) {
      return;
    }
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
        if (session.owner !== undefined) {
          this.readStatusInBackground(session);
        }
        return;
      } catch (error) {
        if (stop.aborted) {
          return;
        }
        this.emit('problem', asSluiceError(error));
        backoff = backoff.next(undefined);
      }
    }
  }
}

const nameOwnerChangedRule = `type='signal',sender='${DBUS_NAME}',path='${DBUS_PATH}',interface='${DBUS_NAME}',member='NameOwnerChanged',arg0='${UPDATE_ENGINE_NAME}'`;
const statusUpdateRule = `type='signal',sender='${UPDATE_ENGINE_NAME}',path='${UPDATE_ENGINE_PATH}',interface='${UPDATE_ENGINE_INTERFACE}',member='StatusUpdate'`;

const busMethod = (member: string, signature: string, body: unknown[]): Message =>
  new Message({
    destination: DBUS_NAME,
    path: DBUS_PATH,
    interface: DBUS_NAME,
    member,
    signature,
    body,
  });

const addMatch = (rule: string): Message => busMethod('AddMatch', 's', [rule]);

/** True for the error GetNameOwner answers when nobody owns the name. */
const isNoOwner = (error: unknown): boolean =>
  isSluiceError(error) &&
  error.cause instanceof Error &&
  Reflect.get(error.cause, 'type') === 'org.freedesktop.DBus.Error.NameHasNoOwner';

const asSluiceError = (error: unknown): SluiceError =>
  isSluiceError(error)
    ? error
    : new SluiceError('dbus-unavailable', String(error), undefined, { cause: error });
