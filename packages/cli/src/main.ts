#!/usr/bin/env node
/**
 * The `sluicectl` executable: wires the process (argv, environment, signals) to `run()` and
 * exits with its code. SIGINT and SIGTERM abort long-running commands, which then clean up; a
 * second signal, or a command that does not finish within 5 s, ends the process at once.
 */
import { run } from './program.js';

const controller = new AbortController();
for (const name of ['SIGINT', 'SIGTERM'] as const) {
  process.on(name, () => {
    if (controller.signal.aborted) process.exit(130);
    controller.abort(name);
    setTimeout(() => process.exit(130), 5000).unref();
  });
}

const code = await run(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  signal: controller.signal,
});
// Lease keep-alives and gRPC channels may keep the event loop busy after the etcd client is
// closed: flush the output, then exit explicitly.
await new Promise<void>((resolve) => process.stdout.write('', () => resolve()));
await new Promise<void>((resolve) => process.stderr.write('', () => resolve()));
process.exit(code);
