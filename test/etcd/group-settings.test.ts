/**
 * EtcdGroupSettings against a real etcd: an agent waiting for its window follows the window key,
 * and a follow that could not start (etcd out of reach at that moment) is tried again until it
 * works, without waiting for the agent's next transition: otherwise a node waiting for a window
 * that was then removed would wait forever.
 */
import { GroupKeys } from '@sluice/core';
import { connectEtcd, EtcdGroupSettings } from '@sluice/etcd';
import { type EtcdCluster, FaultProxy, startEtcd } from '@sluice/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let etcd: EtcdCluster;
beforeAll(async () => {
  etcd = await startEtcd();
});
afterAll(async () => {
  await etcd?.stop();
});

describe('EtcdGroupSettings.followWindow', () => {
  it('tries again when the follow could not start, and then hears a change', async () => {
    const proxy = await FaultProxy.start(etcd.endpoint);
    const client = await connectEtcd({
      endpoints: [`http://127.0.0.1:${proxy.port}`],
      callTimeoutMs: 1000,
      retryAttempts: 1,
    });
    const keys = new GroupKeys(`/t-follow-${process.pid}/`, 'default');
    const errors: unknown[] = [];
    const settings = new EtcdGroupSettings(client, keys, 'n1', {
      onFollowError: (error) => errors.push(error),
    });
    try {
      await etcd.etcdctl(['put', keys.windows, 'Mon 04:00+1h']);
      proxy.blackhole();
      let changes = 0;
      settings.followWindow(true, () => changes++);
      await expect.poll(() => errors.length, { timeout: 15_000 }).toBeGreaterThan(0);
      proxy.heal();
      // Nobody calls followWindow again: the settings retry on their own.
      await new Promise((r) => setTimeout(r, 1000));
      await etcd.etcdctl(['del', keys.windows]);
      await expect.poll(() => changes, { timeout: 20_000 }).toBeGreaterThan(0);
      expect(await settings.window()).toBeNull();
    } finally {
      await settings.close();
      client.close();
      await proxy.stop();
    }
  });
});
