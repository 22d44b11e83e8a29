/**
 * One node, one agent, with the built `sluiced` as processes: two machines with one node id (a
 * cloned machine-id), registration across restarts and lease expiry, a clock hours off (through
 * libfaketime), and an idle agent that must stay up. Safety is judged from etcd (HolderObserver,
 * etcdctl) and from each machine's simulated logind, never from the agents' own view.
 */

import { Semaphore } from '@sluice/etcd';
import { type EtcdCluster, FaultProxy, HolderObserver, startEtcd } from '@sluice/testkit';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CliRunner } from '../cli/cli.js';
import { sleep, TestEnv } from '../helpers.js';
import { LIBFAKETIME, Machine, type MachineOptions } from './machine.js';

let etcd: EtcdCluster;
let cli: CliRunner;
const machines: Machine[] = [];
const proxies: FaultProxy[] = [];
let observer: HolderObserver | null = null;

beforeAll(async () => {
  etcd = await startEtcd();
});
afterAll(async () => {
  await etcd?.stop();
});
afterEach(async () => {
  await Promise.all(machines.splice(0).map((m) => m.stop()));
  await Promise.all(proxies.splice(0).map((p) => p.stop()));
  await observer?.stop();
  observer = null;
  await cli?.cleanup();
});

async function machine(
  opts: Omit<MachineOptions, 'prefix' | 'endpoints'> & { endpoints?: string[] },
) {
  const m = await Machine.start({ endpoints: etcd.endpoints, prefix: cli.prefix, ...opts });
  machines.push(m);
  return m;
}

/** The value of a key as JSON, read with etcdctl; null when absent. */
async function json(key: string): Promise<Record<string, unknown> | null> {
  const text = (await etcd.etcdctl(['get', key, '--print-value-only'])).trim();
  return text === '' ? null : JSON.parse(text);
}

/** A key's create revision and lease, read with etcdctl; null when absent. */
async function meta(key: string): Promise<{ create: number; lease: string } | null> {
  const text = await etcd.etcdctl(['get', key, '-w', 'json']);
  // Lease ids are 64-bit: read them as text, not as JSON numbers, which would round them.
  const create = /"create_revision":(\d+)/.exec(text)?.[1];
  const lease = /"lease":(\d+)/.exec(text)?.[1] ?? '0';
  return create ? { create: Number(create), lease } : null;
}

async function eventually(what: string, check: () => Promise<boolean> | boolean, ms = 20_000) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await sleep(100);
  }
}

describe('one node, one agent', () => {
  it('keeps a second agent with the same node id out, and never lets it free a rebooting twin', async () => {
    cli = new CliRunner(etcd.endpoints);
    await etcd.etcdctl(['put', cli.keys.max, '1']);
    observer = await HolderObserver.start(etcd.endpoints, cli.keys.root);
    const vmA = await machine({ nodeId: 'twin', hostname: 'vm-a' });
    const vmB = await machine({ nodeId: 'twin', hostname: 'vm-b' });
    const vmT = await machine({ nodeId: 'third', hostname: 'vm-t' });
    const registration = cli.keys.registration('twin');

    vmA.startAgent();
    await eventually(
      'vm-a registered',
      async () => (await json(registration))?.hostname === 'vm-a',
    );
    const b = vmB.startAgent();
    await eventually('vm-b says why it stays out', () => b.stdout().includes('not taking part'));
    expect(b.stdout()).toContain('hostname vm-a');
    expect(b.stdout()).toContain('boot id vm-a-boot-1');
    expect((await json(cli.keys.conflict('twin')))?.hostname).toBe('vm-b');
    expect((await json(registration))?.hostname).toBe('vm-a');
    const status = (await cli.json(['status'])) as { nodeProblems: { problem: string }[] };
    expect(status.nodeProblems.map((p) => p.problem).join()).toContain('vm-b');
    const listed = (await cli.json(['nodes'])) as { nodes: { node: string; conflict: unknown }[] };
    expect(listed.nodes.find((n) => n.node === 'twin')?.conflict).toMatchObject({
      hostname: 'vm-b',
    });

    // vm-a takes the slot and goes down for its reboot.
    await vmA.updateEngine.stageUpdate('2.0.0');
    await eventually('vm-a reboots', () => vmA.logind.reboots.length === 1);
    await vmA.crash();
    const record = await json(cli.keys.queue('twin'));
    expect(record).toMatchObject({ state: 'rebooting', hostname: 'vm-a' });

    // vm-b's agent restarts while vm-a is down; once vm-a's registration has expired it
    // registers, finds vm-a's record and leaves it alone. vm-t wants a slot meanwhile.
    await vmB.crash();
    const b2 = vmB.startAgent();
    vmT.startAgent();
    await vmT.updateEngine.stageUpdate('2.0.0');
    await eventually(
      'vm-b registered',
      async () => (await json(registration))?.hostname === 'vm-b',
      30_000,
    );
    await eventually('vm-b leaves the record alone', () =>
      b2.stdout().includes('written by another agent'),
    );
    await sleep(3000);
    expect(vmT.logind.reboots).toHaveLength(0);
    expect(observer.holders).toEqual(['twin']);
    expect(await json(cli.keys.queue('twin'))).toMatchObject({
      state: 'rebooting',
      hostname: 'vm-a',
    });

    // The operator stops the clone; vm-a comes back, releases, and only then does vm-t reboot.
    b2.child.kill('SIGTERM');
    await b2.exited;
    await vmA.rebooted('2.0.0');
    vmA.startAgent();
    await eventually('vm-t reboots', () => vmT.logind.reboots.length === 1, 40_000);
    const history = (await cli.json(['history'])) as {
      records: { node: string; outcome: string }[];
    };
    expect(history.records.find((h) => h.node === 'twin')).toMatchObject({ outcome: 'released' });
    expect(observer.check()).toBe(1);
    expect(vmB.logind.reboots).toHaveLength(0);
  });

  it('keeps its registration across a restart and a lost lease; a dead agent’s expires', async () => {
    cli = new CliRunner(etcd.endpoints);
    const proxy = await FaultProxy.start(etcd.endpoint);
    proxies.push(proxy);
    const m = await machine({ nodeId: 'solo', hostname: 'vm-solo', endpoints: [proxy.endpoint] });
    const key = cli.keys.registration('solo');
    m.startAgent();
    await eventually('registered', async () => (await meta(key)) !== null);
    const first = (await meta(key))!;
    const token = (await json(key))?.token;
    expect(token).toEqual(expect.any(String));

    // A crash and a restart within the lease's TTL: the same key, taken over on a new lease.
    await m.crash();
    m.startAgent();
    await eventually('taken over', async () => (await meta(key))?.lease !== first.lease, 10_000);
    expect((await meta(key))?.create).toBe(first.create);
    expect((await json(key))?.token).toBe(token);

    // Cut off longer than the lease: the registration goes, and comes back once the link does.
    proxy.reset();
    proxy.blackhole();
    await eventually('expired while cut off', async () => (await meta(key)) === null, 15_000);
    proxy.heal();
    await eventually('registered again', async () => (await meta(key)) !== null, 30_000);
    expect((await json(key))?.token).toBe(token);

    // A dead agent's registration goes with its lease.
    await m.crash();
    await eventually('dead agent gone', async () => (await meta(key)) === null, 10_000);
  });

  it('never admits or reboots a node whose clock is two hours ahead, and says why', async () => {
    expect(
      LIBFAKETIME,
      "Debian's faketime package (scripts/bootstrap.mjs installs it)",
    ).toBeTruthy();
    cli = new CliRunner(etcd.endpoints);
    observer = await HolderObserver.start(etcd.endpoints, cli.keys.root);
    const m = await machine({ nodeId: 'skewed', hostname: 'vm-skewed' });
    const agent = m.startAgent({
      LD_PRELOAD: LIBFAKETIME!,
      FAKETIME: '+2h',
      // Timers keep real time; only the wall clock is off, as with a bad RTC or NTP.
      FAKETIME_DONT_FAKE_MONOTONIC: '1',
    });
    await eventually(
      'registered',
      async () => (await json(cli.keys.registration('skewed'))) !== null,
    );
    await m.updateEngine.stageUpdate('2.0.0');
    await eventually('the clock guard speaks', () => agent.stdout().includes('ahead of etcd'));
    await sleep(3000);
    expect(m.logind.reboots).toHaveLength(0);
    expect(observer.grants).toEqual([]);
    const listed = (await cli.json(['nodes'])) as { nodes: { node: string; problem: string }[] };
    expect(listed.nodes.find((n) => n.node === 'skewed')?.problem).toMatch(
      /clock is 72\d\d s ahead/,
    );
    const status = (await cli.json(['status'])) as { nodeProblems: { problem: string }[] };
    expect(status.nodeProblems.map((p) => p.problem).join()).toContain('clock');
  });

  it('unlock --force of a node that is rebooting says what it means and wants --yes', async () => {
    cli = new CliRunner(etcd.endpoints);
    const env = new TestEnv(etcd.endpoints);
    try {
      const sem = new Semaphore(env.client(), { node: 'n3', prefix: cli.prefix, group: cli.group });
      const grant = await sem.acquire({ reason: 'update 2.0.0' });
      await sem.setState(grant, 'rebooting');
      const refused = await cli.run(['unlock', 'n3', '--force']);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain(
        'n3 is rebooting now; releasing its slot lets another node reboot while n3 is down',
      );
      expect(refused.stderr).toContain('--force --yes');
      expect(await json(cli.keys.holding('n3'))).not.toBeNull();
      const done = await cli.run(['unlock', 'n3', '--force', '--yes']);
      expect(done.code).toBe(0);
      expect(done.stdout).toContain('the next node may reboot before it is back');
      expect(await json(cli.keys.holding('n3'))).toBeNull();
      const history = (await cli.json(['history'])) as {
        records: { node: string; outcome: string; by: string }[];
      };
      expect(history.records[0]).toMatchObject({
        node: 'n3',
        outcome: 'forced',
        by: expect.stringContaining('tester'),
      });
      sem.close();
    } finally {
      env.cleanup();
    }
  });

  it('stays up while idle with only a sentinel file to follow and metrics off', async () => {
    cli = new CliRunner(etcd.endpoints);
    const lock = await machine({
      nodeId: 'idle-lock',
      hostname: 'vm-idle-lock',
      sources: ['updateEngine: false', 'manual: false', 'sentinel: /nonexistent/reboot-required'],
    });
    const plain = await machine({
      nodeId: 'idle-plain',
      hostname: 'vm-idle-plain',
      sources: ['updateEngine: false', 'manual: false', 'sentinel: /nonexistent/reboot-required'],
      yaml: 'strategy: reboot',
    });
    const agents = [lock.startAgent(), plain.startAgent()];
    let ended: string | null = null;
    for (const a of agents) {
      void a.exited.then((code) => {
        ended ??= `exited ${code}: ${a.stderr()}`;
      });
    }
    await sleep(10_000);
    expect(ended).toBeNull();
    for (const a of agents) {
      a.child.kill('SIGTERM');
      expect(await a.exited).toBe(0);
    }
  });
});
