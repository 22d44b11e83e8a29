/**
 * Wires a command-line program to the process: argv, environment, output, signals and the exit
 * code. Shared by `sluicectl` and `locksmithctl`. SIGINT and SIGTERM abort long-running commands,
 * which then clean up; a second signal, or a command that does not finish within 5 s, ends the
 * process at once. Commands that ask before acting (`unlock --force` of a rebooting node) may
 * ask on the terminal when both stdin and stderr are one. A reader that went away (`sluicectl status | head -1`) ends the command
 * quietly, as other command-line tools do: no stack trace, the rest of the output is dropped,
 * and a long-running command (`watch`) stops.
 */
import type { CliIO } from './context.js';

/** Runs `program` with the process's arguments and exits with its code. */
export async function runMain(
  program: (argv: readonly string[], io: CliIO) => Promise<number>,
): Promise<never> {
  const controller = new AbortController();
  for (const name of ['SIGINT', 'SIGTERM'] as const) {
    process.on(name, () => {
      if (controller.signal.aborted) process.exit(130);
      controller.abort(name);
      setTimeout(() => process.exit(130), 5000).unref();
    });
  }
  /** A yes/no question on the terminal; only offered when both ends are one. */
  const confirm = async (question: string): Promise<boolean> => {
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
  };
  const closed = { stdout: false, stderr: false };
  for (const name of ['stdout', 'stderr'] as const) {
    process[name].on('error', (error: NodeJS.ErrnoException) => {
      if (error.code !== 'EPIPE' && error.code !== 'ERR_STREAM_DESTROYED') throw error;
      closed[name] = true;
      if (name === 'stdout' && !controller.signal.aborted) controller.abort('stdout closed');
    });
  }
  const code = await program(process.argv.slice(2), {
    stdout: {
      write: (text: string) => closed.stdout || process.stdout.write(text),
      isTTY: process.stdout.isTTY,
    },
    stderr: { write: (text: string) => closed.stderr || process.stderr.write(text) },
    env: process.env,
    signal: controller.signal,
    ...(process.stdin.isTTY && process.stderr.isTTY ? { confirm } : {}),
  });
  // Lease keep-alives and gRPC channels may keep the event loop busy after the etcd client is
  // closed: flush the output, then exit explicitly.
  for (const name of ['stdout', 'stderr'] as const) {
    if (!closed[name])
      await new Promise<void>((resolve) => process[name].write('', () => resolve()));
  }
  process.exit(code);
}
