/**
 * Presets for image and package distributions: systemd-sysupdate (`systemd-sysupdate pending`),
 * needrestart (`needrestart -b`, Debian and Ubuntu) and dnf (`dnf needs-restarting -r`, Fedora,
 * RHEL and their rebuilds, dnf 4 and dnf 5). Each is a fixed program with fixed arguments and an
 * interpreter for its answer; the interpreters are pure and exported for tests.
 *
 * The traps they handle: an exit code that means "no" *and* "error" (systemd-sysupdate exits 1
 * for both), an exit code that means "yes" *and* "error" (dnf exits 1 both when a reboot is
 * needed and when the needs-restarting plugin is missing, kured#976's trap when negated), and
 * output in the user's language (the tools run in the C locale). An answer is only believed when
 * the output says the same as the exit code; anything else is unknown, which is never a reboot.
 */
import type { UpdateSignal } from './sources.js';
import { outputTail, type ProgramRun, ProgramSource, unknownSignal } from './sources-program.js';

/** Where the tools usually are. */
export const DEFAULT_PROGRAMS = {
  sysupdate: '/usr/lib/systemd/systemd-sysupdate',
  needrestart: '/usr/sbin/needrestart',
  dnf: '/usr/bin/dnf',
} as const;

/** How a preset is set up in the configuration. */
export interface PresetSettings {
  /** How often to ask, in milliseconds. */
  intervalMs: number;
  /** The program, when it is not where the distribution puts it. */
  path?: string;
  /** How long one run may take, in milliseconds. */
  timeoutMs?: number;
}

const NEWER = /Newest installed version '([^']+)' is newer than booted version '([^']+)'/;
const NOT_NEWER =
  /Newest installed version '([^']+)' (matches|is older than) booted version '([^']+)'/;

/**
 * `systemd-sysupdate pending` exits 0 when a newer version is installed than the one booted (as
 * `IMAGE_VERSION=` in os-release says), and 1 when not; but it also exits 1 on any error (no
 * transfer definitions, no `IMAGE_VERSION=`). So exit 1 only means "not needed" together with
 * its "matches" or "is older than" message.
 */
export function interpretSysupdate(run: ProgramRun): UpdateSignal {
  const text = `${run.stderr}\n${run.stdout}`;
  if (run.code === 0) {
    const m = NEWER.exec(text);
    return {
      needed: true,
      source: 'sysupdate',
      detail: m
        ? `version ${m[1]} is installed, ${m[2]} is booted`
        : 'a newer version is installed than the one booted',
      ...(m?.[1] ? { version: m[1] } : {}),
    };
  }
  const m = NOT_NEWER.exec(text);
  if (run.code === 1 && m) {
    return {
      needed: false,
      source: 'sysupdate',
      detail: `booted ${m[3]} is the newest installed version`,
    };
  }
  return unknownSignal('sysupdate', `${run.command} exited ${run.code}: ${outputTail(run)}`);
}

/**
 * `needrestart -b` prints the apt-dater batch format. `NEEDRESTART-KSTA` is the kernel: 0 could
 * not tell, 1 current, 2 an ABI-compatible upgrade is pending, 3 a version upgrade is pending.
 * `NEEDRESTART-UCSTA` is the CPU microcode: 2 obsolete. Services that only need a restart
 * (`NEEDRESTART-SVC`) do not call for a reboot. Output without a version line and a kernel
 * status is not believed.
 */
export function interpretNeedrestart(run: ProgramRun): UpdateSignal {
  const field = (name: string): string | undefined =>
    new RegExp(`^NEEDRESTART-${name}:\\s*(.*)$`, 'm').exec(run.stdout)?.[1]?.trim();
  const ver = field('VER');
  const ksta = field('KSTA');
  if (ver === undefined || ksta === undefined || !/^[0-3]$/.test(ksta)) {
    return unknownSignal(
      'needrestart',
      `${run.command} (exit ${run.code}) printed no kernel status: ${outputTail(run)}`,
    );
  }
  const current = field('KCUR') ?? 'unknown';
  const expected = field('KEXP');
  const microcode = field('UCSTA');
  const services = (run.stdout.match(/^NEEDRESTART-SVC:/gm) ?? []).length;
  if (ksta === '2' || ksta === '3') {
    return {
      needed: true,
      source: 'needrestart',
      detail:
        ksta === '3'
          ? `kernel ${current} is running, ${expected ?? 'a newer one'} is installed`
          : `kernel ${current} is running; an ABI-compatible upgrade of it is installed`,
      ...(ksta === '3' && expected ? { version: expected } : {}),
    };
  }
  if (microcode === '2') {
    return {
      needed: true,
      source: 'needrestart',
      detail:
        `CPU microcode ${field('UCCUR') ?? ''} is obsolete, ${field('UCEXP') ?? 'a newer one'} is installed`.replace(
          /\s+/g,
          ' ',
        ),
    };
  }
  if (ksta === '0') {
    return unknownSignal('needrestart', 'needrestart could not tell the kernel status (KSTA 0)');
  }
  return {
    needed: false,
    source: 'needrestart',
    detail: `kernel ${current} is current${services > 0 ? `; ${services} service${services === 1 ? '' : 's'} to restart, no reboot needed` : ''}`,
  };
}

/**
 * `dnf needs-restarting -r` exits 1 with "Reboot is required" when core packages (kernel, glibc,
 * systemd, ...) were updated since boot, and 0 with "Reboot should not be necessary" when not.
 * dnf also exits 1 when the command does not exist (dnf 4 without dnf-plugins-core: "No such
 * command") or fails: exit 1 is only "needed" when the output says so.
 */
export function interpretDnf(run: ProgramRun): UpdateSignal {
  if (run.code === 1 && /Reboot is required/.test(run.stdout)) {
    const packages = [...run.stdout.matchAll(/^\s*\*\s*(\S+)/gm)].map((m) => m[1]);
    return {
      needed: true,
      source: 'dnf',
      detail:
        packages.length > 0
          ? `updated since boot: ${packages.slice(0, 8).join(', ')}${packages.length > 8 ? ` (+${packages.length - 8} more)` : ''}`
          : 'core libraries or services were updated since boot',
    };
  }
  if (run.code === 0 && /Reboot should not be necessary/.test(run.stdout)) {
    return {
      needed: false,
      source: 'dnf',
      detail: 'no core libraries or services updated since boot',
    };
  }
  const hint = /No such command|Unknown argument/.test(`${run.stderr}${run.stdout}`)
    ? ' (is the needs-restarting command installed? dnf 4 needs dnf-plugins-core)'
    : '';
  return unknownSignal('dnf', `${run.command} exited ${run.code}${hint}: ${outputTail(run)}`);
}

/** `systemd-sysupdate pending`, optionally for one component (`-C NAME`). */
export function sysupdateSource(settings: PresetSettings & { component?: string }): ProgramSource {
  const component = settings.component ? ['--component', settings.component] : [];
  return new ProgramSource({
    name: 'sysupdate',
    file: settings.path ?? DEFAULT_PROGRAMS.sysupdate,
    args: [...component, 'pending'],
    intervalMs: settings.intervalMs,
    ...(settings.timeoutMs !== undefined ? { timeoutMs: settings.timeoutMs } : {}),
    interpret: interpretSysupdate,
  });
}

/** `needrestart -b`. */
export function needrestartSource(settings: PresetSettings): ProgramSource {
  return new ProgramSource({
    name: 'needrestart',
    file: settings.path ?? DEFAULT_PROGRAMS.needrestart,
    args: ['-b'],
    intervalMs: settings.intervalMs,
    ...(settings.timeoutMs !== undefined ? { timeoutMs: settings.timeoutMs } : {}),
    interpret: interpretNeedrestart,
  });
}

/** `dnf needs-restarting -r` (dnf 5 accepts `-r` too). */
export function dnfSource(settings: PresetSettings): ProgramSource {
  return new ProgramSource({
    name: 'dnf',
    file: settings.path ?? DEFAULT_PROGRAMS.dnf,
    args: ['needs-restarting', '-r'],
    intervalMs: settings.intervalMs,
    ...(settings.timeoutMs !== undefined ? { timeoutMs: settings.timeoutMs } : {}),
    interpret: interpretDnf,
  });
}
