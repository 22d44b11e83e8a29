/**
 * Blackouts against a real etcd: no admission while the group's blackouts (or the node's own)
 * are in force, a waiter is admitted once they are cleared, and an admission decided before a
 * blackout was written cannot commit after it (the txn is guarded on the key). Judged by
 * HolderObserver, which watches the markers with its own client.
 */
import type { Decision, Grant } from '@sluice/core';
import { parseBlackouts } from '@sluice/core';
import { admissionGuard, readAdmission } from '@sluice/etcd';
import { type EtcdCluster, HolderObserver, startEtcd } from '@sluice/testkit';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
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
beforeEach(() => {
  env = new TestEnv(etcd.endpoints);
});
afterEach(async () => {
  await observer?.stop();
  observer = null;
  env?.cleanup();
});

const day = (offset: number) =>
  new Date(Date.now() + offset * 86_400_000).toISOString().slice(0, 10);
/** Yesterday to tomorrow, in a zone far from UTC: in force whenever the test runs. */
const inForce = () => `${day(-1)}..${day(1)} Pacific/Kiritimati`;
const isGrant = (r: Grant | Decision): r is Grant => 'revision' in r && 'createRevision' in r;

describe('blackouts', () => {
  it('admits nobody while the group is in a blackout, and the waiter once it is cleared', async () => {
    const client = env.client();
    await client.put(env.keys.max).value('2');
    await client.put(env.keys.blackouts).value(inForce());
    observer = await HolderObserver.start(etcd.endpoints, env.keys.root);
    const waiter = env.semaphore('w');
    const refused = await waiter.tryAdmit({ reason: 'update' });
    expect(isGrant(refused)).toBe(false);
    expect(refused).toMatchObject({ kind: 'wait', reason: 'window-closed', blackout: inForce() });
    const waiting = waiter.acquire({ reason: 'update' });
    await sleep(500);
    expect(observer.grants).toEqual([]);
    await client.delete().key(env.keys.blackouts);
    const grant = await waiting;
    expect(grant.node).toBe('w');
    expect(observer.grants).toEqual(['w']);
  });

  it("honours the node's own blackouts", async () => {
    const client = env.client();
    await client.put(env.keys.max).value('2');
    const own = parseBlackouts(inForce(), 'test');
    if (!own.ok) throw own.error;
    const local = env.semaphore('n', {
      localWindows: [{ windows: [], blackouts: own.value, source: 'test' }],
    });
    expect(await local.tryAdmit({ reason: 'update' })).toMatchObject({ reason: 'window-closed' });
    const other = env.semaphore('m');
    expect(isGrant(await other.tryAdmit({ reason: 'update' }))).toBe(true);
  });

  it('fails an admission decided before the blackouts were written', async () => {
    const client = env.client();
    await client.put(env.keys.max).value('2');
    const w = env.semaphore('w');
    const own = await w.enqueue();
    const view = await readAdmission(client, env.keys, 'w', {
      selfCreateRevision: own.entry.createRevision,
    });
    await client.put(env.keys.blackouts).value(inForce());
    const res = await client.kv.txn({
      compare: admissionGuard(view),
      success: [{ request_put: { key: Buffer.from(`${env.keys.root}probe`) } }],
    });
    expect(res.succeeded).toBe(false);
  });
});
