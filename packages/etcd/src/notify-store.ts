/**
 * Notification claims and the drained check on etcd: the implementation of `NotifyStore`. A
 * claim is a key created only if absent, on a lease of its own that nobody renews, outside the
 * group's prefix (`<prefix>notifications/<group>/<id>`).
 */
import { type GroupKeys, type NotifyStore, normalizePrefix } from '@sluice/core';
import type { Etcd3 } from 'etcd3';
import { etcdCall } from './errors.js';

/** The etcd key that claims a notification for one agent. Outside the group prefix. */
export function notificationKey(prefix: string, group: string, id: string): string {
  return `${normalizePrefix(prefix)}notifications/${group}/${id}`;
}

/** `NotifyStore` on etcd. */
export class EtcdNotifyStore implements NotifyStore {
  constructor(
    private readonly client: Etcd3,
    readonly keys: GroupKeys,
  ) {}

  async claim(id: string, value: string, ttlSeconds: number): Promise<boolean> {
    const key = notificationKey(this.keys.prefix, this.keys.group, id);
    const client = this.client;
    return etcdCall(`a claim of ${key}`, async () => {
      const lease = client.lease(ttlSeconds, { autoKeepAlive: false });
      const leaseId = await lease.grant();
      const res = await client
        .if(key, 'Create', '==', 0)
        .then(client.put(key).value(value).lease(leaseId))
        .commit();
      // A lease that holds no key is dropped at once; one that holds the claim expires with it.
      if (!res.succeeded) await lease.revoke().catch(() => {});
      else lease.release();
      return res.succeeded;
    });
  }

  async drained(): Promise<{
    drained: boolean;
    newest: { modRevision: number; value: string } | null;
  }> {
    const client = this.client;
    const [queued, holding, newest] = await etcdCall(`a read of group ${this.keys.group}`, () =>
      Promise.all([
        client.getAll().prefix(this.keys.queuePrefix).count(),
        client.getAll().prefix(this.keys.holdingPrefix).count(),
        client.getAll().prefix(this.keys.historyPrefix).sort('Key', 'Descend').limit(1).exec(),
      ]),
    );
    const last = newest.kvs[0];
    return {
      drained: queued === 0 && holding === 0,
      newest: last
        ? { modRevision: Number(last.mod_revision), value: last.value.toString() }
        : null,
    };
  }
}
