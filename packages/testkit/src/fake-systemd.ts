/**
 * A simulated service manager (PID 1) on a test bus: `org.freedesktop.systemd1` at
 * `/org/freedesktop/systemd1` with the `SoftRebootsCount` property of
 * `org.freedesktop.systemd1.Manager` and its `SoftReboot(s)` and `KExec()` methods. Tests bump the
 * count to simulate a soft reboot ({@link FakeSystemd.softRebooted}). The two methods are the
 * forced variants (`systemctl --force`); the fake records every call, so a test can show that
 * sluice reboots through logind and never through them.
 */

import { interface as dbusInterface } from 'dbus-next';
import { type ExportedService, exportService } from './dbus-daemon.js';

const NAME = 'org.freedesktop.systemd1';
const PATH = '/org/freedesktop/systemd1';
const INTERFACE = 'org.freedesktop.systemd1.Manager';

/** A call of one of the manager's forced reboot methods. */
export interface ForcedCall {
  at: Date;
  method: 'SoftReboot' | 'KExec';
  /** SoftReboot's new root argument. */
  newRoot?: string;
}

class ManagerInterface extends dbusInterface.Interface {
  constructor(private readonly fake: FakeSystemd) {
    super(INTERFACE);
  }
  get SoftRebootsCount(): number {
    return this.fake.softRebootsCount;
  }
  get Version(): string {
    return this.fake.version;
  }
  SoftReboot(newRoot: string): void {
    this.fake.forcedCalls.push({ at: new Date(), method: 'SoftReboot', newRoot });
  }
  KExec(): void {
    this.fake.forcedCalls.push({ at: new Date(), method: 'KExec' });
  }
}

ManagerInterface.configureMembers({
  properties: {
    SoftRebootsCount: { signature: 'u', access: dbusInterface.ACCESS_READ },
    Version: { signature: 's', access: dbusInterface.ACCESS_READ },
  },
  methods: { SoftReboot: { inSignature: 's' }, KExec: {} },
});

/** A minimal PID 1 that exports nothing but `Version` (an older systemd, before 254). */
class OldManagerInterface extends dbusInterface.Interface {
  constructor(private readonly fake: FakeSystemd) {
    super(INTERFACE);
  }
  get Version(): string {
    return this.fake.version;
  }
}

OldManagerInterface.configureMembers({
  properties: { Version: { signature: 's', access: dbusInterface.ACCESS_READ } },
});

/**
 * A fake systemd. Create it with the test bus address, `await start()`, and `await stop()` in
 * `afterEach` or `afterAll`. With `{ legacy: true }` it plays a systemd older than 254, with no
 * `SoftRebootsCount`.
 */
export class FakeSystemd {
  /** What `SoftRebootsCount` answers: 0 after a full boot. */
  softRebootsCount = 0;
  /** Every call of `SoftReboot` or `KExec`. */
  readonly forcedCalls: ForcedCall[] = [];
  readonly version: string;
  private service: ExportedService | undefined;

  constructor(
    /** The bus address, such as `DbusDaemon.address`. */
    readonly address: string,
    private readonly options: { legacy?: boolean } = {},
  ) {
    this.version = options.legacy ? '252' : '256.7';
  }

  /** True while it owns `org.freedesktop.systemd1` on a live connection. */
  get running(): boolean {
    return this.service?.connected === true;
  }

  async start(): Promise<void> {
    if (this.running) return;
    await this.service?.close();
    const iface = this.options.legacy ? new OldManagerInterface(this) : new ManagerInterface(this);
    this.service = await exportService(this.address, NAME, PATH, iface);
  }

  async stop(): Promise<void> {
    const service = this.service;
    this.service = undefined;
    await service?.close();
  }

  /** What a soft reboot does to the manager: the counter goes up by one. */
  softRebooted(): void {
    this.softRebootsCount += 1;
  }

  /** What a full reboot (or a kexec) does: a fresh manager counts from 0. */
  booted(): void {
    this.softRebootsCount = 0;
  }
}
