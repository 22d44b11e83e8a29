/**
 * Two sluice-fleetlock replicas behind a "load balancer" (each poll goes to either one) and 20
 * clients polling at once: never more than S slots held, as an independent observer of the
 * holding markers in etcd sees it, and no 5xx from the races between the replicas.
 */
import { randomUUID } from 'node:crypto';
import { GroupKeys } from '@sluice/core';
import { type EtcdCluster, HolderObserver, startEtcd } from '@sluice/testkit';
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { killAll } from '../process.js';
import { type Answer, call, type FleetLockServer, sleep, startServer } from './support.js';

const SLOTS = 3;
const CLIENTS = 20;

let etcd: EtcdCluster;
let client: Etcd3;
let observer: HolderObserver | null = null;
const prefix = `/flr-${randomUUID().slice(0, 8)}/`;
const keys = new GroupKeys(prefix, 'workers');
let servers: FleetLockServer[] = [];

beforeAll(async () => {
  etcd = await startEtcd();
  client = new Etcd3({ hosts: etcd.endpoints });
  await client.put(keys.max).value(String(SLOTS));
  servers = await Promise.all(
    [0, 1].map(() => startServer(etcd.endpoints, prefix, ['--poll-interval', '5s'])),
  );
});
afterAll(async () => {
  await observer?.stop();
  await killAll();
  client?.close();
  await etcd?.stop();
});

it(`grants exactly ${SLOTS} of ${CLIENTS} concurrent clients across two replicas, then the rest in turn`, async () => {
  observer = await HolderObserver.start(etcd.endpoints, keys.root);
  const answers: Answer[] = [];
  const pick = () => servers[Math.floor(Math.random() * servers.length)]!.url;
  const ids = Array.from({ length: CLIENTS }, (_, i) => `c${String(i).padStart(2, '0')}`);

  // Round 1: everyone asks at the same instant, on either replica.
  const first = await Promise.all(ids.map((id) => call(pick(), 'pre-reboot', id, keys.group)));
  answers.push(...first);
  const granted = ids.filter((_, i) => first[i]!.status === 200);
  expect(granted, first.map((a) => a.body).join('\n')).toHaveLength(SLOTS);
  // A few more polls by everyone: the holders are answered 200 again, nobody else gets in.
  for (let round = 0; round < 3; round++) {
    const again = await Promise.all(ids.map((id) => call(pick(), 'pre-reboot', id, keys.group)));
    answers.push(...again);
    expect(ids.filter((_, i) => again[i]!.status === 200).sort()).toEqual([...granted].sort());
  }
  expect(observer.holders.sort()).toEqual([...granted].sort());

  // Round 2: every client polls every 20-80 ms; a holder "reboots" for 100 ms, then steady-state.
  const done = new Set<string>();
  await Promise.all(
    ids.map(async (id) => {
      const deadline = Date.now() + 40_000;
      while (Date.now() < deadline) {
        const answer = await call(pick(), 'pre-reboot', id, keys.group);
        answers.push(answer);
        if (answer.status === 200) {
          await sleep(100);
          const released = await call(pick(), 'steady-state', id, keys.group);
          answers.push(released);
          expect(released.status, released.body).toBe(200);
          done.add(id);
          return;
        }
        await sleep(20 + Math.random() * 60);
      }
    }),
  );
  expect([...done].sort()).toEqual(ids);

  const fiveXX = answers.filter((a) => a.status >= 500);
  expect(fiveXX.map((a) => a.body)).toEqual([]);
  const kinds = new Set(answers.map((a) => a.json?.kind));
  expect([...kinds].sort()).toEqual(['full', 'ok']);
  // The observer counted the markers after every revision.
  expect(observer.check()).toBe(SLOTS);
  expect(new Set(observer.grants)).toEqual(new Set(ids));
  expect(observer.holders).toEqual([]);
});
