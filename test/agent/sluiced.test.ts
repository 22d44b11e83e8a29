/**
 * The built `sluiced` as a process: locksmith's update.conf carries over, and invalid
 * configuration exits 2 with a message naming the key and where it came from.
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
import { killAll, runToEnd, SLUICED, start } from '../process.js';

let etcd: EtcdCluster;
let dir: string;
let env: TestEnv;

beforeAll(async () => {
  etcd = await startEtcd();
});
afterAll(async () => {
  await etcd?.stop();
});
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluiced-test-'));
  await writeFile(join(dir, 'machine-id'), 'proc-node\n');
  await writeFile(join(dir, 'boot_id'), 'boot-1\n');
  await writeFile(join(dir, 'none.yaml'), '');
  env = new TestEnv(etcd.endpoints);
});
afterEach(async () => {
  await killAll();
  env.cleanup();
  await rm(dir, { recursive: true, force: true });
});

/** Flags every run shares: no real /etc files. */
function baseArgs(extra: string[] = []): string[] {
  return [
    '--config',
    join(dir, 'none.yaml'),
    '--machine-id-file',
    join(dir, 'machine-id'),
    '--boot-id-file',
    join(dir, 'boot_id'),
    '--token-file',
    join(dir, 'instance'),
    '--metrics-listen',
    'off',
    ...extra,
  ];
}

/** locksmith's window syntax for a window that opened a minute ago and lasts an hour. */
function openLocksmithWindow(): string {
  const d = new Date(Date.now() - 60_000);
  const day = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'][d.getUTCDay()];
  const hh = String(d.getUTCHours()).padStart(2, '0');
  const mm = String(d.getUTCMinutes()).padStart(2, '0');
  return `${day} ${hh}:${mm}`;
}

describe('sluiced process', () => {
  let bus: DbusDaemon;
  let ue: FakeUpdateEngine;
  let logind: FakeLogind;
  beforeEach(async () => {
    bus = await startDbusDaemon();
    ue = new FakeUpdateEngine(bus.address);
    await ue.start();
    logind = new FakeLogind(bus.address);
    await logind.start();
  });
  afterEach(async () => {
    await ue?.stop();
    await logind?.stop();
    await bus?.stop();
  });

  it('takes its settings from locksmith update.conf and reboots holding a slot', async () => {
    const conf = join(dir, 'update.conf');
    await writeFile(
      conf,
      [
        'GROUP=stable',
        'SERVER=https://public.update.flatcar-linux.net/v1/update/',
        'REBOOT_STRATEGY=etcd-lock',
        `LOCKSMITHD_ENDPOINT=${etcd.endpoint}`,
        'LOCKSMITHD_GROUP=workers',
        `REBOOT_WINDOW_START="${openLocksmithWindow()}"`,
        'REBOOT_WINDOW_LENGTH=1h',
        '',
      ].join('\n'),
    );
    const sluiced = start(SLUICED, baseArgs(['--update-conf', conf]), {
      SLUICE_DBUS_ADDRESS: bus.address,
      SLUICE_PREFIX: env.prefix,
      SLUICE_SENTINEL: 'off',
    });
    await expect
      .poll(() => sluiced.stdout(), { timeout: 10_000, message: sluiced.stderr() })
      .toContain('"msg":"sluiced starting"');
    await ue.stageUpdate('4000.0.0');
    await expect.poll(() => logind.reboots.length, { timeout: 15_000 }).toBe(1);
    const key = `${env.prefix}groups/workers/queue/proc-node`;
    const record = JSON.parse(await etcd.etcdctl(['get', key, '--print-value-only']));
    expect(record).toMatchObject({ node: 'proc-node', state: 'rebooting' });
    sluiced.child.kill('SIGTERM');
    expect(await sluiced.exited).toBe(0);
    // SIGTERM keeps the slot: the key is still there for the agent after boot.
    expect(await etcd.etcdctl(['get', key, '--keys-only'])).toContain(key);
  });

  it.each([
    [
      'an unknown key in the config file',
      'etcd:\n  endpointz: [x]\n',
      {},
      /none\.yaml, line 2: etcd\.endpointz: unknown key/,
    ],
    ['an invalid strategy', 'strategy: sometimes\n', {}, /strategy: expected etcd-lock/],
    ['a bad duration', 'etcd:\n  holdTTL: forever\n', {}, /etcd\.holdTTL/],
    ['an invalid window', 'windows: "Funday 04:00+1h"\n', {}, /windows/],
    ['a bad group in the environment', '', { SLUICE_GROUP: 'has space' }, /SLUICE_GROUP/],
  ] as const)('exits 2 on %s, naming it', async (_name, yaml, extraEnv, message) => {
    await writeFile(join(dir, 'none.yaml'), yaml);
    const { code, stderr } = await runToEnd(SLUICED, baseArgs(), { ...extraEnv });
    expect(code).toBe(2);
    expect(stderr).toMatch(message);
    expect(logind.reboots).toHaveLength(0);
  });

  it.each([
    [
      'missing',
      (d: string) => join(d, 'no-such-boot-id'),
      /cannot read the boot id from .*no-such-boot-id/,
    ],
    ['empty', (d: string) => join(d, 'empty-boot-id'), /boot id file .*empty-boot-id is empty/],
  ] as const)('exits 2 when the boot id file is %s, naming it', async (_name, file, message) => {
    await writeFile(join(dir, 'none.yaml'), '');
    await writeFile(join(dir, 'empty-boot-id'), '\n');
    const { code, stderr } = await runToEnd(SLUICED, baseArgs(['--boot-id-file', file(dir)]));
    expect(code).toBe(2);
    expect(stderr).toMatch(message);
    expect(logind.reboots).toHaveLength(0);
  });

  it('skips a malformed update.conf line as systemd does, warning with file and line', async () => {
    const conf = join(dir, 'update.conf');
    await writeFile(conf, 'REBOOT_STRATEGY=etcd-lock\nthis is not a setting\n');
    const { code, stdout } = await runToEnd(
      SLUICED,
      baseArgs(['--update-conf', conf, '--check-config']),
    );
    expect(code).toBe(0);
    expect(stdout).toContain(`${conf}:2: ignoring a line without "=" (systemd ignores it too)`);
    expect(stdout).toMatch(/^strategy +etcd-lock +.*update\.conf:1 \(REBOOT_STRATEGY\)$/m);
  });

  it('exits 2 on an update.conf value locksmithd would also have refused, naming file and line', async () => {
    const conf = join(dir, 'update.conf');
    await writeFile(conf, 'GROUP=stable\nREBOOT_WINDOW_START=Thu 04:00\n');
    const { code, stderr } = await runToEnd(SLUICED, baseArgs(['--update-conf', conf]));
    expect(code).toBe(2);
    expect(stderr).toContain(`${conf}:2: REBOOT_WINDOW_START: invalid reboot window`);
  });
});
