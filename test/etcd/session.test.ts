/**
 * Session against a real etcd: it keeps its lease alive, adopts a lease another process granted
 * (an agent back from its reboot keeps its hold lease that way, with no write), and says when the
 * lease is lost: revoked behind its back, or run out while cut off from etcd. Every claim about a
 * key is checked with etcdctl, not by asking the Session.
 */
import { connectEtcd, Session } from '@sluice/etcd';
import { type EtcdCluster, FaultProxy, startEtcd } from '@sluice/testkit';
import type { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let etcd: EtcdCluster;
let client: Etcd3;
beforeAll(async () => {
  etcd = await startEtcd();
  client = await connectEtcd({ endpoints: [etcd.endpoint] });
});
afterAll(async () => {
  client?.close();
  await etcd?.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const key = (name: string) => `/t-session-${process.pid}/${name}`;

/** The key's value as etcdctl reads it, or null when etcd has no such key. */
async function read(k: string): Promise<string | null> {
  const out = await etcd.etcdctl(['get', k, '--print-value-only']);
  return out.trim() === '' ? null : out.trim();
}

/** The lease's remaining TTL as etcdctl reports it; -1 once etcd no longer has it. */
async function remaining(id: string): Promise<number> {
  const out = await etcd.etcdctl(['lease', 'timetolive', BigInt(id).toString(16), '-w', 'json']);
  return Number(JSON.parse(out).ttl);
}

describe('Session', () => {
  it('keeps its lease alive past the TTL, and revoke() deletes its keys at once', async () => {
    const session = await Session.open(client, 2);
    try {
      await client.put(key('kept')).value('v').lease(session.id);
      await sleep(5000);
      expect(await read(key('kept'))).toBe('v');
      expect(session.alive).toBe(true);
      await session.revoke();
      expect(await read(key('kept'))).toBeNull();
      expect(session.lost.aborted).toBe(false);
    } finally {
      session.close();
    }
  });

  it('close() stops refreshing: the key lives until the TTL runs out, then goes', async () => {
    const session = await Session.open(client, 2);
    await client.put(key('closed')).value('v').lease(session.id);
    session.close();
    expect(await read(key('closed'))).toBe('v');
    await expect.poll(() => read(key('closed')), { timeout: 8000, interval: 250 }).toBeNull();
  });

  it("adopts another process's live lease and keeps it alive, with no write", async () => {
    const first = await connectEtcd({ endpoints: [etcd.endpoint] });
    const granted = await Session.open(first, 3);
    await first.put(key('adopted')).value('v').lease(granted.id);
    const before = Number((await client.get(key('adopted')).exec()).header.revision);
    // The previous process goes away without revoking (as a node does when it reboots).
    granted.close();
    first.close();
    const adopted = await Session.adopt(client, granted.id, 3);
    try {
      expect(adopted?.id).toBe(granted.id);
      await sleep(7000);
      expect(await read(key('adopted'))).toBe('v');
      expect(await remaining(granted.id)).toBeGreaterThan(0);
      const after = Number((await client.get(key('adopted')).exec()).header.revision);
      expect(after).toBe(before);
    } finally {
      await adopted?.revoke();
    }
  });

  it('does not adopt a lease that is gone, or one granted with another TTL', async () => {
    const gone = await Session.open(client, 5);
    await gone.revoke();
    expect(await Session.adopt(client, gone.id, 5)).toBeNull();
    const other = await Session.open(client, 5, { keepAlive: false });
    try {
      expect(await Session.adopt(client, other.id, 30)).toBeNull();
    } finally {
      await other.revoke();
    }
  });

  it('says the lease is lost when it is revoked behind its back', async () => {
    const session = await Session.open(client, 2);
    try {
      await etcd.etcdctl(['lease', 'revoke', BigInt(session.id).toString(16)]);
      await expect.poll(() => session.lost.aborted, { timeout: 5000 }).toBe(true);
      expect(session.alive).toBe(false);
    } finally {
      session.close();
    }
  });

  it('says the lease is lost when it ran out while cut off, and not for a shorter cut', async () => {
    const proxy = await FaultProxy.start(etcd.endpoint);
    const viaProxy = await connectEtcd({ endpoints: [proxy.endpoint], callTimeoutMs: 1000 });
    try {
      const short = await Session.open(viaProxy, 3);
      const long = await Session.open(viaProxy, 3);
      await viaProxy.put(key('short')).value('v').lease(short.id);
      // Shorter than the TTL: the keep-alives queued in the cut get through after it.
      proxy.blackhole();
      await sleep(1500);
      proxy.heal();
      await sleep(3000);
      expect(short.lost.aborted).toBe(false);
      expect(await read(key('short'))).toBe('v');
      short.close();
      // Longer than the TTL: etcd let the lease go, and says so once the link is back.
      await viaProxy.put(key('long')).value('v').lease(long.id);
      proxy.blackhole();
      await expect.poll(() => read(key('long')), { timeout: 10_000, interval: 250 }).toBeNull();
      proxy.heal();
      await expect.poll(() => long.lost.aborted, { timeout: 10_000 }).toBe(true);
      long.close();
    } finally {
      viaProxy.close();
      await proxy.stop();
    }
  });
});
