/**
 * The fleet-wide brake: `sluicectl pause` in the middle of a rollout lets the node already
 * rebooting finish but grants no new slot; `sluicectl resume` lets the rollout finish.
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

it('grants no slot while paused, and finishes after resume', async () => {
  fleet = await Fleet.start({ nodes: 5, max: 1, rebootSeconds: 1.5 });
  const f = fleet;
  await f.stageAll('2.0.0');
  await f.waitFor(() => downNow(f) === 1, 'the first reboot');

  await f.pause('e2e: hold everything');
  const pausedAt = Date.now();
  const status = JSON.parse(await f.sluicectlOk(['status', '-o', 'json']));
  expect(status.paused?.reason).toBe('e2e: hold everything');
  // Long enough for the first node to come back and release, and for two more reboots.
  await f.waitFor(() => f.timeline.holders.length === 0, 'the first node to release', 10_000);
  await sleep(3000);
  expect(f.reboots).toHaveLength(1);
  expect(f.timeline.markers.filter((m) => m.createdAt > pausedAt)).toEqual([]);
  expect(f.timeline.queue().filter((q) => q.state === 'waiting')).toHaveLength(4);

  await f.resume();
  await f.waitForRollout('2.0.0', { timeoutMs: 60_000 });
  await expectInvariants(f);
  expect(f.reboots).toHaveLength(5);
});
