/**
 * Notifications against a real etcd and a local HTTP server: two agents that observe the same
 * event send one POST between them (the claim is an etcd txn); a webhook that fails is asked
 * again with back-off, one that hangs is given up on after its timeout per attempt, one that
 * refuses (4xx) is not asked again; `notify()` never waits for any of it.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { DEFAULT_NOTIFY, Notifier, type NotifyOutcome } from '@sluice/agent';
import { EtcdNotifyStore, notificationKey } from '@sluice/etcd';
import { type EtcdCluster, startEtcd } from '@sluice/testkit';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { TestEnv } from '../helpers.js';

let etcd: EtcdCluster;
let env: TestEnv;
let server: Server;
let url: string;
/** What the server received: the parsed bodies, in order. */
let received: Record<string, unknown>[];
/** How the server answers each request (by its index); default 200. */
let answer: (index: number, res: ServerResponse) => void;

beforeAll(async () => {
  etcd = await startEtcd();
  server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.setEncoding('utf8').on('data', (d: string) => {
      body += d;
    });
    req.on('end', () => {
      const index = received.length;
      received.push({ ...JSON.parse(body), contentType: req.headers['content-type'] });
      answer(index, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook/TOKEN`;
});
afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
  await etcd?.stop();
});
beforeEach(() => {
  env = new TestEnv(etcd.endpoints);
  received = [];
  answer = (_i, res) => res.writeHead(200).end();
});
afterEach(() => {
  server.closeAllConnections();
  env.cleanup();
});

/** A notifier for `node` with its own etcd client, as each agent has. */
function notifier(
  node: string,
  outcomes: NotifyOutcome[],
  settings: Partial<typeof DEFAULT_NOTIFY> = {},
) {
  return new Notifier({
    settings: { ...DEFAULT_NOTIFY, webhooks: [url], ...settings },
    store: new EtcdNotifyStore(env.client(), env.keys),
    keys: env.keys,
    node,
    logger: pino({ level: 'silent' }),
    onOutcome: (_event, outcome) => outcomes.push(outcome),
    backoffMs: 50,
  });
}

describe('notifications', () => {
  it('one event seen by two agents is POSTed once, as JSON', async () => {
    const outcomes: NotifyOutcome[] = [];
    const a = notifier('n1', outcomes);
    const b = notifier('n2', outcomes);
    const event = {
      event: 'node-lost' as const,
      id: 'node-lost-n3-42',
      node: 'n3',
      summary: 'n3 was lost during its reboot in group g',
    };
    a.notify(event);
    b.notify(event);
    // Seen again by the same agent: nothing more.
    a.notify(event);
    await Promise.all([a.idle(), b.idle()]);
    expect(received).toHaveLength(1);
    expect(received[0]).toMatchObject({
      id: 'node-lost-n3-42',
      event: 'node-lost',
      group: 'g',
      node: 'n3',
      text: '[sluice] n3 was lost during its reboot in group g',
      contentType: 'application/json',
    });
    expect(['n1', 'n2']).toContain(received[0]!.observedBy);
    expect(outcomes.sort()).toEqual(['duplicate', 'sent']);
    // The claim sits in etcd, on a lease, outside the group's keys.
    const key = notificationKey(env.prefix, env.group, 'node-lost-n3-42');
    const res = await env.client().get(key).exec();
    expect(res.kvs).toHaveLength(1);
    expect(res.kvs[0]!.lease).not.toBe('0');
    expect(key.startsWith(env.keys.root)).toBe(false);
  });

  it('retries a failing webhook with back-off, and gives up on one that hangs', async () => {
    const outcomes: NotifyOutcome[] = [];
    answer = (i, res) => res.writeHead(i < 2 ? 503 : 200).end();
    const n = notifier('n1', outcomes, { attempts: 4 });
    const started = Date.now();
    n.notify({ event: 'group-paused', id: 'group-paused-7', summary: 'paused' });
    // notify() returns at once: the lifecycle never waits for a webhook.
    expect(Date.now() - started).toBeLessThan(50);
    await n.idle();
    expect(received.map((r) => r.id)).toEqual([
      'group-paused-7',
      'group-paused-7',
      'group-paused-7',
    ]);
    expect(outcomes).toEqual(['sent']);

    received = [];
    answer = () => {}; // Never answers.
    const slow = notifier('n1', outcomes, { attempts: 2, timeoutMs: 300 });
    const t0 = Date.now();
    slow.notify({ event: 'group-resumed', id: 'group-resumed-7', summary: 'resumed' });
    await slow.idle();
    expect(received).toHaveLength(2);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(600);
    expect(outcomes).toEqual(['sent', 'failed']);
  });

  it('does not ask again a webhook that refuses the notification (4xx)', async () => {
    const outcomes: NotifyOutcome[] = [];
    answer = (_i, res) => res.writeHead(404).end();
    const n = notifier('n1', outcomes);
    n.notify({ event: 'group-halted', id: 'group-halted-9', summary: 'halted' });
    await n.idle();
    expect(received).toHaveLength(1);
    expect(outcomes).toEqual(['failed']);
  });

  it('sends only the configured events', async () => {
    const outcomes: NotifyOutcome[] = [];
    const n = notifier('n1', outcomes, { events: ['group-halted'] });
    n.notify({ event: 'group-paused', id: 'group-paused-1', summary: 'paused' });
    n.notify({ event: 'group-halted', id: 'group-halted-1', summary: 'halted' });
    await n.idle();
    expect(received.map((r) => r.event)).toEqual(['group-halted']);
  });
});
