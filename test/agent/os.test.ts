/**
 * sluiced on image-based systems and with the other reboot methods, against a real etcd and a
 * real dbus-daemon with simulated logind, systemd and rpm-ostreed:
 *
 * - rpm-ostree with finalization locked: never finalized before the slot is held (checked by
 *   reading etcd with the test's own client at the moment of finalizing), and an admission that
 *   is given back leaves the deployment locked;
 * - soft reboot (recognised afterwards by systemd's SoftRebootsCount, the boot id being the same)
 *   and kexec, each through to the release after boot;
 * - an inhibitor lock that holds the reboot back, the wait visible in `sluicectl status`, and the
 *   slot given back once the wait passes its bound;
 * - the reboot-loop guard halting one node, not its group.
 */
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type DbusDaemon, type EtcdCluster, startDbusDaemon, startEtcd } from '@sluice/testkit';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CliRunner } from '../cli/cli.js';
import { sleep, TestEnv } from '../helpers.js';
import { OsNode } from './os-node.js';

let etcd: EtcdCluster;
let bus: DbusDaemon;
let env: TestEnv;
let node: OsNode | null = null;
let cli: CliRunner | null = null;

beforeAll(async () => {
  [etcd, bus] = await Promise.all([startEtcd(), startDbusDaemon()]);
});
afterAll(async () => {
  await Promise.all([etcd?.stop(), bus?.stop()]);
});
afterEach(async () => {
  await node?.stop();
  node = null;
  await cli?.cleanup();
  cli = null;
  env?.cleanup();
});

async function makeNode(yaml: (dir: string) => string, rpmOstree = false): Promise<OsNode> {
  env = new TestEnv(etcd.endpoints);
  node = await new OsNode({
    node: 'node-a',
    busAddress: bus.address,
    endpoints: etcd.endpoints,
    prefix: env.prefix,
    group: env.group,
    rpmOstree,
    yaml,
  }).setup();
  return node;
}

/** The node's holding marker, read with the test's own etcd client: does it hold a slot now? */
async function holdsSlot(name: string): Promise<boolean> {
  const value = await etcd.etcdctl(['get', env.keys.holding(name), '--print-value-only']);
  return value.trim() !== '';
}

async function record(name: string): Promise<Record<string, unknown> | null> {
  const value = (await etcd.etcdctl(['get', env.keys.queue(name), '--print-value-only'])).trim();
  return value === '' ? null : (JSON.parse(value) as Record<string, unknown>);
}

async function history(): Promise<{ node: string; outcome: string }[]> {
  const text = await etcd.etcdctl([
    'get',
    '--prefix',
    env.keys.historyPrefix,
    '--print-value-only',
  ]);
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { node: string; outcome: string });
}

const RPM_OSTREE = 'sources:\n  updateEngine: false\n  sentinel: off\n  rpmOstree: true';
/** A node that reboots while `<dir>/reboot-needed` exists, with more reboot settings. */
const sentinelNode = (reboot: string) => (dir: string) =>
  `sources:\n  updateEngine: false\n  sentinel: ${join(dir, 'reboot-needed')}\nreboot:\n${reboot}`;

describe('rpm-ostree with finalization locked', () => {
  it('finalizes only once it holds its slot; the finalize is the reboot; after boot it releases', async () => {
    const n = await makeNode(() => RPM_OSTREE, true);
    const fake = n.rpmOstree!;
    const atFinalize: boolean[] = [];
    fake.onFinalize = async () => {
      atFinalize.push(await holdsSlot('node-a'));
    };
    const holder = env.semaphore('holder');
    const grant = await holder.acquire();
    await n.start();
    const staged = fake.stage('41.20250115.3.0', { locked: true });
    await n.until('queued');
    await sleep(500);
    expect(fake.finalizations).toEqual([]);
    expect(fake.deployments[0]).toMatchObject({ staged: true, finalizationLocked: true });

    await holder.release(grant);
    await expect.poll(() => atFinalize.length, { timeout: 15_000 }).toBe(1);
    expect(fake.finalizations).toEqual([
      expect.objectContaining({ checksum: staged.checksum, error: '' }),
    ]);
    expect(atFinalize).toEqual([true]);
    // rpm-ostree rebooted: logind was not asked to.
    expect(n.logind.reboots).toEqual([]);
    expect(await record('node-a')).toMatchObject({
      state: 'rebooting',
      toVersion: '41.20250115.3.0',
    });

    await n.fullReboot();
    expect(fake.booted?.version).toBe('41.20250115.3.0');
    await n.start();
    await n.until('idle');
    expect(n.edges).toContain('post-checking (recovered-rebooted)');
    expect(await history()).toContainEqual(
      expect.objectContaining({ node: 'node-a', outcome: 'released' }),
    );
    expect(await holdsSlot('node-a')).toBe(false);
  });

  it('an admission given back (its checks fail once admitted) leaves the deployment locked', async () => {
    const n = await makeNode(
      (dir) =>
        `${RPM_OSTREE}\nchecks:\n  pre:\n    - { name: ready, command: "test -e ${join(dir, 'ok')}" }`,
      true,
    );
    const fake = n.rpmOstree!;
    await writeFile(n.path('ok'), '');
    const holder = env.semaphore('holder');
    const grant = await holder.acquire();
    await n.start();
    fake.stage('41.20250115.3.0', { locked: true });
    await n.until('queued');
    await rm(n.path('ok'));
    await holder.release(grant);
    await expect
      .poll(() => n.edges.includes('update-staged (admitted-checks-failed)'), { timeout: 15_000 })
      .toBe(true);
    await expect
      .poll(history, { timeout: 10_000 })
      .toContainEqual(expect.objectContaining({ node: 'node-a', outcome: 'abandoned' }));
    expect(n.edges).toContain('holding (admitted)');
    expect(fake.finalizations).toEqual([]);
    expect(fake.deployments[0]).toMatchObject({ staged: true, finalizationLocked: true });
    expect(n.logind.reboots).toEqual([]);
  });
});

describe('reboot methods', () => {
  it('soft-reboot: logind soft-reboots; the same boot id with a higher count is recognised', async () => {
    const n = await makeNode(sentinelNode('  method: soft-reboot'));
    await n.start();
    await writeFile(n.path('reboot-needed'), 'userspace update\n');
    await expect.poll(() => n.logind.reboots.length, { timeout: 15_000 }).toBe(1);
    expect(n.logind.reboots[0]).toMatchObject({ method: 'RebootWithFlags', kind: 'soft-reboot' });
    expect(await record('node-a')).toMatchObject({
      state: 'rebooting',
      bootId: 'boot-1',
      softReboots: 0,
    });

    await rm(n.path('reboot-needed'));
    await n.softReboot();
    await n.start();
    await n.until('idle');
    expect(n.edges).toContain('post-checking (recovered-rebooted)');
    expect(await history()).toContainEqual(
      expect.objectContaining({ node: 'node-a', outcome: 'released' }),
    );
    expect(n.logind.reboots).toHaveLength(1);
    // The forced variants on systemd itself are never used.
    expect(n.systemd.forcedCalls).toEqual([]);
  });

  it('kexec: logind reboots through kexec; the new boot id is recognised', async () => {
    const n = await makeNode(sentinelNode('  method: kexec'));
    await n.start();
    await writeFile(n.path('reboot-needed'), 'kernel update\n');
    await expect.poll(() => n.logind.reboots.length, { timeout: 15_000 }).toBe(1);
    expect(n.logind.reboots[0]).toMatchObject({ method: 'RebootWithFlags', kind: 'kexec' });
    await rm(n.path('reboot-needed'));
    await n.kexec();
    await n.start();
    await n.until('idle');
    expect(n.edges).toContain('post-checking (recovered-rebooted)');
    expect(await history()).toContainEqual(
      expect.objectContaining({ node: 'node-a', outcome: 'released' }),
    );
  });
});

describe('inhibitor locks', () => {
  it('a block lock on shutdown holds the reboot back, slot kept, status says who; then it reboots', async () => {
    // A bound of 1 minute: the agent looks at the locks again every 6 s (a tenth of it).
    const n = await makeNode(sentinelNode('  inhibitorWait: 1m'));
    const release = n.logind.inhibit({
      who: 'backup',
      why: 'writing the nightly snapshot',
      pid: 812,
    });
    n.logind.inhibit({ what: 'shutdown', who: 'NetworkManager', why: 'save', mode: 'delay' });
    await n.start();
    await writeFile(n.path('reboot-needed'), 'update\n');
    await expect
      .poll(async () => (await record('node-a'))?.problem, { timeout: 15_000 })
      .toMatch(
        /waiting for an inhibitor lock on shutdown.*"backup" \(writing the nightly snapshot\), pid 812/,
      );
    expect(n.state).toMatchObject({
      name: 'rebooting',
      blocked: { by: expect.stringContaining('backup') },
    });
    expect(await holdsSlot('node-a')).toBe(true);
    expect(n.logind.reboots).toEqual([]);

    cli = new CliRunner(etcd.endpoints);
    const status = (await cli.json(['--prefix', env.prefix, '--group', env.group, 'status'], {
      noPrefix: true,
    })) as { holders: { node: string; problem: string | null }[] };
    expect(status.holders).toEqual([
      expect.objectContaining({ node: 'node-a', problem: expect.stringContaining('"backup"') }),
    ]);

    release();
    // The delay lock is left to logind.
    await expect.poll(() => n.logind.reboots.length, { timeout: 20_000 }).toBe(1);
    // The wait is gone from the record as the reboot goes ahead.
    const after = await record('node-a');
    expect(after).toMatchObject({ state: 'rebooting' });
    expect(after?.problem).toBeUndefined();
  });

  it('gives the slot back once the wait passes its bound, and reboots after the lock goes', async () => {
    const n = await makeNode(sentinelNode('  inhibitorWait: 1s'));
    const release = n.logind.inhibit({ who: 'dpkg', why: 'upgrading packages' });
    await n.start();
    await writeFile(n.path('reboot-needed'), 'update\n');
    await expect
      .poll(() => n.edges.some((e) => e.includes('inhibitor-timeout')), { timeout: 15_000 })
      .toBe(true);
    await expect
      .poll(history, { timeout: 10_000 })
      .toContainEqual(expect.objectContaining({ node: 'node-a', outcome: 'abandoned' }));
    expect(n.logind.reboots).toEqual([]);
    release();
    await expect.poll(() => n.logind.reboots.length, { timeout: 15_000 }).toBe(1);
    expect(await holdsSlot('node-a')).toBe(true);
  });
});

describe('the reboot-loop guard', () => {
  it('halts the node once an update is still needed after the limit of reboots; the group goes on', async () => {
    const n = await makeNode(() => `${RPM_OSTREE}\nreboot:\n  loopLimit: 2`, true);
    const fake = n.rpmOstree!;
    const original = { ...fake.deployments[0]! };
    await n.start();
    // An update that a reboot never applies: after every boot it is staged again, the same.
    fake.stage('41.20250115.3.0', { locked: false });
    for (let i = 1; i <= 2; i++) {
      await expect.poll(() => n.logind.reboots.length, { timeout: 20_000 }).toBe(1);
      n.logind.reboots.length = 0;
      await n.fullReboot();
      fake.deployments = [{ ...original }];
      fake.stage('41.20250115.3.0', { locked: false });
      await n.start();
    }
    await n.until('idle');
    await sleep(1000);
    expect(n.logind.reboots).toEqual([]);
    expect(n.state.name).toBe('idle');
    const registration = JSON.parse(
      await etcd.etcdctl(['get', env.keys.registration('node-a'), '--print-value-only']),
    );
    expect(registration.problem).toMatch(
      /reboot loop: rpm-ostree: 41\.20250115\.3\.0 is still needed after 2 reboots in a row/,
    );
    // Not the group: it is not paused, and another node still gets a slot.
    expect((await etcd.etcdctl(['get', env.keys.paused, '--print-value-only'])).trim()).toBe('');
    const b = env.semaphore('node-b');
    const other = await b.acquire();
    await b.release(other);

    // A newer update lets the node try again.
    fake.stage('41.20250201.3.0', { locked: false });
    await expect.poll(() => n.logind.reboots.length, { timeout: 15_000 }).toBe(1);
  });
});
