/**
 * The group's rules as FleetLock clients meet them, against a real etcd and the built
 * sluice-fleetlock and sluicectl: windows, pauses, a lost holder halting the group, places kept
 * across polls (and lost by not polling), and long polls. What happened is read from etcd.
 */
import { randomUUID } from 'node:crypto';
import { GroupKeys } from '@sluice/core';
import { type EtcdCluster, HolderObserver, startEtcd } from '@sluice/testkit';
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killAll, runToEnd, SLUICECTL } from '../process.js';
import { call, type FleetLockServer, sleep, startServer } from './support.js';

let etcd: EtcdCluster;
let client: Etcd3;
const prefix = `/flg-${randomUUID().slice(0, 8)}/`;
let n = 0;
/** Polls every 1 s (a place lasts 2 s without a poll); slots are held 3 s without steady-state. */
let server: FleetLockServer;
/** The same, with long polls of up to 20 s. */
let longPoll: FleetLockServer;

beforeAll(async () => {
  etcd = await startEtcd();
  client = new Etcd3({ hosts: etcd.endpoints });
  const flags = ['--poll-interval', '1s', '--hold-ttl', '3s'];
  [server, longPoll] = await Promise.all([
    startServer(etcd.endpoints, prefix, flags),
    startServer(etcd.endpoints, prefix, [...flags, '--long-poll', '20s']),
  ]);
});
afterAll(async () => {
  await killAll();
  client?.close();
  await etcd?.stop();
});

async function group(max = 1): Promise<GroupKeys> {
  const keys = new GroupKeys(prefix, `g${++n}`);
  await client.put(keys.max).value(String(max));
  return keys;
}

async function sluicectl(keys: GroupKeys, args: string[]): Promise<string> {
  const res = await runToEnd(SLUICECTL, [
    ...args,
    '--endpoints',
    etcd.endpoint,
    '--prefix',
    prefix,
    '--group',
    keys.group,
  ]);
  expect(res.code, res.stderr).toBe(0);
  return res.stdout;
}

/** The create revision of `node`'s queue key, or 0. */
async function place(keys: GroupKeys, node: string): Promise<number> {
  const res = await client.get(keys.queue(node)).exec();
  return Number(res.kvs[0]?.create_revision ?? 0);
}

/** A window spec that is closed now and for hours. */
function closedWindow(): string {
  const at = new Date(Date.now() + 12 * 3600_000);
  const day = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'][at.getUTCDay()];
  const hh = String(at.getUTCHours()).padStart(2, '0');
  const mm = String(at.getUTCMinutes()).padStart(2, '0');
  return `${day} ${hh}:${mm}+1m UTC`;
}

describe('windows and pauses', () => {
  it('grants nothing while the window is closed, says when it opens, and keeps the place', async () => {
    const keys = await group(2);
    const spec = closedWindow();
    await client.put(keys.windows).value(spec);
    const answer = await call(server.url, 'pre-reboot', 'w1', keys.group);
    expect(answer.status, answer.body).toBe(409);
    expect(answer.json?.kind).toBe('window_closed');
    expect(answer.json?.value).toMatch(/opens at \d{4}-\d\d-\d\dT/);
    const kept = await place(keys, 'w1');
    expect(kept).toBeGreaterThan(0);
    expect(await client.getAll().prefix(keys.holdingPrefix).keys()).toEqual([]);

    await sluicectl(keys, ['windows', 'clear']);
    const open = await call(server.url, 'pre-reboot', 'w1', keys.group);
    expect(open.status, open.body).toBe(200);
    // Granted on the same key: the place it held while the window was shut.
    expect(await place(keys, 'w1')).toBe(kept);
  });

  it('grants nothing while paused, and again after sluicectl resume', async () => {
    const keys = await group(2);
    await sluicectl(keys, ['pause', '--reason', 'kernel regression', '--create']);
    const answer = await call(server.url, 'pre-reboot', 'p1', keys.group);
    expect(answer.json?.kind, answer.body).toBe('paused');
    expect(answer.json?.value).toContain('kernel regression');
    expect(await client.getAll().prefix(keys.holdingPrefix).keys()).toEqual([]);
    await sluicectl(keys, ['resume']);
    expect((await call(server.url, 'pre-reboot', 'p1', keys.group)).status).toBe(200);
  });
});

describe('a lost FleetLock holder', () => {
  it('halts the group when its hold runs out without steady-state; its return clears the slot but not the halt', async () => {
    const keys = await group(2);
    expect((await call(server.url, 'pre-reboot', 'lost1', keys.group)).status).toBe(200);
    // lost1 never calls steady-state: its 3 s hold lease runs out; the marker stays.
    const deadline = Date.now() + 15_000;
    while (await client.get(keys.queue('lost1')).exists()) {
      if (Date.now() > deadline) throw new Error('the hold lease never ran out');
      await sleep(200);
    }
    expect(await client.get(keys.holding('lost1')).exists()).toBe(true);
    // The next client to ask halts the group; max 2 would otherwise have had room.
    const next = await call(server.url, 'pre-reboot', 'next1', keys.group);
    expect(next.json?.kind, next.body).toBe('halted');
    expect(next.json?.value).toContain('lost1');
    const paused = await client.get(keys.paused).string();
    expect(paused).toContain('node lost1 lost during reboot');
    expect(await client.getAll().prefix(keys.holdingPrefix).keys()).toEqual([
      keys.holding('lost1'),
    ]);
    const status = JSON.parse(await sluicectl(keys, ['status', '-o', 'json']));
    expect(status.holders).toEqual([
      expect.objectContaining({ node: 'lost1', state: 'lost', client: 'fleetlock' }),
    ]);

    // lost1 comes back and reports steady state: its marker goes (history: returned); the
    // group stays paused until an operator resumes it.
    expect((await call(server.url, 'steady-state', 'lost1', keys.group)).status).toBe(200);
    expect(await client.get(keys.holding('lost1')).exists()).toBe(false);
    expect(await client.get(keys.paused).exists()).toBe(true);
    expect((await call(server.url, 'pre-reboot', 'next1', keys.group)).json?.kind).toBe('paused');
    const history = JSON.parse(await sluicectl(keys, ['history', '-o', 'json']));
    expect(history.records).toEqual([
      expect.objectContaining({ node: 'lost1', outcome: 'returned', client: 'fleetlock' }),
    ]);
  });

  it('renews the hold on a repeated pre-reboot, as a live agent keeps its lease', async () => {
    const keys = await group(1);
    expect((await call(server.url, 'pre-reboot', 'r1', keys.group)).status).toBe(200);
    for (let i = 0; i < 4; i++) {
      await sleep(1500);
      expect((await call(server.url, 'pre-reboot', 'r1', keys.group)).status).toBe(200);
    }
    // 6 s after the grant, twice the hold TTL: still held, nothing lost.
    expect(await client.get(keys.queue('r1')).exists()).toBe(true);
    expect(await client.get(keys.paused).exists()).toBe(false);
    expect((await call(server.url, 'steady-state', 'r1', keys.group)).status).toBe(200);
  });
});

describe('operators', () => {
  it("sluicectl unlock --force frees a FleetLock client's slot, recorded as forced", async () => {
    const keys = await group(1);
    expect((await call(server.url, 'pre-reboot', 'u1', keys.group)).status).toBe(200);
    await sluicectl(keys, ['unlock', 'u1', '--force']);
    expect(await client.get(keys.holding('u1')).exists()).toBe(false);
    expect(await client.get(keys.queue('u1')).exists()).toBe(false);
    expect((await call(server.url, 'pre-reboot', 'u2', keys.group)).status).toBe(200);
    // u1's own steady-state afterwards is still answered 200, and frees nothing of u2's.
    expect((await call(server.url, 'steady-state', 'u1', keys.group)).status).toBe(200);
    expect(await client.get(keys.holding('u2')).exists()).toBe(true);
  });
});

describe('places', () => {
  it('keeps a place across polls; a queued id that stops polling loses its turn to the next', async () => {
    const keys = await group(1);
    const observer = await HolderObserver.start(etcd.endpoints, keys.root);
    try {
      expect((await call(server.url, 'pre-reboot', 'h', keys.group)).status).toBe(200);
      expect((await call(server.url, 'pre-reboot', 'q1', keys.group)).json?.kind).toBe('full');
      expect((await call(server.url, 'pre-reboot', 'q2', keys.group)).json?.kind).toBe('full');
      const q2 = await place(keys, 'q2');
      // q2 polls every 800 ms for 5 s, well past its 2 s lease: its place stays the same key.
      // (h asks again too, which renews its 3 s hold.)
      for (let i = 0; i < 6; i++) {
        await sleep(800);
        expect((await call(server.url, 'pre-reboot', 'h', keys.group)).status).toBe(200);
        const answer = await call(server.url, 'pre-reboot', 'q2', keys.group);
        expect(answer.json?.kind).toBe('full');
        expect(await place(keys, 'q2')).toBe(q2);
      }
      // q1 stopped polling: it is gone from the queue, and q2 is next.
      expect(await place(keys, 'q1')).toBe(0);
      expect((await call(server.url, 'steady-state', 'h', keys.group)).status).toBe(200);
      expect((await call(server.url, 'pre-reboot', 'q2', keys.group)).status).toBe(200);
      // q1 polls again: it joins at the back.
      const back = await call(server.url, 'pre-reboot', 'q1', keys.group);
      expect(back.json?.kind).toBe('full');
      expect(await place(keys, 'q1')).toBeGreaterThan(q2);
      expect(observer.check()).toBe(1);
      expect(observer.grants).toEqual(['h', 'q2']);
    } finally {
      await observer.stop();
    }
  });
});

describe('long polls', () => {
  it('holds a pre-reboot open and answers 200 once the slot is really held', async () => {
    const keys = await group(1);
    const observer = await HolderObserver.start(etcd.endpoints, keys.root);
    try {
      expect((await call(longPoll.url, 'pre-reboot', 'a', keys.group)).status).toBe(200);
      const started = Date.now();
      const waiting = call(longPoll.url, 'pre-reboot', 'b', keys.group);
      await sleep(1500);
      // Still waiting, and queued (its lease kept alive meanwhile).
      expect(observer.holders).toEqual(['a']);
      expect(await place(keys, 'b')).toBeGreaterThan(0);
      expect((await call(server.url, 'steady-state', 'a', keys.group)).status).toBe(200);
      const answer = await waiting;
      expect(answer.status, answer.body).toBe(200);
      expect(Date.now() - started).toBeLessThan(10_000);
      // The 200 came after the marker was in etcd, never before.
      expect(await client.get(keys.holding('b')).exists()).toBe(true);
      expect(observer.grants).toEqual(['a', 'b']);
      expect(observer.check()).toBe(1);
    } finally {
      await observer.stop();
    }
  });

  it('answers with the reason at the end of the long poll, and the place is kept', async () => {
    const keys = await group(1);
    await client.put(keys.windows).value(closedWindow());
    const short = await startServer(etcd.endpoints, prefix, [
      '--poll-interval',
      '1s',
      '--long-poll',
      '1500ms',
    ]);
    const started = Date.now();
    const answer = await call(short.url, 'pre-reboot', 'c', keys.group);
    expect(answer.json?.kind, answer.body).toBe('window_closed');
    expect(Date.now() - started).toBeGreaterThanOrEqual(1400);
    expect(await place(keys, 'c')).toBeGreaterThan(0);
  });
});
