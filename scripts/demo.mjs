#!/usr/bin/env node
// `npm run demo`: from a fresh clone to a running demo fleet. Installs what is missing (npm
// dependencies from the lockfile; etcd, etcdctl, dbus-daemon and setpriv from Debian when root),
// builds the packages and the agent bundle (the demo's nodes run dist-bundle/sluiced.mjs, as
// real nodes do), then runs the fleet simulator's demo
// with any arguments given after `--`, e.g. `npm run demo -- --nodes 12 --max 3`.
// `--no-setup` skips the first two steps, for a checkout that is installed and built already.
//
// The simulator runs in one node process that loads tsx as a hook (`node --import tsx`), not
// under the tsx command: that one relays signals to its child and may SIGKILL it when a second
// signal comes, which would cut the simulator's cleanup short. Ctrl-C reaches the simulator,
// which stops every process it started and exits 130; this script waits for it and exits with
// its status. SIGINT or SIGTERM sent to this script alone is passed on.
import { spawn, spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = (name) => join(root, 'node_modules', '.bin', name);

function step(what, command, args) {
  const res = spawnSync(command, args, { cwd: root, stdio: 'inherit' });
  if (res.status !== 0) {
    console.error(`demo: ${what} failed (${res.error?.message ?? `exit ${res.status}`})`);
    process.exit(res.status || 1);
  }
}

const args = process.argv.slice(2);
const setup = !args.includes('--no-setup');
if (setup) {
  step('bootstrap', process.execPath, [join(root, 'scripts', 'bootstrap.mjs'), '--demo']);
  console.log('building (turbo run build, then the agent bundle)...');
  step('the build', bin('turbo'), ['run', 'build', '--output-logs=errors-only']);
  step('the bundle', process.execPath, [join(root, 'scripts', 'bundle.mjs')]);
}

const child = spawn(
  process.execPath,
  [
    '--import',
    'tsx',
    '--conditions=source',
    join(root, 'packages', 'sim', 'src', 'demo.ts'),
    ...args.filter((a) => a !== '--no-setup'),
  ],
  { cwd: root, stdio: 'inherit' },
);
for (const signal of ['SIGINT', 'SIGTERM']) {
  // A terminal's Ctrl-C reaches the whole process group, the simulator included; passing it on
  // again is harmless (the simulator ignores a second signal while it stops), and it covers a
  // signal sent to this script alone.
  process.on(signal, () => child.kill(signal));
}
child.on('exit', (code, signal) => {
  process.exit(code ?? (signal === 'SIGINT' ? 130 : 1));
});
