#!/usr/bin/env node
// `npm run demo`: from a fresh clone to a running demo fleet. Installs what is missing (npm
// dependencies from the lockfile; etcd and dbus-daemon from Debian when root), builds the
// packages (the demo runs the built sluiced), then runs the fleet simulator's demo with any
// arguments given after `--`, e.g. `npm run demo -- --nodes 12 --max 3`.
//
// Ctrl-C reaches the simulator, which stops every process it started; this script waits for it
// and exits with its status. SIGTERM sent to this script alone is passed on.
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

step('bootstrap', process.execPath, [join(root, 'scripts', 'bootstrap.mjs')]);
console.log('building (turbo run build)...');
step('the build', bin('turbo'), ['run', 'build', '--output-logs=errors-only']);

const child = spawn(
  bin('tsx'),
  [
    '--conditions=source',
    join(root, 'packages', 'sim', 'src', 'demo.ts'),
    ...process.argv.slice(2),
  ],
  { cwd: root, stdio: 'inherit' },
);
for (const signal of ['SIGINT', 'SIGTERM']) {
  // A terminal's Ctrl-C reaches the whole process group; passing it on again is harmless (the
  // simulator ignores a second signal while it stops), and it covers a signal sent to us alone.
  process.on(signal, () => child.kill(signal));
}
child.on('exit', (code, signal) => {
  process.exit(code ?? (signal === 'SIGINT' ? 130 : 1));
});
