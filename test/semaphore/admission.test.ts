/**
 * Admission under the faults that break it in real fleets: partitions and resets of one node's
 * link (through a FaultProxy), catch-up batches of more than 1000 revisions, session leases that
 * expire while a node is cut off, a holder lost between a waiter's read and its commit,
 * compaction while a node is cut off, and a group too big for one gRPC response.
 *
 * Safety is judged by HolderObserver, which reads etcd with its own client, and by etcd's own
 * metrics; never by the semaphore's view of itself.
 */

import type { Grant } from '@sluice/etcd';
import { GroupAdmin } from '@sluice/etcd';
import { type EtcdCluster, HolderObserver, startEtcd } from '@sluice/testkit';
import type { Etcd3 } from 'etcd3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { sleep, TestEnv } from '../helpers.js';

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

/** Writes `count` revisions under the group prefix, as a burst of reboot requests would. */
async function burst(client: Etcd3, count: number): Promise<void> {
  for (let i = 0; i < count; i += 100) {
    await Promise.all(
      Array.from({ length: Math.min(100, count - i) }, (_, j) =>
        client
          .put(env.keys.request(`burst-${i + j}`))
          .value(JSON.stringify({ v: 1, node: `burst-${i + j}`, requestedAt: new Date() })),
      ),
    );
  }
}

/** True once `key` exists in etcd (read with etcdctl, not through the code under test). */
async function exists(key: string): Promise<boolean> {
  return (await etcd.etcdctl(['get', key, '--keys-only'])).trim() !== '';
}

/**
 * The group's pause reason, read with etcdctl: `sluicectl status` (GroupAdmin) halts a group by
 * itself, so it cannot tell who did.
 */
async function pausedReason(): Promise<string | null> {
  const text = (await etcd.etcdctl(['get', env.keys.paused, '--print-value-only'])).trim();
  if (text === '') return null;
  return (JSON.parse(text) as { reason: string }).reason;
}

/** Polls `check` until it holds, or throws after `ms`. */
async function eventually(what: string, check: () => Promise<boolean>, ms = 15_000) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await sleep(100);
  }
}

/**
 * A wait for a slot that may still be pending when its test ends: its rejection (when the test's
 * clients close under it) is expected, and must not count as unhandled.
 */
function pending<T>(p: Promise<T>): Promise<T> {
  p.catch(() => {});
  return p;
}

/** Resolves with the value, or with null after `ms`. */
async function within<T>(p: Promise<T>, ms: number): Promise<T | null> {
  let timer: NodeJS.Timeout | undefined;
  const out = await Promise.race([p, new Promise<null>((r) => (timer = setTimeout(r, ms, null)))]);
  clearTimeout(timer);
  return out;
}

/** Sums a counter from etcd's /metrics over the label sets that contain `labels`. */
async function etcdCounter(name: string, labels: string): Promise<number> {
  const text = await (await fetch(etcd.members[0]!.metricsUrl)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}{`) && line.includes(labels)) {
      sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return sum;
}

describe('admission under faults', () => {
  it('never admits a second holder after a partition, a catch-up of >1000 revisions and an expired session', async () => {
    env = new TestEnv(etcd.endpoints);
    await etcd.etcdctl(['put', env.keys.max, '1']);
    const obs = await observe();
    const admin = env.client();
    const h = env.semaphore('h');
    const grantH = await h.acquire({ reason: 'update' });
    const { sem: w, proxy } = await env.proxied('w', { sessionTTL: 2 });
    const waitingW = pending(w.acquire({ reason: 'update' }));
    await eventually('w queued', () => exists(env.keys.queue('w')));
    await sleep(300);

    // W is cut off. Meanwhile H releases, W's session expires at the server, more than 1000
    // revisions land under the group, and X joins and is admitted.
    proxy.reset();
    proxy.blackhole();
    expect(await h.release(grantH)).toBe(true);
    await eventually('w expired', async () => !(await exists(env.keys.queue('w'))));
    await burst(admin, 1400);
    const x = env.semaphore('x');
    const grantX = await x.acquire({ reason: 'update' });
    proxy.heal();

    // W comes back and re-joins behind X: it must wait for X, however stale its view was.
    await eventually('w back in the queue', () => exists(env.keys.queue('w')), 30_000);
    expect(await within(waitingW, 3000)).toBeNull();
    expect(obs.check()).toBe(1);
    expect(obs.holders).toEqual(['x']);
    expect(await x.release(grantX)).toBe(true);
    expect((await within(waitingW, 15_000))?.node).toBe('w');
    expect(obs.check()).toBe(1);
  });

  it('takes a free slot after a 2 s blip during a catch-up of >1000 revisions', async () => {
    env = new TestEnv(etcd.endpoints);
    await etcd.etcdctl(['put', env.keys.max, '1']);
    const obs = await observe();
    const admin = env.client();
    const h = env.semaphore('h');
    const grantH = await h.acquire({ reason: 'update' });
    const { sem: w, proxy } = await env.proxied('w', { sessionTTL: 10 });
    const waitingW = pending(w.acquire({ reason: 'update' }));
    await eventually('w queued', () => exists(env.keys.queue('w')));
    await sleep(300);

    const cut = Date.now();
    proxy.reset();
    proxy.blackhole();
    // The burst first, then the release: the release lands after the first 1000 events of the
    // catch-up W gets once its link is back.
    await burst(admin, 1400);
    expect(await h.release(grantH)).toBe(true);
    await sleep(Math.max(0, 2000 - (Date.now() - cut)));
    proxy.heal();

    const grant = await within(waitingW, 20_000);
    expect(grant?.node).toBe('w');
    expect(obs.check()).toBe(1);
  });

  it('admits nobody when a holder is lost before a slow waiter reads, and halts the group', async () => {
    env = new TestEnv(etcd.endpoints);
    await etcd.etcdctl(['put', env.keys.max, '2']);
    const obs = await observe();
    const reader = env.client();
    const h1 = env.semaphore('h1', { holdTTL: 6 });
    const h2 = env.semaphore('h2');
    await h1.acquire({ reason: 'update' });
    const grantH2 = await h2.acquire({ reason: 'update' });
    const { sem: w, proxy } = await env.proxied('w', { sessionTTL: 30 });
    const waitingW = pending(w.acquire({ reason: 'update' }));
    await eventually('w queued', () => exists(env.keys.queue('w')));
    await sleep(300);

    // H1 goes down for its reboot and never comes back: its hold lease runs out at `expiry`.
    h1.close();
    const key = await reader.get(env.keys.queue('h1')).exec();
    const ttl = await reader.leaseClient.leaseTimeToLive({ ID: key.kvs[0]!.lease });
    const expiry = Date.now() + Number(ttl.TTL) * 1000;
    // W's requests take 2 s to reach etcd, and H2 releases a second before the expiry: what W
    // sends when it wakes arrives after the loss.
    proxy.setLatency({ up: 2000 });
    await sleep(expiry - 1000 - Date.now());
    expect(await h2.release(grantH2)).toBe(true);
    await eventually('the group halts', async () => (await pausedReason()) !== null);

    expect(await pausedReason()).toBe('node h1 lost during reboot');
    expect(obs.grants).not.toContain('w');
    expect(obs.holders).toEqual(['h1']);
    expect(await within(waitingW, 10)).toBeNull();
  });

  it('admits nobody when a holder is lost between the read and the commit, and halts the group', async () => {
    env = new TestEnv(etcd.endpoints);
    await etcd.etcdctl(['put', env.keys.max, '2']);
    const obs = await observe();
    const h1 = env.semaphore('h1', { holdTTL: 3 });
    const h2 = env.semaphore('h2');
    await h1.acquire({ reason: 'update' });
    const grantH2 = await h2.acquire({ reason: 'update' });
    // W is slow between its read and its txn: the first time, until H1's hold lease has run out
    // (the clock guard is the step that runs there).
    let stalled = false;
    const w = env.semaphore('w', {
      clockCheck: async () => {
        if (!stalled) {
          stalled = true;
          await eventually('h1 lost', async () => !(await exists(env.keys.queue('h1'))));
        }
        return null;
      },
    });
    const waitingW = pending(w.acquire({ reason: 'update' }));
    await eventually('w queued', () => exists(env.keys.queue('w')));
    h1.close();
    expect(await h2.release(grantH2)).toBe(true);
    await eventually('the group halts', async () => (await pausedReason()) !== null);

    expect(await pausedReason()).toBe('node h1 lost during reboot');
    expect(stalled).toBe(true);
    // W read the group before the loss, decided to take the slot, and its txn's guard caught
    // the loss.
    expect(w.stats.admitConflicts).toBeGreaterThan(0);
    expect(obs.grants).not.toContain('w');
    expect(obs.holders).toEqual(['h1']);
    expect(await within(waitingW, 10)).toBeNull();
  });

  it('a holder halts the group when it sees a lost holder, with no waiter around', async () => {
    env = new TestEnv(etcd.endpoints);
    await etcd.etcdctl(['put', env.keys.max, '2']);
    const h1 = env.semaphore('h1', { holdTTL: 2 });
    const h2 = env.semaphore('h2');
    await h1.acquire({ reason: 'update' });
    const grantH2 = await h2.acquire({ reason: 'update' });
    h1.close();
    await eventually('h1 lost', async () => !(await exists(env.keys.queue('h1'))));
    // H2 comes back from its reboot and releases: it sees H1's orphan marker.
    expect(await h2.release(grantH2)).toBe(true);
    expect(await pausedReason()).toBe('node h1 lost during reboot');
  });

  it('a lost node that returns clears its own marker, records it, and never spins', async () => {
    env = new TestEnv(etcd.endpoints);
    await etcd.etcdctl(['put', env.keys.max, '2']);
    await etcd.etcdctl(['put', env.keys.lossBudget, '1']);
    const obs = await observe();
    const client = env.client();
    const { Semaphore } = await import('@sluice/etcd');
    const first = new Semaphore(client, {
      node: 'l',
      prefix: env.prefix,
      group: env.group,
      holdTTL: 2,
    });
    await first.acquire({ reason: 'update' });
    first.close();
    await eventually('l lost', async () => !(await exists(env.keys.queue('l'))));
    expect(await exists(env.keys.holding('l'))).toBe(true);

    // The node comes back and asks for a slot again.
    const txnsBefore = await etcdCounter('grpc_server_handled_total', 'grpc_method="Txn"');
    const back = env.semaphore('l');
    const again = pending(back.acquire({ reason: 'update 2' }));
    await sleep(5000);
    const txns = (await etcdCounter('grpc_server_handled_total', 'grpc_method="Txn"')) - txnsBefore;
    expect(txns).toBeLessThan(30);
    const grant = await within(again, 5000);
    expect(grant?.node).toBe('l');
    expect(obs.check()).toBe(1);
    const history = await new GroupAdmin(env.client(), env.keys).history(10);
    expect(history).toMatchObject([{ node: 'l', outcome: 'returned' }]);
  });

  it('leave never removes a lost marker that is not its own', async () => {
    env = new TestEnv(etcd.endpoints);
    await etcd.etcdctl(['put', env.keys.max, '2']);
    const client = env.client();
    const { Semaphore } = await import('@sluice/etcd');
    const first = new Semaphore(client, {
      node: 'l',
      prefix: env.prefix,
      group: env.group,
      holdTTL: 2,
      token: 'token-of-the-first-agent',
    });
    await first.acquire({ reason: 'update' });
    first.close();
    await eventually('l lost', async () => !(await exists(env.keys.queue('l'))));
    const marker = await etcd.etcdctl(['get', env.keys.holding('l'), '--print-value-only']);

    // Another agent with the same node id (a cloned machine) joins and leaves.
    const other = env.semaphore('l', { token: 'token-of-a-clone' });
    await other.enqueue({ reason: 'update' });
    await other.leave('release');
    expect(await etcd.etcdctl(['get', env.keys.holding('l'), '--print-value-only'])).toBe(marker);
    const history = await new GroupAdmin(env.client(), env.keys).history(10);
    expect(history.filter((h) => h.outcome === 'abandoned')).toEqual([]);
  });

  it('survives compaction while cut off, with several watches on one client, and takes a free slot', async () => {
    env = new TestEnv(etcd.endpoints);
    await etcd.etcdctl(['put', env.keys.max, '1']);
    const obs = await observe();
    const admin = env.client();
    const h = env.semaphore('h');
    const grantH = await h.acquire({ reason: 'update' });
    const { sem: w, proxy, client } = await env.proxied('w', { sessionTTL: 30 });
    const waitingW = pending(w.acquire({ reason: 'update' }));
    await eventually('w queued', () => exists(env.keys.queue('w')));
    // The agent watches more than the group on the same client. This watch has seen a later
    // revision than the group's when the link goes: compaction cancels the group watch only.
    const elsewhere = `${env.prefix}elsewhere`;
    const other = await client.watch().key(elsewhere).create();
    other.on('error', () => {});
    const seen = new Promise((r) => other.once('put', r));
    const put = await admin.put(elsewhere).value('x').exec();
    await seen;
    const compactAt = Number(put.header.revision) + 1;

    proxy.reset();
    proxy.blackhole();
    await burst(admin, 50);
    expect(await h.release(grantH)).toBe(true);
    await burst(admin, 50);
    await etcd.etcdctl(['compact', String(compactAt)]);
    proxy.heal();

    const grant = await within(waitingW, 20_000);
    expect(grant?.node).toBe('w');
    expect(obs.check()).toBe(1);
    await other.cancel().catch(() => {});
  });
});

describe('a group too big for one response', () => {
  it('joins, admits, releases and reports with 20,000 queue keys', async () => {
    env = new TestEnv(etcd.endpoints);
    await etcd.etcdctl(['put', env.keys.max, '1']);
    const client = env.client();
    const first = env.semaphore('first');
    await first.enqueue({ reason: 'update' });
    // 20,000 waiters behind it, on one lease, with records of a realistic size (~6 MB in all,
    // past gRPC's 4 MiB message limit).
    const lease = client.lease(120);
    const leaseId = await lease.grant();
    const record = (node: string) =>
      JSON.stringify({
        v: 1,
        node,
        hostname: `${node}.example.internal`,
        state: 'waiting',
        since: new Date().toISOString(),
        enqueuedAt: new Date().toISOString(),
        reason: 'update-engine: 4081.2.0 (from 4054.1.0), staged by update_engine',
      });
    // 100 puts per txn (etcd allows 128 operations in one), a few txns at a time.
    const txns = Array.from({ length: 200 }, (_, t) =>
      Array.from({ length: 100 }, (_, j) => `bulk-${String(t * 100 + j).padStart(5, '0')}`),
    );
    for (let t = 0; t < txns.length; t += 10) {
      await Promise.all(
        txns.slice(t, t + 10).map((nodes) =>
          client.kv.txn({
            success: nodes.map((node) => ({
              request_put: {
                key: Buffer.from(env.keys.queue(node)),
                value: Buffer.from(record(node)),
                lease: leaseId,
              },
            })),
          }),
        ),
      );
    }
    const grants: Grant[] = [];
    grants.push(await first.acquire({ reason: 'update' }));
    // A node joining at the back waits, its mirror read in pages.
    const late = env.semaphore('late');
    const waitingLate = pending(late.acquire({ reason: 'update' }));
    await eventually('late queued', () => exists(env.keys.queue('late')));
    const status = await new GroupAdmin(client, env.keys).status();
    expect(status.holders.map((s) => s.node)).toEqual(['first']);
    expect(status.waiting).toHaveLength(20_001);
    expect(status.waiting.at(-1)?.node).toBe('late');
    expect(await first.release(grants[0]!)).toBe(true);
    expect(await within(waitingLate, 1000)).toBeNull();
    await lease.revoke();
    expect((await within(waitingLate, 15_000))?.node).toBe('late');
  });
});
