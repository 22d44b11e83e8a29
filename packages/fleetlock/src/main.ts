#!/usr/bin/env node
/**
 * The `sluice-fleetlock` executable: parses its flags (the etcd ones shared with sluicectl),
 * connects to etcd, and serves the FleetLock protocol until SIGINT or SIGTERM. Exit codes as for
 * sluicectl: 2 for a usage or configuration error, 3 when etcd cannot be used.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { addEtcdOptions, type EtcdFlags, etcdSettingsFrom } from '@sluice/cli/etcd-options';
import { isSluiceError, parseDuration, SluiceError } from '@sluice/core';
import { checkClock, connectEtcd, connectionOptions, redactSettings } from '@sluice/etcd';
import { Command, CommanderError, Option } from 'commander';
import { pino } from 'pino';
import { FleetLockMetrics } from './metrics.js';
import { createFleetLockServer } from './server.js';
import { FleetLockService, placeTTLFor } from './service.js';

interface Flags extends EtcdFlags {
  listen: string;
  pollInterval: string;
  holdTtl: string;
  longPoll?: string;
  allowNewGroups?: boolean;
  tlsCert?: string;
  tlsKey?: string;
  maxClockSkew: string;
  logLevel: string;
}

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
    return String(pkg.version);
  } catch {
    return 'unknown';
  }
}

function duration(text: string, flag: string): number {
  const parsed = parseDuration(text, flag);
  if (!parsed.ok) throw parsed.error;
  return parsed.value;
}

/** `host:port` (IPv6 hosts in brackets), checked. */
function listenAddress(text: string): { host: string; port: number } {
  const at = text.lastIndexOf(':');
  const host = text.slice(0, at).replace(/^\[|\]$/g, '');
  const port = Number(text.slice(at + 1));
  if (at <= 0 || !host || !/^\d+$/.test(text.slice(at + 1)) || port > 65535) {
    throw new SluiceError(
      'invalid-config',
      `--listen ${JSON.stringify(text)}: expected HOST:PORT, e.g. 127.0.0.1:9468 or [::1]:9468`,
      '--listen',
    );
  }
  return { host, port };
}

async function pem(path: string, flag: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new SluiceError('invalid-config', `${flag}: cannot read ${path} (${code})`, flag, {
      cause,
    });
  }
}

const program = new Command('sluice-fleetlock')
  .description(
    "A FleetLock server (Zincati on Fedora CoreOS, Flatcar's fleetlock): its clients join the queue of the sluice group of the same name, with sluiced agents, and share its max, windows, pauses and halts.",
  )
  .version(version(), '-v, --version', 'print the version')
  .exitOverride()
  .showHelpAfterError('(run with --help for usage)')
  .option(
    '--listen <host:port>',
    'where to serve FleetLock, /metrics and /healthz',
    '127.0.0.1:9468',
  );
addEtcdOptions(program, { group: false })
  .option(
    '--poll-interval <duration>',
    'how often clients poll (Zincati: 5m); a queued id keeps its place for this plus 20 % (at most 10 s more than 10 %)',
    '5m',
  )
  .option(
    '--hold-ttl <duration>',
    'how long a slot is held without steady-state (renewed by a repeated pre-reboot); after that the holder is lost and the group halts',
    '1h',
  )
  .option(
    '--long-poll <duration>',
    'hold a pre-reboot that cannot be granted open this long and answer 200 once granted (off by default; Zincati waits up to 30m)',
  )
  .option(
    '--allow-new-groups',
    'accept groups that have no keys in etcd yet (default: refused as a typo)',
  )
  .option('--tls-cert <file>', "PEM certificate for this server's own listener (HTTPS)")
  .option('--tls-key <file>', 'PEM key for --tls-cert')
  .option(
    '--max-clock-skew <duration>',
    "largest offset of this server's clock from etcd's before nothing is granted",
    '60s',
  )
  .addOption(
    new Option('--log-level <level>', 'log level')
      .choices(['debug', 'info', 'warn', 'error'])
      .default('info'),
  )
  .addHelpText(
    'after',
    `
Zincati: [updates] strategy = "fleet_lock", [updates.fleet_lock] base_url = "http://HOST:9468/".
Every failure answer is JSON {"kind", "value"}; the kinds are listed in docs/fleetlock.md.`,
  );

async function main(): Promise<number> {
  try {
    program.parse(process.argv);
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : 2;
    throw error;
  }
  const flags = program.opts<Flags>();
  const listen = listenAddress(flags.listen);
  const pollMs = duration(flags.pollInterval, '--poll-interval');
  const holdMs = duration(flags.holdTtl, '--hold-ttl');
  const longPollMs = flags.longPoll === undefined ? 0 : duration(flags.longPoll, '--long-poll');
  const maxSkewMs = duration(flags.maxClockSkew, '--max-clock-skew');
  if (pollMs < 1000 || holdMs < 1000) {
    throw new SluiceError(
      'invalid-config',
      '--poll-interval and --hold-ttl must be at least 1s',
      '--poll-interval',
    );
  }
  if (Boolean(flags.tlsCert) !== Boolean(flags.tlsKey)) {
    throw new SluiceError(
      'invalid-config',
      '--tls-cert and --tls-key go together',
      flags.tlsCert ? '--tls-key' : '--tls-cert',
    );
  }
  const tls =
    flags.tlsCert && flags.tlsKey
      ? { cert: await pem(flags.tlsCert, '--tls-cert'), key: await pem(flags.tlsKey, '--tls-key') }
      : undefined;
  const { settings, where } = await etcdSettingsFrom(process.env, flags);
  const conn = await connectionOptions(settings, where);
  const logger = pino({ level: flags.logLevel, base: { service: 'sluice-fleetlock' } });
  const client = await connectEtcd(conn);
  const metrics = new FleetLockMetrics();

  // The clock guard, read at most every 30 s: windows are judged on this server's clock.
  let clock: { at: number; problem: string | null } | null = null;
  const clockCheck = async (): Promise<string | null> => {
    if (clock && Date.now() - clock.at < 30_000) return clock.problem;
    const { problem } = await checkClock(conn, maxSkewMs);
    if (problem !== (clock?.problem ?? null)) {
      if (problem) logger.error(problem);
      else if (clock) logger.info("this server's clock agrees with etcd's again");
    }
    clock = { at: Date.now(), problem };
    return problem;
  };

  const placeTTL = placeTTLFor(pollMs);
  const service = new FleetLockService(client, {
    prefix: settings.prefix,
    placeTTL,
    holdTTL: Math.ceil(holdMs / 1000),
    longPollMs,
    allowNewGroups: Boolean(flags.allowNewGroups),
    clockCheck,
  });
  const server = createFleetLockServer({ service, metrics, logger, tls });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(
        new SluiceError(
          'invalid-config',
          `--listen ${flags.listen}: ${error.code ?? error.message}`,
          '--listen',
        ),
      ),
    );
    server.listen(listen.port, listen.host, () => resolve());
  });
  const address = server.address();
  const bound =
    address && typeof address === 'object' ? `${address.address}:${address.port}` : flags.listen;
  logger.info(
    {
      listen: bound,
      tls: Boolean(tls),
      etcd: redactSettings(settings).endpoints,
      prefix: settings.prefix,
      placeTTL,
      holdTTL: Math.ceil(holdMs / 1000),
      longPollMs,
    },
    `serving FleetLock on ${tls ? 'https' : 'http'}://${bound}`,
  );

  const signal = await new Promise<string>((resolve) => {
    for (const name of ['SIGINT', 'SIGTERM'] as const) process.once(name, () => resolve(name));
  });
  logger.info({ signal }, 'stopping');
  // Long polls in flight get closed; their places stay in etcd on their leases.
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  client.close();
  return 0;
}

let code: number;
try {
  code = await main();
} catch (error) {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`sluice-fleetlock: ${message}\n`);
  code = isSluiceError(error)
    ? error.kind.startsWith('etcd-')
      ? 3
      : error.kind.startsWith('invalid-')
        ? 2
        : 1
    : 1;
}
await new Promise<void>((resolve) => process.stdout.write('', () => resolve()));
process.exit(code);
