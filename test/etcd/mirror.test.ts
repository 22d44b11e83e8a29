/**
 * Mirror against a real etcd through a fault proxy: a read again that fails after the old watch
 * was dropped leaves the mirror out of step, says so (`connected` false) and keeps trying until
 * it reads and watches again, rather than holding a stale copy with no watch behind it.
 */
import { connectEtcd, Mirror } from '@sluice/etcd';
import { type EtcdCluster, FaultProxy, startEtcd } from '@sluice/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let etcd: EtcdCluster;
beforeAll(async () => {
  etcd = await startEtcd();
});
afterAll(async () => {
  await etcd?.stop();
});

describe('Mirror', () => {
  it('recovers by itself from a read again that failed', async () => {
    const proxy = await FaultProxy.start(etcd.endpoint);
    const client = await connectEtcd({
      endpoints: [`http://127.0.0.1:${proxy.port}`],
      callTimeoutMs: 1000,
      retryAttempts: 1,
    });
    const key = `/t-mirror-${process.pid}/windows`;
    await etcd.etcdctl(['put', key, 'one']);
    const mirror = await Mirror.start(client, { key });
    try {
      expect(mirror.get(key)?.value).toBe('one');
      proxy.blackhole();
      await expect(mirror.resync()).rejects.toThrow();
      expect(mirror.connected).toBe(false);
      proxy.heal();
      await etcd.etcdctl(['put', key, 'two']);
      // Read again and watching again (the value comes with the read, `connected` once the new
      // watch is confirmed).
      await expect.poll(() => mirror.connected, { timeout: 20_000 }).toBe(true);
      expect(mirror.get(key)?.value).toBe('two');
      // And it watches again: a later change arrives as an event.
      await etcd.etcdctl(['put', key, 'three']);
      await expect.poll(() => mirror.get(key)?.value, { timeout: 5000 }).toBe('three');
    } finally {
      await mirror.close();
      client.close();
      await proxy.stop();
    }
  });
});
