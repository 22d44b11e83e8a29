/**
 * The confirmation right before the reboot is the proof that the slot is still this node's. It is
 * only worth something if nothing that talks to etcd, or waits on the network, comes between it
 * and logind's Reboot call: an operator's `sluicectl unlock --force` that lands in that gap would
 * let the node reboot on a slot another node may already hold. These tests put the force-unlock
 * at the agent's last network call before the reboot (its clock check: the `GET /version` on
 * the node's link) and judge every Reboot call by reading the marker with their own client.
 */
import { GroupAdmin } from '@sluice/etcd';
import { type EtcdCluster, FaultProxy, startEtcd } from '@sluice/testkit';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { TestEnv } from '../helpers.js';
import { TestNode } from './fixture.js';

let etcd: EtcdCluster;
let env: TestEnv;
let node: TestNode | null = null;
let proxy: FaultProxy | null = null;

beforeAll(async () => {
  etcd = await startEtcd();
});
afterAll(async () => {
  await etcd?.stop();
});
afterEach(async () => {
  await node?.stop();
  node = null;
  await proxy?.stop();
  proxy = null;
  env?.cleanup();
});

/** node-a, its link to etcd through a proxy, with a one-second drain before its reboot. */
async function proxiedNode(): Promise<{
  a: TestNode;
  link: FaultProxy;
  withoutSlot: () => Promise<string[]>;
}> {
  env = new TestEnv(etcd.endpoints);
  proxy = await FaultProxy.start(etcd.endpoints[0]!);
  const a = new TestNode({
    node: 'node-a',
    endpoints: [proxy.endpoint],
    prefix: env.prefix,
    group: env.group,
    yaml: 'checks:\n  drain: { command: "sleep 1" }',
  });
  node = a;
  await a.setup();
  // Each Reboot call is judged by the test's own read of the marker, not by the agent.
  const withoutSlot: string[] = [];
  const reads: Promise<void>[] = [];
  a.logind.onReboot = () => {
    reads.push(
      etcd
        .etcdctl(['get', env.keys.holding('node-a'), '--print-value-only'])
        .then(
          (v) => void (v.trim() === '' && withoutSlot.push(`reboot #${a.logind.reboots.length}`)),
        ),
    );
  };
  return { a, link: proxy, withoutSlot: () => Promise.all(reads).then(() => withoutSlot) };
}

/** Force-unlocks node-a when its agent next asks etcd for the time, then lets the request on. */
function unlockAtClockCheck(link: FaultProxy): { unlocked: () => boolean } {
  const admin = new GroupAdmin(env.client(), env.keys);
  let done = false;
  link.holdUp(
    (chunk) => chunk.toString('latin1').startsWith('GET /version'),
    async () => {
      done = await admin.forceRelease('node-a', 'ops');
    },
  );
  return { unlocked: () => done };
}

it('does not reboot when its slot is force-unlocked at its last look at the network before the reboot', async () => {
  const { a, link, withoutSlot } = await proxiedNode();
  await a.start();
  await a.updateEngine.stageUpdate('4000.0.0');
  // Admitted: the next clock check is the one before the reboot.
  await a.until('draining');
  const race = unlockAtClockCheck(link);
  await expect.poll(race.unlocked, { timeout: 10_000 }).toBe(true);
  // The agent queues again and reboots on a slot of its own; never on the one taken away.
  await expect.poll(() => a.logind.reboots.length, { timeout: 20_000 }).toBeGreaterThan(0);
  expect(await withoutSlot()).toEqual([]);
  expect(a.edges.some((e) => e.includes('slot-lost'))).toBe(true);
});

it('clears the reboot request it serves in the confirming write itself, and keeps it if the slot is gone', async () => {
  const { a, link, withoutSlot } = await proxiedNode();
  await a.start();
  const request = env.keys.request('node-a');
  const value = {
    v: 1,
    node: 'node-a',
    reason: 'kernel args',
    requestedAt: new Date().toISOString(),
    by: 'ops',
  };
  await etcd.etcdctl(['put', request, JSON.stringify(value)]);
  await a.until('draining');
  const race = unlockAtClockCheck(link);
  await expect.poll(race.unlocked, { timeout: 10_000 }).toBe(true);
  // The slot was taken before the confirmation: the request stays, and is served later.
  expect(await etcd.etcdctl(['get', request, '--print-value-only'])).toContain('kernel args');
  await expect.poll(() => a.logind.reboots.length, { timeout: 20_000 }).toBe(1);
  expect(await withoutSlot()).toEqual([]);
  // Served: gone at the revision of the `rebooting` record, present just before it.
  const record = JSON.parse(
    await etcd.etcdctl(['get', env.keys.queue('node-a'), '-w', 'json']),
  ) as { kvs: { mod_revision: number; value: string }[] };
  const kv = record.kvs[0]!;
  expect(JSON.parse(Buffer.from(kv.value, 'base64').toString()).state).toBe('rebooting');
  const at = (rev: number) =>
    etcd.etcdctl(['get', request, '--print-value-only', `--rev=${rev}`]).then((v) => v.trim());
  expect(await at(kv.mod_revision)).toBe('');
  expect(await at(kv.mod_revision - 1)).toContain('kernel args');
});
