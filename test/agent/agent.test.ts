/**
 * sluiced against a real etcd and a real dbus-daemon with simulated update_engine and logind.
 * "No reboot without a slot" is judged by the simulated logind together with HolderObserver,
 * which watches etcd with its own client: at each Reboot call the node's marker must exist.
 */
import { existsSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import {
  type EtcdCluster,
  FakeLogind,
  FakeUpdateEngine,
  HolderObserver,
  type RevisionEvent,
  RevisionWatch,
  startDbusDaemon,
  startEtcd,
} from '@sluice/testkit';
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
/** Clean-ups a test registers; afterEach runs them after stopping the nodes. */
const cleanups: (() => Promise<unknown>)[] = [];
const onCleanup = (fn: () => Promise<unknown>) => cleanups.push(fn);

afterEach(async () => {
  rebootChecks.length = 0;
  await Promise.all(nodes.splice(0).map((n) => n.stop()));
  for (const fn of cleanups.splice(0)) await fn();
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

/**
 * Checks every Reboot call of a node against etcd, read with the test's own client: the node's
 * holding marker must exist. (The agent stays in `rebooting` until the test restarts it, so
 * nothing can release the slot between the call and the read.) `rebootsWithoutSlot()` gives the
 * calls that had none.
 */
const rebootChecks: Promise<string | null>[] = [];
function guardReboots(n: TestNode): void {
  n.logind.onReboot = () => {
    const node = n.opts.node;
    rebootChecks.push(
      etcd
        .etcdctl(['get', env.keys.holding(node), '--print-value-only'])
        .then((value) => (value.trim() === '' ? `${node} rebooted without a slot` : null)),
    );
  };
}
async function rebootsWithoutSlot(): Promise<string[]> {
  const results = await Promise.all(rebootChecks.splice(0));
  return results.filter((r): r is string => r !== null);
}

/** The create revision of a node's queue key (its place), once the key is there. */
async function placeOf(node: string): Promise<number> {
  const read = async () =>
    (await env.semaphore('observer').snapshot()).queue.find((e) => e.node === node)?.createRevision;
  // The agent turns `queued` before its enqueue txn is done: wait for the key.
  await expect.poll(read).toBeGreaterThan(0);
  return (await read())!;
}

/** node-a with an update staged, queued behind a holder of the only slot; and node-a's place. */
async function queuedBehindHolder() {
  env = new TestEnv(etcd.endpoints);
  const holder = env.semaphore('holder');
  const grant = await holder.acquire();
  const a = await node('node-a');
  await a.start();
  await a.updateEngine.stageUpdate('4000.0.0');
  await a.until('queued');
  return { holder, grant, a, place: await placeOf('node-a') };
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
    guardReboots(a);
    await a.start();
    expect(a.state.name).toBe('idle');
    await a.updateEngine.stageUpdate('4000.0.0');
    await a.until('rebooting');
    await expect.poll(() => a.logind.reboots.length).toBe(1);
    expect(a.logind.reboots[0]?.interactive).toBe(false);
    expect(await rebootsWithoutSlot()).toEqual([]);
    const record = JSON.parse(
      await etcd.etcdctl(['get', env.keys.queue('node-a'), '--print-value-only']),
    );
    expect(record).toMatchObject({ state: 'rebooting', bootId: 'boot-1', toVersion: '4000.0.0' });

    await a.reboot('4000.0.0');
    await a.start();
    await a.until('idle');
    expect(a.edges).toContain('post-checking (recovered-rebooted)');
    expect(a.edges).toContain('idle (released)');
    // Only the running agent's registration is left.
    expect(await etcdKeys(env.keys.root)).toEqual([env.keys.registration('node-a')]);
    const history = JSON.parse(
      (
        await etcd.etcdctl(['get', '--prefix', env.keys.historyPrefix, '--print-value-only'])
      ).trim(),
    );
    expect(history).toMatchObject({ node: 'node-a', outcome: 'released' });
    expect(a.logind.reboots).toHaveLength(1);
    expect(observer.peak).toBe(1);
  });

  it('costs four slot writes per reboot, and keeps its hold lease across the reboot', async () => {
    env = new TestEnv(etcd.endpoints);
    const a = await node('node-a');
    guardReboots(a);
    await a.start();
    await a.until('idle');
    const client = env.client();
    const start = Number((await client.get(env.prefix).exec()).header.revision);
    // Every write under the prefix, one line per revision, as an independent watch sees it.
    const writes: string[] = [];
    const what = (e: RevisionEvent) => {
      const key = e.key.slice(env.prefix.length).replace(/history\/g\/\d+-/, 'history/g/');
      const state = e.value && key.startsWith('groups/g/queue/') ? JSON.parse(e.value).state : '';
      return `${e.type} ${key}${state ? ` ${state}` : ''}`;
    };
    const watch = await RevisionWatch.start(client, env.prefix, {
      startRevision: start + 1,
      onRevision: (change) => writes.push(change.events.map(what).sort().join(', ')),
    });
    onCleanup(() => watch.close());
    await a.updateEngine.stageUpdate('4000.0.0');
    await a.until('rebooting');
    await expect.poll(() => a.logind.reboots.length).toBe(1);
    await a.reboot('4000.0.0');
    await a.start();
    await a.until('idle');
    await expect.poll(() => writes.length).toBe(6);
    expect(await rebootsWithoutSlot()).toEqual([]);
    expect(writes).toEqual([
      // The slot: join, admission, the confirmation before Reboot, the release.
      'put groups/g/queue/node-a waiting',
      'put groups/g/holding/node-a, put groups/g/queue/node-a holding',
      'put groups/g/queue/node-a rebooting',
      // The agent's registration: its stop for the reboot removes it, its start writes it. The
      // slot's key is not written after boot: the new process keeps the same hold lease alive.
      'delete groups/g/nodes/node-a',
      'put groups/g/nodes/node-a',
      'delete groups/g/holding/node-a, delete groups/g/queue/node-a, put history/g/node-a',
    ]);
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
    // Generous bounds: on a loaded machine the drain's etcdctl alone can take seconds.
    await expect
      .poll(() => a.edges.some((e) => e.startsWith('draining')), { timeout: 15_000 })
      .toBe(true);
    await a.until('waiting-window', 30_000);
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

  it('as the canary of a new version whose post-checks fail, halts the group; the next node waits', async () => {
    env = new TestEnv(etcd.endpoints);
    await etcd.etcdctl(['put', env.keys.max, '3']);
    await etcd.etcdctl(['put', env.keys.canary, '{"count":1,"soak":"1s"}']);
    const a = await node(
      'node-a',
      'checks:\n  post:\n    - name: healthy\n      command: "false"\n  postDeadline: 100ms\n  postInterval: 200ms',
    );
    guardReboots(a);
    await a.start();
    await a.updateEngine.stageUpdate('4000.0.0');
    await a.until('rebooting');
    await a.reboot('4000.0.0');
    await a.start();
    // Etcd says so, read with the test's own client: the canary's record, and the halt.
    const value = async (key: string) =>
      (await etcd.etcdctl(['get', key, '--print-value-only'])).trim();
    await expect.poll(() => value(env.keys.paused), { timeout: 10_000 }).not.toBe('');
    expect(JSON.parse(await value(env.keys.paused))).toMatchObject({
      by: 'sluice',
      reason: expect.stringContaining('canary node-a of 4000.0.0 failed'),
    });
    expect(JSON.parse(await value(env.keys.canaryRecord('node-a')))).toMatchObject({
      version: '4000.0.0',
      outcome: 'failed',
    });
    // Resumed by hand: node-b (same version) still waits for an operator's canary reset or skip.
    await etcd.etcdctl(['del', env.keys.paused]);
    const b = await node('node-b');
    guardReboots(b);
    await b.start();
    await b.updateEngine.stageUpdate('4000.0.0');
    await b.until('queued');
    await sleep(1500);
    expect(b.state.name).toBe('queued');
    expect(await etcdKeys(env.keys.holdingPrefix)).toEqual([env.keys.holding('node-a')]);
    expect(await rebootsWithoutSlot()).toEqual([]);
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
    const { holder, grant, a, place } = await queuedBehindHolder();
    await a.agent!.stop();
    a.agent = null;
    await a.start();
    expect(a.edges.at(-1)).toBe('queued (recovered-queued)');
    expect(await placeOf('node-a')).toBe(place);
    expect(a.logind.reboots).toHaveLength(0);
    await holder.release(grant);
    await a.until('rebooting');
    await expect.poll(() => a.logind.reboots.length).toBe(1);
  });

  it('keeps its place when update_engine cannot be reached at a restart, and goes on once it can', async () => {
    const { holder, grant, a, place: before } = await queuedBehindHolder();
    await a.agent!.stop();
    a.agent = null;
    // The system bus is gone while the agent starts again.
    const socketPath = a.bus.socketPath;
    await a.updateEngine.stop();
    await a.logind.stop();
    await a.bus.stop();
    await a.start();
    expect(a.state.name).toBe('queued');
    await sleep(1500);
    expect(a.state.name).toBe('queued');
    expect(await placeOf('node-a')).toBe(before);
    // The bus comes back, with update_engine still saying a reboot is needed.
    await mkdir(dirname(socketPath), { recursive: true });
    onCleanup(() => rm(dirname(socketPath), { recursive: true, force: true }));
    a.bus = await startDbusDaemon({ socketPath });
    a.updateEngine = new FakeUpdateEngine(a.bus.address);
    await a.updateEngine.start();
    await a.updateEngine.stageUpdate('4000.0.0');
    a.logind = new FakeLogind(a.bus.address);
    await a.logind.start();
    await holder.release(grant);
    await a.until('rebooting', 15_000);
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
    const a = await node('node-a');
    guardReboots(a);
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
    expect(await rebootsWithoutSlot()).toEqual([]);
    expect(await etcdKeys(env.keys.requestsPrefix)).toEqual([]);
  });

  it('does not reboot when stopped during the warning to logged-in users, and keeps the slot', async () => {
    env = new TestEnv(etcd.endpoints);
    const rebooted = join(tmpdir(), `sluice-rebooted-${env.prefix.replaceAll('/', '')}`);
    const a = await node(
      'node-a',
      `reboot:\n  method: command\n  command: "touch ${rebooted}"\n  warnDelay: 2s`,
    );
    try {
      await a.start();
      await a.updateEngine.stageUpdate('4000.0.0');
      await a.until('draining');
      await sleep(300);
      await a.agent!.stop();
      await sleep(2500);
      expect(existsSync(rebooted)).toBe(false);
      // The slot stays recorded for the next start, which carries on from it.
      expect(await etcdKeys(env.keys.holdingPrefix)).toEqual([env.keys.holding('node-a')]);
    } finally {
      await rm(rebooted, { force: true });
    }
  });

  it("leaves an operator's manual lock of this node alone, and goes ahead once it is unlocked", async () => {
    env = new TestEnv(etcd.endpoints);
    const manual = env.semaphore('node-a');
    const grant = await manual.acquire({ reason: 'disk swap', manual: true });
    const a = await node('node-a');
    guardReboots(a);
    await a.start();
    await a.updateEngine.stageUpdate('4000.0.0');
    await expect
      .poll(() => (a.state.name === 'update-staged' && a.state.lastError) || '')
      .toContain('manual lock');
    await sleep(500);
    expect(a.logind.reboots).toHaveLength(0);
    // A restart does not adopt the manual lock either.
    await a.agent!.stop();
    a.agent = null;
    await a.start();
    expect(a.edges).toContain('idle (recovered-idle)');
    await sleep(500);
    expect(a.logind.reboots).toHaveLength(0);
    expect(await manual.release(grant)).toBe(true);
    await expect.poll(() => a.logind.reboots.length, { timeout: 10_000 }).toBe(1);
    expect(await rebootsWithoutSlot()).toEqual([]);
  });

  it('gives the slot back when it restarts holding for a request that was withdrawn', async () => {
    env = new TestEnv(etcd.endpoints);
    // The pre-check passes at once; run again once admitted, it hangs, so the node stays holding.
    const flag = join(tmpdir(), `sluice-admitted-${env.prefix.replaceAll('/', '')}`);
    const check = `if [ -e ${flag} ]; then sleep 30; fi; touch ${flag}`;
    const a = await node(
      'node-a',
      `checks:\n  pre:\n    - command: '${check}'\n      timeout: 60s`,
    );
    try {
      await a.start();
      const request = {
        v: 1,
        node: 'node-a',
        reason: 'kernel args',
        requestedAt: new Date().toISOString(),
        by: 'ops',
      };
      await etcd.etcdctl(['put', env.keys.request('node-a'), JSON.stringify(request)]);
      await a.until('holding');
      await a.agent!.stop();
      a.agent = null;
      await etcd.etcdctl(['del', env.keys.request('node-a')]);
      await a.start();
      await a.until('idle');
      expect(a.edges).toContain('releasing (update-cleared)');
      expect(await etcdKeys(env.keys.root)).toEqual([env.keys.registration('node-a')]);
      expect(a.logind.reboots).toHaveLength(0);
      const history = await etcd.etcdctl([
        'get',
        '--prefix',
        env.keys.historyPrefix,
        '--print-value-only',
      ]);
      expect(JSON.parse(history.trim())).toMatchObject({ node: 'node-a', outcome: 'abandoned' });
    } finally {
      await rm(flag, { force: true });
    }
  });

  it('exports its state, queue position and slot on /metrics', async () => {
    env = new TestEnv(etcd.endpoints);
    await etcd.etcdctl(['put', env.keys.max, '1']);
    const holder = env.semaphore('holder');
    const grant = await holder.acquire();
    const waiter = env.semaphore('waiter');
    await waiter.enqueue();
    const a = await node('node-a');
    const running = await a.start();
    await a.updateEngine.stageUpdate('4000.0.0');
    await a.until('queued');
    const scrape = async () => (await fetch(`http://${running.metricsAddress}/metrics`)).text();
    expect(running.metricsAddress).toMatch(/^127\.0\.0\.1:\d+$/);
    // One waiter stands ahead of it (the holder is not waiting): status would say position 2.
    await expect.poll(scrape).toMatch(/^sluice_agent_queue_position 1$/m);
    let text = await scrape();
    expect(text).toMatch(/^sluice_agent_state\{state="queued"\} 1$/m);
    expect(text).toMatch(/^sluice_agent_slot_held 0$/m);
    expect(text).toMatch(/^sluice_agent_update_staged 1$/m);
    await waiter.leave();
    await expect.poll(scrape).toMatch(/^sluice_agent_queue_position 0$/m);
    await holder.release(grant);
    await a.until('rebooting');
    await expect.poll(() => a.logind.reboots.length).toBe(1);
    text = await scrape();
    expect(text).toMatch(/^sluice_agent_queue_position -1$/m);
    expect(text).toMatch(/^sluice_agent_slot_held 1$/m);
    expect(text).toMatch(/^sluice_agent_reboots_total 1$/m);
    expect(text).toMatch(/^sluice_agent_transitions_total\{edge="admitted",to="holding"\} 1$/m);
  });
});

describe('sluiced on a restart and a clock gone wrong', () => {
  it('gives the slot back when it restarts in rebooting on the same boot and the update went away', async () => {
    env = new TestEnv(etcd.endpoints);
    const a = await node('node-a');
    guardReboots(a);
    await a.start();
    await a.updateEngine.stageUpdate('4000.0.0');
    await a.until('rebooting');
    await expect.poll(() => a.logind.reboots.length).toBe(1);
    // sluiced restarts before the machine went down (same boot id), and update_engine no
    // longer has an update staged.
    await a.agent!.stop();
    a.agent = null;
    a.updateEngine.setIdle('3900.0.0');
    await a.start();
    await a.until('idle');
    expect(a.edges).toContain('releasing (recovered-update-gone)');
    expect(a.logind.reboots).toHaveLength(1);
    expect(await etcdKeys(env.keys.queuePrefix)).toEqual([]);
    expect(await etcdKeys(env.keys.holdingPrefix)).toEqual([]);
    expect(await rebootsWithoutSlot()).toEqual([]);
  });

  it('does not reboot once admitted if its clock has since gone hours off; reboots when it is right', async () => {
    env = new TestEnv(etcd.endpoints);
    const a = await node('node-a', 'checks:\n  drain: { command: "sleep 1" }');
    guardReboots(a);
    await a.start();
    await a.updateEngine.stageUpdate('4000.0.0');
    await a.until('draining');
    // The clock jumps two hours ahead during the drain (a bad NTP step, say).
    a.clockOffsetMs = 2 * 3600_000;
    await a.until('rebooting');
    await sleep(1500);
    expect(a.logind.reboots).toHaveLength(0);
    expect(a.edges).toContain('rebooting (reboot-failed)');
    expect(await etcdKeys(env.keys.holdingPrefix)).toEqual([env.keys.holding('node-a')]);
    const registration = JSON.parse(
      await etcd.etcdctl(['get', env.keys.registration('node-a'), '--print-value-only']),
    );
    expect(registration.problem).toMatch(/clock is 720\d s ahead of etcd's/);
    // NTP puts it right: the next attempt reboots, still holding the slot.
    a.clockOffsetMs = 0;
    await expect.poll(() => a.logind.reboots.length, { timeout: 5000 }).toBe(1);
    expect(await rebootsWithoutSlot()).toEqual([]);
  });
});
