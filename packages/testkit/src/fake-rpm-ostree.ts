/**
 * A simulated rpm-ostreed on a test bus: `org.projectatomic.rpmostree1` with the Sysroot object
 * (`Booted`, `Deployments` in boot order, `PropertiesChanged` on every change, `RegisterClient`,
 * `Reload`) and the booted OS object with `FinalizeDeployment`, whose transaction runs on a
 * private peer-to-peer socket (`Start`, then `Finished`) as rpm-ostree's do. Tests stage
 * deployments (optionally with finalization locked), simulate what a reboot does, and watch
 * finalizations. It reboots nothing: a finalization runs {@link FakeRpmOstree.onFinalize}.
 */

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DBusError, interface as dbusInterface, Variant } from 'dbus-next';
import { type ExportedService, exportService } from './dbus-daemon.js';
import { PeerServer } from './peer-server.js';

const NAME = 'org.projectatomic.rpmostree1';
const SYSROOT_PATH = '/org/projectatomic/rpmostree1/Sysroot';
const SYSROOT_INTERFACE = 'org.projectatomic.rpmostree1.Sysroot';
const OS_INTERFACE = 'org.projectatomic.rpmostree1.OS';
const TRANSACTION_INTERFACE = 'org.projectatomic.rpmostree1.Transaction';

/** One deployment of the fake, in the fields rpm-ostree reports. */
export interface FakeDeployment {
  id: string;
  osname: string;
  checksum: string;
  version: string;
  booted: boolean;
  staged: boolean;
  finalizationLocked: boolean;
}

/** One `FinalizeDeployment` transaction that was started. */
export interface FinalizeCall {
  at: Date;
  /** The `checksum` option, if given. */
  checksum: string | undefined;
  /** What the transaction ended with: empty on success, else rpm-ostree's error. */
  error: string;
}

/** A D-Bus error for a method to answer with. */
export interface FakeDbusError {
  name: string;
  message: string;
}

/** A deterministic 64-hex-digit commit checksum for a version. */
export function commitFor(version: string): string {
  let h = 0x811c9dc5;
  let out = '';
  for (let round = 0; out.length < 64; round++) {
    for (const c of `${version}#${round}`) h = Math.imul(h ^ c.charCodeAt(0), 0x01000193) >>> 0;
    out += h.toString(16).padStart(8, '0');
  }
  return out.slice(0, 64);
}

class SysrootInterface extends dbusInterface.Interface {
  constructor(private readonly fake: FakeRpmOstree) {
    super(SYSROOT_INTERFACE);
  }
  get Booted(): string {
    return this.fake.osPath;
  }
  get Deployments(): Record<string, Variant>[] {
    return this.fake.wireDeployments();
  }
  get Path(): string {
    return '/';
  }
  RegisterClient(_options: unknown): void {
    this.fake.registrations += 1;
  }
  UnregisterClient(_options: unknown): void {}
  Reload(): void {
    this.fake.reloads += 1;
  }
  GetOS(_name: string): string {
    return this.fake.osPath;
  }
}

SysrootInterface.configureMembers({
  properties: {
    Booted: { signature: 'o', access: dbusInterface.ACCESS_READ },
    Deployments: { signature: 'aa{sv}', access: dbusInterface.ACCESS_READ },
    Path: { signature: 's', access: dbusInterface.ACCESS_READ },
  },
  methods: {
    RegisterClient: { inSignature: 'a{sv}' },
    UnregisterClient: { inSignature: 'a{sv}' },
    Reload: {},
    GetOS: { inSignature: 's', outSignature: 'o' },
  },
});

class OsInterface extends dbusInterface.Interface {
  constructor(private readonly fake: FakeRpmOstree) {
    super(OS_INTERFACE);
  }
  FinalizeDeployment(options: Record<string, Variant>): Promise<string> {
    return this.fake.finalizeCall(options);
  }
}

OsInterface.configureMembers({
  methods: { FinalizeDeployment: { inSignature: 'a{sv}', outSignature: 's' } },
});

/**
 * A fake rpm-ostreed. Create it with the test bus address, `await start()`, and `await stop()` in
 * `afterEach` or `afterAll`. Its deployments may be changed while it is stopped: they are what it
 * reports after the next `start()`, as after a restart.
 */
export class FakeRpmOstree {
  /** The deployments, in boot order: the first is the default. */
  deployments: FakeDeployment[];
  /** Every finalize transaction that was started, oldest first. */
  readonly finalizations: FinalizeCall[] = [];
  /** How many times `RegisterClient` was called. */
  registrations = 0;
  /** How many times `Reload` was called. */
  reloads = 0;
  /** When set, `FinalizeDeployment` itself answers with this D-Bus error. */
  finalizeError: FakeDbusError | undefined;
  /** When set, a started finalize transaction finishes with this error instead of finalizing. */
  transactionError: string | undefined;
  /**
   * Runs when a finalization succeeds, after the deployment is unlocked: rpm-ostreed would now
   * reboot the machine. The transaction's `Finished` waits for it.
   */
  onFinalize: ((call: FinalizeCall) => void | Promise<void>) | undefined;
  readonly osname: string;
  private service: ExportedService | undefined;
  private sysroot: SysrootInterface | undefined;
  private dir: string | undefined;
  private readonly servers = new Set<PeerServer>();
  private transactions = 0;

  constructor(
    /** The bus address, such as `DbusDaemon.address`. */
    readonly address: string,
    options: { osname?: string; version?: string } = {},
  ) {
    this.osname = options.osname ?? 'fedora-coreos';
    const version = options.version ?? '41.20250101.3.0';
    this.deployments = [this.deployment(version, { booted: true })];
  }

  /** The object path of the OS object, as rpm-ostree names it. */
  get osPath(): string {
    return `/org/projectatomic/rpmostree1/${this.osname.replace(/[^A-Za-z0-9]/g, '_')}`;
  }

  /** True while it owns the name on a live connection. */
  get running(): boolean {
    return this.service?.connected === true;
  }

  /** The booted deployment. */
  get booted(): FakeDeployment | undefined {
    return this.deployments.find((d) => d.booted);
  }

  /** Connects, exports the Sysroot and OS objects and takes the name. Again after stop: restart. */
  async start(): Promise<void> {
    if (this.running) return;
    await this.service?.close();
    this.dir ??= await mkdtemp(join(tmpdir(), 'sluice-rpmostree-'));
    const sysroot = new SysrootInterface(this);
    this.service = await exportService(this.address, NAME, SYSROOT_PATH, sysroot);
    this.service.bus.export(this.osPath, new OsInterface(this));
    this.sysroot = sysroot;
  }

  /** Disconnects, as when rpm-ostreed exits. Idempotent. */
  async stop(): Promise<void> {
    const service = this.service;
    this.service = undefined;
    this.sysroot = undefined;
    await service?.close();
    await Promise.all([...this.servers].map((s) => s.close()));
    this.servers.clear();
  }

  /** Stops and removes the transaction sockets' directory. */
  async dispose(): Promise<void> {
    await this.stop();
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
    this.dir = undefined;
  }

  /**
   * Stages `version` as `rpm-ostree upgrade` would (`--lock-finalization` when `locked`, the
   * default): a new first deployment with `staged`, replacing any staged one. Signals the change.
   */
  stage(version: string, options: { locked?: boolean } = {}): FakeDeployment {
    const staged = this.deployment(version, {
      staged: true,
      finalizationLocked: options.locked ?? true,
    });
    this.deployments = [staged, ...this.deployments.filter((d) => !d.staged)];
    this.changed();
    return staged;
  }

  /** Makes `version` the default deployment without staging (a deploy or a rollback). */
  deploy(version: string): void {
    const existing = this.deployments.find((d) => d.version === version && !d.staged);
    const next = existing ?? this.deployment(version, {});
    this.deployments = [next, ...this.deployments.filter((d) => d !== next && !d.staged)];
    this.changed();
  }

  /** Drops the staged deployment (`rpm-ostree cleanup -p`). */
  clearStaged(): void {
    this.deployments = this.deployments.filter((d) => !d.staged);
    this.changed();
  }

  /**
   * What a reboot does: an unlocked staged deployment is written out and booted; a locked one is
   * thrown away (it is not finalized at shutdown); otherwise the default deployment boots. Only
   * the booted and the previous deployment are kept. Signals the change when running.
   */
  rebooted(): void {
    const staged = this.deployments.find((d) => d.staged);
    let rest = this.deployments.filter((d) => !d.staged);
    if (staged && !staged.finalizationLocked) {
      rest = [{ ...staged, staged: false, finalizationLocked: false }, ...rest];
    }
    const [next, ...others] = rest;
    if (!next) return;
    const previous = others.find((d) => d.booted) ?? others[0];
    this.deployments = [
      { ...next, booted: true },
      ...(previous && previous !== next ? [{ ...previous, booted: false }] : []),
    ];
    this.changed();
  }

  /** Emits `PropertiesChanged` for `Deployments` (the tests call it after editing by hand). */
  changed(): void {
    if (!this.running || !this.sysroot) return;
    try {
      dbusInterface.Interface.emitPropertiesChanged(
        this.sysroot,
        { Deployments: this.wireDeployments() },
        [],
      );
    } catch {
      // The daemon went away: the signal is lost, as it would be.
    }
  }

  /** The deployments as `aa{sv}`. */
  wireDeployments(): Record<string, Variant>[] {
    return this.deployments.map((d) => ({
      id: new Variant('s', d.id),
      osname: new Variant('s', d.osname),
      checksum: new Variant('s', d.checksum),
      version: new Variant('s', d.version),
      booted: new Variant('b', d.booted),
      staged: new Variant('b', d.staged),
      // rpm-ostree sets the key only on a locked staged deployment.
      ...(d.staged && d.finalizationLocked
        ? { 'finalization-locked': new Variant('b', true) }
        : {}),
      serial: new Variant('i', 0),
      timestamp: new Variant('t', 1_700_000_000n),
    }));
  }

  /** `FinalizeDeployment`: answers a transaction address; the work starts with `Start`. */
  async finalizeCall(options: Record<string, Variant>): Promise<string> {
    if (this.finalizeError) {
      throw new DBusError(this.finalizeError.name, this.finalizeError.message);
    }
    const opt = (key: string): unknown => options[key]?.value;
    const dir = this.dir!;
    const path = join(dir, `transaction-${++this.transactions}.sock`);
    let started = false;
    const server = await PeerServer.listen(path, (call, reply) => {
      if (call.interface !== TRANSACTION_INTERFACE || call.member !== 'Start') return;
      reply.ok('b', [!started]);
      if (started) return;
      started = true;
      void this.runFinalize(opt).then((error) => {
        server.broadcast('/', TRANSACTION_INTERFACE, 'Finished', 'bs', [error === '', error]);
      });
    });
    this.servers.add(server);
    return server.address;
  }

  private async runFinalize(opt: (key: string) => unknown): Promise<string> {
    const checksum = typeof opt('checksum') === 'string' ? (opt('checksum') as string) : undefined;
    const call: FinalizeCall = { at: new Date(), checksum, error: '' };
    this.finalizations.push(call);
    const staged = this.deployments[0];
    if (this.transactionError) call.error = this.transactionError;
    else if (!staged?.staged) call.error = 'No pending staged deployment found';
    else if (checksum === undefined && opt('allow-missing-checksum') !== true) {
      call.error = 'Missing expected checksum';
    } else if (checksum !== undefined && checksum !== staged.checksum) {
      call.error = `Expected staged base checksum ${checksum}, but found ${staged.checksum}`;
    } else if (!staged.finalizationLocked && opt('allow-unlocked') !== true) {
      call.error = 'Staged deployment already unlocked';
    }
    if (call.error !== '') return call.error;
    staged!.finalizationLocked = false;
    this.changed();
    try {
      await this.onFinalize?.(call);
    } catch (error) {
      call.error = error instanceof Error ? error.message : String(error);
    }
    return call.error;
  }

  private deployment(
    version: string,
    flags: Partial<Pick<FakeDeployment, 'booted' | 'staged' | 'finalizationLocked'>>,
  ): FakeDeployment {
    const checksum = commitFor(version);
    return {
      id: `${this.osname}-${checksum}.0`,
      osname: this.osname,
      checksum,
      version,
      booted: flags.booted ?? false,
      staged: flags.staged ?? false,
      finalizationLocked: flags.finalizationLocked ?? false,
    };
  }
}
