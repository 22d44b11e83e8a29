#!/usr/bin/env node
// Makes a fresh clone ready to run: npm dependencies from the lockfile, and the system tools the
// demo and the tests run for real. Installs Debian packages when running as root; otherwise
// says exactly what to install. Does nothing when all is there.
//
//   node scripts/bootstrap.mjs            # for `npm test`: everything below, npm dependencies too
//   node scripts/bootstrap.mjs --demo     # for `npm run demo`: only what the demo runs
//   node scripts/bootstrap.mjs --system   # Debian packages only (.ci/run, before `npm ci`)
//
// What the demo needs (etcd, etcdctl, dbus-daemon, setpriv) is required: without it this exits 1.
// The tools only some tests use (openssl, systemd-analyze, python3, zsh, faketime, prometheus with
// promtool, chromium) are installed as root; otherwise a warning names them, and the tests that
// need them skip (or fail, when CI is set).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

const { values: args } = parseArgs({
  options: { demo: { type: 'boolean' }, system: { type: 'boolean' } },
});

/**
 * Each tool: the command, the Debian package it comes in, and where the code that runs it looks
 * (`paths`: fixed paths, else the PATH). `tests`: only tests use it, the demo does not.
 */
const tools = [
  { cmd: 'etcd', pkg: 'etcd-server' },
  { cmd: 'etcdctl', pkg: 'etcd-client' },
  { cmd: 'dbus-daemon', pkg: 'dbus-daemon', paths: ['/usr/bin/dbus-daemon'] },
  // Ties the lives of test and demo daemons to the process that started them (pdeathsig).
  { cmd: 'setpriv', pkg: 'util-linux', paths: ['/usr/bin/setpriv'] },
  // The TLS tests make their certificates with it.
  { cmd: 'openssl', pkg: 'openssl', tests: true },
  // `systemd-analyze verify` and `security` on the units under deploy/.
  {
    cmd: 'systemd-analyze',
    pkg: 'systemd',
    tests: true,
    paths: ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'],
  },
  // systemd's own EnvironmentFile parser, the oracle for how update.conf is read (same package).
  {
    cmd: 'systemd-environment-d-generator',
    pkg: 'systemd',
    tests: true,
    paths: [
      '/usr/lib/systemd/user-environment-generators/30-systemd-environment-d-generator',
      '/lib/systemd/user-environment-generators/30-systemd-environment-d-generator',
    ],
  },
  // Switches on the kernel's MemoryDenyWriteExecute for node (deploy/ units test).
  { cmd: 'python3', pkg: 'python3', tests: true, paths: ['/usr/bin/python3', '/bin/python3'] },
  // Syntax-checks `sluicectl completion zsh`.
  { cmd: 'zsh', pkg: 'zsh', tests: true, paths: ['/usr/bin/zsh', '/bin/zsh'] },
  // Runs an agent with its clock hours off (libfaketime, LD_PRELOAD), for the clock guard and
  // the chaos soak's clock offsets.
  {
    cmd: 'faketime',
    pkg: 'faketime',
    tests: true,
    paths: [
      '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1',
      '/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1',
    ],
  },
  // promtool checks and unit-tests the alert rules under deploy/monitoring/; a real Prometheus
  // scrapes a test agent and `sluicectl exporter` and evaluates the rules and the dashboard.
  { cmd: 'promtool', pkg: 'prometheus', tests: true, paths: ['/usr/bin/promtool'] },
  { cmd: 'prometheus', pkg: 'prometheus', tests: true, paths: ['/usr/bin/prometheus'] },
  // Headless Chromium loads the fleet timeline of `sluicectl report` (console errors, DOM).
  { cmd: 'chromium', pkg: 'chromium', tests: true, paths: ['/usr/bin/chromium'] },
];

const onPath = (cmd) =>
  spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
const present = (tool) => (tool.paths ? tool.paths.some((p) => existsSync(p)) : onPath(tool.cmd));

const wanted = args.demo ? tools.filter((t) => !t.tests) : tools;
const missing = wanted.filter((t) => !present(t));
if (missing.length > 0) {
  const packages = [...new Set(missing.map((t) => t.pkg))];
  if (process.getuid?.() === 0 && onPath('apt-get')) {
    console.log(`installing ${packages.join(' ')} with apt-get`);
    aptInstall(packages);
  } else {
    const required = missing.filter((t) => !t.tests).map((t) => t.pkg);
    const stream = required.length > 0 ? console.error : console.warn;
    stream(`sluice needs these Debian packages: ${packages.join(' ')}`);
    stream(`install them with: sudo apt-get install -y ${packages.join(' ')}`);
    if (required.length > 0) process.exit(1);
    console.warn('(only some tests use them: they skip without them, and fail when CI is set)');
  }
}

const linked = ['turbo', 'sluiced', 'sluicectl', 'locksmithctl'].every((bin) =>
  existsSync(join(root, 'node_modules', '.bin', bin)),
);
if (!args.system && !linked) {
  console.log('installing npm dependencies (npm ci)');
  execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit' });
}

/**
 * apt-get install, with services kept from starting: Debian's etcd-server would otherwise start
 * a system etcd on port 2379, and systemd's scripts would try to run. A policy-rc.d that answers
 * 101 ("action forbidden") stops that; one that was already there is left alone.
 */
function aptInstall(packages) {
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const policy = '/usr/sbin/policy-rc.d';
  const ours = !existsSync(policy);
  if (ours) writeFileSync(policy, '#!/bin/sh\nexit 101\n', { mode: 0o755 });
  try {
    execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
    execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...packages], {
      stdio: 'inherit',
      env,
    });
  } finally {
    if (ours) rmSync(policy, { force: true });
  }
}
