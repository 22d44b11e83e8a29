/**
 * Places across real poll gaps, with the server's default settings (Zincati's 300 s poll): a
 * FleetLock client that polls 60 s apart keeps its place, so a slot freed meanwhile waits for it
 * rather than going to a client behind it. Slow (a minute of wall time): `npm run test:slow`.
 */
import { randomUUID } from 'node:crypto';
import { GroupKeys } from '@sluice/core';
import { type EtcdCluster, HolderObserver, startEtcd } from '@sluice/testkit';
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { killAll } from '../process.js';
import { call, type FleetLockServer, sleep, startServer } from './support.js';

let etcd: EtcdCluster;
let client: Etcd3;
let server: FleetLockServer;
const prefix = `/fls-${randomUUID().slice(0, 8)}/`;
const keys = new GroupKeys(prefix, 'default');

beforeAll(async () => {
  etcd = await startEtcd();
  client = new Etcd3({ hosts: etcd.endpoints });
  server = await startServer(etcd.endpoints, prefix);
});
afterAll(async () => {
  await killAll();
  client?.close();
  await etcd?.stop();
});

async function place(node: string): Promise<number> {
  const res = await client.get(keys.queue(node)).exec();
  return Number(res.kvs[0]?.create_revision ?? 0);
}

it('keeps the place of a client that polls 60 s apart, and gives it the freed slot first', async () => {
  const observer = await HolderObserver.start(etcd.endpoints, keys.root);
  try {
    expect((await call(server.url, 'pre-reboot', 'holder', keys.group)).status).toBe(200);
    expect((await call(server.url, 'pre-reboot', 'first', keys.group)).json?.kind).toBe('full');
    expect((await call(server.url, 'pre-reboot', 'second', keys.group)).json?.kind).toBe('full');
    const first = await place('first');
    const startedAt = Date.now();
    // "second" polls every 5 s; "first" stays silent for 60 s.
    while (Date.now() - startedAt < 60_000) {
      await sleep(5000);
      const answer = await call(server.url, 'pre-reboot', 'second', keys.group);
      expect(answer.json?.kind).toBe('full');
      expect(answer.json?.value).toContain('position 2 in the queue');
    }
    // The holder is done; "second" polls first but "first" is still ahead of it (position 2,
    // as before): the slot waits for "first".
    expect((await call(server.url, 'steady-state', 'holder', keys.group)).status).toBe(200);
    const second = await call(server.url, 'pre-reboot', 'second', keys.group);
    expect(second.json?.kind, second.body).toBe('full');
    expect(second.json?.value).toContain('position 2 in the queue');
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(60_000);
    const answer = await call(server.url, 'pre-reboot', 'first', keys.group);
    expect(answer.status, answer.body).toBe(200);
    expect(await place('first')).toBe(first);
    expect(observer.grants).toEqual(['holder', 'first']);
    expect(observer.check()).toBe(1);
  } finally {
    await observer.stop();
  }
});
