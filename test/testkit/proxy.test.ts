/**
 * The fault proxy against a real etcd: a client talking through it works, and reset, blackhole
 * and latency do to that client what they say.
 */
import { type EtcdCluster, FaultProxy, startEtcd } from '@sluice/testkit';
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let etcd: EtcdCluster;
let proxy: FaultProxy;
let client: Etcd3;

beforeAll(async () => {
  etcd = await startEtcd();
  proxy = await FaultProxy.start(etcd.endpoint);
  client = new Etcd3({
    hosts: proxy.endpoint,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + 1500 }),
  });
});
afterAll(async () => {
  client?.close();
  await proxy?.stop();
  await etcd?.stop();
});

describe('FaultProxy', () => {
  it('carries a client to etcd', async () => {
    await client.put('/proxy/a').value('1');
    expect(await client.get('/proxy/a').string()).toBe('1');
    expect(proxy.stats.connections).toBeGreaterThan(0);
    expect(proxy.stats.bytesUp).toBeGreaterThan(0);
    expect(proxy.stats.bytesDown).toBeGreaterThan(0);
  });

  it('blackhole stalls calls until heal, which delivers what was held', async () => {
    proxy.blackhole();
    const write = client.put('/proxy/b').value('held');
    // Nothing reaches etcd while the link is cut.
    await new Promise((r) => setTimeout(r, 300));
    expect(await etcd.etcdctl(['get', '/proxy/b', '--print-value-only'])).toBe('');
    proxy.heal();
    await write;
    expect((await etcd.etcdctl(['get', '/proxy/b', '--print-value-only'])).trim()).toBe('held');
  });

  it('a blackhole longer than the deadline fails the call', async () => {
    proxy.blackhole();
    await expect(client.get('/proxy/a').string()).rejects.toThrow();
    proxy.heal();
    // The client recovers on its own once the link is back (its circuit breaker half-opens).
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        expect(await client.get('/proxy/a').string()).toBe('1');
        break;
      } catch (error) {
        if (Date.now() > deadline) throw error;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  });

  it('reset drops open connections with a RST, and the client reconnects', async () => {
    const watcher = await client.watch().key('/proxy/w').create();
    const disconnected = new Promise<void>((r) => watcher.once('disconnected', () => r()));
    expect(proxy.open).toBeGreaterThan(0);
    const resets = proxy.stats.resets;
    proxy.reset();
    expect(proxy.stats.resets).toBeGreaterThan(resets);
    await disconnected;
    const seen = new Promise<string>((r) => watcher.once('put', (kv) => r(kv.value.toString())));
    await new Promise<void>((r) => watcher.once('connected', () => r()));
    await etcd.etcdctl(['put', '/proxy/w', 'after-reset']);
    expect(await seen).toBe('after-reset');
    await watcher.cancel();
  });

  it('adds latency in the direction asked', async () => {
    await client.get('/proxy/a').string(); // A warm connection.
    proxy.setLatency({ down: 400 });
    const t0 = Date.now();
    await client.get('/proxy/a').string();
    const slow = Date.now() - t0;
    proxy.clear();
    const t1 = Date.now();
    await client.get('/proxy/a').string();
    const fast = Date.now() - t1;
    expect(slow).toBeGreaterThanOrEqual(400);
    expect(fast).toBeLessThan(400);
  });

  it('holdUp runs its action before the one request it matches goes on, once', async () => {
    const seen: string[] = [];
    // An HTTP request of its own on the link, as the agent's clock check makes.
    const version = () => fetch(`${proxy.endpoint}/version`).then((r) => r.json());
    proxy.holdUp(
      (chunk) => chunk.toString('latin1').startsWith('GET /version'),
      async () => {
        // Written while the request waits: etcd answers it only afterwards.
        await client.put('/proxy/hold').value('first');
        seen.push(await etcd.etcdctl(['get', '/proxy/hold', '--print-value-only']));
      },
    );
    await client.put('/proxy/c').value('not held'); // Other traffic is not matched.
    expect(seen).toEqual([]);
    expect(await version()).toHaveProperty('etcdserver');
    expect(seen.map((v) => v.trim())).toEqual(['first']);
    // Once only: the next request goes straight on.
    expect(await version()).toHaveProperty('etcdserver');
    expect(seen).toHaveLength(1);
  });
});
