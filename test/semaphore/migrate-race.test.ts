/**
 * The migration's sluice txn against a real etcd, with an admission landing between its read and
 * its commit: the txn must fail (no marker may appear after its read) and the migration read
 * again, so the slots it leaves behind account for the newcomer. Counted by reading etcd.
 */
import { GroupKeys } from '@sluice/core';
import { migrateLocksmith } from '@sluice/etcd';
import { type EtcdCluster, startEtcd } from '@sluice/testkit';
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const SEMAPHORE = 'coreos.com/updateengine/rebootlock/semaphore';
let etcd: EtcdCluster;
let client: Etcd3;

beforeAll(async () => {
  etcd = await startEtcd();
  client = new Etcd3({ hosts: etcd.endpoints });
});
afterAll(async () => {
  client?.close();
  await etcd?.stop();
});

describe('migrateLocksmith and a concurrent admission', () => {
  it('fails its txn when a marker appears after its read, and reads again', async () => {
    const keys = new GroupKeys('/race/', 'default');
    await client.put(keys.max).value('3');
    await client.put(SEMAPHORE).value(JSON.stringify({ semaphore: 1, max: 2, holders: ['ls-a'] }));
    // Every txn goes through; before the first one with a compare (the migration's commit), an
    // admission of node "early" commits, as a racing agent would.
    let commits = 0;
    const txn = client.kv.txn.bind(client.kv);
    const racing = new Proxy(client, {
      get(target, prop) {
        if (prop !== 'kv') return Reflect.get(target, prop);
        return new Proxy(target.kv, {
          get(kv, name) {
            if (name !== 'txn') return Reflect.get(kv, name);
            return async (req: Parameters<typeof txn>[0]) => {
              if ((req.compare?.length ?? 0) > 0 && commits++ === 0) {
                await client.put(keys.queue('early')).value('{}');
                await client.put(keys.holding('early')).value(
                  JSON.stringify({
                    v: 1,
                    node: 'early',
                    createRevision: 1,
                    grantedAt: new Date().toISOString(),
                  }),
                );
              }
              return txn(req);
            };
          },
        });
      },
    });
    const plan = await migrateLocksmith(racing, keys, {});
    expect(commits).toBe(2);
    expect(plan.sluiceHolders).toEqual(['early']);
    expect(plan.migrated).toEqual(['ls-a']);
    expect(plan.taken).toBe(2);
    const markers = (await client.getAll().prefix(keys.holdingPrefix).keys()).sort();
    expect(markers).toEqual([keys.holding('early'), keys.holding('ls-a')]);
    // locksmith's v3 semaphore was swapped once, in the txn that succeeded.
    const ls = (await client.get(SEMAPHORE).exec()).kvs[0]!;
    expect(Number(ls.version)).toBe(2);
    expect(JSON.parse(ls.value.toString())).toEqual({ semaphore: -1, max: 0, holders: ['ls-a'] });
  });
});
