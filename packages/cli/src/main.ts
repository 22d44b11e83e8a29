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

/** A yes/no question on the terminal; only offered when both ends are one. */
async function confirm(question: string): Promise<boolean> {
  const { createInterface } = await import('node:readline/promises');
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await rl.question(`${question} [y/N] `, { signal: controller.signal });
    return /^y(es)?$/i.test(answer.trim());
  } catch {
    return false;
  } finally {
    rl.close();
  }
}

const code = await run(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  signal: controller.signal,
  ...(process.stdin.isTTY && process.stderr.isTTY ? { confirm } : {}),
});
// Lease keep-alives and gRPC channels may keep the event loop busy after the etcd client is
// closed: flush the output, then exit explicitly.
await new Promise<void>((resolve) => process.stdout.write('', () => resolve()));
await new Promise<void>((resolve) => process.stderr.write('', () => resolve()));
process.exit(code);
