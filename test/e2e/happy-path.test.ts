/**
 * The plain rollout: six nodes, two at a time, every node updated exactly once.
 */
import { Fleet } from '@sluice/sim';
import { afterEach, expect, it, vi } from 'vitest';
import { expectInvariants } from './support.js';

// The fleet's own waits fail first, with the fleet's state in the message.
vi.setConfig({ testTimeout: 240_000 });

let fleet: Fleet | undefined;
afterEach(async () => {
  await fleet?.stop();
  fleet = undefined;
});

it('rolls an update out to 6 nodes, 2 at a time', async () => {
  fleet = await Fleet.start({ nodes: 6, max: 2, rebootSeconds: 1.5 });
  await fleet.stageAll('2.0.0');
  await fleet.waitForRollout('2.0.0', { timeoutMs: 60_000 });
  await expectInvariants(fleet);
  const report = fleet.check();
  expect(report.reboots).toBe(6);
  // Two slots, six nodes: the slots were used, and never more.
  expect(report.peakDown).toBe(2);
  expect(report.peakHolders).toBe(2);
  expect(fleet.nodes.map((n) => n.version)).toEqual(Array(6).fill('2.0.0'));
  // Every reboot happened with the observer seeing its slot.
  expect(fleet.reboots.every((r) => r.slotSeen === true)).toBe(true);
});
