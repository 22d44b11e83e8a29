/**
 * The agent-less mode: the command lines of sluice-reboot.service and sluice-release.service,
 * run with the bundled sluicectl against a real etcd and a fake logind. A staged update (the
 * sentinel file) leads to a reboot holding a slot; after "boot" (a new boot id) the release pass
 * gives the slot back; with nothing staged a pass does nothing.
 */
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type DbusDaemon,
  type EtcdCluster,
  FakeLogind,
  startDbusDaemon,
  startEtcd,
} from '@sluice/testkit';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { killAll, runToEnd } from '../process.js';
import { type Bundle, buildBundle, DEPLOY, TempDirs } from './helpers.js';

const dirs = new TempDirs();
let bundle: Bundle;
let etcd: EtcdCluster;
let bus: DbusDaemon;
let logind: FakeLogind;
let dir: string;

beforeAll(async () => {
  [bundle, etcd, bus, dir] = await Promise.all([
    dirs.make('bundle').then(buildBundle),
    startEtcd(),
    startDbusDaemon(),
    dirs.make('timer'),
  ]);
  logind = new FakeLogind(bus.address);
  await logind.start();
  await writeFile(join(dir, 'machine-id'), 'timer-node\n');
  await writeFile(
    join(dir, 'sluiced.yaml'),
    [
      'etcd:',
      `  endpoints: [${etcd.endpoint}]`,
      '  prefix: /timer-test/',
      'strategy: etcd-lock',
      'sources:',
      '  updateEngine: false',
      `  sentinel: ${join(dir, 'reboot-required')}`,
      'dbus:',
      `  address: ${bus.address}`,
      '',
    ].join('\n'),
  );
});
afterEach(() => killAll());
afterAll(async () => {
  await logind?.stop();
  await bus?.stop();
  await etcd?.stop();
  await dirs.removeAll();
});

/** The ExecStart= arguments of a unit in deploy/systemd, after the program. */
async function execStartArgs(unit: string): Promise<string[]> {
  const text = await readFile(join(DEPLOY, 'systemd', unit), 'utf8');
  const line = /^ExecStart=\/opt\/sluice\/bin\/sluicectl (.+)$/m.exec(text)?.[1];
  if (!line) throw new Error(`${unit}: no sluicectl ExecStart`);
  return line.split(' ');
}

/** Runs a unit's command with this test's files in place of /etc and /proc. */
async function pass(unit: string, bootId: string) {
  await writeFile(join(dir, 'boot_id'), `${bootId}\n`);
  return runToEnd(bundle.sluicectl, [
    ...(await execStartArgs(unit)),
    '--config',
    join(dir, 'sluiced.yaml'),
    '--update-conf',
    join(dir, 'no-update.conf'),
    '--machine-id-file',
    join(dir, 'machine-id'),
    '--boot-id-file',
    join(dir, 'boot_id'),
    '--token-file',
    join(dir, 'instance'),
  ]);
}

const queueKey = '/timer-test/groups/default/queue/timer-node';

describe('sluice-reboot.service and sluice-release.service', () => {
  it('reboot pass: with an update staged it takes a slot and asks logind to reboot', async () => {
    await writeFile(join(dir, 'reboot-required'), '');
    const result = await pass('sluice-reboot.service', 'boot-1');
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^rebooting: /m);
    expect(logind.reboots).toHaveLength(1);
    const record = JSON.parse(await etcd.etcdctl(['get', queueKey, '--print-value-only']));
    expect(record).toMatchObject({ node: 'timer-node', state: 'rebooting' });
  });

  it('release pass after the reboot: gives the slot back', async () => {
    await rm(join(dir, 'reboot-required'));
    const result = await pass('sluice-release.service', 'boot-2');
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^released: /m);
    expect(await etcd.etcdctl(['get', queueKey, '--keys-only'])).toBe('');
  });

  it('reboot pass with nothing staged: does nothing', async () => {
    const result = await pass('sluice-reboot.service', 'boot-2');
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^nothing-to-do: /m);
    expect(logind.reboots).toHaveLength(1);
  });
});
