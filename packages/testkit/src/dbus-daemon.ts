/**
 * A private, real dbus-daemon for tests: its own config in a temporary directory, a
 * `unix:path=` socket, EXTERNAL authentication, and a policy that allows everything.
 *
 * Always stop it, even when a test fails:
 *
 * ```ts
 * let bus: DbusDaemon | undefined;
 * beforeEach(async () => { bus = await startDbusDaemon(); });
 * afterEach(async () => { await bus?.stop(); });
 * ```
 *
 * As a last resort, a daemon dies with the process that started it: it runs under
 * `setpriv --pdeathsig KILL` (util-linux), so even a test worker killed by a timeout or a signal
 * leaves nothing behind. Without setpriv, daemons are killed when the process exits normally.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  type interface as dbusInterface,
  type MessageBus,
  NameFlag,
  RequestNameReply,
  sessionBus,
} from 'dbus-next';

const DBUS_DAEMON = '/usr/bin/dbus-daemon';
/** util-linux's setpriv, to have the kernel kill the daemon if the test process dies. */
const SETPRIV = '/usr/bin/setpriv';

/** A running dbus-daemon started by {@link startDbusDaemon}. */
export interface DbusDaemon {
  /** The address clients connect to: `unix:path=<socketPath>`. */
  readonly address: string;
  /** The path of the listening socket. */
  readonly socketPath: string;
  /** The daemon's process id. */
  readonly pid: number;
  /**
   * Stops the daemon: sends `signal` (SIGTERM by default; SIGKILL simulates a crash), then
   * SIGKILL if it is still running after the stop timeout, and removes its temporary directory.
   * Idempotent: later calls wait for the first one.
   */
  stop(options?: { signal?: NodeJS.Signals }): Promise<void>;
}

/** Options for {@link startDbusDaemon}. */
export interface DbusDaemonOptions {
  /**
   * Where to listen. Defaults to `bus` in the daemon's temporary directory. Pass the socket path
   * of a stopped daemon to start a new one in its place; the caller then owns the directory.
   */
  socketPath?: string;
  /** How long to wait for the socket to accept connections. Defaults to 5 s. */
  startTimeoutMs?: number;
  /** How long `stop()` waits after its first signal before SIGKILL. Defaults to 2 s. */
  stopTimeoutMs?: number;
}

/** Daemons not stopped yet, killed if the test process exits with them still running. */
const running = new Set<ChildProcess>();
let exitHookInstalled = false;

const installExitHook = () => {
  if (exitHookInstalled) {
    return;
  }
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const child of running) {
      child.kill('SIGKILL');
    }
  });
};

const escapeXml = (text: string): string =>
  text.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);

const config = (socketPath: string): string => `<!DOCTYPE busconfig PUBLIC
  "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
  "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=${escapeXml(socketPath)}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`;

/** Resolves once a connection to the socket is accepted. */
const accepts = (socketPath: string): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = connect(socketPath);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => {
      socket.destroy();
      resolve(false);
    });
  });

/**
 * Starts `/usr/bin/dbus-daemon --nofork` with a private configuration and resolves once its socket
 * accepts connections. Rejects, leaving nothing running, if it exits or does not listen in time.
 */
export async function startDbusDaemon(options: DbusDaemonOptions = {}): Promise<DbusDaemon> {
  const startTimeoutMs = options.startTimeoutMs ?? 5_000;
  const stopTimeoutMs = options.stopTimeoutMs ?? 2_000;
  const dir = await mkdtemp(join(tmpdir(), 'sluice-dbus-'));
  const socketPath = options.socketPath ?? join(dir, 'bus');
  const configPath = join(dir, 'bus.conf');
  await writeFile(configPath, config(socketPath));

  installExitHook();
  const args = [`--config-file=${configPath}`, '--nofork', '--print-address=1'];
  const stdio = ['ignore', 'pipe', 'pipe'] as const;
  // setpriv execs dbus-daemon, so the pid stays the daemon's.
  const child = existsSync(SETPRIV)
    ? spawn(SETPRIV, ['--pdeathsig', 'KILL', '--', DBUS_DAEMON, ...args], { stdio: [...stdio] })
    : spawn(DBUS_DAEMON, args, { stdio: [...stdio] });
  running.add(child);
  let exited = false;
  let spawnFailure: Error | undefined;
  const exit = new Promise<void>((resolve) => {
    const done = () => {
      exited = true;
      running.delete(child);
      resolve();
    };
    child.once('exit', done);
    child.once('error', (error) => {
      spawnFailure = error;
      done();
    });
  });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  child.stdout?.resume();

  let stopping: Promise<void> | undefined;
  const stop = (stopOptions: { signal?: NodeJS.Signals } = {}): Promise<void> => {
    stopping ??= (async () => {
      if (!exited) {
        child.kill(stopOptions.signal ?? 'SIGTERM');
        const patience = new AbortController();
        const finished = await Promise.race([
          exit.then(() => true),
          sleep(stopTimeoutMs, false, { signal: patience.signal }).catch(() => false),
        ]);
        patience.abort();
        if (!finished) {
          child.kill('SIGKILL');
          await exit;
        }
      }
      await rm(dir, { recursive: true, force: true });
    })();
    return stopping;
  };

  const deadline = Date.now() + startTimeoutMs;
  let failure: string | undefined;
  for (;;) {
    if (spawnFailure !== undefined) {
      failure = `cannot run ${DBUS_DAEMON}: ${spawnFailure.message}`;
    } else if (exited) {
      failure = `dbus-daemon exited during startup (code ${child.exitCode}): ${stderr.trim()}`;
    } else if (await accepts(socketPath)) {
      break;
    } else if (Date.now() > deadline) {
      failure = `dbus-daemon did not listen on ${socketPath} within ${startTimeoutMs} ms: ${stderr.trim()}`;
    }
    if (failure !== undefined) {
      await stop({ signal: 'SIGKILL' });
      throw new Error(failure);
    }
    await sleep(10);
  }

  return { address: `unix:path=${socketPath}`, socketPath, pid: child.pid!, stop };
}

/** A D-Bus object a fake service exports under a well-known name, from {@link exportService}. */
export interface ExportedService {
  /** The fake's own bus connection. */
  readonly bus: MessageBus;
  /** False once the connection has closed, by {@link ExportedService.close} or the daemon dying. */
  readonly connected: boolean;
  /**
   * Unexports the object and closes the connection, which gives up the name: watchers see
   * `NameOwnerChanged` to "". Resolves once the socket is closed. Idempotent.
   */
  close(): Promise<void>;
}

/**
 * Connects to the bus at `address`, exports `iface` at `path` and takes the well-known `name`
 * (without queueing). The building block of the fake update_engine and logind.
 *
 * @throws Error when the bus cannot be reached within 5 s or someone else owns `name`.
 */
export async function exportService(
  address: string,
  name: string,
  path: string,
  iface: dbusInterface.Interface,
): Promise<ExportedService> {
  const bus = sessionBus({ busAddress: address });
  const stream = (bus as unknown as { _connection: { stream: Duplex } })._connection.stream;
  // dbus-next reports a closed socket as an `error` event; without a listener it would throw.
  bus.on('error', () => {});
  let connected = true;
  const closed = new Promise<void>((resolve) =>
    stream.once('close', () => {
      connected = false;
      resolve();
    }),
  );
  const close = async () => {
    if (connected && !stream.destroyed) {
      bus.unexport(path, iface);
      bus.disconnect();
      stream.destroy();
    }
    await closed;
  };

  try {
    const ready = new Promise<void>((resolve) => bus.once('connect', () => resolve()));
    const timedOut = sleep(5_000, 'timeout' as const, { ref: false });
    const outcome = await Promise.race([
      ready.then(() => 'connected' as const),
      closed.then(() => 'closed' as const),
      timedOut,
    ]);
    if (outcome !== 'connected') {
      throw new Error(`cannot connect to the D-Bus daemon at ${address} (${outcome})`);
    }
    bus.export(path, iface);
    const reply = await bus.requestName(name, NameFlag.DO_NOT_QUEUE);
    if (reply !== RequestNameReply.PRIMARY_OWNER) {
      throw new Error(
        `cannot own ${name} on ${address}: it is taken (RequestName answered ${reply})`,
      );
    }
  } catch (error) {
    await close();
    throw error;
  }

  return {
    bus,
    get connected() {
      return connected;
    },
    close,
  };
}
