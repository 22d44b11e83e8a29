/**
 * Following update_engine (Flatcar, CoreOS Container Linux) over D-Bus: read its status once,
 * then keep up with every `StatusUpdate` signal, across update_engine restarts and across the bus
 * connection dropping and coming back.
 */

import { err, ok, type Result, SluiceError } from '@sluice/core';
import { Message } from 'dbus-next';
import { callMethod } from './bus.js';
import {
  asSluiceError,
  type FollowerEvents,
  type FollowerOptions,
  type FollowerSession,
  ServiceFollower,
  type SessionCalls,
} from './follower.js';
import { addMatch } from './helpers.js';

/** The well-known bus name update_engine owns. */
export const UPDATE_ENGINE_NAME = 'com.coreos.update1';
/** The object path of update_engine's manager object. */
export const UPDATE_ENGINE_PATH = '/com/coreos/update1';
/** The interface with `GetStatus` and `StatusUpdate`. */
export const UPDATE_ENGINE_INTERFACE = 'com.coreos.update1.Manager';
/** The operation update_engine reports once an update is installed and waits for a reboot. */
export const NEED_REBOOT = 'UPDATE_STATUS_UPDATED_NEED_REBOOT';

const STATUS_SIGNATURE = 'xdssx';

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

const sameStatus = (a: UpdateStatus, b: UpdateStatus): boolean =>
  a.lastCheckedTime === b.lastCheckedTime &&
  a.progress === b.progress &&
  a.currentOperation === b.currentOperation &&
  a.newVersion === b.newVersion &&
  a.newSize === b.newSize;

/** The events of {@link UpdateEngineClient}: see `FollowerEvents`. */
export type UpdateEngineEvents = FollowerEvents<UpdateStatus>;

/** Options for {@link UpdateEngineClient}. */
export type UpdateEngineClientOptions = FollowerOptions;

/**
 * Follows update_engine's status over D-Bus. Call {@link UpdateEngineClient.start} once, read
 * {@link UpdateEngineClient.status} or listen for events, and call
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
export class UpdateEngineClient extends ServiceFollower<UpdateStatus> {
  constructor(options: UpdateEngineClientOptions = {}) {
    super(UPDATE_ENGINE_NAME, 'update_engine', options);
  }

  /**
   * Reads `GetStatus` now and returns the status, which also becomes {@link status}. The client
   * does this by itself when needed; call it to be sure the status is fresh.
   *
   * @throws SluiceError `dbus-unavailable` when the client has no connection, update_engine is not
   *   on the bus or does not answer in time; `aborted` when `signal` fires first.
   */
  async refresh(signal?: AbortSignal): Promise<UpdateStatus> {
    return this.readStatus(this.requireSession(), signal);
  }

  protected async subscribe(session: FollowerSession, calls: SessionCalls): Promise<void> {
    await callMethod(session.bus, addMatch(statusUpdateRule), calls);
  }

  protected sameStatus(a: UpdateStatus, b: UpdateStatus): boolean {
    return sameStatus(a, b);
  }

  /** Calls GetStatus; the answer is applied in order with the signals around it. */
  protected async readStatus(
    session: FollowerSession,
    signal?: AbortSignal,
  ): Promise<UpdateStatus> {
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
          if (parsed.ok) this.apply(session, parsed.value);
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
    if (!parsed.ok) throw parsed.error;
    return parsed.value;
  }

  protected onServiceSignal(session: FollowerSession, message: Message): void {
    if (
      message.path === UPDATE_ENGINE_PATH &&
      message.interface === UPDATE_ENGINE_INTERFACE &&
      message.member === 'StatusUpdate' &&
      message.sender === session.owner
    ) {
      const parsed = parseStatus(message.signature, message.body);
      if (parsed.ok) this.apply(session, parsed.value);
      else if (session === this.session) this.emit('problem', asSluiceError(parsed.error));
    }
  }
}

const statusUpdateRule = `type='signal',sender='${UPDATE_ENGINE_NAME}',path='${UPDATE_ENGINE_PATH}',interface='${UPDATE_ENGINE_INTERFACE}',member='StatusUpdate'`;
