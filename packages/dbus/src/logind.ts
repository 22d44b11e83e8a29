/**
 * Asking systemd-logind to reboot the machine over D-Bus (a full reboot, a soft reboot or a kexec,
 * all orderly), listing the inhibitor locks that hold a reboot back, warning logged-in users with a
 * scheduled shutdown and its wall message, and checking beforehand (for `sluicectl doctor`) that
 * logind can be reached at all.
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

/**
 * Flags of `RebootWithFlags` (systemd's `SD_LOGIND_*`, public API). Soft reboot needs systemd 254
 * or newer; older logind answers `InvalidArgs` for flags it does not know.
 */
export const REBOOT_FLAGS = {
  /** Enforce block inhibitors even for root, who may otherwise override them. */
  rootCheckInhibitors: 1n << 0n,
  /** Reboot into the kernel loaded with `kexec --load` (a normal reboot if none is loaded). */
  viaKexec: 1n << 1n,
  /** Restart userspace only, into `/run/nextroot` if one is set up (systemd-soft-reboot.service). */
  softReboot: 1n << 2n,
} as const;

/** One inhibitor lock, as `ListInhibitors` reports it. */
export interface Inhibitor {
  /** What it inhibits: `shutdown`, `sleep`, `idle`, `handle-power-key`, ... */
  what: string[];
  /** Who holds it, in its own words (`Unattended Upgrades`, `GNOME Shell`). */
  who: string;
  /** Why. */
  why: string;
  /** `block` (the operation waits until the lock goes) or `delay` (logind waits a bounded time). */
  mode: string;
  uid: number;
  pid: number;
}

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
   * Asks logind to reboot with flags: `RebootWithFlags(t)` (systemd 248+), such as a soft reboot
   * or a reboot through kexec ({@link REBOOT_FLAGS}). Orderly like `Reboot`: units are stopped,
   * polkit and inhibitors apply. Not retried. Resolves once logind has accepted the request.
   *
   * @throws SluiceError `dbus-unavailable` when logind cannot be reached or refuses (an older
   *   logind answers `InvalidArgs` for a flag it does not know); `aborted` when `signal` fires.
   */
  async rebootWithFlags(flags: bigint, signal?: AbortSignal): Promise<void> {
    await this.withBus(signal, 'ask logind to reboot', (bus) =>
      callMethod(bus, this.manager('RebootWithFlags', 't', [flags]), {
        signal,
        timeoutMs: this.callTimeoutMs,
      }),
    );
  }

  /**
   * Lists the inhibitor locks logind knows: `ListInhibitors() -> a(ssssuu)`.
   *
   * @throws SluiceError `dbus-unavailable` when logind cannot be reached or answers something
   *   else; `aborted` when `signal` fires first.
   */
  async listInhibitors(signal?: AbortSignal): Promise<Inhibitor[]> {
    const reply = await this.withBus(signal, 'list the inhibitor locks', (bus) =>
      callMethod(bus, this.manager('ListInhibitors', '', []), {
        signal,
        timeoutMs: this.callTimeoutMs,
      }),
    );
    const rows = reply.body[0];
    if (reply.signature !== 'a(ssssuu)' || !Array.isArray(rows)) {
      throw new SluiceError(
        'dbus-unavailable',
        `logind answered ListInhibitors with signature '${reply.signature}', expected 'a(ssssuu)'`,
        LOGIND_NAME,
      );
    }
    return rows.map((row: unknown[]) => ({
      what: String(row[0]).split(':').filter(Boolean),
      who: String(row[1]),
      why: String(row[2]),
      mode: String(row[3]),
      uid: Number(row[4]),
      pid: Number(row[5]),
    }));
  }

  /**
   * Schedules a shutdown at `at` with `ScheduleShutdown(s type, t usec)`: logind tells logged-in
   * users (wall messages, more often as the time nears) and, at the time, does it. A `dry-` type
   * (`dry-reboot`) only warns: nothing is shut down, so the caller keeps control of the reboot.
   *
   * @throws SluiceError `dbus-unavailable` when logind cannot be reached or refuses;
   *   `aborted` when `signal` fires first.
   */
  async scheduleShutdown(type: string, at: Date, signal?: AbortSignal): Promise<void> {
    const usec = BigInt(at.getTime()) * 1000n;
    await this.withBus(signal, 'schedule a shutdown', (bus) =>
      callMethod(bus, this.manager('ScheduleShutdown', 'st', [type, usec]), {
        signal,
        timeoutMs: this.callTimeoutMs,
      }),
    );
  }

  /**
   * Cancels a shutdown scheduled with {@link scheduleShutdown}; logind tells users it is off.
   * Resolves with whether one was scheduled.
   *
   * @throws SluiceError `dbus-unavailable` or `aborted`, as {@link scheduleShutdown}.
   */
  async cancelScheduledShutdown(signal?: AbortSignal): Promise<boolean> {
    const reply = await this.withBus(signal, 'cancel the scheduled shutdown', (bus) =>
      callMethod(bus, this.manager('CancelScheduledShutdown', '', []), {
        signal,
        timeoutMs: this.callTimeoutMs,
      }),
    );
    return reply.body[0] === true;
  }

  /**
   * Sets the text logind adds to its shutdown wall messages, and whether it sends them:
   * `SetWallMessage(s, b)`.
   *
   * @throws SluiceError `dbus-unavailable` or `aborted`, as {@link scheduleShutdown}.
   */
  async setWallMessage(message: string, enable: boolean, signal?: AbortSignal): Promise<void> {
    await this.withBus(signal, 'set the wall message', (bus) =>
      callMethod(bus, this.manager('SetWallMessage', 'sb', [message, enable]), {
        signal,
        timeoutMs: this.callTimeoutMs,
      }),
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

  private manager(member: string, signature: string, body: unknown[]): Message {
    return new Message({
      destination: LOGIND_NAME,
      path: LOGIND_PATH,
      interface: LOGIND_MANAGER_INTERFACE,
      member,
      signature,
      body,
    });
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
