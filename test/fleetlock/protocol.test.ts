/**
 * FleetLock protocol conformance: the built sluice-fleetlock as a process against a real etcd.
 * What a request did is checked in etcd itself (queue keys, holding markers), with the test's own
 * client, never through the server's answer alone.
 */
import { randomUUID } from 'node:crypto';
import { GroupKeys } from '@sluice/core';
import { type EtcdCluster, startEtcd } from '@sluice/testkit';
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killAll } from '../process.js';
import { type Answer, call, type FleetLockServer, send, startServer } from './support.js';

let etcd: EtcdCluster;
let client: Etcd3;
let server: FleetLockServer;
const prefix = `/fl-${randomUUID().slice(0, 8)}/`;
let n = 0;

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

/** A fresh group with `max` set (so it is known), and its keys. */
async function group(max = 1): Promise<GroupKeys> {
  const keys = new GroupKeys(prefix, `g${++n}`);
  await client.put(keys.max).value(String(max));
  return keys;
}

/** The nodes with a queue key and those with a holding marker, read from etcd. */
async function inEtcd(keys: GroupKeys): Promise<{ queued: string[]; holding: string[] }> {
  const [queue, holding] = await Promise.all([
    client.getAll().prefix(keys.queuePrefix).keys(),
    client.getAll().prefix(keys.holdingPrefix).keys(),
  ]);
  return {
    queued: queue.map((k) => k.slice(keys.queuePrefix.length)).sort(),
    holding: holding.map((k) => k.slice(keys.holdingPrefix.length)).sort(),
  };
}

function expectFailure(answer: Answer, status: number, kind: string): void {
  expect(answer.status, answer.body).toBe(status);
  expect(answer.headers['content-type']).toBe('application/json');
  expect(answer.json?.kind, answer.body).toBe(kind);
  expect(typeof answer.json?.value).toBe('string');
  expect(answer.json?.value?.length).toBeGreaterThan(0);
}

describe('requests that are not FleetLock requests', () => {
  it('refuses GET and other methods with 405 and Allow: POST, and takes nothing', async () => {
    const keys = await group();
    for (const method of ['GET', 'PUT', 'DELETE']) {
      for (const path of ['/v1/pre-reboot', '/v1/steady-state']) {
        const answer = await send(server.url, {
          method,
          path,
          body: { client_params: { id: 'm1', group: keys.group } },
        });
        expectFailure(answer, 405, 'method_not_allowed');
        expect(answer.headers.allow).toBe('POST');
      }
    }
    expect(await inEtcd(keys)).toEqual({ queued: [], holding: [] });
  });

  it('refuses a request without the protocol header, or with another value', async () => {
    const keys = await group();
    const body = { client_params: { id: 'm1', group: keys.group } };
    const without = await send(server.url, { body, headers: { 'fleet-lock-protocol': '' } });
    expectFailure(without, 400, 'missing_header');
    const wrong = await send(server.url, { body, headers: { 'fleet-lock-protocol': 'yes' } });
    expectFailure(wrong, 400, 'missing_header');
    expect(await inEtcd(keys)).toEqual({ queued: [], holding: [] });
  });

  it('answers 404 not_found on other paths', async () => {
    expectFailure(await send(server.url, { path: '/v2/pre-reboot', body: '{}' }), 404, 'not_found');
    expectFailure(await send(server.url, { path: '/', body: '{}' }), 404, 'not_found');
  });
});

describe('bodies', () => {
  it.each([
    ['not JSON', '{"client_params":'],
    ['empty', ''],
    ['a JSON array', '[]'],
    ['no client_params', { id: 'm1', group: 'default' }],
    ['no id', { client_params: { group: 'GROUP' } }],
    ['no group', { client_params: { id: 'm1' } }],
    ['an empty id', { client_params: { id: '', group: 'GROUP' } }],
    ['an empty group', { client_params: { id: 'm1', group: '' } }],
    ['a numeric id', { client_params: { id: 7, group: 'GROUP' } }],
    ['a group with a slash', { client_params: { id: 'm1', group: 'a/b' } }],
    ['a group with a space', { client_params: { id: 'm1', group: 'a b' } }],
    ['a group with an underscore', { client_params: { id: 'm1', group: 'a_b' } }],
    ['a group that is only a dot', { client_params: { id: 'm1', group: '.' } }],
    ['an id with a slash', { client_params: { id: '../max', group: 'GROUP' } }],
  ])('refuses a body that is %s with 400 bad_request and takes nothing', async (_name, body) => {
    const keys = await group();
    const before = await client.getAll().prefix(prefix).keys();
    const text = JSON.stringify(body).replaceAll('GROUP', keys.group);
    const sent = typeof body === 'string' ? body : text;
    for (const path of ['/v1/pre-reboot', '/v1/steady-state']) {
      expectFailure(await send(server.url, { path, body: sent }), 400, 'bad_request');
    }
    // Nothing was written anywhere under the prefix (a group "a/b" would nest keys).
    expect(await client.getAll().prefix(prefix).keys()).toEqual(before);
  });

  it('refuses a 1 MiB body with 413 and keeps serving', async () => {
    const keys = await group();
    const padding = 'x'.repeat(1024 * 1024);
    const body = JSON.stringify({ client_params: { id: 'm1', group: keys.group }, padding });
    expectFailure(await send(server.url, { body }), 413, 'body_too_large');
    expect(await inEtcd(keys)).toEqual({ queued: [], holding: [] });
    expect((await call(server.url, 'pre-reboot', 'm1', keys.group)).status).toBe(200);
  });

  it('needs no Content-Type, accepts any, and ignores unknown fields', async () => {
    const keys = await group(3);
    const body = {
      client_params: { id: 'm1', group: keys.group, os_version: '40.1', extra: { a: 1 } },
      future_field: [1, 2],
    };
    // The test client sends no Content-Type, as Zincati does.
    expect((await send(server.url, { body })).status).toBe(200);
    const typed = await send(server.url, {
      body: { client_params: { id: 'm2', group: keys.group } },
      headers: { 'content-type': 'text/plain' },
    });
    expect(typed.status).toBe(200);
    expect(await inEtcd(keys)).toEqual({ queued: ['m1', 'm2'], holding: ['m1', 'm2'] });
  });

  it('refuses a group with no keys in etcd as a typo (unknown_group)', async () => {
    const answer = await call(server.url, 'pre-reboot', 'm1', 'no-such-group');
    expectFailure(answer, 404, 'unknown_group');
    expect(await client.getAll().prefix(`${prefix}groups/no-such-group/`).keys()).toEqual([]);
  });
});

describe('locks', () => {
  it('grants, is recursive even when full, refuses others with their place, and releases', async () => {
    const keys = await group(1);
    const a = await call(server.url, 'pre-reboot', 'a', keys.group);
    expect(a.status, a.body).toBe(200);
    expect(a.json?.kind).toBe('ok');
    expect(await inEtcd(keys)).toEqual({ queued: ['a'], holding: ['a'] });

    // Recursive: the holder asks again while the group is full.
    const again = await call(server.url, 'pre-reboot', 'a', keys.group);
    expect(again.status, again.body).toBe(200);

    const b = await call(server.url, 'pre-reboot', 'b', keys.group);
    expectFailure(b, 409, 'full');
    expect(b.json?.value).toContain('position 1 in the queue');
    const c = await call(server.url, 'pre-reboot', 'c', keys.group);
    expectFailure(c, 409, 'full');
    expect(c.json?.value).toContain('position 2 in the queue');
    expect(await inEtcd(keys)).toEqual({ queued: ['a', 'b', 'c'], holding: ['a'] });

    // One steady-state frees the slot; the next in line gets it on its next poll, not c.
    const released = await call(server.url, 'steady-state', 'a', keys.group);
    expect(released.status, released.body).toBe(200);
    expect(await inEtcd(keys)).toEqual({ queued: ['b', 'c'], holding: [] });
    expectFailure(await call(server.url, 'pre-reboot', 'c', keys.group), 409, 'full');
    expect((await call(server.url, 'pre-reboot', 'b', keys.group)).status).toBe(200);
    expect(await inEtcd(keys)).toEqual({ queued: ['b', 'c'], holding: ['b'] });

    // The release was recorded, marked as a FleetLock client's.
    const history = await client.getAll().prefix(keys.historyPrefix).strings();
    const records = Object.values(history).map((v) => JSON.parse(v));
    expect(records).toEqual([
      expect.objectContaining({ node: 'a', outcome: 'released', client: 'fleetlock' }),
    ]);
  });

  it('steady-state is idempotent, and drops a queued id from the queue', async () => {
    const keys = await group(1);
    expect((await call(server.url, 'pre-reboot', 'a', keys.group)).status).toBe(200);
    expectFailure(await call(server.url, 'pre-reboot', 'b', keys.group), 409, 'full');
    // b gives up its place.
    expect((await call(server.url, 'steady-state', 'b', keys.group)).status).toBe(200);
    expect(await inEtcd(keys)).toEqual({ queued: ['a'], holding: ['a'] });
    for (let i = 0; i < 3; i++) {
      const answer = await call(server.url, 'steady-state', 'a', keys.group);
      expect(answer.status, answer.body).toBe(200);
    }
    // Never held: still 200.
    expect((await call(server.url, 'steady-state', 'never', keys.group)).status).toBe(200);
    expect(await inEtcd(keys)).toEqual({ queued: [], holding: [] });
    const history = await client.getAll().prefix(keys.historyPrefix).keys();
    expect(history).toHaveLength(1);
  });

  it("leaves a sluiced agent's key with the same id alone", async () => {
    const keys = await group(1);
    const record = {
      v: 1,
      node: 'agent1',
      hostname: 'host1',
      state: 'waiting',
      since: new Date().toISOString(),
      enqueuedAt: new Date().toISOString(),
      reason: 'update',
      token: 'agent-token',
    };
    const lease = client.lease(30);
    await lease.put(keys.queue('agent1')).value(JSON.stringify(record));
    try {
      expectFailure(await call(server.url, 'pre-reboot', 'agent1', keys.group), 409, 'id_conflict');
      expect((await call(server.url, 'steady-state', 'agent1', keys.group)).status).toBe(200);
      const kept = JSON.parse((await client.get(keys.queue('agent1')).string()) ?? 'null');
      expect(kept).toEqual(record);
    } finally {
      await lease.revoke();
    }
  });

  it('serves Prometheus metrics with requests by endpoint and kind', async () => {
    const res = await fetch(`${server.url}/metrics`);
    const text = await res.text();
    expect(res.status).toBe(200);
    expect(text).toMatch(
      /sluice_fleetlock_requests_total\{endpoint="pre-reboot",kind="ok"\} [1-9]/,
    );
    expect(text).toMatch(
      /sluice_fleetlock_requests_total\{endpoint="pre-reboot",kind="full"\} [1-9]/,
    );
    expect(text).toMatch(/sluice_fleetlock_grants_total\{group="g\d+"\} [1-9]/);
  });
});
