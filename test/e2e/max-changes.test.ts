/**
 * An operator edits max with the real etcdctl in the middle of a rollout, 1 → 3 → 1. The agents
 * obey each new value at once: more nodes reboot together after the raise, and after the lowering
 * nobody new reboots until the nodes already down have come back.
 */
import { Fleet } from '@sluice/sim';
import { afterEach, expect, it, vi } from 'vitest';
import { downAt, downNow, expectInvariants } from './support.js';

// The fleet's own waits fail first, with the fleet's state in the message.
vi.setConfig({ testTimeout: 240_000 });

let fleet: Fleet | undefined;
afterEach(async () => {
  await fleet?.stop();
  fleet = undefined;
});

it('obeys max edited with etcdctl mid-rollout: 1 → 3 → 1', async () => {
  fleet = await Fleet.start({ nodes: 7, max: 1, rebootSeconds: 2 });
  const f = fleet;
  await f.stageAll('2.0.0');
  await f.waitFor(() => downNow(f) === 1, 'the first reboot');

  await f.setMax(3, 'etcdctl');
  await f.waitFor(() => downNow(f) === 3, 'three nodes down at once after max 3', 10_000);
  // Until the raise, one node at a time.
  const raised = f.maxSets.at(-1)!.at;
  expect(
    Math.max(...f.reboots.filter((r) => r.downAt < raised).map((r) => downAt(f, r.downAt).length)),
  ).toBe(1);

  await f.setMax(1, 'etcdctl');
  const lowered = f.maxSets.at(-1)!.doneAt;
  await f.waitForRollout('2.0.0', { timeoutMs: 60_000 });
  await expectInvariants(f);

  // After the lowering, every node that went down was alone: the three already down drained
  // first, and only then did the next node get a slot.
  const later = f.reboots.filter((r) => r.downAt > lowered);
  expect(later.length).toBeGreaterThan(0);
  for (const r of later) expect(downAt(f, r.downAt)).toEqual([r.node]);
  expect(f.check().peakDown).toBe(3);
  // The watcher saw every edit, in order.
  expect(f.timeline.maxChanges.map((c) => c.value).slice(-3)).toEqual([1, 3, 1]);
});
