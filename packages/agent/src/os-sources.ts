/**
 * Builds the update sources for image- and package-based systems from the configuration: one
 * line each, in the order the agent prefers them.
 */
import type { AgentConfig } from './config/index.js';
import type { UpdateSource } from './sources.js';
import { BootcSource, RpmOstreeSource } from './sources-ostree.js';
import { dnfSource, needrestartSource, sysupdateSource } from './sources-packages.js';

/** The configured rpm-ostree, bootc, systemd-sysupdate, needrestart and dnf sources. */
export function osSources(
  config: AgentConfig,
  onProblem: (source: string, error: Error) => void,
): UpdateSource[] {
  const s = config.sources;
  const out: UpdateSource[] = [];
  if (s.rpmOstree) {
    out.push(
      new RpmOstreeSource(config.dbus.address, {
        onProblem: (error) => onProblem('rpm-ostree', error),
      }),
    );
  }
  if (s.bootc) out.push(new BootcSource(s.bootc));
  if (s.sysupdate) out.push(sysupdateSource(s.sysupdate));
  if (s.needrestart) out.push(needrestartSource(s.needrestart));
  if (s.dnf) out.push(dnfSource(s.dnf));
  return out;
}
