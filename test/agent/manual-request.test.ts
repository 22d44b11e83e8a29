/**
 * Reboot requests from `sluicectl request-reboot` against a real etcd: the agent's manual source
 * follows the request key, ignores a request past its `expiresAt` (even while the key is still
 * there), and turns not-needed by itself when a request lapses.
 */
import { ManualRequestSource, type UpdateSignal } from '@sluice/agent';
import { type EtcdCluster, startEtcd } from '@sluice/testkit';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { sleep, TestEnv } from '../helpers.js';

let etcd: EtcdCluster;
let env: TestEnv;
let source: ManualRequestSource | null = null;

beforeAll(async () => {
  etcd = await startEtcd();
});
afterAll(async () => {
  await etcd?.stop();
});
beforeEach(() => {
  env = new TestEnv(etcd.endpoints);
});
afterEach(async () => {
  await source?.close();
  source = null;
  await env.cleanup();
});

function request(node: string, expiresInMs: number | null): string {
  const now = Date.now();
  return JSON.stringify({
    v: 1,
    node,
    reason: 'kernel args',
    requestedAt: new Date(now).toISOString(),
    by: 'op@host',
    ...(expiresInMs === null ? {} : { expiresAt: new Date(now + expiresInMs).toISOString() }),
  });
}

async function follow(node: string): Promise<UpdateSignal[]> {
  const seen: UpdateSignal[] = [];
  source = new ManualRequestSource(env.client(), env.keys, node);
  await source.start((s) => seen.push(s));
  return seen;
}

describe('ManualRequestSource', () => {
  it('ignores a request whose expiry has passed, even while its key exists', async () => {
    await etcd.etcdctl(['put', env.keys.request('n1'), request('n1', -60_000)]);
    await follow('n1');
    expect(source!.current()).toMatchObject({ needed: false, detail: 'the request expired' });
  });

  it('follows a request without an expiry, as older sluicectl wrote them', async () => {
    await etcd.etcdctl(['put', env.keys.request('n1'), request('n1', null)]);
    await follow('n1');
    expect(source!.current()).toMatchObject({ needed: true, detail: 'kernel args' });
  });

  it('turns not-needed by itself when the request lapses', async () => {
    await etcd.etcdctl(['put', env.keys.request('n1'), request('n1', 1500)]);
    const seen = await follow('n1');
    expect(source!.current().needed).toBe(true);
    await sleep(2000);
    expect(source!.current()).toMatchObject({ needed: false, detail: 'the request expired' });
    expect(seen.map((s) => s.needed)).toEqual([true, false]);
  });
});
