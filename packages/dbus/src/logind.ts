/**
 * Asking systemd-logind to reboot the machine over D-Bus, and checking beforehand (for
 * `sluicectl doctor`) that logind can be reached at all.
 */

import { err, isSluiceError, ok, type Result, SluiceError } from '@sluice/core';
import { Message, type MessageBus } from 'dbus-next';
import {
  type BusAddress,
  callMethod,
  closeBus,
  connectBus,
  DEFAULT_CALL_TIMEOUT_MS,
} from './bus.js';

/** The well-known bus name logind owns. */
export const LOGIND_NAME = 'org.freedesktop.login1';
/** The object path of logind's manager object. */
export const LOGIND_PATH = '/org/freedesktop/login1';
/** The interface with `Reboot`. */
export const LOGIND_MANAGER_INTERFACE = 'org.freedesktop.login1.Manager';

/** Options for {@link LogindClient}. */
export interface LogindClientOptions {
  /** The bus logind is on. Defaults to `'system'`. */
  address?: BusAddress;
  /** How long connecting, and each call, may take. Defaults to 5 s. */
  callTimeoutMs?: number;
}

/**
 * Talks to systemd-logind. Each call opens its own bus connection and closes it afterwards, so a
 * client can be kept for the life of the process without holding a connection.
 *
 * Every failure is a SluiceError of kind `dbus-unavailable` whose message names the bus and what
 * went wrong (logind not running, a D-Bus error such as `AccessDenied`, no answer in time), or of
 * kind `aborted` when the caller's AbortSignal fired.
 */
export class LogindClient {
  private readonly address: BusAddress;
  private readonly callTimeoutMs: number;

  constructor(options: LogindClientOptions = {}) {
    this.address = options.address ?? 'system';
    this.callTimeoutMs = options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
  }

  /**
   * Asks logind to reboot now: `org.freedesktop.login1.Manager.Reboot(false)`, so logind never
   * waits for an interactive authorization. It is not retried: a reboot that may have started
   * must not be requested twice. Resolves when logind has accepted the request; the machine goes
   * down shortly after.
   *
   * @throws SluiceError `dbus-unavailable` when logind cannot be reached or refuses (for example
   *   without the polkit rights to reboot); `aborted` when `signal` fires first.
   */
  async reboot(signal?: AbortSignal): Promise<void> {
    await this.withBus(signal, 'ask logind to reboot', (bus) =>
      callMethod(
        bus,
        new Message({
          destination: LOGIND_NAME,
          path: LOGIND_PATH,
          interface: LOGIND_MANAGER_INTERFACE,
          member: 'Reboot',
          signature: 'b',
          body: [false],
        }),
        { signal, timeoutMs: this.callTimeoutMs },
      ),
    );
  }

  /**
   * Checks that logind answers on the bus, with `org.freedesktop.DBus.Peer.Ping` on its manager
   * object. Starts logind if the bus can activate it.
   *
   * @throws SluiceError `dbus-unavailable` when the bus cannot be reached or logind is not on it
   *   or does not answer; `aborted` when `signal` fires first.
   */
  async ping(signal?: AbortSignal): Promise<void> {
    await this.withBus(signal, 'reach logind', (bus) =>
      callMethod(
        bus,
        new Message({
          destination: LOGIND_NAME,
          path: LOGIND_PATH,
          interface: 'org.freedesktop.DBus.Peer',
          member: 'Ping',
        }),
        { signal, timeoutMs: this.callTimeoutMs },
      ),
    );
  }

  /**
   * {@link ping} as a Result, for checks such as `sluicectl doctor`: ok when logind answers, or the
   * error that says why not. Never throws.
   */
  async available(signal?: AbortSignal): Promise<Result<void>> {
    try {
      await this.ping(signal);
      return ok(undefined);
    } catch (error) {
      return err(
        isSluiceError(error)
          ? error
          : new SluiceError('dbus-unavailable', String(error), LOGIND_NAME, { cause: error }),
      );
    }
  }

  /** Runs `use` on a fresh connection, closes it, and words failures for a person. */
  private async withBus<T>(
    signal: AbortSignal | undefined,
    purpose: string,
    use: (bus: MessageBus) => Promise<T>,
  ): Promise<T> {
    let bus: MessageBus | undefined;
    try {
      bus = await connectBus(this.address, signal, this.callTimeoutMs);
      return await use(bus);
    } catch (error) {
      if (!isSluiceError(error) || error.kind !== 'dbus-unavailable') {
        throw error;
      }
      const hint = isServiceUnknown(error)
        ? `logind (${LOGIND_NAME}) is not running on ${this.describeBus()}`
        : error.message;
      throw new SluiceError('dbus-unavailable', `cannot ${purpose}: ${hint}`, LOGIND_NAME, {
        cause: error,
      });
    } finally {
      if (bus !== undefined) {
        await closeBus(bus);
      }
    }
  }

  private describeBus(): string {
    return this.address === 'system' ? 'the system bus' : `the bus at ${this.address}`;
  }
}

/** True for the error the bus daemon answers when nobody owns the destination name. */
const isServiceUnknown = (error: SluiceError): boolean =>
  error.cause instanceof Error &&
  Reflect.get(error.cause, 'type') === 'org.freedesktop.DBus.Error.ServiceUnknown';
