#!/usr/bin/env node
/**
 * `sluiced`: the per-node agent. Loads and validates its configuration (exit 2 with a message
 * naming the key when it is invalid: it never reboots on a bad config), then runs until SIGTERM.
 * `sluiced --check-config` only loads and validates it, and prints every setting with where it
 * came from (`-o json` for programs): run it before restarting the unit, like `sshd -t`.
 */
import { readFileSync } from 'node:fs';
import { isSluiceError, parseDuration } from '@sluice/core';
import { Command, CommanderError } from 'commander';
import {
  type AgentConfig,
  type AgentFlags,
  addAgentFlags,
  DEFAULT_UPDATE_CONF_FILES,
  describeConfig,
  loadAgentConfig,
} from './config/index.js';
import { DEFAULT_LOCALTIME_FILE } from './localzone.js';

const version = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    version: string;
  }
).version;

const program = addAgentFlags(
  new Command('sluiced')
    .description(
      'Reboots this node when an OS update is staged: inside its window, holding a slot in etcd.',
    )
    .version(version, '-V, --version')
    .option(
      '--update-conf <paths>',
      `locksmith update.conf files, colon-separated (default ${DEFAULT_UPDATE_CONF_FILES.join(':')}) [env SLUICE_UPDATE_CONF]`,
    )
    .option(
      '--machine-id-file <path>',
      'where the node id is read (default /etc/machine-id) [env SLUICE_MACHINE_ID_FILE]',
    )
    .option(
      '--boot-id-file <path>',
      'where the boot id is read (default /proc/sys/kernel/random/boot_id) [env SLUICE_BOOT_ID_FILE]',
    )
    .option(
      '--retry-delay <duration>',
      'back-off after a failed check or etcd call (default 60s) [env SLUICE_RETRY_DELAY]',
    )
    .option(
      '--localtime-file <path>',
      `where the local time zone is read when TZ is unset (default ${DEFAULT_LOCALTIME_FILE}) [env SLUICE_LOCALTIME_FILE]`,
    )
    .option(
      '--check-config',
      'load and validate the configuration, print each setting and where it came from, and exit: 0 valid, 2 not',
    )
    .option('-o, --output <format>', 'with --check-config: table or json', 'table')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) }),
);

function fail(message: string): never {
  process.stderr.write(`sluiced: ${message}\n`);
  process.exit(2);
}

try {
  program.parse(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    process.exit(error.exitCode === 0 ? 0 : 2);
  }
  throw error;
}
const opts = program.opts<AgentFlags & Record<string, string | undefined>>();
const env = process.env;
const checkOnly = Boolean(opts.checkConfig);
const json = opts.output === 'json';
if (opts.output !== 'table' && opts.output !== 'json') {
  fail(`-o ${JSON.stringify(opts.output)}: want table or json`);
}
const updateConf = opts.updateConf ?? env.SLUICE_UPDATE_CONF;
const retryText = opts.retryDelay ?? env.SLUICE_RETRY_DELAY;
let retryDelayMs: number | undefined;
if (retryText !== undefined) {
  const parsed = parseDuration(retryText, opts.retryDelay ? '--retry-delay' : 'SLUICE_RETRY_DELAY');
  if (!parsed.ok) invalid(parsed.error);
  else retryDelayMs = parsed.value;
}

/** Prints the resolved configuration for --check-config. */
function report(config: AgentConfig): void {
  const settings = describeConfig(config);
  if (json) {
    process.stdout.write(
      `${JSON.stringify({ ok: true, settings, warnings: config.warnings }, null, 2)}\n`,
    );
    return;
  }
  const widths = [0, 1].map((i) =>
    Math.max(...settings.map((r) => [r.key, r.value][i]!.length).concat(i === 0 ? 7 : 5)),
  );
  const lines = [
    'sluiced: the configuration is valid',
    '',
    `${'SETTING'.padEnd(widths[0]!)}  ${'VALUE'.padEnd(widths[1]!)}  FROM`,
    ...settings.map((r) => `${r.key.padEnd(widths[0]!)}  ${r.value.padEnd(widths[1]!)}  ${r.from}`),
  ];
  if (config.warnings.length > 0) lines.push('', 'WARNINGS', ...config.warnings);
  process.stdout.write(`${lines.join('\n')}\n`);
}

/** A configuration error: exit 2, as JSON under --check-config -o json. */
function invalid(error: { kind: string; message: string; where?: string | undefined }): never {
  if (checkOnly && json) {
    const { kind, message, where } = error;
    process.stdout.write(
      `${JSON.stringify({ ok: false, error: { kind, message, ...(where ? { where } : {}) } }, null, 2)}\n`,
    );
    process.exit(2);
  }
  fail(error.message);
}

try {
  const machineIdFile = opts.machineIdFile ?? env.SLUICE_MACHINE_ID_FILE;
  const localtimeFile = opts.localtimeFile ?? env.SLUICE_LOCALTIME_FILE;
  const config = await loadAgentConfig({
    env,
    flags: opts,
    ...(updateConf !== undefined ? { updateConfFiles: updateConf.split(':').filter(Boolean) } : {}),
    ...(machineIdFile ? { machineIdFile } : {}),
    ...(localtimeFile ? { localtimeFile } : {}),
  });
  if (checkOnly) {
    report(config);
    process.exit(0);
  }
  const bootIdFile = opts.bootIdFile ?? env.SLUICE_BOOT_ID_FILE;
  const { startAgent } = await import('./wire.js');
  const running = await startAgent(config, {
    ...(bootIdFile ? { bootIdFile } : {}),
    ...(retryDelayMs !== undefined ? { retryDelayMs } : {}),
  });
  for (const warning of config.warnings) process.stderr.write(`sluiced: warning: ${warning}\n`);
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`sluiced: ${signal}: stopping\n`);
    void running.stop().finally(() => process.exit(0));
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
} catch (error) {
  if (
    isSluiceError(error) &&
    (error.kind === 'invalid-config' || error.kind === 'invalid-window')
  ) {
    invalid(error);
  }
  process.stderr.write(`sluiced: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
}
