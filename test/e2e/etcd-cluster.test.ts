/**
 * A 3-member etcd cluster loses its leader in the middle of a rollout, then (after the old
 * leader is back) a follower. Agents and the simulator's watchers fail over to the other
 * members; nobody is over-admitted, and the rollout finishes.
 */
import { Fleet } from '@sluice/sim';
import type { EtcdCluster } from '@sluice/testkit';
import { afterEach, expect, it, vi } from 'vitest';
import { expectInvariants } from './support.js';

// The fleet's own waits fail first, with the fleet's state in the message.
vi.setConfig({ testTimeout: 240_000 });

let fleet: Fleet | undefined;
afterEach(async () => {
  await fleet?.stop();
  fleet = undefined;
});

/** The index of the member that is leader now, asking each running member. */
async function leader(etcd: EtcdCluster): Promise<number> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    for (const [i, member] of etcd.members.entries()) {
      if (!member.running) continue;
      if ((await etcd.metric('etcd_server_is_leader', i).catch(() => 0)) === 1) return i;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('no etcd leader within 10 s');
}

it('survives losing the etcd leader and then a follower mid-rollout', async () => {
  fleet = await Fleet.start({ nodes: 6, max: 2, rebootSeconds: 1.5, members: 3 });
  const f = fleet;
  const etcd = f.etcd;
  await f.stageAll('2.0.0');
  await f.waitFor(() => f.reboots.length >= 1, 'the first reboot');

  const first = await leader(etcd);
  f.note('etcd-kill', undefined, `leader m${first}`);
  await etcd.members[first]!.kill();
  await f.waitFor(() => f.reboots.length >= 3, 'progress without the old leader', 30_000);
  await etcd.members[first]!.start();
  f.note('etcd-start', undefined, `m${first}`);

  const now = await leader(etcd);
  const follower = etcd.members.findIndex((m, i) => i !== now && m.running);
  f.note('etcd-kill', undefined, `follower m${follower}`);
  await etcd.members[follower]!.kill();
  await f.waitFor(() => f.reboots.length >= 5, 'progress without a follower', 30_000);
  await etcd.members[follower]!.start();
  f.note('etcd-start', undefined, `m${follower}`);

  await f.waitForRollout('2.0.0', { timeoutMs: 60_000 });
  await expectInvariants(f);
  expect(f.check().peakHolders).toBeLessThanOrEqual(2);
});
