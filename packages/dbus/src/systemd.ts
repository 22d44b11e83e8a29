/**
 * Reading the service manager (PID 1) over D-Bus: `SoftRebootsCount` on
 * `org.freedesktop.systemd1.Manager` (systemd 254+), which is how an agent recognises that a soft
 * reboot happened: a soft reboot keeps the kernel, so the boot id stays the same, and only this
 * counter moves.
 *
 * The manager's own `SoftReboot()` and `KExec()` methods are deliberately not offered here: they
 * are what `systemctl --force` uses, and skip the orderly stop of every unit. sluice soft-reboots
 * and kexecs through logind (`RebootWithFlags`, see `LogindClient`), which stops units in order
 * and honours inhibitor locks.
 */

import { isSluiceError, SluiceError } from '@sluice/core';
import type { MessageBus } from 'dbus-next';
import { type BusAddress, closeBus, connectBus, DEFAULT_CALL_TIMEOUT_MS } from './bus.js';
import { getProperty, isUnknownMember } from './helpers.js';

/** The well-known bus name of the service manager. */
export const SYSTEMD_NAME = 'org.freedesktop.systemd1';
/** The object path of the manager object. */
export const SYSTEMD_PATH = '/org/freedesktop/systemd1';
/** The manager interface, with `SoftRebootsCount`. */
export const SYSTEMD_MANAGER_INTERFACE = 'org.freedesktop.systemd1.Manager';

/** Options for {@link SystemdClient}. */
export interface SystemdClientOptions {
  /** The bus systemd is on. Defaults to `'system'`. */
  address?: BusAddress;
  /** How long connecting, and each call, may take. Defaults to 5 s. */
  callTimeoutMs?: number;
}

/**
 * Talks to the service manager. Each call opens its own bus connection and closes it afterwards.
 */
export class SystemdClient {
  private readonly address: BusAddress;
  private readonly callTimeoutMs: number;

  constructor(options: SystemdClientOptions = {}) {
    this.address = options.address ?? 'system';
    this.callTimeoutMs = options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
  }

  /**
   * How many soft reboots this boot has been through: 0 after a full boot, one more after each
   * soft reboot. Null when this systemd is older than 254 and has no such property.
   *
   * @throws SluiceError `dbus-unavailable` when the bus or systemd cannot be reached or the value
   *   is not a number; `aborted` when `signal` fires first.
   */
  async softRebootsCount(signal?: AbortSignal): Promise<number | null> {
    let bus: MessageBus | undefined;
    try {
      bus = await connectBus(this.address, signal, this.callTimeoutMs);
      const value = await getProperty(
        bus,
        SYSTEMD_NAME,
        SYSTEMD_PATH,
        SYSTEMD_MANAGER_INTERFACE,
        'SoftRebootsCount',
        { signal, timeoutMs: this.callTimeoutMs },
      );
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
        throw new SluiceError(
          'dbus-unavailable',
          `systemd answered SoftRebootsCount with ${JSON.stringify(String(value))}, not a count`,
          SYSTEMD_NAME,
        );
      }
      return value;
    } catch (error) {
      if (isUnknownMember(error)) return null;
      if (isSluiceError(error) && error.kind === 'dbus-unavailable') {
        throw new SluiceError(
          'dbus-unavailable',
          `cannot read systemd's SoftRebootsCount: ${error.message}`,
          SYSTEMD_NAME,
          { cause: error },
        );
      }
      throw error;
    } finally {
      if (bus !== undefined) await closeBus(bus);
    }
  }
}
