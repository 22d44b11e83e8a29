/**
 * The independent observers against a real etcd, through a fault proxy: a watch that drops in
 * the middle of a catch-up (responses of at most 1000 revisions, each with the current revision
 * in its header) loses nothing, and holders are counted at every revision, not per response.
 */
import {
  type EtcdCluster,
  FaultProxy,
  HolderObserver,
  RevisionWatch,
  startEtcd,
} from '@sluice/testkit';
import { Etcd3, type IOptions } from 'etcd3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

let etcd: EtcdCluster;
let writer: Etcd3;
const cleanups: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  etcd = await startEtcd();
  writer = new Etcd3({ hosts: etcd.endpoints });
});
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});
afterAll(async () => {
  writer?.close();
  await etcd?.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A watch retry every 100 ms, so the tests do not wait out etcd3's back-off of up to 30 s. */
const every100ms = { duration: 100, next: () => every100ms };

function quick(hosts: string): IOptions {
  return { hosts, faultHandling: { watchBackoff: every100ms } };
}

async function proxy(): Promise<FaultProxy> {
  const p = await FaultProxy.start(etcd.endpoint);
  cleanups.push(() => p.stop());
  return p;
}

/** `count` puts, 64 at a time: one revision each. */
async function burst(keyOf: (i: number) => string, count: number): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      while (next < count) {
        const i = next++;
        await writer.put(keyOf(i)).value('x');
      }
    }),
  );
}

/**
 * Cuts the link, runs `write`, then heals it with `latencyMs` on the way back, and resets every
 * connection as soon as `started()` says the catch-up has begun: the stream drops between two
 * catch-up responses.
 */
async function dropDuringCatchUp(
  link: FaultProxy,
  write: () => Promise<void>,
  started: () => boolean,
): Promise<void> {
  link.reset();
  link.blackhole();
  await write();
  link.setLatency({ down: 300 });
  link.heal();
  const deadline = Date.now() + 20_000;
  while (!started()) {
    if (Date.now() > deadline) throw new Error('the catch-up never began');
    await sleep(2);
  }
  link.reset();
  link.setLatency({ down: 0 });
}

describe('RevisionWatch', () => {
  it('hands over every revision once, in order, although the stream drops mid catch-up', async () => {
    const link = await proxy();
    const client = new Etcd3(quick(link.endpoint));
    cleanups.push(() => client.close());
    const root = '/rw-1/';
    const start = Number((await writer.get(`${root}none`).exec()).header.revision) + 1;
    const seen: number[] = [];
    const watch = await RevisionWatch.start(client, root, {
      startRevision: start,
      onRevision: (change) => seen.push(change.revision),
    });
    cleanups.push(() => watch.close());
    await dropDuringCatchUp(
      link,
      () => burst((i) => `${root}k${i}`, 2500),
      () => seen.length > 0,
    );
    const last = Number((await writer.put(`${root}last`).value('x').exec()).header.revision);
    const deadline = Date.now() + 20_000;
    while (watch.lastRevision < last && Date.now() < deadline) await sleep(20);
    expect(seen.length).toBe(2501);
    expect(seen).toEqual(Array.from({ length: 2501 }, (_, i) => start + i));
    expect(watch.disconnects).toBeGreaterThan(0);
  });

  it("is needed: etcd3's own watcher resumes past the rest of the catch-up", async () => {
    const link = await proxy();
    const client = new Etcd3(quick(link.endpoint));
    cleanups.push(() => client.close());
    const root = '/rw-2/';
    const start = Number((await writer.get(`${root}none`).exec()).header.revision) + 1;
    const watcher = await client.watch().prefix(root).startRevision(String(start)).create();
    cleanups.push(() => watcher.cancel().catch(() => {}));
    const seen = new Set<number>();
    watcher.on('data', (res) => {
      for (const e of res.events) seen.add(Number(e.kv.mod_revision));
    });
    await dropDuringCatchUp(
      link,
      () => burst((i) => `${root}k${i}`, 2500),
      () => seen.size > 0,
    );
    const last = Number((await writer.put(`${root}last`).value('x').exec()).header.revision);
    const deadline = Date.now() + 20_000;
    while (!seen.has(last) && Date.now() < deadline) await sleep(20);
    expect(seen.has(last)).toBe(true);
    // It jumped from the first catch-up response's header to the end: the rest never came.
    expect(seen.size).toBeLessThan(2501);
  });
});

describe('HolderObserver', () => {
  it('counts holders at every revision, not once per watch response', async () => {
    const link = await proxy();
    const root = '/ho-1/';
    const observer = await HolderObserver.start([link.endpoint], root, quick(link.endpoint));
    cleanups.push(() => observer.stop());
    // While the observer is cut off, a and b hold together, then both release: on reconnect the
    // four changes arrive in one response that ends with nobody holding.
    link.reset();
    link.blackhole();
    await writer.put(`${root}holding/a`).value('{}');
    await writer.put(`${root}holding/b`).value('{}');
    await writer.delete().key(`${root}holding/a`);
    await writer.delete().key(`${root}holding/b`);
    link.heal();
    await observer.until((holders) => observer.grants.length === 2 && holders.length === 0, 20_000);
    expect(observer.peak).toBe(2);
    expect(observer.timeline.map((c) => c.holders.length)).toEqual([1, 2, 1, 0]);
    expect(observer.grants).toEqual(['a', 'b']);
  });

  it('misses no marker when its stream drops in the middle of a catch-up', async () => {
    const link = await proxy();
    const root = '/ho-2/';
    const observer = await HolderObserver.start([link.endpoint], root, quick(link.endpoint));
    cleanups.push(() => observer.stop());
    await dropDuringCatchUp(
      link,
      async () => {
        await burst((i) => `${root}holding/g${i}`, 2500);
        await writer.put(`${root}holding/z`).value('{}');
      },
      () => observer.grants.length > 0,
    );
    await observer.until((holders) => holders.length >= 2501, 20_000);
    expect(observer.holders).toContain('z');
    expect(observer.peak).toBe(2501);
  });
});
