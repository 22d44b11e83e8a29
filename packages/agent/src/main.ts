#!/usr/bin/env node
/**
 * `sluiced`: the per-node agent. Loads and validates its configuration (exit 2 with a message
 * naming the key when it is invalid: it never reboots on a bad config), then runs until SIGTERM.
 */
import { readFileSync } from 'node:fs';
import { isSluiceError, parseDuration } from '@sluice/core';
import { Command, CommanderError } from 'commander';
import {
  type AgentFlags,
  addAgentFlags,
  DEFAULT_UPDATE_CONF_FILES,
  loadAgentConfig,
} from './config.js';
import { startAgent } from './wire.js';

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
const updateConf = opts.updateConf ?? env.SLUICE_UPDATE_CONF;
const retryText = opts.retryDelay ?? env.SLUICE_RETRY_DELAY;
let retryDelayMs: number | undefined;
if (retryText !== undefined) {
  const parsed = parseDuration(retryText, opts.retryDelay ? '--retry-delay' : 'SLUICE_RETRY_DELAY');
  if (!parsed.ok) fail(parsed.error.message);
  retryDelayMs = parsed.value;
}

try {
  const machineIdFile = opts.machineIdFile ?? env.SLUICE_MACHINE_ID_FILE;
  const config = await loadAgentConfig({
    env,
    flags: opts,
    ...(updateConf !== undefined ? { updateConfFiles: updateConf.split(':').filter(Boolean) } : {}),
    ...(machineIdFile ? { machineIdFile } : {}),
  });
  const bootIdFile = opts.bootIdFile ?? env.SLUICE_BOOT_ID_FILE;
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
    fail(error.message);
  }
  process.stderr.write(`sluiced: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
}
