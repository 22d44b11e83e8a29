#!/usr/bin/env node
// Makes a fresh clone ready to run: npm dependencies from the lockfile, and the system tools the
// demo and the tests run for real (etcd, etcdctl, dbus-daemon, setpriv). Installs Debian packages
// when running as root; otherwise says exactly what to install. Does nothing when all is there.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

const tools = [
  ['etcd', 'etcd-server'],
  ['etcdctl', 'etcd-client'],
  ['dbus-daemon', 'dbus-daemon'],
  ['setpriv', 'util-linux'],
];

const onPath = (cmd) =>
  spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;

const missing = tools.filter(([cmd]) => !onPath(cmd)).map(([, pkg]) => pkg);
if (missing.length > 0) {
  const isRoot = process.getuid?.() === 0;
  if (!isRoot || !onPath('apt-get')) {
    console.error(`sluice needs these Debian packages: ${missing.join(' ')}`);
    console.error(`install them with: sudo apt-get install -y ${missing.join(' ')}`);
    process.exit(1);
  }
  console.log(`installing ${missing.join(' ')} with apt-get`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], {
    stdio: 'inherit',
    env,
  });
}

if (!existsSync(join(root, 'node_modules', '.bin', 'turbo'))) {
  console.log('installing npm dependencies (npm ci)');
  execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit' });
}
