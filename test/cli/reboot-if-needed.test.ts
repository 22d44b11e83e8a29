/**
 * `sluicectl reboot-if-needed`, the one-shot for timer-driven fleets, as a process against a real
 * etcd and a dbus-daemon with simulated update_engine and logind.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type DbusDaemon,
  type EtcdCluster,
  FakeLogind,
  FakeUpdateEngine,
  startDbusDaemon,
  startEtcd,
} from '@sluice/testkit';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { TestEnv } from '../helpers.js';
import { killAll, runToEnd, SLUICECTL } from '../process.js';

let etcd: EtcdCluster;
let env: TestEnv;
let dir: string;
let bus: DbusDaemon;
let ue: FakeUpdateEngine;
let logind: FakeLogind;

beforeAll(async () => {
  etcd = await startEtcd();
});
afterAll(async () => {
  await etcd?.stop();
});
beforeEach(async () => {
  env = new TestEnv(etcd.endpoints);
  dir = await mkdtemp(join(tmpdir(), 'sluice-once-'));
  await writeFile(join(dir, 'machine-id'), 'once-node\n');
  await writeFile(join(dir, 'boot_id'), 'boot-1\n');
  bus = await startDbusDaemon();
  ue = new FakeUpdateEngine(bus.address);
  await ue.start();
  logind = new FakeLogind(bus.address);
  await logind.start();
  await writeFile(
    join(dir, 'sluiced.yaml'),
    [
      `etcd: { endpoints: [${etcd.endpoint}], prefix: ${env.prefix}, group: ${env.group}, sessionTTL: 5s }`,
      'sources: { sentinel: "off" }',
      `dbus: { address: "${bus.address}" }`,
      'log: { level: warn }',
    ].join('\n'),
  );
});
afterEach(async () => {
  await killAll();
  await ue?.stop();
  await logind?.stop();
  await bus?.stop();
  env.cleanup();
  await rm(dir, { recursive: true, force: true });
});

function once(...args: string[]) {
  return runToEnd(SLUICECTL, [
    'reboot-if-needed',
    '--config',
    join(dir, 'sluiced.yaml'),
    '--update-conf',
    '',
    '--machine-id-file',
    join(dir, 'machine-id'),
    '--boot-id-file',
    join(dir, 'boot_id'),
    '--token-file',
    join(dir, 'instance'),
    '-o',
    'json',
    ...args,
  ]);
}

const keys = async (prefix: string) =>
  (await etcd.etcdctl(['get', '--prefix', '--keys-only', prefix])).split('\n').filter(Boolean);

describe('sluicectl reboot-if-needed', () => {
  it('does nothing when no update is staged', async () => {
    const res = await once();
    expect(res.code).toBe(0);
    expect(JSON.parse(res.stdout)).toMatchObject({ outcome: 'nothing-to-do' });
    expect(logind.reboots).toHaveLength(0);
    expect(await keys(env.prefix)).toEqual([]);
  });

  it('reboots holding a slot, then releases it after boot with --release-only', async () => {
    await ue.stageUpdate('4000.0.0');
    const res = await once();
    expect(res.stderr).not.toContain('"level":50');
    expect(res.code).toBe(0);
    expect(JSON.parse(res.stdout)).toMatchObject({ outcome: 'rebooting', node: 'once-node' });
    expect(logind.reboots).toHaveLength(1);
    const record = JSON.parse(
      await etcd.etcdctl(['get', env.keys.queue('once-node'), '--print-value-only']),
    );
    expect(record).toMatchObject({ state: 'rebooting', bootId: 'boot-1' });

    // The machine reboots: a new boot id, update_engine idle on the new version.
    await writeFile(join(dir, 'boot_id'), 'boot-2\n');
    ue.setIdle('4000.0.0');
    const released = await once('--release-only');
    expect(released.code).toBe(0);
    expect(JSON.parse(released.stdout)).toMatchObject({ outcome: 'released' });
    expect(await keys(env.keys.root)).toEqual([]);
    expect(logind.reboots).toHaveLength(1);
  });

  it('waits for the window: nothing queued while it is closed', async () => {
    const day = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'][
      new Date(Date.now() + 3 * 86_400_000).getUTCDay()
    ];
    await etcd.etcdctl(['put', env.keys.windows, `${day} 00:00+1m UTC`]);
    await ue.stageUpdate('4000.0.0');
    const res = await once();
    expect(res.code).toBe(0);
    expect(JSON.parse(res.stdout)).toMatchObject({ outcome: 'window-closed' });
    expect(await keys(env.keys.queuePrefix)).toEqual([]);
    expect(logind.reboots).toHaveLength(0);
  });

  it('gives up after --wait when the group is full, and leaves the queue', async () => {
    await etcd.etcdctl(['put', env.keys.max, '0']);
    await ue.stageUpdate('4000.0.0');
    const res = await once('--wait', '1s');
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('no slot within 1s');
    expect(await keys(env.keys.queuePrefix)).toEqual([]);
    expect(logind.reboots).toHaveLength(0);
  });
});
