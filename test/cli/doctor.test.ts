/**
 * sluicectl doctor against a real etcd and a real dbus-daemon with simulated logind and
 * update_engine, and the completion scripts.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  type DbusDaemon,
  type EtcdCluster,
  FakeLogind,
  FakeUpdateEngine,
  freePort,
  startDbusDaemon,
  startEtcd,
} from '@sluice/testkit';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { CliRunner } from './cli.js';

const run = promisify(execFile);

let etcd: EtcdCluster;
let cli: CliRunner;
let bus: DbusDaemon | undefined;
let logind: FakeLogind | undefined;
let engine: FakeUpdateEngine | undefined;

beforeAll(async () => {
  etcd = await startEtcd();
});
afterAll(async () => {
  await etcd?.stop();
});
beforeEach(() => {
  cli = new CliRunner(etcd.endpoints);
});
afterEach(async () => {
  await cli?.cleanup();
  await logind?.stop();
  await engine?.stop();
  await bus?.stop();
  logind = undefined;
  engine = undefined;
  bus = undefined;
});

const DoctorJsonSchema = z.object({
  ok: z.boolean(),
  checks: z.array(
    z.object({
      name: z.string(),
      result: z.enum(['pass', 'fail', 'skip']),
      detail: z.string(),
      hint: z.string().optional(),
    }),
  ),
});

type Doctor = z.infer<typeof DoctorJsonSchema>;

const resultOf = (doctor: Doctor, name: string) =>
  doctor.checks.find((c) => c.name === name)?.result;

describe('sluicectl doctor', () => {
  it('passes every check with etcd, logind and update_engine answering', async () => {
    bus = await startDbusDaemon();
    logind = new FakeLogind(bus.address);
    engine = new FakeUpdateEngine(bus.address);
    await logind.start();
    await engine.start();
    engine.setIdle('4081.2.0');

    const res = await cli.run(['doctor', '--dbus-address', bus.address, '-o', 'json']);
    const doctor = DoctorJsonSchema.parse(JSON.parse(res.stdout));
    expect(res.code, res.stdout).toBe(0);
    expect(doctor.ok).toBe(true);
    for (const name of ['config', 'etcd', 'etcd version', 'permissions', 'clock', 'logind']) {
      expect(resultOf(doctor, name), name).toBe('pass');
    }
    expect(resultOf(doctor, 'update_engine')).toBe('pass');
    expect(doctor.checks.find((c) => c.name === 'update_engine')?.detail).toContain(
      'UPDATE_STATUS_IDLE',
    );
    // No user given, and etcd answered a read without one: its auth is off.
    expect(resultOf(doctor, 'auth')).toBe('pass');
    expect(doctor.checks.find((c) => c.name === 'auth')?.detail).toContain('auth is off');
    // The probe key was removed again.
    expect(await etcd.etcdctl(['get', '--prefix', `${cli.prefix}doctor/`])).toBe('');

    const table = await cli.run(['doctor', '--dbus-address', bus.address]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^pass +etcd version +etcd 3\.\d+/m);
    expect(table.stdout).toMatch(/^pass +logind +/m);
  });

  it('fails the D-Bus checks with hints when the services are missing, exit 1', async () => {
    bus = await startDbusDaemon();
    const res = await cli.run(['doctor', '--dbus-address', bus.address]);
    expect(res.code).toBe(1);
    expect(res.stdout).toMatch(/^pass +etcd +/m);
    expect(res.stdout).toMatch(/^fail +logind +.*not running/m);
    expect(res.stdout).toMatch(/^fail +update_engine +/m);
    expect(res.stdout).toContain('->');
  });

  it('skips D-Bus with --no-dbus; exit 3 when etcd is unreachable', async () => {
    const ok = await cli.run(['doctor', '--no-dbus']);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/^skip +logind +skipped with --no-dbus$/m);

    const port = await freePort();
    const down = await cli.run(['doctor', '--no-dbus', '-o', 'json'], {
      env: { SLUICE_ENDPOINTS: `http://127.0.0.1:${port}` },
    });
    expect(down.code).toBe(3);
    const doctor = DoctorJsonSchema.parse(JSON.parse(down.stdout));
    expect(resultOf(doctor, 'etcd')).toBe('fail');
    expect(resultOf(doctor, 'permissions')).toBe('skip');
  });
});

describe('sluicectl completion', () => {
  it('prints a bash script that completes commands, sub-commands and choices', async () => {
    const res = await cli.run(['completion', 'bash']);
    expect(res.code).toBe(0);
    const dir = await mkdtemp(join(tmpdir(), 'sluicectl-completion-'));
    try {
      const script = join(dir, 'sluicectl.bash');
      await writeFile(script, res.stdout);
      const complete = async (...words: string[]) => {
        const probe = `source ${script}; COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _sluicectl; echo "\${COMPREPLY[*]}"`;
        return (await run('bash', ['-c', probe])).stdout.trim();
      };
      expect(await complete('sluicectl', 'win')).toBe('windows');
      expect(await complete('sluicectl', 'windows', 'ch')).toBe('check');
      expect(await complete('sluicectl', '--group', 'g', 'st')).toBe('status');
      expect(await complete('sluicectl', 'status', '--all')).toBe('--all-groups');
      expect(await complete('sluicectl', '-o', '')).toBe('table json');
      expect(await complete('sluicectl', 'completion', 'z')).toBe('zsh');
      expect(await complete('sluicectl', 'lock', '--t')).toBe('--ttl');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('prints a zsh script (syntax-checked when zsh is installed)', async () => {
    const res = await cli.run(['completion', 'zsh']);
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/^#compdef sluicectl$/m);
    expect(res.stdout).toContain('_sluicectl__windows__check()');
    if (existsSync('/usr/bin/zsh') || existsSync('/bin/zsh')) {
      const dir = await mkdtemp(join(tmpdir(), 'sluicectl-completion-'));
      try {
        await writeFile(join(dir, '_sluicectl'), res.stdout);
        await run('zsh', ['-n', join(dir, '_sluicectl')]);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    }
    expect((await cli.run(['completion', 'fish'])).code).toBe(2);
  });
});

describe('sluicectl with etcd authentication', () => {
  let secured: EtcdCluster | undefined;
  afterEach(async () => {
    await secured?.stop();
    secured = undefined;
  });

  it('authenticates with --user and --password-file, checks permissions, never prints the password', async () => {
    secured = await startEtcd();
    const root = ['--user', 'root:rootpw'];
    await secured.etcdctl(['user', 'add', 'root', '--new-user-password=rootpw']);
    await secured.etcdctl(['auth', 'enable']);
    await secured.etcdctl(['role', 'add', 'reader'], root);
    await secured.etcdctl(
      ['role', 'grant-permission', 'reader', '--prefix=true', 'read', '/'],
      root,
    );
    await secured.etcdctl(['user', 'add', 'viewer', '--new-user-password=viewpw'], root);
    await secured.etcdctl(['user', 'grant-role', 'viewer', 'reader'], root);

    const auth = new CliRunner(secured.endpoints);
    const dir = await mkdtemp(join(tmpdir(), 'sluicectl-auth-'));
    try {
      const rootFile = join(dir, 'root.pw');
      await writeFile(rootFile, 'rootpw\n');
      const good = await auth.run([
        '--user',
        'root',
        '--password-file',
        rootFile,
        'doctor',
        '--no-dbus',
      ]);
      expect(good.code, good.stdout).toBe(0);
      expect(good.stdout).toMatch(/^pass +auth +authenticated as root$/m);
      expect(good.stdout).toMatch(/^pass +permissions +/m);

      // A read-only user: status works, doctor reports the missing write permission.
      const viewer = { SLUICE_USERNAME: 'viewer', SLUICE_PASSWORD: 'viewpw' };
      expect((await auth.run(['status'], { env: viewer })).code).toBe(0);
      const readOnly = await auth.run(['doctor', '--no-dbus'], { env: viewer });
      expect(readOnly.code).toBe(1);
      expect(readOnly.stdout).toMatch(/^fail +permissions +cannot write/m);
      expect(readOnly.stdout).toContain('role grant-permission');
      const denied = await auth.run(['set-max', '2'], { env: viewer });
      expect(denied.code).toBe(3);
      expect(denied.stderr).toContain('etcd denied');

      // A wrong password: exit 3, and the password shows nowhere.
      const wrong = await auth.run(['--user', 'root', '--password', 'n0t-the-pw', 'status']);
      expect(wrong.code).toBe(3);
      const wrongDoctor = await auth.run([
        '--user',
        'root',
        '--password',
        'n0t-the-pw',
        'doctor',
        '--no-dbus',
      ]);
      expect(wrongDoctor.code).toBe(3);
      expect(wrongDoctor.stdout).toMatch(/^fail +auth +/m);
      for (const out of [good, readOnly, denied, wrong, wrongDoctor]) {
        const text = `${out.stdout}${out.stderr}`;
        expect(text).not.toContain('rootpw');
        expect(text).not.toContain('viewpw');
        expect(text).not.toContain('n0t-the-pw');
      }
    } finally {
      await auth.cleanup();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
