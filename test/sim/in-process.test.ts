/**
 * The benchmark's in-process fleets against a real etcd: one simulator process, and the same
 * fleet split over two worker processes. Each must finish a rollout with every node rebooted
 * once, within max, and report what etcd sent its watchers; the split fleet's nodes must be
 * shared out between the workers, none twice.
 */
import {
  groupEventsPerReboot,
  InProcessFleet,
  Random,
  SplitFleet,
  sampleEtcd,
  trackedPids,
} from '@sluice/sim';
import { type EtcdCluster, startEtcd } from '@sluice/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let etcd: EtcdCluster;
beforeAll(async () => {
  etcd = await startEtcd();
});
afterAll(async () => {
  await etcd?.stop();
});

describe('in-process fleets', () => {
  it('one process: every node reboots once, at most max at a time, and etcd counts the watch events', async () => {
    const fleet = await InProcessFleet.start({ etcd, nodes: 8, max: 2, rebootSeconds: 0.5 });
    try {
      const before = await sampleEtcd(etcd, () => fleet.revision());
      const since = Date.now();
      await fleet.stageAll('2.0.0', { spreadMs: 200, random: new Random(1) });
      await fleet.waitForRollout('2.0.0', 60_000);
      const after = await sampleEtcd(etcd, () => fleet.revision());
      const report = await fleet.check();
      expect(report.violations).toEqual([]);
      expect(report.peakDown).toBeLessThanOrEqual(2);
      expect(fleet.reboots.map((r) => r.node).sort()).toEqual(fleet.nodes.map((n) => n.id).sort());
      expect(after.watchEvents! - before.watchEvents!).toBeGreaterThan(0);
      expect(after.cpuSeconds!).toBeGreaterThanOrEqual(before.cpuSeconds!);
      // Every reboot takes and gives back a holding marker: one put and one delete each.
      const events = groupEventsPerReboot(fleet.timeline, fleet.reboots.length, since);
      expect(events?.byKind['holding put']).toBe(1);
      expect(events?.byKind['holding delete']).toBe(1);
    } finally {
      await fleet.stop();
    }
  });

  it('split over two processes: each node runs in one worker, and the rollout stays within max', async () => {
    const pidsBefore = new Set(trackedPids());
    const fleet = await SplitFleet.start({
      etcd,
      nodes: 7,
      max: 2,
      rebootSeconds: 0.5,
      processes: 2,
    });
    try {
      expect(trackedPids().filter((p) => !pidsBefore.has(p))).toHaveLength(2);
      fleet.stageAll('2.0.0', { spreadMs: 200, seed: 1 });
      await fleet.waitForRollout(60_000);
      const report = await fleet.check();
      expect(report.violations).toEqual([]);
      expect(report.peakDown).toBeLessThanOrEqual(2);
      const rebooted = fleet.reboots.map((r) => r.node).sort();
      expect(rebooted).toEqual(['n1', 'n2', 'n3', 'n4', 'n5', 'n6', 'n7']);
      expect(fleet.stages).toHaveLength(7);
      expect(fleet.workers).toHaveLength(2);
      // The simulator's own timeline saw every slot taken and released.
      expect(fleet.timeline.markers.filter((m) => m.deletedAt !== null)).toHaveLength(7);
    } finally {
      await fleet.stop();
    }
    expect(trackedPids().filter((p) => !pidsBefore.has(p))).toEqual([]);
  });
});
