/**
 * Failure domains against a real etcd: `domain-max` per domain and `max` overall hold with
 * contenders racing for slots, some of them through links that a fault proxy resets; a node
 * blocked by its domain is passed by nodes of other domains, and goes first once its domain
 * frees. Judged by HolderObserver, which watches the markers with its own client; each node's
 * domain is the one this test gave it, not what the code under test wrote.
 */
import { SluiceError } from '@sluice/core';
import { admissionGuard, type Grant, readAdmission, type Semaphore } from '@sluice/etcd';
import { Random } from '@sluice/sim';
import { type EtcdCluster, type FaultProxy, HolderObserver, startEtcd } from '@sluice/testkit';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { sleep, stillPending, TestEnv } from '../helpers.js';

let etcd: EtcdCluster;
let env: TestEnv;
let observer: HolderObserver | null = null;

beforeAll(async () => {
  etcd = await startEtcd();
});
afterAll(async () => {
  await etcd?.stop();
});
afterEach(async () => {
  await observer?.stop();
  observer = null;
  env?.cleanup();
});

async function observe(): Promise<HolderObserver> {
  observer = await HolderObserver.start(etcd.endpoints, env.keys.root);
  return observer;
}

/** Acquires as the agent's wait loop does: an etcd error it can ride out means asking again. */
async function acquire(s: Semaphore): Promise<Grant> {
  for (;;) {
    try {
      return await s.acquire({ reason: 'test' });
    } catch (error) {
      if (!(error instanceof SluiceError && error.retryable)) throw error;
      await sleep(50);
    }
  }
}

/** The most holders of one domain, and overall, at any revision the observer saw. */
function peaks(obs: HolderObserver, domainOf: ReadonlyMap<string, string | undefined>) {
  let overall = 0;
  let perDomain = 0;
  for (const change of obs.timeline) {
    overall = Math.max(overall, change.holders.length);
    const counts = new Map<string, number>();
    for (const node of change.holders) {
      const domain = domainOf.get(node);
      if (domain !== undefined) counts.set(domain, (counts.get(domain) ?? 0) + 1);
    }
    perDomain = Math.max(perDomain, ...counts.values(), 0);
  }
  return { overall, perDomain };
}

describe('domain-max', () => {
  it.each([
    [1, 3, 1],
    [2, 4, 2],
  ])(
    'never lets more than domain-max hold per domain nor max overall (seed %i: max %i, domain-max %i)',
    async (seed, max, domainMax) => {
      env = new TestEnv(etcd.endpoints);
      await etcd.etcdctl(['put', env.keys.max, String(max)]);
      await etcd.etcdctl(['put', env.keys.domainMax, String(domainMax)]);
      const obs = await observe();
      const random = new Random(seed);
      const domainOf = new Map<string, string | undefined>();
      const proxies: FaultProxy[] = [];
      const sems: Semaphore[] = [];
      const faulty = new Set<Semaphore>();
      for (let i = 0; i < 24; i++) {
        const node = `n${String(i).padStart(2, '0')}`;
        // Four domains, a few nodes in none.
        const domain = random.chance(0.15) ? undefined : `rack-${random.int(0, 3)}`;
        domainOf.set(node, domain);
        const opts = domain === undefined ? {} : { domain };
        if (i % 4 === 0) {
          const { sem, proxy } = await env.proxied(node, { ...opts, sessionTTL: 10 }, 2000);
          proxies.push(proxy);
          sems.push(sem);
          faulty.add(sem);
        } else {
          sems.push(env.semaphore(node, opts));
        }
      }
      let resets = 0;
      let running = true;
      const faults = (async () => {
        while (running) {
          await sleep(random.int(20, 120));
          proxies[random.int(0, proxies.length - 1)]!.reset();
          resets++;
        }
      })();
      await Promise.all(
        sems.map(async (s) => {
          await sleep(random.int(0, 50));
          const grant = await acquire(s);
          await sleep(random.int(5, 40));
          // A release whose answer a reset lost may have gone through: asked again (by this
          // loop, or by the client's own retry policy within one call), it finds nothing left
          // (false). Only a node behind a faulty link may see that; that every slot was given
          // back is checked by the observer.
          for (;;) {
            const released = await s.release(grant).catch((error: unknown) => {
              if (error instanceof SluiceError && error.retryable) return null;
              throw error;
            });
            if (released === true) break;
            if (released === false) {
              expect(faulty.has(s), 'a release over a sound link gives the slot back').toBe(true);
              break;
            }
          }
        }),
      );
      running = false;
      await faults;
      expect(obs.check()).toBeLessThanOrEqual(max);
      expect(obs.grants).toHaveLength(24);
      await obs.until((holders) => holders.length === 0);
      const seen = peaks(obs, domainOf);
      expect(seen.overall).toBeLessThanOrEqual(max);
      expect(seen.perDomain).toBeLessThanOrEqual(domainMax);
      // The limits were reached, so they were tested, and the faults happened.
      expect(seen.perDomain).toBe(domainMax);
      expect(resets).toBeGreaterThan(0);
    },
  );

  it('lets a node of a free domain pass one blocked by its domain, which goes first once it frees', async () => {
    env = new TestEnv(etcd.endpoints);
    await etcd.etcdctl(['put', env.keys.max, '2']);
    await etcd.etcdctl(['put', env.keys.domainMax, '1']);
    const obs = await observe();
    const a = env.semaphore('a', { domain: 'rack-1' });
    const held = await a.acquire();
    // b (rack-1) queues first, then c (rack-2) and d (rack-3).
    const decisions: string[] = [];
    const b = env.semaphore('b', {
      domain: 'rack-1',
      onDecision: (d) => decisions.push(d.kind === 'wait' ? d.reason : d.kind),
    });
    const bWaits = b.acquire();
    await b.enqueue();
    const c = env.semaphore('c', { domain: 'rack-2' });
    const cGrant = await c.acquire();
    const d = env.semaphore('d', { domain: 'rack-3' });
    const dWaits = d.acquire();
    // Two holders (a, c): b waits for its domain, d for a slot.
    expect(await stillPending(bWaits, 500)).toBe(true);
    expect(await stillPending(dWaits, 10)).toBe(true);
    expect(decisions).toContain('domain-full');
    // a releases: rack-1 has room and b is ahead of d, so b gets the free slot.
    await a.release(held);
    const bGrant = await bWaits;
    expect(await stillPending(dWaits, 300)).toBe(true);
    await c.release(cGrant);
    await d.release(await dWaits);
    await b.release(bGrant);
    expect(obs.grants).toEqual(['a', 'c', 'b', 'd']);
    // Every admission under domain-max wrote `admitted`, the last one d's.
    expect(await etcd.etcdctl(['get', env.keys.admitted, '--print-value-only'])).toContain('d');
  });

  it('passes more blocked waiters than one page of the queue holds', async () => {
    env = new TestEnv(etcd.endpoints);
    await etcd.etcdctl(['put', env.keys.max, '2']);
    await etcd.etcdctl(['put', env.keys.domainMax, '1']);
    const client = env.client();
    const holder = env.semaphore('h', { domain: 'busy' }, client);
    const grant = await holder.acquire();
    // 300 waiters of the full domain, on one shared client, all ahead of the node of a free one.
    const blocked: Promise<Grant>[] = [];
    for (let i = 0; i < 300; i++) {
      const s = env.semaphore(`b${String(i).padStart(3, '0')}`, { domain: 'busy' }, client);
      await s.enqueue();
      blocked.push(s.acquire());
    }
    const free = env.semaphore('z', { domain: 'quiet' });
    const freeGrant = await free.acquire();
    expect(freeGrant.node).toBe('z');
    await free.release(freeGrant);
    await holder.release(grant);
    // The first blocked waiter goes next, as its place says.
    const next = await Promise.race(blocked);
    expect(next.node).toBe('b000');
  }, 60_000);

  it('guards each admission on the admitted key: none commits on a read from before another', async () => {
    env = new TestEnv(etcd.endpoints);
    await etcd.etcdctl(['put', env.keys.max, '3']);
    await etcd.etcdctl(['put', env.keys.domainMax, '1']);
    const client = env.client();
    const w = env.semaphore('w', { domain: 'rack-1' }, client);
    const own = await w.enqueue();
    const read = () =>
      readAdmission(client, env.keys, 'w', { selfCreateRevision: own.entry.createRevision });
    const take = async (view: Awaited<ReturnType<typeof read>>) =>
      (
        await client.kv.txn({
          compare: admissionGuard(view),
          success: [{ request_put: { key: Buffer.from(`${env.keys.root}probe`) } }],
        })
      ).succeeded;
    const stale = await read();
    // Another node's admission commits after that read (it writes admitted, as each one does).
    await etcd.etcdctl(['put', env.keys.admitted, 'other']);
    expect(await take(stale)).toBe(false);
    expect(await take(await read())).toBe(true);
    // Without domain-max the key is not guarded: admissions then rest on the FIFO rank alone.
    await etcd.etcdctl(['del', env.keys.domainMax]);
    const plain = await read();
    await etcd.etcdctl(['put', env.keys.admitted, 'other']);
    expect(await take(plain)).toBe(true);
  });
});
