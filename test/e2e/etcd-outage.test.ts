/**
 * etcd goes away entirely for 10 s while two nodes are down rebooting. Nobody reboots without a
 * slot meanwhile (the waiters cannot be admitted, the nodes coming back cannot release), and the
 * rollout finishes once etcd is back.
 */
import { Fleet } from '@sluice/sim';
import { afterEach, expect, it, vi } from 'vitest';
import { downNow, expectInvariants, sleep } from './support.js';

// The fleet's own waits fail first, with the fleet's state in the message.
vi.setConfig({ testTimeout: 240_000 });

let fleet: Fleet | undefined;
afterEach(async () => {
  await fleet?.stop();
  fleet = undefined;
});

it('reboots nobody without a slot while etcd is down for 10 s, and finishes after', async () => {
  fleet = await Fleet.start({ nodes: 5, max: 2, rebootSeconds: 2 });
  const f = fleet;
  await f.stageAll('2.0.0');
  await f.waitFor(() => downNow(f) === 2, 'the first two reboots');
  // The simulator keeps a machine down until its own read of the slot has answered: let both
  // answer before etcd goes away, or a machine would stay down for the whole outage.
  await f.waitFor(
    () => f.reboots.filter((r) => r.admissionRevision !== null).length === 2,
    'the simulator to see both slots',
  );

  const member = f.etcd.members[0]!;
  await member.kill();
  f.note('etcd-down');
  const rebootsBefore = f.reboots.length;
  await sleep(10_000);
  // Both nodes came back during the outage, but nothing else happened.
  expect(f.reboots).toHaveLength(rebootsBefore);
  expect(downNow(f)).toBe(0);
  await member.start();
  f.note('etcd-up');

  await f.waitForRollout('2.0.0', { timeoutMs: 60_000 });
  await expectInvariants(f);
  expect(f.reboots).toHaveLength(5);
});
