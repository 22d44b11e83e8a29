/**
 * Update sources for image-based systems built on ostree:
 *
 * - rpm-ostree over D-Bus (Fedora CoreOS, RHEL for Edge, Fedora IoT, Atomic desktops): needed
 *   while a deployment is staged, or the default deployment is not the booted one. A deployment
 *   staged with finalization locked (`rpm-ostree upgrade --lock-finalization`) is not applied by
 *   an ordinary reboot: the agent finalizes it, which reboots, only once it holds its slot.
 * - bootc (RHEL and CentOS image mode, Fedora bootc): `bootc status --json`; needed while an image
 *   is staged (or a rollback is queued). An image pulled with `bootc upgrade --download-only` is
 *   held back the same way, and unlocked with `bootc upgrade --from-downloaded` once the slot is
 *   held. bootc's `softRebootCapable`, with `/run/nextroot` set up, lets the agent soft-reboot.
 */
import { statSync } from 'node:fs';
import { dirname } from 'node:path';
import { err, ok, type Result, SluiceError } from '@sluice/core';
import { pendingDeployment, RpmOstreeClient, type SysrootStatus } from '@sluice/dbus';
import { type Applied, sameSignal, type UpdateSignal, type UpdateSource } from './sources.js';
import type { PresetSettings } from './sources-packages.js';
import { outputTail, type ProgramRun, ProgramSource, unknownSignal } from './sources-program.js';

const short = (checksum: string): string => checksum.replace(/^sha256:/, '').slice(0, 12);

/** Options for {@link RpmOstreeSource}. */
export interface RpmOstreeSourceOptions {
  /** Called for connection problems the client rides out (log them). */
  onProblem?: (error: Error) => void;
  /**
   * How often to have rpm-ostreed reload the sysroot and read it again, as a backstop for a
   * change it did not signal. Default 5 min.
   */
  refreshMs?: number;
  /** How long finalizing may take before it counts as failed. Default 2 min. */
  finalizeTimeoutMs?: number;
}

/**
 * Follows rpm-ostreed (`org.projectatomic.rpmostree1`): needed while a deployment is staged or
 * the default deployment is not the booted one. While rpm-ostreed is away (restarting) the last
 * reading stands; before it has ever answered, nothing is needed (unknown).
 */
export class RpmOstreeSource implements UpdateSource {
  readonly name = 'rpm-ostree';
  #client: RpmOstreeClient | null = null;
  #signal: UpdateSignal = unknownSignal('rpm-ostree', 'rpm-ostreed not asked yet');
  #seen = false;
  #timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly address: string,
    private readonly options: RpmOstreeSourceOptions = {},
  ) {}

  /** The reading for a sysroot status (null: rpm-ostreed not reachable). */
  static toSignal(status: SysrootStatus | null): UpdateSignal {
    const source = 'rpm-ostree';
    if (status === null) return unknownSignal(source, 'rpm-ostreed is not reachable');
    const booted = status.deployments.find((d) => d.booted);
    if (status.deployments.length === 0 || !booted) {
      return unknownSignal(source, 'rpm-ostreed reports no booted deployment');
    }
    const bootedName = booted.version ?? short(booted.checksum);
    const pending = pendingDeployment(status.deployments);
    if (pending === null) {
      return {
        needed: false,
        source,
        detail: `booted ${bootedName} is the default; nothing staged`,
      };
    }
    const d = pending.deployment;
    const name = d.version ?? short(d.checksum);
    const detail =
      pending.why === 'staged'
        ? `${name} (${short(d.checksum)}) is staged${d.finalizationLocked ? ' with finalization locked: finalized once this node holds its slot' : ''}; booted ${bootedName}`
        : `${name} (${short(d.checksum)}) is the default for the next boot; booted ${bootedName}`;
    return { needed: true, source, detail, version: name };
  }

  async start(onChange: (s: UpdateSignal) => void): Promise<void> {
    await this.#client?.close();
    const client = new RpmOstreeClient({ address: this.address });
    this.#client = client;
    if (this.options.onProblem) client.on('problem', this.options.onProblem);
    let reported = false;
    const emit = () => {
      if (this.#client !== client) return;
      const status = client.serviceUp ? client.status : null;
      // Up, but not read yet: the read that follows reports.
      if (status === undefined) return;
      // rpm-ostreed restarting says nothing about the staged deployment: keep the last reading.
      if (status === null && this.#seen) return;
      this.#seen ||= status !== null;
      const next = RpmOstreeSource.toSignal(status);
      if (reported && sameSignal(next, this.#signal)) return;
      reported = true;
      this.#signal = next;
      onChange(next);
    };
    client.on('status', emit);
    client.on('service-down', emit);
    client.on('service-up', emit);
    await client.start();
    emit();
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = setInterval(() => {
      if (!client.serviceUp) return;
      client.refresh().catch((error: unknown) => this.options.onProblem?.(error as Error));
    }, this.options.refreshMs ?? 300_000);
    this.#timer.unref();
  }

  current(): UpdateSignal {
    return this.#signal;
  }

  /**
   * Finalizes a deployment staged with finalization locked (rpm-ostreed then reboots the
   * machine): `rebooting`. Anything else is applied by an ordinary reboot: `ready`. Only ever
   * called by the agent while it holds its slot.
   */
  async apply(signal: AbortSignal): Promise<Applied> {
    const client = this.#client;
    const status = client?.status;
    const pending = status ? pendingDeployment(status.deployments) : null;
    const d = pending?.deployment;
    if (!client || !d?.staged || !d.finalizationLocked) return 'ready';
    await client.finalize(d.baseChecksum ?? d.checksum, {
      signal,
      ...(this.options.finalizeTimeoutMs !== undefined
        ? { timeoutMs: this.options.finalizeTimeoutMs }
        : {}),
    });
    return 'rebooting';
  }

  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    await this.#client?.close();
    this.#client = null;
  }
}

/** One boot entry of `bootc status --json`, with what sluice uses of it. */
export interface BootcEntry {
  image: string;
  version: string | undefined;
  digest: string;
  softRebootCapable: boolean;
  /** Pulled with `--download-only` (older bootc: `finalizationLocked`): not applied at reboot. */
  downloadOnly: boolean;
}

/** What sluice reads from `bootc status --json`. */
export interface BootcStatus {
  staged: BootcEntry | null;
  booted: BootcEntry | null;
  rollbackQueued: boolean;
}

/** Reads the `BootcHost` JSON (apiVersion `org.containers.bootc/v1`, or `v1alpha1`). */
export function parseBootcStatus(text: string): Result<BootcStatus, string> {
  let host: unknown;
  try {
    host = JSON.parse(text);
  } catch (error) {
    return err(`not JSON (${error instanceof Error ? error.message : String(error)})`);
  }
  const h = host as { kind?: unknown; status?: Record<string, unknown> } | null;
  if (!h || typeof h !== 'object' || h.kind !== 'BootcHost' || typeof h.status !== 'object') {
    return err('not a BootcHost object with a status');
  }
  const entry = (value: unknown): BootcEntry | null => {
    if (!value || typeof value !== 'object') return null;
    const e = value as Record<string, unknown>;
    const image = (e.image ?? {}) as Record<string, unknown>;
    const ref = (image.image ?? {}) as Record<string, unknown>;
    const digest = typeof image.imageDigest === 'string' ? image.imageDigest : '';
    return {
      image: typeof ref.image === 'string' ? ref.image : '',
      version: typeof image.version === 'string' && image.version ? image.version : undefined,
      digest,
      softRebootCapable: e.softRebootCapable === true,
      downloadOnly: e.downloadOnly === true || e.finalizationLocked === true,
    };
  };
  const status = h.status ?? {};
  return ok({
    staged: entry(status.staged),
    booted: entry(status.booted),
    rollbackQueued: status.rollbackQueued === true,
  });
}

/**
 * Reads a run of `bootc status --json`. `nextrootReady`: whether `/run/nextroot` is set up, which
 * a soft reboot needs to switch into the staged image.
 */
export function interpretBootc(run: ProgramRun, nextrootReady: boolean): UpdateSignal {
  const source = 'bootc';
  if (run.code !== 0) {
    return unknownSignal(source, `${run.command} exited ${run.code}: ${outputTail(run)}`);
  }
  const parsed = parseBootcStatus(run.stdout);
  if (!parsed.ok) return unknownSignal(source, `${run.command} printed ${parsed.error}`);
  const { staged, booted, rollbackQueued } = parsed.value;
  if (!booted) {
    return unknownSignal(source, 'this host was not booted through bootc (status.booted is null)');
  }
  const bootedName = booted.version ?? short(booted.digest);
  if (staged) {
    const name = staged.version ?? short(staged.digest);
    return {
      needed: true,
      source,
      detail: staged.downloadOnly
        ? `${staged.image} ${name} (${short(staged.digest)}) is downloaded and held back: applied once this node holds its slot; booted ${bootedName}`
        : `${staged.image} ${name} (${short(staged.digest)}) is staged; booted ${bootedName}`,
      version: name,
      ...(staged.softRebootCapable && nextrootReady && !staged.downloadOnly
        ? { softReboot: true }
        : {}),
    };
  }
  if (rollbackQueued) {
    return {
      needed: true,
      source,
      detail: `a rollback is queued for the next boot; booted ${bootedName}`,
    };
  }
  return {
    needed: false,
    source,
    detail: `booted ${bootedName} (${short(booted.digest)}); nothing staged`,
  };
}

/** True when `path` is a mount point (its device differs from its parent's). */
export function isMountPoint(path: string): boolean {
  try {
    return statSync(path).dev !== statSync(dirname(path)).dev;
  } catch {
    return false;
  }
}

/** Where bootc and ostree set up the next root for a soft reboot. */
export const NEXTROOT = '/run/nextroot';

/**
 * `bootc status --json`, every `intervalMs`. Its `apply` runs `bootc upgrade --from-downloaded`
 * for an image pulled with `--download-only`, so that the reboot applies it.
 */
export class BootcSource extends ProgramSource {
  readonly #last: { status: BootcStatus | null };

  constructor(
    settings: PresetSettings & {
      /** Whether the next root for a soft reboot is set up. Default: `/run/nextroot` is mounted. */
      nextrootReady?: () => boolean;
    },
  ) {
    const last: { status: BootcStatus | null } = { status: null };
    const nextroot = settings.nextrootReady ?? (() => isMountPoint(NEXTROOT));
    super({
      name: 'bootc',
      file: settings.path ?? '/usr/bin/bootc',
      args: ['status', '--json'],
      intervalMs: settings.intervalMs,
      ...(settings.timeoutMs !== undefined ? { timeoutMs: settings.timeoutMs } : {}),
      interpret: (run) => {
        const parsed = run.code === 0 ? parseBootcStatus(run.stdout) : null;
        last.status = parsed?.ok ? parsed.value : null;
        return interpretBootc(run, nextroot());
      },
    });
    this.#last = last;
  }

  /** Unlocks a download-only staged image (`bootc upgrade --from-downloaded`); then `ready`. */
  async apply(signal: AbortSignal): Promise<Applied> {
    const staged = this.#last.status?.staged;
    if (!staged?.downloadOnly) return 'ready';
    const run = await this.run(['upgrade', '--from-downloaded'], signal);
    const failure = this.failure(run) ?? (run.code === 0 ? null : `exited ${run.code}`);
    if (failure !== null) {
      throw new SluiceError(
        'check-failed',
        `bootc upgrade --from-downloaded failed (${failure}): ${outputTail(run)}; the staged image stays held back`,
        this.file,
      );
    }
    return 'ready';
  }
}
