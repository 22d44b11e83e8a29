/**
 * The canary against a real etcd: for a new version exactly `count` nodes reboot first, and nobody
 * else is admitted until they are back and the soak has passed, with contenders racing through
 * links a fault proxy resets; a canary that fails its post-checks halts the group; a lost canary
 * halts it whatever the loss budget; a new version starts a new canary. Judged by HolderObserver,
 * which watches the markers with its own client, and by etcdctl reads.
 */
import { SluiceError } from '@sluice/core';
import { type Grant, GroupAdmin, type Semaphore } from '@sluice/etcd';
import { Random } from '@sluice/sim';
import { type EtcdCluster, type FaultProxy, HolderObserver, startEtcd } from '@sluice/testkit';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
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

/** Acquires as the agent's wait loop does: an etcd error it can ride out means asking again. */
async function acquire(s: Semaphore, toVersion: string): Promise<Grant> {
  for (;;) {
    try {
      return await s.acquire({ reason: `update ${toVersion}`, toVersion });
    } catch (error) {
      if (!(error instanceof SluiceError && error.retryable)) throw error;
      await sleep(50);
    }
  }
}

/** Releases, asking again when a reset lost the answer (a retried release may find nothing). */
async function release(s: Semaphore, grant: Grant): Promise<void> {
  for (;;) {
    const released = await s.release(grant).catch((error: unknown) => {
      if (error instanceof SluiceError && error.retryable) return null;
      throw error;
    });
    if (released !== null) return;
  }
}

/** When the observer last saw each of `nodes` give its marker up, and when each other first held. */
function timesOf(obs: HolderObserver, canaries: readonly string[]) {
  let lastRelease = 0;
  const firstHold = new Map<string, number>();
  let previous = new Set<string>();
  for (const change of obs.timeline) {
    const now = new Set(change.holders);
    for (const node of previous) {
      if (!now.has(node) && canaries.includes(node)) lastRelease = Math.max(lastRelease, change.at);
    }
    for (const node of now) if (!firstHold.has(node)) firstHold.set(node, change.at);
    previous = now;
  }
  return { lastRelease, firstHold };
}

describe('canary', () => {
  it.each([
    [1, 1],
    [2, 2],
  ])(
    'lets exactly K of a new version reboot, and nobody else until they are back and soaked (seed %i, K %i)',
    async (seed, count) => {
      env = new TestEnv(etcd.endpoints);
      await etcd.etcdctl(['put', env.keys.max, '5']);
      await etcd.etcdctl(['put', env.keys.canary, JSON.stringify({ count, soak: '2s' })]);
      const obs = await observe();
      const random = new Random(seed);
      const proxies: FaultProxy[] = [];
      const sems: Semaphore[] = [];
      for (let i = 0; i < 10; i++) {
        const node = `n${String(i).padStart(2, '0')}`;
        if (i % 3 === 0) {
          const { sem, proxy } = await env.proxied(node, { sessionTTL: 10 }, 2000);
          proxies.push(proxy);
          sems.push(sem);
        } else {
          sems.push(env.semaphore(node, { sessionTTL: 10 }));
        }
      }
      let running = true;
      const faults = (async () => {
        while (running) {
          await sleep(random.int(30, 150));
          proxies[random.int(0, proxies.length - 1)]!.reset();
        }
      })();
      await Promise.all(
        sems.map(async (s) => {
          await sleep(random.int(0, 50));
          const grant = await acquire(s, '2.0');
          await sleep(random.int(100, 400));
          await release(s, grant);
        }),
      );
      running = false;
      await faults;
      await vi.waitFor(() => expect(obs.holders).toEqual([]), { timeout: 5000 });
      // The first K to hold were the canaries, and they held alone.
      const canaries = obs.grants.slice(0, count);
      const { lastRelease, firstHold } = timesOf(obs, canaries);
      const rest = obs.grants.slice(count);
      expect(rest).toHaveLength(10 - count);
      for (const change of obs.timeline) {
        if (change.at < lastRelease) {
          expect(change.holders.every((n) => canaries.includes(n))).toBe(true);
        }
      }
      // Nobody else before the soak: 2 s from the time the last canary's release recorded (taken
      // before its txn, which a reset may make retry), less the observer seeing the two events at
      // different delays; 700 ms covers both on a loaded machine, and without the rule the gap
      // is a few milliseconds.
      const firstOther = Math.min(...rest.map((n) => firstHold.get(n)!));
      expect(firstOther - lastRelease).toBeGreaterThanOrEqual(2000 - 700);
      expect(obs.check()).toBeLessThanOrEqual(5);
      // Etcd holds the canaries' own account, and it names the same nodes.
      const records = await etcd.etcdctl([
        'get',
        '--prefix',
        env.keys.canariesPrefix,
        '--keys-only',
      ]);
      expect(
        records
          .split('\n')
          .filter(Boolean)
          .map((k) => k.slice(env.keys.canariesPrefix.length))
          .sort(),
      ).toEqual([...canaries].sort());
    },
  );

  it('a canary failing its post-checks halts the group; reset lets the next node be the canary', async () => {
    env = new TestEnv(etcd.endpoints);
    await etcd.etcdctl(['put', env.keys.max, '3']);
    await etcd.etcdctl(['put', env.keys.canary, '{"count":1,"soak":"1s"}']);
    const a = env.semaphore('a');
    const b = env.semaphore('b');
    const grant = await acquire(a, '2.0');
    await a.setState(grant, 'post-checking', { problem: 'post-reboot checks failing: nginx down' });
    const paused = JSON.parse(await etcd.etcdctl(['get', env.keys.paused, '--print-value-only']));
    expect(paused).toMatchObject({
      by: 'sluice',
      reason: expect.stringContaining('canary a of 2.0 failed'),
    });
    // Even once an operator resumes, nobody goes while the failed canary stands.
    await etcd.etcdctl(['del', env.keys.paused]);
    const refused = await b.tryAdmit({ toVersion: '2.0' });
    expect(refused).toMatchObject({ kind: 'wait', reason: 'canary-failed' });
    const admin = new GroupAdmin(env.client(), env.keys);
    expect((await admin.status()).canary).toMatchObject({ phase: 'failed', version: '2.0' });
    // Reset: the canary starts over, and b (the next node of 2.0) is it.
    expect(await admin.endCanary('reset', 'ops@test')).toEqual({ version: '2.0' });
    const second = await b.tryAdmit({ toVersion: '2.0' });
    expect(second).toHaveProperty('revision');
    const records = await etcd.etcdctl(['get', '--prefix', env.keys.canariesPrefix, '--keys-only']);
    expect(records.trim()).toBe(env.keys.canaryRecord('b'));
  });

  it('a reset keeps the versions proven before: their nodes go freely, not as canaries', async () => {
    env = new TestEnv(etcd.endpoints);
    await etcd.etcdctl(['put', env.keys.max, '3']);
    await etcd.etcdctl(['put', env.keys.canary, '{"count":1,"soak":"1s"}']);
    const [a, b, c] = ['a', 'b', 'c'].map((n) => env.semaphore(n));
    await release(a!, await acquire(a!, '1.0'));
    await sleep(1100); // 1.0 is proven
    const gb = await acquire(b!, '2.0');
    await b!.setState(gb, 'post-checking', { problem: 'post-reboot checks failing' });
    const admin = new GroupAdmin(env.client(), env.keys);
    expect(await admin.endCanary('reset', 'ops@test')).toEqual({ version: '2.0' });
    await etcd.etcdctl(['del', env.keys.paused]);
    const state = JSON.parse(
      await etcd.etcdctl(['get', env.keys.canaryState, '--print-value-only']),
    );
    expect(state).toMatchObject({ version: '2.0', seats: 0, done: ['1.0'] });
    // c still runs the proven 1.0: it goes, and takes no canary seat.
    expect(await c!.tryAdmit({ toVersion: '1.0' })).toHaveProperty('revision');
    const records = await etcd.etcdctl(['get', '--prefix', env.keys.canariesPrefix, '--keys-only']);
    expect(records.trim()).toBe('');
  });

  it('works with domain-max, a pause and a shut window: canaries obey them, and waiters wait for both', async () => {
    env = new TestEnv(etcd.endpoints);
    await etcd.etcdctl(['put', env.keys.max, '3']);
    await etcd.etcdctl(['put', env.keys.domainMax, '1']);
    await etcd.etcdctl(['put', env.keys.canary, '{"count":2,"soak":"1s"}']);
    const a = env.semaphore('a', { domain: 'rack-1' });
    const b = env.semaphore('b', { domain: 'rack-1' });
    const c = env.semaphore('c', { domain: 'rack-2' });
    const d = env.semaphore('d', { domain: 'rack-2' });
    const ga = await acquire(a, '2.0');
    // b would be the second canary, but its rack holds one already: c (rack-2) passes it.
    expect(await b.tryAdmit({ toVersion: '2.0' })).toMatchObject({ kind: 'wait' });
    const gc = await c.tryAdmit({ toVersion: '2.0' });
    expect(gc).toHaveProperty('revision');
    // Two seats taken: b and d wait for the canary, whatever their domains say.
    expect(await d.tryAdmit({ toVersion: '2.0' })).toMatchObject({ reason: 'canary' });
    await release(a, ga);
    expect(await b.tryAdmit({ toVersion: '2.0' })).toMatchObject({ reason: 'canary' });
    await release(c, gc as Grant);
    // Soaked, but paused: the pause wins; then a shut window wins.
    await sleep(1100);
    await etcd.etcdctl(['put', env.keys.paused, 'look first']);
    expect(await b.tryAdmit({ toVersion: '2.0' })).toMatchObject({ reason: 'paused' });
    await etcd.etcdctl(['del', env.keys.paused]);
    const shut = new Date(Date.now() + 6 * 3_600_000);
    const hh = String(shut.getUTCHours()).padStart(2, '0');
    await etcd.etcdctl(['put', env.keys.windows, `${hh}:00+30m UTC`]);
    expect(await b.tryAdmit({ toVersion: '2.0' })).toMatchObject({ reason: 'window-closed' });
    await etcd.etcdctl(['del', env.keys.windows]);
    // 2.0 is proven: b and d go by max and domain-max alone.
    expect(await b.tryAdmit({ toVersion: '2.0' })).toHaveProperty('revision');
    expect(await d.tryAdmit({ toVersion: '2.0' })).toHaveProperty('revision');
    const records = await etcd.etcdctl(['get', '--prefix', env.keys.canariesPrefix, '--keys-only']);
    expect(records.split('\n').filter(Boolean)).toEqual([
      env.keys.canaryRecord('a'),
      env.keys.canaryRecord('c'),
    ]);
  });

  it('a lost canary halts the group whatever the loss budget', async () => {
    env = new TestEnv(etcd.endpoints);
    await etcd.etcdctl(['put', env.keys.max, '3']);
    await etcd.etcdctl(['put', env.keys.lossBudget, '2']);
    await etcd.etcdctl(['put', env.keys.canary, '{"count":1,"soak":"1s"}']);
    const a = env.semaphore('a', { holdTTL: 2 });
    await acquire(a, '2.0');
    a.close(); // a goes down and never comes back: its hold lease runs out
    const b = env.semaphore('b');
    await vi.waitFor(
      async () => expect((await etcd.etcdctl(['get', env.keys.queue('a')])).trim()).toBe(''),
      { timeout: 10_000, interval: 200 },
    );
    const decision = await b.tryAdmit({ toVersion: '2.0' });
    expect(decision).toMatchObject({ kind: 'wait', reason: 'halted' });
    const paused = JSON.parse(await etcd.etcdctl(['get', env.keys.paused, '--print-value-only']));
    expect(paused).toMatchObject({ by: 'sluice', reason: 'canary a lost during reboot' });
  });

  it('a new version starts a new canary once the last is soaked; a proven version goes freely', async () => {
    env = new TestEnv(etcd.endpoints);
    await etcd.etcdctl(['put', env.keys.max, '3']);
    await etcd.etcdctl(['put', env.keys.canary, '{"count":1,"soak":"1s"}']);
    const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((n) => env.semaphore(n));
    await release(a!, await acquire(a!, '2.0'));
    // b (3.0) and c (2.0) wait out 2.0's soak; then b is 3.0's canary and c goes as proven.
    expect(await b!.tryAdmit({ toVersion: '3.0' })).toMatchObject({ reason: 'canary' });
    await sleep(1100);
    const gb = await b!.tryAdmit({ toVersion: '3.0' });
    expect(gb).toHaveProperty('revision');
    const state = JSON.parse(
      await etcd.etcdctl(['get', env.keys.canaryState, '--print-value-only']),
    );
    expect(state).toMatchObject({ version: '3.0', seats: 1, done: ['2.0'] });
    // 3.0's one seat is taken: c (the proven 2.0) and d (3.0) wait until b is back and soaked.
    expect(await c!.tryAdmit({ toVersion: '2.0' })).toMatchObject({ reason: 'canary' });
    expect(await d!.tryAdmit({ toVersion: '3.0' })).toMatchObject({ reason: 'canary' });
    await release(b!, gb as Grant);
    await sleep(1100);
    expect(await c!.tryAdmit({ toVersion: '2.0' })).toHaveProperty('revision');
    expect(await d!.tryAdmit({ toVersion: '3.0' })).toHaveProperty('revision');
  });
});
