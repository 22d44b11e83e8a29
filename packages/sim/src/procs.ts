/**
 * Child processes of the simulator, and what happens to them when the simulator ends.
 *
 * Every process the simulator starts itself (the `sluiced` agents) is spawned through
 * {@link spawnTracked}: it gets its own session (so a Ctrl-C in the terminal reaches only the
 * simulator, which then stops everything in order), it dies with the simulator if the simulator
 * is killed outright (`setpriv --pdeathsig KILL`), and it is listed until it exits, so that
 * {@link killTracked} can end it by PID. etcd and dbus-daemon come from the testkit, which has
 * the same guarantees.
 *
 * Entry points (demo, chaos, benchmarks) call {@link installShutdownHandlers} once: on SIGINT or
 * SIGTERM it runs every cleanup registered with {@link onShutdown}, newest first, then exits.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';

/** util-linux's setpriv: makes the kernel kill a child when the simulator dies. */
const SETPRIV = '/usr/bin/setpriv';

const tracked = new Set<ChildProcess>();

process.once('exit', () => {
  for (const child of tracked) child.kill('SIGKILL');
});

/**
 * Starts `command args` in its own session, tied to the simulator's life, with stdout and stderr
 * piped (and a Node IPC channel with `ipc`, for a Node child). The returned child's `pid` is the
 * command's own (setpriv execs it).
 */
export function spawnTracked(
  command: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  opts: { ipc?: boolean } = {},
): ChildProcess {
  const argv = existsSync(SETPRIV)
    ? [SETPRIV, '--pdeathsig', 'KILL', '--', command, ...args]
    : [command, ...args];
  const child = spawn(argv[0]!, argv.slice(1), {
    env,
    detached: true,
    stdio: opts.ipc ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'],
  });
  tracked.add(child);
  child.once('exit', () => tracked.delete(child));
  child.once('error', () => tracked.delete(child));
  return child;
}

/** Resolves once `child` has exited (at once if it already has). */
export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) {
    return Promise.resolve();
  }
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Sends SIGKILL to `child` by PID and waits until it is gone. */
export async function killChild(child: ChildProcess): Promise<void> {
  const done = exited(child);
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await done;
}

/** SIGKILLs every tracked process that is still running and waits for them. */
export async function killTracked(): Promise<void> {
  await Promise.all([...tracked].map(killChild));
}

/** The PIDs of tracked processes still running. */
export function trackedPids(): number[] {
  return [...tracked].flatMap((c) => (c.pid === undefined ? [] : [c.pid]));
}

/**
 * Runs `start(thing)` and returns `thing`; if the start fails, stops what it started and rethrows.
 * The simulator's fleets start this way, so a failed start leaves no process or client behind.
 */
export async function startOrStop<T extends { stop(): Promise<void> }>(
  thing: T,
  start: (thing: T) => Promise<void>,
): Promise<T> {
  try {
    await start(thing);
  } catch (error) {
    await thing.stop();
    throw error;
  }
  return thing;
}

type Cleanup = () => Promise<void> | void;
const cleanups: Cleanup[] = [];
let installed = false;
let shuttingDown: Promise<void> | null = null;
/** The exit code a signal ends the simulator with, when not the signal's own (130, 143). */
let signalExitCode: number | null = null;

/**
 * From now on, SIGINT and SIGTERM end the simulator with `code` after the cleanup, not with 130
 * or 143: for a demo that finished its work and only stayed up until Ctrl-C. `null` undoes it.
 */
export function setSignalExitCode(code: number | null): void {
  signalExitCode = code;
}

/**
 * Registers `fn` to run when the simulator is interrupted. Returns a function that unregisters
 * it (call it once the thing it cleans up was stopped normally).
 */
export function onShutdown(fn: Cleanup): () => void {
  cleanups.push(fn);
  return () => {
    const at = cleanups.indexOf(fn);
    if (at >= 0) cleanups.splice(at, 1);
  };
}

/** Runs every registered cleanup, newest first, then kills whatever is left. Idempotent. */
export function shutdown(): Promise<void> {
  shuttingDown ??= (async () => {
    while (cleanups.length > 0) {
      const fn = cleanups.pop()!;
      try {
        await fn();
      } catch (error) {
        process.stderr.write(`cleanup failed: ${String(error)}\n`);
      }
    }
    await killTracked();
  })();
  return shuttingDown;
}

/**
 * For entry points: on SIGINT or SIGTERM, stop everything (see {@link shutdown}) and exit with
 * 130 or 143 (or the code given to {@link setSignalExitCode}). A second signal while stopping is ignored: the cleanup is already under way and
 * kills by PID, so nothing is left behind.
 */
export function installShutdownHandlers(write: (text: string) => void = () => {}): void {
  if (installed) return;
  installed = true;
  const handle = (signal: NodeJS.Signals, code: number) => {
    process.on(signal, () => {
      if (shuttingDown) return;
      write(`\n${signal}: stopping every process of the simulation...\n`);
      void shutdown().finally(() => process.exit(signalExitCode ?? code));
    });
  };
  handle('SIGINT', 130);
  handle('SIGTERM', 143);
}
