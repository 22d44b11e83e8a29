/**
 * A fleet of Fedora CoreOS nodes: rpm-ostree stages each update with finalization locked, and
 * each node's agent finalizes (which is the reboot) only while it holds a slot; logind is never
 * asked to reboot.
 */
import { Fleet } from '@sluice/sim';
import { afterEach, expect, it, vi } from 'vitest';
import { expectInvariants } from './support.js';

vi.setConfig({ testTimeout: 240_000 });

let fleet: Fleet | undefined;
afterEach(async () => {
  await fleet?.stop();
  fleet = undefined;
});

it('rolls a locked rpm-ostree deployment out to 3 nodes, 1 at a time', async () => {
  fleet = await Fleet.start({ nodes: 3, max: 1, rebootSeconds: 1, os: 'fcos' });
  await fleet.stageAll('2.0.0');
  await fleet.waitForRollout('2.0.0', { timeoutMs: 60_000 });
  await expectInvariants(fleet);
  const report = fleet.check();
  expect(report.reboots).toBe(3);
  expect(report.peakHolders).toBe(1);
  // Every finalize happened with the observer seeing the node's slot.
  expect(fleet.reboots.every((r) => r.slotSeen === true)).toBe(true);
  for (const node of fleet.nodes) {
    expect(node.rpmOstree?.finalizations).toEqual([expect.objectContaining({ error: '' })]);
    expect(node.rpmOstree?.booted?.version).toBe('2.0.0');
    expect(node.logind?.reboots).toEqual([]);
  }
});
