/**
 * How the agent reboots, and what it asks logind before and while it does:
 *
 * - `logind`: `org.freedesktop.login1.Manager.Reboot(false)`, a full, orderly reboot.
 * - `soft-reboot`: logind's `RebootWithFlags` with the soft-reboot flag (systemd 254+): userspace
 *   restarts (into `/run/nextroot` when one is set up), the kernel keeps running. Recognised after
 *   the fact by systemd's `SoftRebootsCount`, since the boot id stays the same.
 * - `kexec`: `RebootWithFlags` with the kexec flag: straight into the kernel loaded with
 *   `kexec --load`, skipping firmware and boot loader (a normal reboot when none is loaded).
 * - `command`: a shell command, for systems without logind.
 *
 * All logind methods are orderly: units stop as in any shutdown. systemd's own
 * `Manager.SoftReboot()` / `KExec()` are not used; they skip that (they are `systemctl --force`).
 *
 * Before a logind reboot the agent lists the inhibitor locks: a `block` lock on `shutdown` held by
 * something else (a backup, a package upgrade) makes it wait, holding its slot up to a bound.
 * `delay` locks are left to logind, which waits for them a bounded time itself.
 */
import { execFile } from 'node:child_process';
import { type Inhibitor, LogindClient, REBOOT_FLAGS } from '@sluice/dbus';
import type { AgentConfig } from './config/index.js';

/** What actually reboots the machine. */
export interface Rebooter {
  /** Resolves once the reboot was accepted; the machine goes down shortly after. */
  reboot(signal: AbortSignal): Promise<void>;
}

/** The reboot methods sluice knows. */
export const REBOOT_METHODS = ['logind', 'soft-reboot', 'kexec', 'command'] as const;
/** One of {@link REBOOT_METHODS}. */
export type RebootMethod = (typeof REBOOT_METHODS)[number];

/** True for the methods that go through logind (and so honour its inhibitor locks). */
export const viaLogind = (method: RebootMethod): boolean => method !== 'command';

/** What {@link rebooterFor} needs to know. */
export interface RebooterSettings {
  /** The D-Bus address logind is on: `system`, or `unix:path=...`. */
  dbusAddress: string;
  /** The shell command for method `command`. */
  command: string;
  /**
   * Whether logind should refuse a soft reboot or kexec while a block inhibitor is held, even for
   * root (closes the moment between the agent's own look and the call).
   */
  enforceInhibitors: boolean;
}

/** The Rebooter for one method. */
export function rebooterFor(method: RebootMethod, settings: RebooterSettings): Rebooter {
  const logind = new LogindClient({ address: settings.dbusAddress });
  const check = settings.enforceInhibitors ? REBOOT_FLAGS.rootCheckInhibitors : 0n;
  switch (method) {
    case 'logind':
      return { reboot: (signal) => logind.reboot(signal) };
    case 'soft-reboot':
      return {
        reboot: (signal) => logind.rebootWithFlags(REBOOT_FLAGS.softReboot | check, signal),
      };
    case 'kexec':
      return { reboot: (signal) => logind.rebootWithFlags(REBOOT_FLAGS.viaKexec | check, signal) };
    case 'command':
      return { reboot: () => runShell(settings.command) };
  }
}

/** The Rebooter for a reboot method, as configured (logind, soft-reboot, kexec or command). */
export function configuredRebooter(
  config: AgentConfig,
  method: RebootMethod = config.reboot.method,
): Rebooter {
  return rebooterFor(method, {
    dbusAddress: config.dbus.address,
    command: config.reboot.command,
    enforceInhibitors: config.reboot.inhibitors === 'wait',
  });
}

/**
 * The block locks on `shutdown` that something other than this process holds, worded for people
 * (`"backup" (writing the nightly snapshot), pid 812`); empty when nothing blocks a reboot.
 */
export function shutdownBlockers(inhibitors: readonly Inhibitor[], ownPid = process.pid): string[] {
  return inhibitors
    .filter((i) => i.mode === 'block' && i.what.includes('shutdown') && i.pid !== ownPid)
    .map((i) => `"${i.who}" (${i.why || 'no reason given'}), pid ${i.pid}`);
}

/**
 * Warns logged-in users that the machine reboots at `at`: through logind where it answers (a
 * `dry-reboot` scheduled shutdown with `message` as its wall message: logind tells every session,
 * more often as the time nears, and reboots nothing, so the agent still checks its window and slot
 * before rebooting itself); otherwise with `wall`. Never throws. Resolves with how users were told.
 */
export async function warnUsers(
  logind: LogindClient | null,
  message: string,
  at: Date,
  signal?: AbortSignal,
): Promise<'logind' | 'wall'> {
  if (logind) {
    try {
      await logind.setWallMessage(message, true, signal);
      await logind.scheduleShutdown('dry-reboot', at, signal);
      return 'logind';
    } catch {
      // Not there, or not allowed: fall back to wall.
    }
  }
  await new Promise<void>((resolve) => {
    execFile('wall', [message], { timeout: 10_000 }, () => resolve());
  });
  return 'wall';
}

/** Runs a reboot command with `/bin/sh -c`; rejects when it fails or takes longer than 60 s. */
export function runShell(command: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('/bin/sh', ['-c', command], { timeout: 60_000 }, (error) =>
      error ? reject(error) : resolve(),
    );
  });
}

/** The warning for a reboot `delayMs` away, from the configured text (`%s`: the time left). */
export function warningText(template: string, delayMs: number): string {
  const minutes = Math.round(delayMs / 60_000);
  const when =
    minutes >= 1
      ? `${minutes} minute${minutes === 1 ? '' : 's'}`
      : `${Math.round(delayMs / 1000)} seconds`;
  return template.replace('%s', when);
}
