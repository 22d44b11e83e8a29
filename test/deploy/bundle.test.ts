/**
 * The dependency-free bundle (scripts/bundle.mjs) and deploy/install.sh: each program, copied
 * alone into an empty directory, runs with plain node and no node_modules, reaches a real etcd,
 * and install.sh lays out a staging root whose units systemd-analyze accepts.
 */
import { lstat, readFile, readlink, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { type EtcdCluster, startEtcd } from '@sluice/testkit';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { killAll, runToEnd } from '../process.js';
import {
  type Bundle,
  buildBundle,
  DEPLOY,
  isolate,
  NO_SYSTEMD_ANALYZE,
  ROOT,
  run,
  SYSTEMD_UNITS,
  TempDirs,
  verifyUnits,
} from './helpers.js';

const dirs = new TempDirs();
let bundle: Bundle;
let etcd: EtcdCluster | undefined;

beforeAll(async () => {
  bundle = await buildBundle(await dirs.make('bundle'));
});
afterEach(() => killAll());
afterAll(async () => {
  await etcd?.stop();
  await dirs.removeAll();
});

describe('the bundle, copied alone into an empty directory', () => {
  it.each(['sluiced', 'sluicectl', 'locksmithctl', 'sluice-fleetlock'] as const)(
    '%s answers --version',
    async (program) => {
      const alone = await isolate(bundle[program], dirs);
      const { code, stdout, stderr } = await runToEnd(alone, ['--version']);
      expect(code, stderr).toBe(0);
      const pkg =
        program === 'sluiced' ? 'agent' : program === 'sluice-fleetlock' ? 'fleetlock' : 'cli';
      const { version } = JSON.parse(
        await readFile(join(ROOT, 'packages', pkg, 'package.json'), 'utf8'),
      );
      expect(stdout.trim()).toBe(version);
    },
  );

  it('each file starts with a shebang and is executable', async () => {
    for (const file of [
      bundle.sluiced,
      bundle.sluicectl,
      bundle.locksmithctl,
      bundle['sluice-fleetlock'],
    ]) {
      expect((await readFile(file, 'utf8')).split('\n', 1)[0]).toBe('#!/usr/bin/env node');
      expect((await stat(file)).mode & 0o111).toBe(0o111);
    }
  });

  it('sluicectl checks a window without etcd', async () => {
    const alone = await isolate(bundle.sluicectl, dirs);
    const args = ['windows', 'check', 'Mon-Fri 02:00-04:00 UTC'];
    const { code, stdout, stderr } = await runToEnd(alone, [
      ...args,
      '--at',
      '2026-11-25T03:00:00Z',
      '-o',
      'json',
    ]);
    expect(code, stderr).toBe(0);
    expect(JSON.parse(stdout)).toMatchObject({ open: true, nextEnd: '2026-11-25T04:00:00.000Z' });
  });

  it('sluicectl reads and changes a group in a real etcd (etcd3 protos are inside)', async () => {
    etcd = await startEtcd();
    const alone = await isolate(bundle.sluicectl, dirs);
    const flags = ['--endpoints', etcd.endpoint, '--prefix', '/bundle-test/'];
    const set = await runToEnd(alone, [...flags, 'set-max', '3']);
    expect(set.code, set.stderr).toBe(0);
    const status = await runToEnd(alone, [...flags, 'status', '-o', 'json']);
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ group: 'default', max: 3, available: 3 });
    expect(
      await etcd.etcdctl(['get', '/bundle-test/groups/default/max', '--print-value-only']),
    ).toBe('3\n');
  });

  it('sluicectl says etcd is unreachable with exit 3', async () => {
    const alone = await isolate(bundle.sluicectl, dirs);
    const { code, stderr } = await runToEnd(alone, ['--endpoints', 'http://127.0.0.1:9', 'status']);
    expect(code).toBe(3);
    expect(stderr).toMatch(/sluicectl: .*127\.0\.0\.1:9/);
  });
});

describe('deploy/install.sh', () => {
  async function install(args: string[]) {
    const result = await run('/bin/sh', [join(DEPLOY, 'install.sh'), ...args]);
    expect(result.code, result.stderr).toBe(0);
    return result;
  }

  it('places the programs, units and example configuration under --root', async () => {
    const root = await dirs.make('root');
    const { stdout } = await install(['--root', root, '--bundle', bundle.dir]);
    expect(stdout).toContain(`installed sluice into ${root}`);

    for (const program of ['sluiced', 'sluicectl', 'locksmithctl', 'sluice-fleetlock']) {
      const link = join(root, 'opt/sluice/bin', program);
      expect((await lstat(link)).isSymbolicLink()).toBe(true);
      expect(await readlink(link)).toBe(`../lib/${program}.mjs`);
      expect((await stat(join(root, 'opt/sluice/lib', `${program}.mjs`))).mode & 0o777).toBe(0o755);
      // Through the link and its shebang, as systemd starts it: node sees the .mjs name.
      const { code, stderr } = await run(link, ['--version']);
      expect(code, stderr).toBe(0);
    }
    for (const unit of SYSTEMD_UNITS) {
      const installed = await readFile(join(root, 'etc/systemd/system', unit), 'utf8');
      expect(installed).toBe(await readFile(join(DEPLOY, 'systemd', unit), 'utf8'));
    }
    expect((await stat(join(root, 'etc/sluice'))).mode & 0o777).toBe(0o700);
    for (const example of ['sluiced.yaml', 'sluiced.env', 'sluice-fleetlock.env']) {
      const file = join(root, 'etc/sluice', `${example}.example`);
      expect(await readFile(file, 'utf8')).toBe(
        await readFile(join(DEPLOY, 'config', example), 'utf8'),
      );
      expect((await stat(file)).mode & 0o777).toBe(0o600);
    }
    expect(await readFile(join(root, 'opt/sluice/README.md'), 'utf8')).toContain('# Deploying');
  });

  it('writes another --prefix into the units, runs again in place, and installs --node', async () => {
    const root = await dirs.make('root');
    const unitFile = join(root, 'etc/systemd/system/sluiced.service');
    await install(['--root', root, '--bundle', bundle.dir, '--prefix', '/srv/sluice']);
    await install([`--root=${root}`, `--bundle=${bundle.dir}`, '--prefix=/srv/sluice']);
    const unit = await readFile(unitFile, 'utf8');
    expect(unit).toContain('ExecStart=/srv/sluice/bin/sluiced\n');
    expect(unit).toContain('Environment=PATH=/srv/sluice/bin:/usr/local/sbin:');
    const settings = unit.split('\n').filter((line) => !line.startsWith('#'));
    expect(settings.filter((line) => line.includes('/opt/sluice'))).toEqual([]);

    // --no-units leaves the units alone; --node adds a runtime next to the programs.
    await install([
      '--root',
      root,
      '--bundle',
      bundle.dir,
      '--no-units',
      '--node',
      process.execPath,
    ]);
    expect(await readFile(unitFile, 'utf8')).toBe(unit);
    expect((await stat(join(root, 'opt/sluice/bin/node'))).mode & 0o111).toBe(0o111);
  });

  it('refuses a missing bundle and a relative prefix, with exit 2', async () => {
    const root = await dirs.make('root');
    const missing = await run('/bin/sh', [
      join(DEPLOY, 'install.sh'),
      '--root',
      root,
      '--bundle',
      root,
    ]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('npm run bundle');
    const relative = await run('/bin/sh', [join(DEPLOY, 'install.sh'), '--prefix', 'opt/x']);
    expect(relative.code).toBe(2);
    expect(relative.stderr).toContain('absolute');
  });

  it.skipIf(NO_SYSTEMD_ANALYZE)(
    'the installed units verify against the installed programs',
    async () => {
      const root = await dirs.make('root');
      await install(['--root', root, '--bundle', bundle.dir, '--prefix', '/opt/other']);
      const units = SYSTEMD_UNITS.map((u) => join(root, 'etc/systemd/system', u));
      const result = await verifyUnits(units, dirs, {
        prefix: '/opt/other/',
        target: join(root, 'opt/other'),
      });
      expect(result.code, result.stderr).toBe(0);
      expect(`${result.stdout}${result.stderr}`).toBe('');
    },
  );
});
