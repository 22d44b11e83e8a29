/**
 * Fake `bootc`, `systemd-sysupdate`, `needrestart` and `dnf` executables for tests: small shell
 * scripts in a temporary directory that print what the real tools print (the documented output,
 * exit codes and their pitfalls) for the state a test sets, and log every invocation. A test sets
 * a tool's state with one call (`tools.dnf({ reboot: true })`); the change is atomic, so a source
 * polling the tool sees the old answer or the new one, never a mix.
 *
 * ```ts
 * const tools = await FakeTools.create();
 * tools.needrestart({ kernel: { running: '6.1.0-17-amd64', expected: '6.1.0-18-amd64', status: 3 } });
 * // point the source at tools.path('needrestart') ...
 * await tools.dispose();
 * ```
 */

import { chmod, mkdir, mkdtemp, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The tools there are fakes for. */
export type FakeTool = 'bootc' | 'systemd-sysupdate' | 'needrestart' | 'dnf';

/** What one invocation prints and returns. */
export interface FakeResponse {
  stdout?: string;
  stderr?: string;
  code: number;
  /** Seconds to sleep before answering (to make a run time out). */
  sleep?: number;
}

/** One image in `bootc status --json`. */
export interface FakeBootcImage {
  version: string;
  /** Defaults to a digest derived from the version. */
  digest?: string;
  softRebootCapable?: boolean;
  downloadOnly?: boolean;
}

/** The state `bootc status --json` reports. */
export type FakeBootcState =
  | {
      image?: string;
      booted: FakeBootcImage;
      staged?: FakeBootcImage | null;
      rollback?: FakeBootcImage | null;
      rollbackQueued?: boolean;
    }
  /** Not a bootc host: `status.booted` is null. */
  | { notBootc: true }
  /** bootc fails, printing `error` on stderr. */
  | { error: string; code?: number };

/** What `systemd-sysupdate pending` finds. */
export type FakeSysupdateState =
  | { installed: string; booted: string }
  | { error: 'no-versions' | 'no-image-version' };

/** What `needrestart -b` reports. */
export interface FakeNeedrestartState {
  /** KSTA: 0 unknown, 1 current, 2 ABI-compatible upgrade pending, 3 version upgrade pending. */
  kernel: { running: string; expected?: string; status: 0 | 1 | 2 | 3 };
  /** UCSTA: 0 unknown, 1 current, 2 obsolete. */
  microcode?: 0 | 1 | 2;
  services?: string[];
}

/** What `dnf needs-restarting -r` answers. */
export type FakeDnfState =
  | { reboot: true; packages?: string[] }
  | { reboot: false }
  /** dnf 4 without dnf-plugins-core: exit 1, "No such command" (kured#976's trap). */
  | { missingPlugin: true }
  /** dnf exits 1 and prints nothing on stdout (an unwritable cache, say). */
  | { failure: string };

const digestOf = (version: string): string => {
  let h = 2166136261;
  let out = '';
  for (let round = 0; out.length < 64; round++) {
    for (const c of `${version}/${round}`) h = Math.imul(h ^ c.charCodeAt(0), 16777619) >>> 0;
    out += h.toString(16).padStart(8, '0');
  }
  return `sha256:${out.slice(0, 64)}`;
};

const SCRIPT = (tool: string, state: string) => `#!/bin/sh
# Fake ${tool} for sluice's tests: answers from the response set for these arguments.
d='${state}'
printf '%s\\n' "$*" >> "$d/calls"
key=$(printf '%s' "$*" | tr -c 'A-Za-z0-9' '_')
[ -e "$d/$key" ] || { echo "${tool}: no answer set for: $*" >&2; exit 64; }
r=$(readlink "$d/$key")
[ -f "$r/sleep" ] && sleep "$(cat "$r/sleep")"
[ -f "$r/out" ] && cat "$r/out"
[ -f "$r/err" ] && cat "$r/err" >&2
exit "$(cat "$r/code")"
`;

/** A directory of fake tools. Create with {@link FakeTools.create}; {@link FakeTools.dispose}. */
export class FakeTools {
  #version = 0;

  private constructor(readonly dir: string) {}

  static async create(): Promise<FakeTools> {
    const dir = await mkdtemp(join(tmpdir(), 'sluice-tools-'));
    const tools = new FakeTools(dir);
    await mkdir(join(dir, 'bin'));
    for (const tool of ['bootc', 'systemd-sysupdate', 'needrestart', 'dnf'] as const) {
      await mkdir(join(dir, 'state', tool), { recursive: true });
      await writeFile(join(dir, 'state', tool, 'calls'), '');
      await writeFile(tools.path(tool), SCRIPT(tool, join(dir, 'state', tool)));
      await chmod(tools.path(tool), 0o755);
    }
    return tools;
  }

  /** Where the fake executable is. */
  path(tool: FakeTool): string {
    return join(this.dir, 'bin', tool);
  }

  /** The argument lists the tool was run with, oldest first. */
  async calls(tool: FakeTool): Promise<string[]> {
    const text = await readFile(join(this.dir, 'state', tool, 'calls'), 'utf8');
    return text.split('\n').filter(Boolean);
  }

  /** Sets what `tool args...` answers, replacing the previous answer atomically. */
  async respond(tool: FakeTool, args: string[], response: FakeResponse): Promise<void> {
    const state = join(this.dir, 'state', tool);
    const version = join(state, `v${++this.#version}`);
    await mkdir(version);
    if (response.stdout !== undefined) await writeFile(join(version, 'out'), response.stdout);
    if (response.stderr !== undefined) await writeFile(join(version, 'err'), response.stderr);
    if (response.sleep !== undefined)
      await writeFile(join(version, 'sleep'), String(response.sleep));
    await writeFile(join(version, 'code'), String(response.code));
    const key = args.join(' ').replace(/[^A-Za-z0-9]/g, '_');
    const link = join(state, key);
    await symlink(version, `${link}.tmp`);
    await rename(`${link}.tmp`, link);
  }

  /** `bootc status --json`, as bootc prints it for `state`. */
  async bootc(state: FakeBootcState): Promise<void> {
    if ('error' in state) {
      await this.respond('bootc', ['status', '--json'], {
        stderr: `error: ${state.error}\n`,
        code: state.code ?? 1,
      });
      return;
    }
    const image = 'image' in state && state.image ? state.image : 'quay.io/example/os:stable';
    const entry = (i: FakeBootcImage | null | undefined) =>
      i
        ? {
            image: {
              image: { image, transport: 'registry' },
              version: i.version,
              timestamp: '2025-01-05T10:00:00Z',
              imageDigest: i.digest ?? digestOf(i.version),
              architecture: 'amd64',
            },
            cachedUpdate: null,
            incompatible: false,
            pinned: false,
            softRebootCapable: i.softRebootCapable ?? false,
            downloadOnly: i.downloadOnly ?? false,
            store: 'ostreeContainer',
            ostree: {
              checksum: digestOf(`${i.version}-commit`).slice(7),
              deploySerial: 0,
              stateroot: 'default',
            },
          }
        : null;
    const status =
      'notBootc' in state
        ? { staged: null, booted: null, rollback: null, rollbackQueued: false, type: null }
        : {
            staged: entry(state.staged),
            booted: entry(state.booted),
            rollback: entry(state.rollback),
            rollbackQueued: state.rollbackQueued ?? false,
            type: 'bootcHost',
          };
    const host = {
      apiVersion: 'org.containers.bootc/v1',
      kind: 'BootcHost',
      metadata: { name: 'host' },
      spec: { image: { image, transport: 'registry' }, bootOrder: 'default' },
      status,
    };
    await this.respond('bootc', ['status', '--json'], {
      stdout: `${JSON.stringify(host, null, 2)}\n`,
      code: 0,
    });
  }

  /** `systemd-sysupdate pending`: exit 0 when a newer version is installed, else 1. */
  async sysupdate(state: FakeSysupdateState): Promise<void> {
    const lead = 'Determining installed update sets…\n';
    let response: FakeResponse;
    if ('error' in state) {
      response = {
        stderr:
          lead +
          (state.error === 'no-versions'
            ? "Couldn't find any suitable installed versions.\n"
            : '/etc/os-release lacks IMAGE_VERSION= field.\n'),
        code: 1,
      };
    } else {
      const cmp = state.installed.localeCompare(state.booted, undefined, { numeric: true });
      response =
        cmp > 0
          ? {
              stderr: `${lead}Newest installed version '${state.installed}' is newer than booted version '${state.booted}'. Reboot recommended.\n`,
              code: 0,
            }
          : cmp === 0
            ? {
                stderr: `${lead}Newest installed version '${state.installed}' matches booted version '${state.booted}'.\n`,
                code: 1,
              }
            : {
                stderr: `${lead}Newest installed version '${state.installed}' is older than booted version '${state.booted}'.\n`,
                code: 1,
              };
    }
    await this.respond('systemd-sysupdate', ['pending'], response);
  }

  /** `needrestart -b`: the apt-dater batch format, exit 0. */
  async needrestart(state: FakeNeedrestartState): Promise<void> {
    const lines = [
      'NEEDRESTART-VER: 3.6',
      `NEEDRESTART-KCUR: ${state.kernel.running}`,
      ...(state.kernel.expected ? [`NEEDRESTART-KEXP: ${state.kernel.expected}`] : []),
      `NEEDRESTART-KSTA: ${state.kernel.status}`,
      ...(state.microcode !== undefined ? [`NEEDRESTART-UCSTA: ${state.microcode}`] : []),
      ...(state.services ?? []).map((s) => `NEEDRESTART-SVC: ${s}`),
    ];
    await this.respond('needrestart', ['-b'], { stdout: `${lines.join('\n')}\n`, code: 0 });
  }

  /** `dnf needs-restarting -r`: exit 1 and "Reboot is required" when it is, exit 0 when not. */
  async dnf(state: FakeDnfState): Promise<void> {
    let response: FakeResponse;
    if ('missingPlugin' in state) {
      response = {
        stderr:
          'No such command: needs-restarting. Please use /usr/bin/dnf --help\nIt could be a DNF plugin command, try: "dnf install \'dnf-command(needs-restarting)\'"\n',
        code: 1,
      };
    } else if ('failure' in state) {
      response = { stderr: `${state.failure}\n`, code: 1 };
    } else if (state.reboot) {
      const packages = state.packages ?? ['kernel'];
      response = {
        stdout: `Core libraries or services have been updated since boot-up:\n${packages.map((p) => `  * ${p}\n`).join('')}\nReboot is required to fully utilize these updates.\nMore information: https://access.redhat.com/solutions/27943\n`,
        code: 1,
      };
    } else {
      response = {
        stdout:
          'No core libraries or services have been updated since boot-up.\nReboot should not be necessary.\n',
        code: 0,
      };
    }
    await this.respond('dnf', ['needs-restarting', '-r'], response);
  }

  async dispose(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}
