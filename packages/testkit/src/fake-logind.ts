/**
 * A simulated systemd-logind on a test bus: `org.freedesktop.login1` at `/org/freedesktop/login1`
 * with `org.freedesktop.login1.Manager.Reboot(b interactive)`. It reboots nothing: it records each
 * call in {@link FakeLogind.reboots}, runs {@link FakeLogind.onReboot}, and can be told to answer
 * with a D-Bus error instead.
 */

import { DBusError, interface as dbusInterface } from 'dbus-next';
import { type ExportedService, exportService } from './dbus-daemon.js';

const NAME = 'org.freedesktop.login1';
const PATH = '/org/freedesktop/login1';
const INTERFACE = 'org.freedesktop.login1.Manager';

/** One call of `Reboot` received by the fake. */
export interface RebootCall {
  /** When the call arrived. */
  at: Date;
  /** The `interactive` argument. */
  interactive: boolean;
  /** The D-Bus error name the fake answered with, if it was told to fail. */
  failedWith?: string;
}

/** A D-Bus error for the fake to answer `Reboot` with. */
export interface RebootError {
  /** The error name, such as `org.freedesktop.DBus.Error.AccessDenied`. */
  name: string;
  /** The error text the caller sees. */
  message: string;
}

/** The exported D-Bus interface; the fake decides what a call does. */
class ManagerInterface extends dbusInterface.Interface {
  constructor(private readonly handle: (interactive: boolean) => Promise<void>) {
    super(INTERFACE);
  }

  Reboot(interactive: boolean): Promise<void> {
    return this.handle(interactive);
  }
}

ManagerInterface.configureMembers({ methods: { Reboot: { inSignature: 'b' } } });

/**
 * A fake logind. Create it with the test bus address, `await start()`, and `await stop()` in
 * `afterEach`. Tests that need logind to be missing simply do not start it.
 */
export class FakeLogind {
  /** Every `Reboot` call received, oldest first, including the ones answered with an error. */
  readonly reboots: RebootCall[] = [];
  /**
   * Runs on each successful `Reboot` call after it is recorded; the answer waits for it. An error
   * thrown here reaches the caller as a D-Bus error.
   */
  onReboot: ((call: RebootCall) => void | Promise<void>) | undefined;
  /** When set, `Reboot` answers with this D-Bus error (the call is still recorded). */
  rebootError: RebootError | undefined;
  private service: ExportedService | undefined;

  constructor(
    /** The bus address, such as `DbusDaemon.address`. */
    readonly address: string,
  ) {}

  /** True while it owns `org.freedesktop.login1` on a live connection. */
  get running(): boolean {
    return this.service?.connected === true;
  }

  /** Connects, exports the manager and takes `org.freedesktop.login1`. */
  async start(): Promise<void> {
    if (this.running) {
      return;
    }
    await this.service?.close();
    const iface = new ManagerInterface((interactive) => this.reboot(interactive));
    this.service = await exportService(this.address, NAME, PATH, iface);
  }

  /** Disconnects, which gives up the name. Idempotent. */
  async stop(): Promise<void> {
    const service = this.service;
    this.service = undefined;
    await service?.close();
  }

  private async reboot(interactive: boolean): Promise<void> {
    const failure = this.rebootError;
    const call: RebootCall = { at: new Date(), interactive };
    if (failure !== undefined) {
      call.failedWith = failure.name;
    }
    this.reboots.push(call);
    if (failure !== undefined) {
      throw new DBusError(failure.name, failure.message);
    }
    await this.onReboot?.(call);
  }
}
