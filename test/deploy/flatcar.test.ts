/**
 * The Butane config (deploy/flatcar/sluice.bu) and the Containerfile, checked without butane or a
 * container engine: every local file the Butane config names is in the staging root that
 * deploy/install.sh builds, locksmith is off while sluiced stays on etcd-lock, and the inline
 * unit verifies. The Containerfile copies the files the bundle script writes.
 */
import { copyFile, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadAgentConfig } from '@sluice/agent';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import {
  type Bundle,
  buildBundle,
  DEPLOY,
  NO_SYSTEMD_ANALYZE,
  run,
  TempDirs,
  verifyUnits,
} from './helpers.js';

interface ButaneResource {
  local?: string;
  inline?: string;
  source?: string;
  verification?: { hash: string };
}
interface ButaneFile {
  path: string;
  mode?: number;
  overwrite?: boolean;
  contents?: ButaneResource;
  append?: ButaneResource[];
}
interface Butane {
  variant: string;
  version: string;
  storage: { files: ButaneFile[]; links: { path: string; target: string }[] };
  systemd: { units: { name: string; enabled?: boolean; mask?: boolean; contents?: string }[] };
}

const dirs = new TempDirs();
let butane: Butane;
let bundle: Bundle;

beforeAll(async () => {
  butane = parse(await readFile(join(DEPLOY, 'flatcar/sluice.bu'), 'utf8')) as Butane;
  bundle = await buildBundle(await dirs.make('bundle'));
});
afterAll(() => dirs.removeAll());

const file = (path: string): ButaneFile => {
  const found = butane.storage.files.find((f) => f.path === path);
  if (!found) throw new Error(`sluice.bu writes no ${path}`);
  return found;
};

describe('deploy/flatcar/sluice.bu', () => {
  it('is a Flatcar Butane config', () => {
    expect(butane).toMatchObject({ variant: 'flatcar', version: '1.0.0' });
  });

  it('names only local files that install.sh stages (plus the config and secrets you add)', async () => {
    const root = await dirs.make('staging');
    const installed = await run('/bin/sh', [
      join(DEPLOY, 'install.sh'),
      '--root',
      root,
      '--bundle',
      bundle.dir,
    ]);
    expect(installed.code, installed.stderr).toBe(0);
    // What the walk-through at the top of sluice.bu asks the operator to add.
    await copyFile(
      join(root, 'etc/sluice/sluiced.yaml.example'),
      join(root, 'etc/sluice/sluiced.yaml'),
    );
    await writeFile(join(root, 'etc/sluice/etcd-ca.pem'), '');
    await writeFile(join(root, 'etc/sluice/etcd-password'), '');

    const locals = butane.storage.files.flatMap((f) =>
      f.contents?.local ? [f.contents.local] : [],
    );
    expect(locals.length).toBeGreaterThan(3);
    for (const local of locals) {
      expect(local, 'relative to --files-dir').not.toMatch(/^\/|\.\./);
      await expect(readFile(join(root, local)), local).resolves.toBeDefined();
    }
    // The unit it installs is the one in deploy/systemd.
    expect(file('/etc/systemd/system/sluiced.service').contents?.local).toBe(
      'etc/systemd/system/sluiced.service',
    );
  });

  it('masks locksmithd, enables sluiced, and appends REBOOT_STRATEGY=off to update.conf', () => {
    const units = Object.fromEntries(butane.systemd.units.map((u) => [u.name, u]));
    expect(units['locksmithd.service']).toMatchObject({ mask: true });
    expect(units['sluiced.service']).toMatchObject({ enabled: true });
    const updateConf = file('/etc/flatcar/update.conf');
    // Appended: update_engine's GROUP= and SERVER= in the same file stay.
    expect(updateConf.overwrite ?? false).toBe(false);
    expect(updateConf.contents).toBeUndefined();
    expect(updateConf.append).toEqual([{ inline: '\nREBOOT_STRATEGY=off\n' }]);
  });

  it("keeps update.conf's other settings, and the appended strategy wins", async () => {
    const dir = await dirs.make('update-conf');
    const updateConf = join(dir, 'update.conf');
    // What Ignition does with `append`: the existing file (here without a final newline) plus
    // the appended text.
    const existing =
      'GROUP=beta\nSERVER=https://update.example.com/v1/update/\nREBOOT_STRATEGY=reboot';
    await writeFile(updateConf, existing + file('/etc/flatcar/update.conf').append![0]!.inline!);
    const lines = (await readFile(updateConf, 'utf8')).split('\n');
    expect(lines).toEqual(expect.arrayContaining(['GROUP=beta', 'REBOOT_STRATEGY=reboot']));
    expect(lines.filter((l) => l.startsWith('REBOOT_STRATEGY=')).at(-1)).toBe(
      'REBOOT_STRATEGY=off',
    );
    // sluiced reads update.conf as its lowest layer: with nothing above it, off.
    await writeFile(join(dir, 'machine-id'), 'flatcar-node\n');
    await writeFile(join(dir, 'bare.yaml'), '');
    const config = await loadAgentConfig({
      configFile: join(dir, 'bare.yaml'),
      updateConfFiles: [updateConf],
      machineIdFile: join(dir, 'machine-id'),
      env: {},
    });
    expect(config.strategy).toBe('off');
  });

  it("keeps sluiced on etcd-lock although update.conf says off (the example's strategy wins)", async () => {
    const dir = await dirs.make('config');
    const updateConf = join(dir, 'update.conf');
    await writeFile(updateConf, file('/etc/flatcar/update.conf').append![0]!.inline!);
    await writeFile(join(dir, 'machine-id'), 'flatcar-node\n');
    const config = await loadAgentConfig({
      configFile: join(DEPLOY, 'config/sluiced.yaml'),
      updateConfFiles: [updateConf],
      machineIdFile: join(dir, 'machine-id'),
      env: {},
    });
    expect(config.strategy).toBe('etcd-lock');
    expect(config.origins.strategy).toContain('config/sluiced.yaml');
    // Without the example's line, update.conf would have turned sluiced off too.
    const bare = join(dir, 'bare.yaml');
    await writeFile(bare, '');
    const off = await loadAgentConfig({
      configFile: bare,
      updateConfFiles: [updateConf],
      machineIdFile: join(dir, 'machine-id'),
      env: {},
    });
    expect(off.strategy).toBe('off');
  });

  it('links the program names to the .mjs files and node to the unpacked runtime', () => {
    expect(butane.storage.links).toEqual(
      expect.arrayContaining([
        { path: '/opt/sluice/bin/sluiced', target: '/opt/sluice/lib/sluiced.mjs' },
        { path: '/opt/sluice/bin/sluicectl', target: '/opt/sluice/lib/sluicectl.mjs' },
        { path: '/opt/sluice/bin/locksmithctl', target: '/opt/sluice/lib/locksmithctl.mjs' },
        { path: '/opt/sluice/bin/node', target: '/opt/sluice/node/bin/node' },
      ]),
    );
  });

  it('fetches a node runtime pinned by its real SHA-256 (Ignition checks it)', () => {
    const node = file('/opt/sluice/node.tar.gz').contents!;
    const release =
      /^https:\/\/nodejs\.org\/dist\/v(20\.\d+\.\d+)\/node-v(20\.\d+\.\d+)-linux-x64\.tar\.gz$/.exec(
        node.source ?? '',
      );
    expect(release?.[1], node.source).toBe(release?.[2]);
    // A full hex digest, which butane and Ignition accept; not a placeholder.
    expect(node.verification?.hash).toMatch(/^sha256-[0-9a-f]{64}$/);
  });

  it('pin-node.sh moves the runtime to another release or architecture from SHASUMS256.txt', async () => {
    const dir = await dirs.make('pin');
    const config = join(dir, 'sluice.bu');
    const original = await readFile(join(DEPLOY, 'flatcar/sluice.bu'), 'utf8');
    await writeFile(config, original);
    const sums = join(dir, 'SHASUMS256.txt');
    const x64 = 'a'.repeat(64);
    const arm64 = 'b'.repeat(64);
    await writeFile(
      sums,
      `${x64}  node-v20.99.1-linux-x64.tar.gz\n${arm64}  node-v20.99.1-linux-arm64.tar.gz\n` +
        `${'c'.repeat(64)}  node-v20.99.1-linux-arm64.tar.xz\n`,
    );
    const pin = (args: string[]) =>
      run('/bin/sh', [
        join(DEPLOY, 'flatcar/pin-node.sh'),
        '--config',
        config,
        '--shasums',
        sums,
        ...args,
      ]);

    const moved = await pin(['--version', '20.99.1', '--arch', 'arm64']);
    expect(moved.code, moved.stderr).toBe(0);
    expect(moved.stdout).toBe(`pinned node-v20.99.1-linux-arm64.tar.gz: sha256-${arm64}\n`);
    const pinned = parse(await readFile(config, 'utf8')) as Butane;
    const node = pinned.storage.files.find((f) => f.path === '/opt/sluice/node.tar.gz')!;
    expect(node.contents).toEqual({
      source: 'https://nodejs.org/dist/v20.99.1/node-v20.99.1-linux-arm64.tar.gz',
      verification: { hash: `sha256-${arm64}` },
    });
    // Nothing else changed.
    const changed = (await readFile(config, 'utf8'))
      .split('\n')
      .filter((line, i) => line !== original.split('\n')[i]);
    expect(changed).toHaveLength(2);

    // The release it names now is the default; a release without the file is refused.
    expect((await pin(['--arch', 'x64'])).stdout).toContain(`sha256-${x64}`);
    const missing = await pin(['--version', '20.1.0']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('no SHA-256 for node-v20.1.0-linux-x64.tar.gz');
  });

  it.skipIf(NO_SYSTEMD_ANALYZE)('its inline sluice-node.service verifies', async () => {
    const unit = butane.systemd.units.find((u) => u.name === 'sluice-node.service');
    expect(unit?.enabled).toBe(true);
    const dir = await dirs.make('node-unit');
    const path = join(dir, 'sluice-node.service');
    await writeFile(path, unit!.contents!);
    const result = await verifyUnits([path], dirs);
    expect(result.code, result.stderr).toBe(0);
    expect(`${result.stdout}${result.stderr}`).toBe('');
  });
});

describe('deploy/container/Containerfile', () => {
  it('copies exactly the files the bundle script writes, and runs sluiced', async () => {
    const text = await readFile(join(DEPLOY, 'container/Containerfile'), 'utf8');
    const copy = /^COPY (.+) (\S+)$/m.exec(text);
    expect(copy?.[2]).toBe('/opt/sluice/lib/');
    expect(copy?.[1]?.split(' ').sort()).toEqual((await readdir(bundle.dir)).sort());
    expect(text).toMatch(/^FROM docker\.io\/library\/node:20-/m);
    expect(text).toMatch(/^ENTRYPOINT \["\/opt\/sluice\/bin\/sluiced"\]$/m);
    expect(text).toMatch(/^USER root$/m);
  });
});
