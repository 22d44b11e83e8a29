import { FakeTools } from '@sluice/testkit';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { UpdateSignal, UpdateSource } from './sources.js';
import {
  dnfSource,
  interpretDnf,
  interpretNeedrestart,
  interpretSysupdate,
  needrestartSource,
  sysupdateSource,
} from './sources-packages.js';
import { type ProgramRun, ProgramSource, runProgram } from './sources-program.js';

const run = (patch: Partial<ProgramRun>): ProgramRun => ({
  command: 'tool',
  code: 0,
  signal: null,
  stopped: null,
  stdout: '',
  stderr: '',
  ...patch,
});

describe('interpretSysupdate', () => {
  it('exit 0 is needed, with the installed version', () => {
    expect(
      interpretSysupdate(
        run({
          code: 0,
          stderr:
            "Newest installed version '258.1' is newer than booted version '257.4'. Reboot recommended.",
        }),
      ),
    ).toEqual({
      needed: true,
      source: 'sysupdate',
      detail: 'version 258.1 is installed, 257.4 is booted',
      version: '258.1',
    });
  });

  it('exit 1 is "not needed" only with its message; an error exit 1 is unknown', () => {
    expect(
      interpretSysupdate(
        run({
          code: 1,
          stderr: "Newest installed version '257.4' matches booted version '257.4'.",
        }),
      ),
    ).toMatchObject({ needed: false, detail: 'booted 257.4 is the newest installed version' });
    const error = interpretSysupdate(
      run({ code: 1, stderr: '/etc/os-release lacks IMAGE_VERSION= field.' }),
    );
    expect(error).toMatchObject({ needed: false, unknown: true });
    expect(error.detail).toContain('lacks IMAGE_VERSION');
  });
});

describe('interpretNeedrestart', () => {
  const batch = (...lines: string[]) =>
    run({ stdout: `NEEDRESTART-VER: 3.6\n${lines.join('\n')}\n` });

  it('KSTA 3 is a newer kernel; KSTA 2 an ABI-compatible one; both need a reboot', () => {
    expect(
      interpretNeedrestart(
        batch(
          'NEEDRESTART-KCUR: 6.1.0-17-amd64',
          'NEEDRESTART-KEXP: 6.1.0-18-amd64',
          'NEEDRESTART-KSTA: 3',
        ),
      ),
    ).toEqual({
      needed: true,
      source: 'needrestart',
      detail: 'kernel 6.1.0-17-amd64 is running, 6.1.0-18-amd64 is installed',
      version: '6.1.0-18-amd64',
    });
    expect(
      interpretNeedrestart(batch('NEEDRESTART-KCUR: 6.1.0-17-amd64', 'NEEDRESTART-KSTA: 2')),
    ).toMatchObject({ needed: true });
  });

  it('KSTA 1 with services to restart is no reboot; obsolete microcode is', () => {
    expect(
      interpretNeedrestart(
        batch(
          'NEEDRESTART-KCUR: 6.1.0-18-amd64',
          'NEEDRESTART-KSTA: 1',
          'NEEDRESTART-SVC: ssh.service',
        ),
      ),
    ).toEqual({
      needed: false,
      source: 'needrestart',
      detail: 'kernel 6.1.0-18-amd64 is current; 1 service to restart, no reboot needed',
    });
    expect(
      interpretNeedrestart(
        batch(
          'NEEDRESTART-KSTA: 1',
          'NEEDRESTART-UCSTA: 2',
          'NEEDRESTART-UCCUR: 0x71a',
          'NEEDRESTART-UCEXP: 0x71b',
        ),
      ),
    ).toMatchObject({
      needed: true,
      detail: 'CPU microcode 0x71a is obsolete, 0x71b is installed',
    });
  });

  it('KSTA 0, or output without a kernel status, is unknown', () => {
    expect(interpretNeedrestart(batch('NEEDRESTART-KSTA: 0'))).toMatchObject({ unknown: true });
    expect(interpretNeedrestart(run({ stdout: 'Scanning processes...\n' }))).toMatchObject({
      needed: false,
      unknown: true,
    });
  });
});

describe('interpretDnf', () => {
  it('exit 1 with "Reboot is required" is needed, naming the packages', () => {
    expect(
      interpretDnf(
        run({
          code: 1,
          stdout:
            'Core libraries or services have been updated since boot-up:\n  * kernel\n  * glibc\n\nReboot is required to fully utilize these updates.\n',
        }),
      ),
    ).toEqual({ needed: true, source: 'dnf', detail: 'updated since boot: kernel, glibc' });
  });

  it('exit 0 with "Reboot should not be necessary" is not needed', () => {
    expect(
      interpretDnf(
        run({ code: 0, stdout: 'No core libraries...\nReboot should not be necessary.\n' }),
      ),
    ).toMatchObject({ needed: false });
    expect(interpretDnf(run({ code: 0, stdout: '' }))).toMatchObject({ unknown: true });
  });

  it('exit 1 from a missing needs-restarting command is unknown, never a reboot (kured#976)', () => {
    const missing = interpretDnf(
      run({ code: 1, stderr: 'No such command: needs-restarting. Please use /usr/bin/dnf --help' }),
    );
    expect(missing).toMatchObject({ needed: false, unknown: true });
    expect(missing.detail).toContain('dnf-plugins-core');
  });
});

describe('presets against fake executables', () => {
  let tools: FakeTools;
  const open: UpdateSource[] = [];
  beforeAll(async () => {
    tools = await FakeTools.create();
  });
  afterAll(async () => {
    await tools?.dispose();
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((s) => s.close()));
  });

  async function follow(source: UpdateSource): Promise<UpdateSignal[]> {
    open.push(source);
    const seen: UpdateSignal[] = [];
    await source.start((s) => seen.push(s));
    await expect.poll(() => seen.length, { timeout: 5000, interval: 20 }).toBeGreaterThan(0);
    return seen;
  }
  const settle = (source: UpdateSource, test: (s: UpdateSignal) => boolean) =>
    expect.poll(() => test(source.current()), { timeout: 5000, interval: 20 }).toBe(true);

  it('systemd-sysupdate: needed, then not needed once booted, unknown on an error', async () => {
    await tools.sysupdate({ installed: '258.1', booted: '257.4' });
    const source = sysupdateSource({
      path: tools.path('systemd-sysupdate'),
      intervalMs: 50,
      timeoutMs: 5000,
    });
    const seen = await follow(source);
    expect(seen[0]).toMatchObject({ needed: true, version: '258.1' });
    await tools.sysupdate({ installed: '258.1', booted: '258.1' });
    await settle(source, (s) => !s.needed && !s.unknown);
    await tools.sysupdate({ error: 'no-versions' });
    await settle(source, (s) => s.unknown === true);
    expect(source.current().needed).toBe(false);
    expect(await tools.calls('systemd-sysupdate')).toContain('pending');
  });

  it('needrestart: a newer kernel is needed; current is not; garbage is unknown', async () => {
    await tools.needrestart({
      kernel: { running: '6.1.0-17-amd64', expected: '6.1.0-18-amd64', status: 3 },
      services: ['ssh.service'],
    });
    const source = needrestartSource({
      path: tools.path('needrestart'),
      intervalMs: 50,
      timeoutMs: 5000,
    });
    const seen = await follow(source);
    expect(seen[0], seen[0]?.detail).toMatchObject({ needed: true, version: '6.1.0-18-amd64' });
    await tools.needrestart({ kernel: { running: '6.1.0-18-amd64', status: 1 } });
    await settle(source, (s) => !s.needed && !s.unknown);
    await tools.respond('needrestart', ['-b'], { stdout: 'Scanning...\n', code: 0 });
    await settle(source, (s) => s.unknown === true);
  });

  it('dnf: needed, not needed, and a missing plugin (exit 1) is unknown', async () => {
    await tools.dnf({ reboot: true, packages: ['kernel-core', 'systemd'] });
    const source = dnfSource({ path: tools.path('dnf'), intervalMs: 50, timeoutMs: 5000 });
    const seen = await follow(source);
    expect(seen[0]).toMatchObject({
      needed: true,
      detail: 'updated since boot: kernel-core, systemd',
    });
    await tools.dnf({ reboot: false });
    await settle(source, (s) => !s.needed && !s.unknown);
    await tools.dnf({ missingPlugin: true });
    await settle(source, (s) => s.unknown === true);
    expect(source.current().needed).toBe(false);
    await tools.dnf({ failure: 'filesystem error: cannot create directories' });
    await settle(source, (s) => s.unknown === true && s.detail.includes('filesystem error'));
  });

  it('a tool that is not installed, or hangs, is unknown', async () => {
    const missing = dnfSource({ path: `${tools.dir}/no-such-dnf`, intervalMs: 60_000 });
    const seen = await follow(missing);
    expect(seen[0]).toMatchObject({ needed: false, unknown: true });
    expect(seen[0]?.detail).toContain('is not installed');

    await tools.respond('dnf', ['needs-restarting', '-r'], {
      code: 1,
      sleep: 5,
      stdout: 'Reboot is required\n',
    });
    const slow = dnfSource({ path: tools.path('dnf'), intervalMs: 60_000, timeoutMs: 200 });
    const slowSeen = await follow(slow);
    expect(slowSeen[0]).toMatchObject({ needed: false, unknown: true });
    expect(slowSeen[0]?.detail).toContain('timed out');
  });

  it('runProgram uses no shell: an argument is never interpreted', async () => {
    const result = await runProgram('/bin/echo', ['$(touch /tmp/sluice-never)', ';', 'x'], 5000);
    expect(result.stdout.trim()).toBe('$(touch /tmp/sluice-never) ; x');
    const source = new ProgramSource({
      name: 'probe',
      file: '/bin/sh',
      args: ['-c', 'echo $LC_ALL'],
      intervalMs: 60_000,
      interpret: (r) => ({ needed: false, source: 'probe', detail: r.stdout.trim() }),
    });
    const seen = await follow(source);
    expect(seen[0]?.detail).toBe('C');
  });
});
