/**
 * A group of real sluiced agents (the simulator's fleet: processes, D-Bus, reboots) and FleetLock
 * clients served by a real sluice-fleetlock: one max, one FIFO queue across both kinds, as an
 * independent observer of the holding markers sees it.
 */
import { randomUUID } from 'node:crypto';
import { Fleet } from '@sluice/sim';
import { type EtcdCluster, HolderObserver, startEtcd } from '@sluice/testkit';
import { Etcd3 } from 'etcd3';
import { afterAll, afterEach, expect, it, onTestFinished, vi } from 'vitest';
import { killAll } from '../process.js';
import { call, sleep, startServer } from './support.js';

vi.setConfig({ testTimeout: 120_000 });

let etcd: EtcdCluster | undefined;
let fleet: Fleet | undefined;
let observer: HolderObserver | undefined;
afterEach(async () => {
  await observer?.stop();
  await fleet?.stop();
  await killAll();
});
afterAll(async () => {
  await etcd?.stop();
});

/** Polls pre-reboot every 300 ms until granted, "reboots" for 1 s, then calls steady-state. */
async function zincati(url: string, id: string, group: string): Promise<void> {
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline) {
    const answer = await call(url, 'pre-reboot', id, group);
    expect(answer.status, answer.body).toBeLessThan(500);
    if (answer.status === 200) {
      await sleep(1000);
      expect((await call(url, 'steady-state', id, group)).status).toBe(200);
      return;
    }
    await sleep(300);
  }
  throw new Error(`${id} was never granted`);
}

it('agents and FleetLock clients share max 1 and one FIFO queue', async () => {
  etcd = await startEtcd();
  const prefix = `/mix-${randomUUID().slice(0, 8)}/`;
  // The exact order below holds only if no waiter loses its place: on a loaded machine an agent
  // can miss keep-alives for the simulator's usual 3 s session TTL and queue again at the back.
  fleet = await Fleet.start({ nodes: 3, max: 1, rebootSeconds: 1, etcd, prefix, sessionTTL: 15 });
  const keys = fleet.keys;
  const server = await startServer(etcd.endpoints, prefix, ['--poll-interval', '2s']);
  observer = await HolderObserver.start(etcd.endpoints, keys.root);
  const client = new Etcd3({ hosts: etcd.endpoints });
  onTestFinished(() => client.close());
  const queued = async (node: string) => {
    const deadline = Date.now() + 30_000;
    while (!(await client.get(keys.queue(node)).exists())) {
      if (Date.now() > deadline) throw new Error(`${node} never queued`);
      await sleep(50);
    }
  };

  // A FleetLock client takes the only slot; then both kinds queue up, alternating.
  expect((await call(server.url, 'pre-reboot', 'f0', keys.group)).status).toBe(200);
  const order = ['f0'];
  const pollers: Promise<void>[] = [];
  for (const [i, node] of fleet.nodes.entries()) {
    await fleet.stageAll('2.0.0', { nodes: [node.id] });
    await queued(node.nodeId);
    order.push(node.nodeId);
    const id = `f${i + 1}`;
    const answer = await call(server.url, 'pre-reboot', id, keys.group);
    expect(answer.json?.kind, answer.body).toBe('full');
    expect(answer.json?.value).toContain(`position ${order.length} in the queue`);
    order.push(id);
    pollers.push(zincati(server.url, id, keys.group));
  }
  // sluicectl shows both kinds, the FleetLock clients marked as such.
  const status = JSON.parse(await fleet.sluicectlOk(['status', '-o', 'json']));
  expect(
    status.holders.map((h: { node: string; client: string | null }) => [h.node, h.client]),
  ).toEqual([['f0', 'fleetlock']]);
  expect(status.waiting.map((w: { node: string }) => w.node)).toEqual(order.slice(1));
  expect(
    status.waiting.filter((w: { client: string | null }) => w.client === 'fleetlock'),
  ).toHaveLength(3);

  expect((await call(server.url, 'steady-state', 'f0', keys.group)).status).toBe(200);
  await Promise.all(pollers);
  await fleet.waitForRollout('2.0.0', { timeoutMs: 60_000 });
  await fleet.waitFor(() => observer!.holders.length === 0, 'every slot given back', 20_000);

  expect(observer.check()).toBe(1);
  expect(observer.grants).toEqual(order);

  const nodes = JSON.parse(await fleet.sluicectlOk(['nodes', '-o', 'json']));
  const f1 = nodes.nodes.find((n: { node: string }) => n.node === 'f1');
  expect(f1).toMatchObject({ client: 'fleetlock', lastReboot: { outcome: 'released' } });
  const history = JSON.parse(await fleet.sluicectlOk(['history', '-o', 'json']));
  const fleetlock = history.records.filter(
    (r: { client: string | null }) => r.client === 'fleetlock',
  );
  expect(fleetlock.map((r: { node: string }) => r.node).sort()).toEqual(['f0', 'f1', 'f2', 'f3']);
});
