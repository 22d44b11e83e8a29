/**
 * The group's reboot window closes in the middle of a rollout (a closed spec is put in
 * `groups/<g>/windows`): the node already rebooting finishes, nobody new is admitted or reboots,
 * and once the window opens again (the key is deleted) the rollout finishes.
 */
import { Fleet } from '@sluice/sim';
import { afterEach, expect, it, vi } from 'vitest';
import { closedWindow, downNow, expectInvariants, sleep } from './support.js';

// The fleet's own waits fail first, with the fleet's state in the message.
vi.setConfig({ testTimeout: 240_000 });

let fleet: Fleet | undefined;
afterEach(async () => {
  await fleet?.stop();
  fleet = undefined;
});

it('admits nobody while the group window is closed', async () => {
  fleet = await Fleet.start({ nodes: 4, max: 1, rebootSeconds: 1.5 });
  const f = fleet;
  await f.stageAll('2.0.0');
  await f.waitFor(() => downNow(f) === 1, 'the first reboot');

  await f.setWindow(closedWindow());
  const closedAt = Date.now();
  await f.waitFor(() => f.timeline.holders.length === 0, 'the first node to release', 10_000);
  await sleep(3000);
  expect(f.reboots).toHaveLength(1);
  expect(f.timeline.markers.filter((m) => m.createdAt > closedAt)).toEqual([]);
  const status = JSON.parse(await f.sluicectlOk(['status', '-o', 'json']));
  expect(status.window.open).toBe(false);

  await f.setWindow(null);
  await f.waitForRollout('2.0.0', { timeoutMs: 60_000 });
  await expectInvariants(f);
  expect(f.reboots.every((r) => r.downAt < closedAt || r.downAt > closedAt + 4000)).toBe(true);
});
