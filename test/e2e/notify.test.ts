/**
 * Notifications from real sluiced processes to a local webhook: an operator's pause and resume,
 * a node lost during its reboot and the halt it causes, the resume after it, post-reboot checks
 * failing past their deadline, and the end of the rollout. Two agents wait in the group and see
 * the group events; each event reaches the webhook once, even though the webhook answers the
 * first POST of every event with 500. The rollout goes on while notifications are retried.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Fleet } from '@sluice/sim';
import { Etcd3 } from 'etcd3';
import { afterAll, afterEach, beforeAll, expect, it, vi } from 'vitest';
import { expectInvariants } from './support.js';

vi.setConfig({ testTimeout: 240_000 });

let fleet: Fleet | undefined;
let server: Server;
let dir: string;
/** Every POST, in order, with the status it was answered with. */
const posts: { status: number; body: Record<string, string> }[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-notify-e2e-'));
  server = createServer((req, res) => {
    let text = '';
    req.setEncoding('utf8').on('data', (d: string) => {
      text += d;
    });
    req.on('end', () => {
      const body = JSON.parse(text) as Record<string, string>;
      // The first POST of each event fails: the agent must try again.
      const status = posts.some((p) => p.body.id === body.id) ? 200 : 500;
      posts.push({ status, body });
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
});
afterEach(async () => {
  await fleet?.stop();
  fleet = undefined;
});
afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

/** The events delivered (answered 200), by event name, each with its ids. */
function delivered(): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const p of posts.filter((p) => p.status === 200)) {
    const ids = out[p.body.event!] ?? [];
    ids.push(p.body.id!);
    out[p.body.event!] = ids;
  }
  return out;
}

it('sends each event once, from the agent that saw it, retrying a failing webhook', async () => {
  const hook = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/sluice`;
  const ok = join(dir, 'post-ok');
  fleet = await Fleet.start({
    nodes: 3,
    max: 1,
    rebootSeconds: 1,
    holdTTL: 120,
    extraYaml: [
      'notify:',
      `  webhooks: ["${hook}"]`,
      `  template: '{"event": "{{event}}", "id": "{{id}}", "text": "{{text}}", "node": "{{node}}", "observedBy": "{{observedBy}}"}'`,
      '  timeout: 2s',
      'checks:',
      `  post: [{ name: app, command: "test -e ${ok}" }]`,
      '  postDeadline: 1s',
      '  postInterval: 300ms',
    ].join('\n'),
  });
  const f = fleet;
  const waitFor = (event: string, count = 1) =>
    f.waitFor(
      () => (delivered()[event]?.length ?? 0) >= count,
      `${count} ${event} notification(s)`,
      30_000,
    );

  // n01 takes the slot and never comes back; n02 and n03 wait behind it.
  const lost = f.node('n01');
  lost.stuck = true;
  await f.stageAll('2.0.0', { nodes: ['n01'] });
  await f.waitFor(() => lost.machine === 'down', 'n01 to go down');
  await f.stageAll('2.0.0', { nodes: ['n02', 'n03'] });
  await f.waitFor(() => f.timeline.queue().length === 3, 'n02 and n03 to queue');

  // An operator's pause and resume while they wait.
  await f.sluicectlOk(['pause', '--reason', 'checking the load balancer']);
  await waitFor('group-paused');
  await f.sluicectlOk(['resume']);
  await waitFor('group-resumed');

  // n01 never comes back: its hold lease runs out (revoked here, rather than waited for), and a
  // waiting agent halts the group.
  const client = new Etcd3({ hosts: f.endpoints });
  try {
    const res = await client.get(f.keys.queue('n01')).exec();
    await client.leaseClient.leaseRevoke({ ID: res.kvs[0]!.lease });
  } finally {
    client.close();
  }
  await waitFor('group-halted');
  await waitFor('node-lost');
  await f.sluicectlOk(['unlock', 'n01', '--force']);
  await f.sluicectlOk(['resume']);
  await waitFor('group-resumed', 2);

  // n02 reboots; its post-reboot checks fail until the file exists, past their 1 s deadline.
  await waitFor('post-checks-failing');
  await writeFile(ok, '');
  await f.waitForRollout('2.0.0', { except: ['n01'], timeoutMs: 60_000 });
  await waitFor('rollout-finished');
  await expectInvariants(f);

  const events = delivered();
  expect(Object.keys(events).sort()).toEqual([
    'group-halted',
    'group-paused',
    'group-resumed',
    'node-lost',
    'post-checks-failing',
    'rollout-finished',
  ]);
  // One notification per event (two resumes: the operator's pause, then the halt).
  expect(events['group-resumed']).toHaveLength(2);
  for (const [event, ids] of Object.entries(events)) {
    expect(new Set(ids).size, event).toBe(ids.length);
    if (event !== 'group-resumed') expect(ids, event).toHaveLength(1);
  }
  // Every event was tried once, refused with 500, and sent again: nothing else reached the hook.
  for (const p of posts.filter((p) => p.status === 200)) {
    expect(posts.filter((q) => q.body.id === p.body.id).map((q) => q.status)).toEqual([500, 200]);
  }
  const byId = (event: string) =>
    posts.find((p) => p.body.event === event && p.status === 200)!.body;
  expect(byId('node-lost')).toMatchObject({
    node: 'n01',
    text: expect.stringContaining('n01 was lost'),
  });
  expect(['n02', 'n03']).toContain(byId('group-halted').observedBy);
  expect(byId('group-paused').text).toContain('paused by sim@');
  expect(byId('group-paused').text).toContain('checking the load balancer');
  // The first to reboot after the halt (n02 or n03, whichever queued first) reports itself.
  const failing = byId('post-checks-failing');
  expect(['n02', 'n03']).toContain(failing.node);
  expect(failing.observedBy).toBe(failing.node);
  expect(byId('rollout-finished').text).toMatch(
    /^\[sluice\] rollout of 2\.0\.0 finished in group default/,
  );
});
