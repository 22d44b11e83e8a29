/**
 * How the machine is rebooted, and how logged-in users hear of it. The lifecycle decides when;
 * this only carries it out.
 */
import { execFile } from 'node:child_process';
import { LogindClient } from '@sluice/dbus';
import type { AgentConfig } from './config.js';

/** What actually reboots the machine. */
export interface Rebooter {
  /** Resolves once the reboot was accepted; the machine goes down shortly after. */
  reboot(signal: AbortSignal): Promise<void>;
}

/** The configured reboot method: logind over D-Bus, or a command. */
export function configuredRebooter(config: AgentConfig): Rebooter {
  if (config.reboot.method === 'logind') {
    const logind = new LogindClient({ address: config.dbus.address });
    return { reboot: (signal) => logind.reboot(signal) };
  }
  return { reboot: () => runShell(config.reboot.command) };
}

function runShell(command: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('/bin/sh', ['-c', command], { timeout: 60_000 }, (error) =>
      error ? reject(error) : resolve(),
    );
  });
}

/** Tells logged-in users, like locksmith's "System reboot in 5 minutes!". Never fails. */
export function wall(message: string): Promise<void> {
  return new Promise((resolve) => {
    execFile('wall', [message], { timeout: 10_000 }, () => resolve());
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
