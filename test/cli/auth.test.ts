/**
 * sluicectl against an etcd with authentication enabled: doctor without a user, wrong passwords
 * (exit 3, never printed), and locksmithctl's names for the user and password.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type EtcdCluster, startEtcd } from '@sluice/testkit';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { CliRunner, StatusJsonSchema } from './cli.js';

let etcd: EtcdCluster;
let cli: CliRunner;
let dir: string;

const ROOT_PW = 'r00t-pw-4-tests';

beforeAll(async () => {
  etcd = await startEtcd();
  await etcd.etcdctl(['user', 'add', 'root', `--new-user-password=${ROOT_PW}`]);
  await etcd.etcdctl(['auth', 'enable']);
  dir = await mkdtemp(join(tmpdir(), 'sluicectl-auth-'));
});
afterAll(async () => {
  await etcd?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});
beforeEach(() => {
  cli = new CliRunner(etcd.endpoints);
});
afterEach(async () => {
  await cli?.cleanup();
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

describe('sluicectl with etcd auth enabled', () => {
  it('doctor without a user fails auth with a hint to pass one, and exits 3', async () => {
    const res = await cli.run(['doctor', '--no-dbus', '-o', 'json']);
    expect(res.code, res.stdout).toBe(3);
    const doctor = DoctorJsonSchema.parse(JSON.parse(res.stdout));
    const check = (name: string) => doctor.checks.find((c) => c.name === name);
    expect(doctor.ok).toBe(false);
    expect(check('etcd')?.result).toBe('pass');
    expect(check('auth')).toMatchObject({ result: 'fail' });
    expect(check('auth')?.detail).toContain('authentication');
    expect(check('auth')?.hint).toContain('--user');
    expect(check('auth')?.hint).toContain('--password-file');
    // Permissions cannot be judged without a user: skipped, not failed with a grant hint.
    expect(check('permissions')?.result).toBe('skip');

    const table = await cli.run(['doctor', '--no-dbus']);
    expect(table.code).toBe(3);
    expect(table.stdout).toMatch(/^fail +auth +/m);
    expect(table.stdout).not.toMatch(/fine if etcd auth is off/);
    expect(table.stdout).not.toContain('role grant-permission');
  });

  it('never prints the password, even when etcd refuses it (exit 3)', async () => {
    const wrong = 's3cr3t-wr0ng-pw';
    const file = join(dir, 'wrong.pw');
    await writeFile(file, `${wrong}\n`);
    const runs = [
      await cli.run(['--user', 'root', '--password', wrong, 'doctor', '--no-dbus']),
      await cli.run(['--user', 'root', '--password', wrong, 'status']),
      await cli.run(['--user', 'root', '--password-file', file, 'status', '-o', 'json']),
      await cli.run(['status'], { env: { SLUICE_USERNAME: 'root', SLUICE_PASSWORD: wrong } }),
      await cli.run(['-etcd-username', 'root', `-etcd-password=${wrong}`, 'set-max', '2']),
    ];
    for (const res of runs) {
      expect(res.code, res.stdout + res.stderr).toBe(3);
      expect(`${res.stdout}${res.stderr}`).not.toContain(wrong);
    }
    expect(runs[0]!.stdout).toMatch(/^fail +auth +/m);
    expect(runs[1]!.stderr).toContain('etcd denied');
  });

  it("authenticates with locksmithctl's environment and single-dash flags", async () => {
    await etcd.etcdctl(['put', cli.keys.max, '6'], ['--user', `root:${ROOT_PW}`]);
    const viaEnv = await cli.json(['status'], {
      env: { LOCKSMITHCTL_ETCD_USERNAME: 'root', LOCKSMITHCTL_ETCD_PASSWORD: ROOT_PW },
    });
    expect(StatusJsonSchema.parse(viaEnv).max).toBe(6);
    for (const form of [
      ['-etcd-username', 'root', '-etcd-password', ROOT_PW],
      ['-etcd-username=root', `-etcd-password=${ROOT_PW}`],
      ['--etcd-username', 'root', '--etcd-password', ROOT_PW],
    ]) {
      const res = await cli.run([...form, 'status', '-o', 'json']);
      expect(res.code, form[0]).toBe(0);
      expect(StatusJsonSchema.parse(JSON.parse(res.stdout)).max).toBe(6);
    }
    // A flag wins over the locksmithctl variable.
    const flagWins = await cli.run(['--password', 'wrong-pw', 'status'], {
      env: { LOCKSMITHCTL_ETCD_USERNAME: 'root', LOCKSMITHCTL_ETCD_PASSWORD: ROOT_PW },
    });
    expect(flagWins.code).toBe(3);
    const noUser = await cli.run(['status']);
    expect(noUser.code).toBe(3);
  });
});
