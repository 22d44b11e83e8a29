/**
 * The settings of the update sources and reboot methods for image- and package-based systems:
 * presets on and off, with their settings, from the file, the environment and flags; and the
 * errors for what is wrong in them.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isSluiceError } from '@sluice/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type AgentConfig, type AgentFlags, loadAgentConfig } from './config/index.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-config-os-'));
  await writeFile(join(dir, 'machine-id'), '0123456789abcdef0123456789abcdef\n');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function load(
  yaml = '',
  env: NodeJS.ProcessEnv = {},
  flags: AgentFlags = {},
): Promise<AgentConfig> {
  const configFile = join(dir, 'sluiced.yaml');
  await writeFile(configFile, yaml);
  return loadAgentConfig({
    configFile,
    env,
    flags,
    updateConfFiles: [],
    machineIdFile: join(dir, 'machine-id'),
    hostname: 'h',
  });
}

async function failure(yaml: string, env: NodeJS.ProcessEnv = {}): Promise<string> {
  try {
    await load(yaml, env);
  } catch (error) {
    if (!isSluiceError(error)) throw error;
    expect(error.kind).toBe('invalid-config');
    return error.message.replaceAll(dir, '$DIR');
  }
  throw new Error('expected the config to be refused');
}

describe('OS sources and reboot methods in the config', () => {
  it('turns presets on with their defaults, or with their own settings', async () => {
    const cfg = await load(
      [
        'sources:',
        '  rpmOstree: true',
        '  bootc: true',
        '  sysupdate: { component: os, interval: 1m }',
        '  needrestart: { path: /opt/bin/needrestart, timeout: 30s }',
        '  dnf: false',
      ].join('\n'),
    );
    expect(cfg.sources).toMatchObject({
      rpmOstree: true,
      bootc: { intervalMs: 300_000 },
      sysupdate: { intervalMs: 60_000, component: 'os' },
      needrestart: { intervalMs: 300_000, path: '/opt/bin/needrestart', timeoutMs: 30_000 },
      dnf: null,
    });
  });

  it('takes the switches from the environment and flags too', async () => {
    const cfg = await load(
      'sources:\n  dnf: { interval: 2m }\n',
      { SLUICE_RPM_OSTREE: 'yes', SLUICE_NEEDRESTART: 'true', SLUICE_REBOOT_LOOP_LIMIT: '5' },
      { dnf: false, rebootMethod: 'soft-reboot', inhibitorWait: '30s', softReboot: 'never' },
    );
    expect(cfg.sources).toMatchObject({
      rpmOstree: true,
      needrestart: { intervalMs: 300_000 },
      dnf: null,
    });
    expect(cfg.reboot).toMatchObject({
      method: 'soft-reboot',
      softReboot: 'never',
      inhibitorWaitMs: 30_000,
      loopLimit: 5,
    });
  });

  it('names the key and what is wrong', async () => {
    expect(await failure('reboot:\n  method: softreboot\n')).toBe(
      `config file $DIR/sluiced.yaml, line 2: reboot.method: expected logind, soft-reboot, kexec or command, got "softreboot"`,
    );
    expect(await failure('sources:\n  dnf: { path: dnf }\n')).toContain(
      'sources.dnf.path: expected an absolute path to the program',
    );
    expect(await failure('sources:\n  bootc: { intervall: 5m }\n')).toContain(
      'sources.bootc.intervall: unknown key (did you mean "interval"?)',
    );
    expect(await failure('sources:\n  bootc: sometimes\n')).toContain(
      'sources.bootc: expected true, false, null or a mapping',
    );
    expect(await failure('', { SLUICE_REBOOT_LOOP_LIMIT: 'three' })).toContain(
      'environment SLUICE_REBOOT_LOOP_LIMIT: reboot.loopLimit: expected a whole number',
    );
    expect(await failure('reboot:\n  inhibitors: block\n')).toContain(
      'reboot.inhibitors: expected wait or ignore, got "block"',
    );
  });
});
