/**
 * No start near a window's end, against a real etcd: a node whose slot is expected to take longer
 * than the window has left is not admitted (and keeps its place), one whose slot fits is; the
 * expectation taken from a node's own history is the median of its past slots.
 */
import type { Decision, Grant } from '@sluice/core';
import { type EtcdCluster, startEtcd } from '@sluice/testkit';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { TestEnv } from '../helpers.js';

let etcd: EtcdCluster;
let env: TestEnv;
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
  await env?.cleanup();
});

/** A window open now and closing `minutes` from now (UTC, whole minutes). */
function windowClosingIn(minutes: number): string {
  const start = new Date(Date.now() - 60 * 60_000);
  const hhmm = `${String(start.getUTCHours()).padStart(2, '0')}:${String(start.getUTCMinutes()).padStart(2, '0')}`;
  return `Mon-Sun ${hhmm}+${60 + minutes}m UTC`;
}

const isGrant = (r: Grant | Decision): r is Grant => 'revision' in r && 'createRevision' in r;

describe('the end of the window', () => {
  it('admits only a node whose expected slot fits before the window closes', async () => {
    const client = env.client();
    await client.put(env.keys.max).value('2');
    await client.put(env.keys.windows).value(windowClosingIn(10));
    const long = env.semaphore('long');
    const refused = await long.tryAdmit({ reason: 'update', expectedSlotMs: 30 * 60_000 });
    expect(isGrant(refused)).toBe(false);
    expect(refused).toMatchObject({ kind: 'wait', reason: 'window-closing' });
    expect((refused as { detail: string }).detail).toMatch(/expected to take 30m/);
    // Its place is kept: the key is still queued.
    expect((await client.get(env.keys.queue('long')).string()) ?? '').toContain(
      '"expectedSlotMs":1800000',
    );

    const short = env.semaphore('short');
    const granted = await short.tryAdmit({ reason: 'update', expectedSlotMs: 2 * 60_000 });
    expect(isGrant(granted)).toBe(true);
    // Without an expectation there is no such check.
    const plain = env.semaphore('plain');
    await client.put(env.keys.max).value('3');
    expect(isGrant(await plain.tryAdmit({ reason: 'update' }))).toBe(true);
  });

  it("takes a node's expected slot from its own released slots in history", async () => {
    const node = env.semaphore('n1');
    expect(await node.pastSlotMs()).toBeNull();
    const client = env.client();
    const record = (took: number, at: number, who = 'n1') =>
      JSON.stringify({
        v: 1,
        node: who,
        hostname: who,
        group: env.group,
        outcome: 'released',
        endedAt: new Date(at).toISOString(),
        grantedAt: new Date(at - took).toISOString(),
        reason: 'update',
      });
    const now = Date.now();
    await client.put(env.keys.history(now - 3000, 'n1')).value(record(4 * 60_000, now - 3000));
    await client.put(env.keys.history(now - 2000, 'n1')).value(record(9 * 60_000, now - 2000));
    await client.put(env.keys.history(now - 1000, 'n1')).value(record(5 * 60_000, now - 1000));
    // Another node whose id ends like this one's, and an operator action: neither counts.
    await client
      .put(env.keys.history(now - 500, 'web-n1'))
      .value(record(60 * 60_000, now - 500, 'web-n1'));
    await client.put(env.keys.actionHistory(now, 'pause', 'x1')).value('{"kind":"action"}');
    expect(await node.pastSlotMs()).toBe(5 * 60_000);
  });
});
