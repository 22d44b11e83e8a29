/**
 * sluiced against a real etcd and a real dbus-daemon with simulated update_engine and logind.
 * "No reboot without a slot" is judged by the simulated logind together with HolderObserver,
 * which watches etcd with its own client: at each Reboot call the node's marker must exist.
 */
import { Semaphore } from '@sluice/etcd';
import { type EtcdCluster, HolderObserver, startEtcd } from '@sluice/testkit';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { sleep, TestEnv } from '../helpers.js';
import { TestNode } from './fixture.js';

let etcd: EtcdCluster;
let env: TestEnv;
const nodes: TestNode[] = [];
let observer: HolderObserver | null = null;

beforeAll(async () => {
  etcd = await startEtcd();
});
afterAll(async () => {
  await etcd?.stop();
});
afterEach(async () => {
  await Promise.all(nodes.splice(0).map((n) => n.stop()));
  await observer?.stop();
  observer = null;
  env?.cleanup();
});

async function node(name: string, yaml = ''): Promise<TestNode> {
  const n = new TestNode({
    node: name,
    endpoints: etcd.endpoints,
    prefix: env.prefix,
    group: env.group,
    yaml,
  });
  nodes.push(n);
  return n.setup();
}

/** Fails the test if logind is asked to reboot a node that holds no slot, as etcd shows it. */
function guardReboots(n: TestNode, obs: HolderObserver, expectSlot = true): void {
  n.logind.onReboot = () => {
    if (expectSlot) expect(obs.holders).toContain(n.opts.node);
  };
}

/** A window spec that is closed now: one minute, three days from now. */
function closedWindow(): string {
  const day = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'][
    new Date(Date.now() + 3 * 86_400_000).getUTCDay()
  ];
  return `${day} 00:00+1m UTC`;
}

async function etcdKeys(prefix: string): Promise<string[]> {
  return (await etcd.etcdctl(['get', '--prefix', '--keys-only', prefix]))
    .split('\n')
    .filter(Boolean);
}

describe('sluiced', () => {
  it('runs the full cycle: staged, slot, Reboot; after boot post-checks and release', async () => {
    env = new TestEnv(etcd.endpoints);
    const a = await node('node-a', 'checks:\n  post:\n    - command: "true"');
    observer = await HolderObserver.start(etcd.endpoints, env.keys.root);
    guardReboots(a, observer);
    await a.start();
    expect(a.state.name).toBe('idle');
    await a.updateEngine.stageUpdate('4000.0.0');
    await a.until('rebooting');
    await expect.poll(() => a.logind.reboots.length).toBe(1);
    expect(a.logind.reboots[0]?.interactive).toBe(false);
    const record = JSON.parse(
      await etcd.etcdctl(['get', env.keys.queue('node-a'), '--print-value-only']),
    );
    expect(record).toMatchObject({ state: 'rebooting', bootId: 'boot-1', toVersion: '4000.0.0' });

    await a.reboot('4000.0.0');
    await a.start();
    await a.until('idle');
    expect(a.edges).toContain('post-checking (recovered-rebooted)');
    expect(a.edges).toContain('idle (released)');
    expect(await etcdKeys(env.keys.root)).toEqual([]);
    const history = JSON.parse(
      (
        await etcd.etcdctl(['get', '--prefix', env.keys.historyPrefix, '--print-value-only'])
      ).trim(),
    );
    expect(history).toMatchObject({ node: 'node-a', outcome: 'released' });
    expect(a.logind.reboots).toHaveLength(1);
    expect(observer.peak).toBe(1);
  });

  it('enqueues nothing while the window is closed, and releases if it shuts after admission', async () => {
    env = new TestEnv(etcd.endpoints);
    await etcd.etcdctl(['put', env.keys.windows, closedWindow()]);
    // The drain closes the group's window, as an operator might while the node drains.
    const drain = `etcdctl --endpoints=${etcd.endpoint} put ${env.keys.windows} '${closedWindow()}'`;
    const a = await node('node-a', `checks:\n  drain:\n    command: "${drain}"`);
    await a.start();
    await a.updateEngine.stageUpdate('4000.0.0');
    await a.until('waiting-window');
    await sleep(300);
    expect(await etcdKeys(env.keys.queuePrefix)).toEqual([]);

    // The operator opens the window: the waiting agent sees the key change and goes ahead.
    await etcd.etcdctl(['del', env.keys.windows]);
    await expect.poll(() => a.edges.some((e) => e.startsWith('draining'))).toBe(true);
    await a.until('waiting-window', 15_000);
    expect(a.edges.some((e) => e.startsWith('queued'))).toBe(true);
    expect(a.edges.some((e) => e.startsWith('draining'))).toBe(true);
    await expect.poll(() => etcdKeys(env.keys.queuePrefix)).toEqual([]);
    expect(a.logind.reboots).toHaveLength(0);
    const history = await etcd.etcdctl([
      'get',
      '--prefix',
      env.keys.historyPrefix,
      '--print-value-only',
    ]);
    expect(JSON.parse(history.trim())).toMatchObject({ outcome: 'abandoned' });
  });

  it('does not enqueue when a pre-check fails, and keeps the slot when post-checks fail', async () => {
    env = new TestEnv(etcd.endpoints);
    const marker = `${env.prefix.replaceAll('/', '_')}`;
    const pre = `test -e /tmp/${marker}-ok`;
    const a = await node(
      'node-a',
      `checks:\n  pre:\n    - name: ready\n      command: "${pre}"\n  post:\n    - name: healthy\n      command: "false"\n  postDeadline: 100ms\n  postInterval: 200ms`,
    );
    await a.start();
    await a.updateEngine.stageUpdate('4000.0.0');
    await a.until('update-staged');
    await expect
      .poll(() => a.edges.filter((e) => e.includes('checks-failed')).length)
      .toBeGreaterThan(0);
    expect(await etcdKeys(env.keys.queuePrefix)).toEqual([]);
    const { writeFile, rm } = await import('node:fs/promises');
    await writeFile(`/tmp/${marker}-ok`, '');
    try {
      await a.until('rebooting');
      await a.reboot('4000.0.0');
      await a.start();
      await expect
        .poll(() => (a.state.name === 'post-checking' && a.state.failed) || false)
        .toBe(true);
      expect(a.state).toMatchObject({
        name: 'post-checking',
        lastError: expect.stringContaining('healthy'),
      });
      await sleep(500);
      expect(a.state.name).toBe('post-checking');
      expect(await etcdKeys(env.keys.holdingPrefix)).toEqual([env.keys.holding('node-a')]);
      const metrics = await a.agent!.metrics.registry.getSingleMetricAsString(
        'sluice_agent_check_failures_total',
      );
      expect(metrics).toMatch(/phase="post"} [1-9]/);
    } finally {
      await rm(`/tmp/${marker}-ok`, { force: true });
    }
  });

  it('follows update_engine across its restart, and never reboots with strategy off', async () => {
    env = new TestEnv(etcd.endpoints);
    const a = await node('node-a', 'strategy: "off"');
    await a.start();
    await a.updateEngine.stop();
    await sleep(200);
    await a.updateEngine.start();
    await a.updateEngine.stageUpdate('4000.0.0');
    await a.until('update-staged');
    await sleep(500);
    expect(a.state.name).toBe('update-staged');
    expect(a.logind.reboots).toHaveLength(0);
    expect(await etcdKeys(env.prefix)).toEqual([]);
  });

  it('keeps its place in the queue across an agent restart', async () => {
    env = new TestEnv(etcd.endpoints);
    const holder = env.semaphore('holder');
    const grant = await holder.acquire();
    const a = await node('node-a');
    await a.start();
    await a.updateEngine.stageUpdate('4000.0.0');
    await a.until('queued');
    const before = await new Semaphore(env.client(), {
      node: 'x',
      prefix: env.prefix,
      group: env.group,
    }).snapshot();
    const place = before.queue.find((e) => e.node === 'node-a')!.createRevision;
    await a.agent!.stop();
    a.agent = null;
    await a.start();
    expect(a.edges.at(-1)).toBe('queued (recovered-queued)');
    const after = await new Semaphore(env.client(), {
      node: 'x',
      prefix: env.prefix,
      group: env.group,
    }).snapshot();
    expect(after.queue.find((e) => e.node === 'node-a')!.createRevision).toBe(place);
    expect(a.logind.reboots).toHaveLength(0);
    await holder.release(grant);
    await a.until('rebooting');
    await expect.poll(() => a.logind.reboots.length).toBe(1);
  });

  it('reboots without a slot with strategy reboot', async () => {
    env = new TestEnv(etcd.endpoints);
    const a = await node('node-a', 'strategy: reboot');
    await a.start();
    await a.updateEngine.stageUpdate('4000.0.0');
    await a.until('rebooting');
    await expect.poll(() => a.logind.reboots.length).toBe(1);
    expect(await etcdKeys(env.prefix)).toEqual([]);
  });

  it('reboots on a request made with sluicectl, and clears the request', async () => {
    env = new TestEnv(etcd.endpoints);
    observer = await HolderObserver.start(etcd.endpoints, env.keys.root);
    const a = await node('node-a');
    guardReboots(a, observer);
    await a.start();
    await etcd.etcdctl([
      'put',
      env.keys.request('node-a'),
      JSON.stringify({
        v: 1,
        node: 'node-a',
        reason: 'kernel args',
        requestedAt: new Date().toISOString(),
        by: 'ops',
      }),
    ]);
    await a.until('rebooting');
    await expect.poll(() => a.logind.reboots.length).toBe(1);
    expect(await etcdKeys(env.keys.requestsPrefix)).toEqual([]);
  });
});
