/**
 * A simulated update_engine on a test bus: `com.coreos.update1` at `/com/coreos/update1` with the
 * `com.coreos.update1.Manager` interface (`GetStatus` and the `StatusUpdate` signal). Tests drive
 * it with {@link FakeUpdateEngine.stageUpdate} and {@link FakeUpdateEngine.setIdle}, and simulate
 * a restart with {@link FakeUpdateEngine.stop} and {@link FakeUpdateEngine.start}.
 */

import { setTimeout as sleep } from 'node:timers/promises';
import { interface as dbusInterface } from 'dbus-next';
import { type ExportedService, exportService } from './dbus-daemon.js';

const NAME = 'com.coreos.update1';
const PATH = '/com/coreos/update1';
const INTERFACE = 'com.coreos.update1.Manager';
const SIGNATURE = 'xdssx';

/** The fake's status, with the fields of update_engine's `GetStatus` in order. */
export interface FakeUpdateStatus {
  /** Seconds since the Unix epoch; sent as a D-Bus `x`. */
  lastCheckedTime: number;
  /** From 0 to 1. */
  progress: number;
  /** An `UPDATE_STATUS_*` operation. */
  currentOperation: string;
  /** The version being downloaded or installed. */
  newVersion: string;
  /** In bytes; sent as a D-Bus `x`. */
  newSize: number;
}

type StatusTuple = [bigint, number, string, string, bigint];

/** The exported D-Bus interface; the fake supplies its status. */
class ManagerInterface extends dbusInterface.Interface {
  constructor(
    private readonly read: () => StatusTuple,
    private readonly onGetStatus: () => void,
  ) {
    super(INTERFACE);
  }

  GetStatus(): StatusTuple {
    this.onGetStatus();
    return this.read();
  }

  /** Calling it sends the signal with the current status. */
  StatusUpdate(): StatusTuple {
    return this.read();
  }
}

ManagerInterface.configureMembers({
  methods: { GetStatus: { outSignature: SIGNATURE } },
  signals: { StatusUpdate: { signature: SIGNATURE } },
});

/** Options for {@link FakeUpdateEngine.stageUpdate}. */
export interface StageOptions {
  /**
   * Go through checking, downloading (0, 0.5, 1), verifying and finalizing before
   * `UPDATE_STATUS_UPDATED_NEED_REBOOT`, with a signal for each. Defaults to true; false jumps
   * straight to the end.
   */
  steps?: boolean;
  /** Pause between steps, in milliseconds. Defaults to 0. */
  stepDelayMs?: number;
}

/**
 * A fake update_engine. Create it with the test bus address, `await start()`, and `await stop()`
 * in `afterEach`. Its status can be changed while it is stopped: it is what `GetStatus` answers
 * after the next `start()`, like an update_engine that restarted.
 */
export class FakeUpdateEngine {
  /** The current status, as `GetStatus` answers it. */
  status: FakeUpdateStatus;
  /** How many times `GetStatus` was called, over all starts. */
  getStatusCalls = 0;
  private service: ExportedService | undefined;
  private iface: ManagerInterface | undefined;

  constructor(
    /** The bus address, such as `DbusDaemon.address`. */
    readonly address: string,
    initial: Partial<FakeUpdateStatus> = {},
  ) {
    this.status = {
      lastCheckedTime: 0,
      progress: 0,
      currentOperation: 'UPDATE_STATUS_IDLE',
      newVersion: '0.0.0',
      newSize: 0,
      ...initial,
    };
  }

  /** True while it owns `com.coreos.update1` on a live connection. */
  get running(): boolean {
    return this.service?.connected === true;
  }

  /**
   * Connects, exports the manager and takes `com.coreos.update1`. Clients see `NameOwnerChanged`.
   * Calling it again after {@link stop}, or after the daemon died, simulates a restart.
   */
  async start(): Promise<void> {
    if (this.running) {
      return;
    }
    await this.service?.close();
    const iface = new ManagerInterface(
      () => this.tuple(),
      () => {
        this.getStatusCalls += 1;
      },
    );
    this.service = await exportService(this.address, NAME, PATH, iface);
    this.iface = iface;
  }

  /** Disconnects, which gives up the name, as when update_engine exits. Idempotent. */
  async stop(): Promise<void> {
    const service = this.service;
    this.service = undefined;
    this.iface = undefined;
    await service?.close();
  }

  /** Changes the status and, when running, emits `StatusUpdate` with it. */
  setStatus(patch: Partial<FakeUpdateStatus>): void {
    this.status = { ...this.status, ...patch };
    if (this.running && this.iface !== undefined) {
      try {
        this.iface.StatusUpdate();
      } catch {
        // The daemon went away under us: the signal is lost, as it would be for update_engine.
      }
    }
  }

  /** Sets `UPDATE_STATUS_IDLE` with `version` as the new version, and signals it. */
  setIdle(version: string): void {
    this.setStatus({ currentOperation: 'UPDATE_STATUS_IDLE', progress: 0, newVersion: version });
  }

  /**
   * Simulates finding, downloading and installing `version`, signalling each step, and ends at
   * `UPDATE_STATUS_UPDATED_NEED_REBOOT`. Resolves after the last signal was sent.
   */
  async stageUpdate(version: string, options: StageOptions = {}): Promise<void> {
    const { steps = true, stepDelayMs = 0 } = options;
    const lastCheckedTime = Math.floor(Date.now() / 1000);
    const newSize = 314_572_800;
    const sequence: Partial<FakeUpdateStatus>[] = steps
      ? [
          { currentOperation: 'UPDATE_STATUS_CHECKING_FOR_UPDATE', progress: 0, lastCheckedTime },
          { currentOperation: 'UPDATE_STATUS_UPDATE_AVAILABLE', newVersion: version, newSize },
          { currentOperation: 'UPDATE_STATUS_DOWNLOADING', progress: 0 },
          { currentOperation: 'UPDATE_STATUS_DOWNLOADING', progress: 0.5 },
          { currentOperation: 'UPDATE_STATUS_DOWNLOADING', progress: 1 },
          { currentOperation: 'UPDATE_STATUS_VERIFYING', progress: 1 },
          { currentOperation: 'UPDATE_STATUS_FINALIZING', progress: 1 },
        ]
      : [];
    sequence.push({
      currentOperation: 'UPDATE_STATUS_UPDATED_NEED_REBOOT',
      progress: 1,
      newVersion: version,
      newSize,
      lastCheckedTime,
    });
    for (const [i, step] of sequence.entries()) {
      if (i > 0 && stepDelayMs > 0) {
        await sleep(stepDelayMs);
      }
      this.setStatus(step);
    }
  }

  private tuple(): StatusTuple {
    const s = this.status;
    return [
      BigInt(s.lastCheckedTime),
      s.progress,
      s.currentOperation,
      s.newVersion,
      BigInt(s.newSize),
    ];
  }
}
