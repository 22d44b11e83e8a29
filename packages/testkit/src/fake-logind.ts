/**
 * A simulated systemd-logind on a test bus: `org.freedesktop.login1` at `/org/freedesktop/login1`
 * with `org.freedesktop.login1.Manager`'s `Reboot(b interactive)` and `RebootWithFlags(t)` (soft
 * reboot, kexec), `ListInhibitors()`, and `ScheduleShutdown(st)`, `CancelScheduledShutdown()` and
 * `SetWallMessage(sb)`. It reboots nothing: it records each call in {@link FakeLogind.reboots},
 * runs {@link FakeLogind.onReboot}, and can be told to answer with a D-Bus error instead. Tests
 * take inhibitor locks with {@link FakeLogind.inhibit}.
 */

import { DBusError, interface as dbusInterface } from 'dbus-next';
import { type ExportedService, exportService } from './dbus-daemon.js';

const NAME = 'org.freedesktop.login1';
const PATH = '/org/freedesktop/login1';
const INTERFACE = 'org.freedesktop.login1.Manager';

/** One call of `Reboot` or `RebootWithFlags` received by the fake. */
export interface RebootCall {
  /** When the call arrived. */
  at: Date;
  /** The `interactive` argument (false for `RebootWithFlags`, which has none). */
  interactive: boolean;
  /** Which method was called. */
  method: 'Reboot' | 'RebootWithFlags';
  /** What was asked for: from the flags of `RebootWithFlags`, else a full reboot. */
  kind: 'reboot' | 'soft-reboot' | 'kexec';
  /** The flags of `RebootWithFlags`. */
  flags?: bigint;
  /** The D-Bus error name the fake answered with, if it was told to fail. */
  failedWith?: string;
}

/** An inhibitor lock held on the fake, as `ListInhibitors` reports it. */
export interface FakeInhibitor {
  /** Colon-separated: `shutdown`, `sleep`, `idle`, ... */
  what: string;
  who: string;
  why: string;
  mode: 'block' | 'delay';
  uid: number;
  pid: number;
}

/** One `ScheduleShutdown` call. */
export interface ScheduleCall {
  at: Date;
  /** The type, such as `reboot` or `dry-reboot`. */
  type: string;
  /** When the shutdown was scheduled for. */
  when: Date;
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
  constructor(private readonly fake: FakeLogind) {
    super(INTERFACE);
  }

  Reboot(interactive: boolean): Promise<void> {
    return this.fake.handleReboot('Reboot', interactive, undefined);
  }

  RebootWithFlags(flags: bigint): Promise<void> {
    return this.fake.handleReboot('RebootWithFlags', false, BigInt(flags));
  }

  ListInhibitors(): [string, string, string, string, number, number][] {
    return this.fake.inhibitors.map((i) => [i.what, i.who, i.why, i.mode, i.uid, i.pid]);
  }

  ScheduleShutdown(type: string, usec: bigint): void {
    this.fake.schedules.push({
      at: new Date(),
      type,
      when: new Date(Number(BigInt(usec) / 1000n)),
    });
  }

  CancelScheduledShutdown(): boolean {
    const had = this.fake.schedules.length > this.fake.cancels;
    this.fake.cancels = this.fake.schedules.length;
    return had;
  }

  SetWallMessage(message: string, enable: boolean): void {
    this.fake.wallMessage = { message, enable };
  }
}

ManagerInterface.configureMembers({
  methods: {
    Reboot: { inSignature: 'b' },
    RebootWithFlags: { inSignature: 't' },
    ListInhibitors: { outSignature: 'a(ssssuu)' },
    ScheduleShutdown: { inSignature: 'st' },
    CancelScheduledShutdown: { outSignature: 'b' },
    SetWallMessage: { inSignature: 'sb' },
  },
});

const SOFT_REBOOT = 1n << 2n;
const VIA_KEXEC = 1n << 1n;
const ROOT_CHECK_INHIBITORS = 1n << 0n;

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
  /** The inhibitor locks `ListInhibitors` reports; change it with {@link inhibit}. */
  inhibitors: FakeInhibitor[] = [];
  /** Every `ScheduleShutdown` call, oldest first. */
  readonly schedules: ScheduleCall[] = [];
  /** How many of {@link schedules} `CancelScheduledShutdown` has cancelled. */
  cancels = 0;
  /** The last `SetWallMessage`. */
  wallMessage: { message: string; enable: boolean } | undefined;
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
    const iface = new ManagerInterface(this);
    this.service = await exportService(this.address, NAME, PATH, iface);
  }

  /** Disconnects, which gives up the name. Idempotent. */
  async stop(): Promise<void> {
    const service = this.service;
    this.service = undefined;
    await service?.close();
  }

  /**
   * Takes an inhibitor lock (by default a `block` lock on `shutdown`) and returns a function that
   * releases it.
   */
  inhibit(lock: Partial<FakeInhibitor> & { who: string }): () => void {
    const held: FakeInhibitor = {
      what: 'shutdown',
      why: 'busy',
      mode: 'block',
      uid: 0,
      pid: 4242,
      ...lock,
    };
    this.inhibitors.push(held);
    return () => {
      this.inhibitors = this.inhibitors.filter((i) => i !== held);
    };
  }

  /** Handles `Reboot` and `RebootWithFlags`. */
  async handleReboot(
    method: RebootCall['method'],
    interactive: boolean,
    flags: bigint | undefined,
  ): Promise<void> {
    const f = flags ?? 0n;
    const kind: RebootCall['kind'] =
      (f & SOFT_REBOOT) !== 0n ? 'soft-reboot' : (f & VIA_KEXEC) !== 0n ? 'kexec' : 'reboot';
    const blocker =
      (f & ROOT_CHECK_INHIBITORS) !== 0n
        ? this.inhibitors.find((i) => i.mode === 'block' && i.what.split(':').includes('shutdown'))
        : undefined;
    const failure: RebootError | undefined =
      this.rebootError ??
      (blocker
        ? {
            name: 'org.freedesktop.login1.BlockedByInhibitorLock',
            message: `Operation inhibited by "${blocker.who}" (PID ${blocker.pid}), reason is "${blocker.why}".`,
          }
        : undefined);
    const call: RebootCall = {
      at: new Date(),
      interactive,
      method,
      kind,
      ...(flags !== undefined ? { flags } : {}),
    };
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
