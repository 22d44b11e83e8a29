/**
 * sluicectl's slot commands and live view as processes against a real etcd: lock (with and
 * without --wait), unlock of this node's manual lock and, with --force, of an agent's slot or
 * another node's, the history they leave, a manual lock whose lease runs out halting the group,
 * and watch (no polling, and an etcd outage shown and cleared).
 */
import { Semaphore } from '@sluice/etcd';
import { type EtcdCluster, startEtcd } from '@sluice/testkit';
import { Etcd3 } from 'etcd3';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { sleep } from '../helpers.js';
import { CliRunner, HistoryJsonSchema, StatusJsonSchema, unaryRequests } from './cli.js';

let etcd: EtcdCluster;
let cli: CliRunner;

beforeAll(async () => {
  etcd = await startEtcd();
});
afterAll(async () => {
  await etcd?.stop();
});
beforeEach(() => {
  cli = new CliRunner(etcd.endpoints);
});
afterEach(async () => {
  await cli?.cleanup();
});

async function status() {
  return StatusJsonSchema.parse(await cli.json(['status']));
}

async function history() {
  return HistoryJsonSchema.parse(await cli.json(['history'])).records;
}

describe('sluicectl lock and unlock', () => {
  it('lock takes a manual slot that outlives the process; unlock releases it', async () => {
    const locked = await cli.run(['lock', '--reason', 'firmware', '--ttl', '2h']);
    expect(locked.code).toBe(0);
    expect(locked.stdout).toContain('locked: node-self holds a slot');
    expect(locked.stdout).toContain('counts as lost');

    // The process has exited; the slot is still held, on a hold lease of about 2h.
    const held = await status();
    expect(held.holders).toHaveLength(1);
    expect(held.holders[0]).toMatchObject({ node: 'node-self', state: 'holding' });
    expect(held.holders[0]!.leaseSecondsLeft).toBeGreaterThan(7000);
    expect(held.holders[0]!.leaseSecondsLeft).toBeLessThanOrEqual(7200);
    const record = JSON.parse(
      await etcd.etcdctl(['get', cli.keys.queue('node-self'), '--print-value-only']),
    );
    expect(record).toMatchObject({ manual: true, reason: 'firmware', state: 'holding' });

    const unlocked = await cli.run(['unlock']);
    expect(unlocked.code).toBe(0);
    expect((await status()).holders).toEqual([]);
    const again = await cli.run(['unlock']);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('holds no slot');

    const records = await history();
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ node: 'node-self', outcome: 'released' });
    expect(records[0]!.by).toMatch(/^tester@/);
    expect(records[0]!.durationSeconds).toBeGreaterThanOrEqual(0);
  });

  it('lock without --wait exits 1 when the group is full; bad --ttl exits 2', async () => {
    expect((await cli.run(['lock', '--node', 'a', '--reason', 'x'])).code).toBe(0);
    const full = await cli.run(['lock', '--node', 'b', '--reason', 'y']);
    expect(full.code).toBe(1);
    expect(full.stderr).toContain('is full');
    expect(full.stderr).toContain('--wait');
    // The refused node left the queue again.
    expect((await status()).waiting).toEqual([]);

    expect((await cli.run(['lock', '--reason', 'x', '--ttl', 'soon'])).code).toBe(2);
    expect((await cli.run(['lock', '--reason', 'x', '--ttl', '1s'])).code).toBe(2);
    expect((await cli.run(['lock', '--node', 'a'])).code).toBe(2); // no --reason
  });

  it("renews its own manual lock, but never takes over a slot the node's agent holds", async () => {
    expect((await cli.run(['lock', '--node', 'm', '--reason', 'x', '--ttl', '1h'])).code).toBe(0);
    const renewed = await cli.run(['lock', '--node', 'm', '--reason', 'x', '--ttl', '3h']);
    expect(renewed.code).toBe(0);
    expect(renewed.stdout).toContain('already held a slot');
    expect((await status()).holders[0]!.leaseSecondsLeft).toBeGreaterThan(2 * 3600);
    expect((await cli.run(['unlock', '--node', 'm'])).code).toBe(0);

    const client = new Etcd3({ hosts: etcd.endpoints });
    const agent = new Semaphore(client, { node: 'agent', prefix: cli.prefix, group: cli.group });
    try {
      await agent.acquire({ reason: 'update 4081.2.0' });
      const before = await client.get(cli.keys.queue('agent')).exec();
      const res = await cli.run(['lock', '--node', 'agent', '--reason', 'mine now']);
      expect(res.code).toBe(1);
      expect(res.stderr).toContain('through its agent');
      const after = await client.get(cli.keys.queue('agent')).exec();
      expect(after.kvs[0]!.lease).toBe(before.kvs[0]!.lease);
      expect(after.kvs[0]!.mod_revision).toBe(before.kvs[0]!.mod_revision);
    } finally {
      agent.close();
      client.close();
    }
  });

  it('lock --wait blocks until the holder is unlocked, then holds the slot', async () => {
    expect((await cli.run(['lock', '--node', 'a', '--reason', 'first'])).code).toBe(0);
    const waiting = cli.start(['lock', '--node', 'b', '--reason', 'second', '--wait']);
    // It queues behind a and keeps running.
    for (let i = 0; i < 100 && (await status()).waiting.length === 0; i++) await sleep(50);
    expect((await status()).waiting.map((w) => w.node)).toEqual(['b']);
    await sleep(300);
    expect(waiting.child.exitCode).toBeNull();

    expect((await cli.run(['unlock', '--node', 'a'])).code).toBe(0);
    const done = await waiting.exited;
    expect(done.code).toBe(0);
    expect(done.stdout).toContain('locked: b holds a slot');
    const after = await status();
    expect(after.holders.map((h) => h.node)).toEqual(['b']);
    expect(after.waiting).toEqual([]);
  });

  it('lock --wait leaves the queue when interrupted', async () => {
    expect((await cli.run(['lock', '--node', 'a', '--reason', 'first'])).code).toBe(0);
    const waiting = cli.start(['lock', '--node', 'b', '--reason', 'second', '--wait']);
    for (let i = 0; i < 100 && (await status()).waiting.length === 0; i++) await sleep(50);
    waiting.child.kill('SIGINT');
    const done = await waiting.exited;
    expect(done.code).toBe(1);
    expect(done.stderr).toContain('gave up waiting');
    expect((await status()).waiting).toEqual([]);
  });

  it('unlock of another node is refused without --force, and recorded as forced with it', async () => {
    expect((await cli.run(['lock', '--node', 'other', '--reason', 'disk'])).code).toBe(0);

    const refused = await cli.run(['unlock', 'other']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('add --force');
    expect((await status()).holders.map((h) => h.node)).toEqual(['other']);

    const forced = await cli.run(['unlock', 'other', '--force']);
    expect(forced.code).toBe(0);
    expect((await status()).holders).toEqual([]);
    const records = await history();
    expect(records[0]).toMatchObject({ node: 'other', outcome: 'forced', reason: 'disk' });
    expect(records[0]!.by).toMatch(/^tester@/);

    const table = (await cli.run(['history'])).stdout;
    expect(table).toMatch(/^NODE +HOSTNAME +START +END +DURATION +OUTCOME/m);
    // A slot taken with sluicectl lock stays a manual lock in history.
    expect(table).toMatch(
      /^other +other +\S+ \S+ +\S+ \S+ +\d+s +forced \(manual lock\) +tester@/m,
    );

    const nothing = await cli.run(['unlock', 'nobody', '--force']);
    expect(nothing.code).toBe(1);
  });

  it("unlock without --force never releases an agent's slot, not even this node's", async () => {
    const client = new Etcd3({ hosts: etcd.endpoints });
    // This node's agent (SLUICE_NODE=node-self) holds a slot and is rebooting.
    const agent = new Semaphore(client, {
      node: 'node-self',
      prefix: cli.prefix,
      group: cli.group,
    });
    const waiter = new Semaphore(client, { node: 'w1', prefix: cli.prefix, group: cli.group });
    try {
      const grant = await agent.acquire({ reason: 'update 4081.2.0' });
      await agent.setState(grant, 'rebooting');
      await waiter.enqueue({ reason: 'update 4081.2.0' });
      const before = await client.get(cli.keys.queue('node-self')).exec();

      for (const args of [
        ['unlock'],
        ['unlock', 'node-self'],
        ['unlock', '--node', 'node-self'],
        ['unlock', '--node', 'node-self', 'node-self'],
      ]) {
        const res = await cli.run(args);
        expect(res.code, args.join(' ')).toBe(1);
        expect(res.stderr).toContain('held by its agent');
        expect(res.stderr).toContain(`sluicectl unlock node-self --force --prefix ${cli.prefix}`);
      }
      // The same without SLUICE_NODE, naming the node with --node only.
      const viaFlag = await cli.run(['unlock', '--node', 'node-self'], {
        env: { SLUICE_NODE: '' },
      });
      expect(viaFlag.code).toBe(1);
      // An agent that is only waiting is left in the queue too.
      const queued = await cli.run(['unlock', '--node', 'w1']);
      expect(queued.code).toBe(1);
      expect(queued.stderr).toContain('sluicectl unlock w1 --force');

      const after = await client.get(cli.keys.queue('node-self')).exec();
      expect(after.kvs[0]!.mod_revision).toBe(before.kvs[0]!.mod_revision);
      const held = await status();
      expect(held.holders).toMatchObject([{ node: 'node-self', state: 'rebooting' }]);
      expect(held.waiting.map((w) => w.node)).toEqual(['w1']);

      // The suggested command names the group when it was given as a flag.
      const lab = new Semaphore(client, { node: 'node-self', prefix: cli.prefix, group: 'lab' });
      try {
        await lab.acquire({ reason: 'update 4081.2.0' });
        const res = await cli.run(['unlock', '--group', 'lab']);
        expect(res.code).toBe(1);
        expect(res.stderr).toContain(
          `sluicectl unlock node-self --force --group lab --prefix ${cli.prefix}`,
        );
      } finally {
        lab.close();
      }

      // It is rebooting: freeing its slot needs --yes as well.
      const forced = await cli.run(['unlock', 'node-self', '--force', '--yes']);
      expect(forced.code).toBe(0);
      expect((await status()).holders).toEqual([]);
      expect((await history())[0]).toMatchObject({
        node: 'node-self',
        outcome: 'forced',
        reason: 'update 4081.2.0',
        by: expect.stringMatching(/^tester@/),
      });
    } finally {
      agent.close();
      waiter.close();
      client.close();
    }
  });

  it('an expired manual lock is a lost holder: status halts the group, resume waits for unlock', async () => {
    expect((await cli.run(['lock', '--node', 'gone', '--reason', 'never back'])).code).toBe(0);
    // Expire the hold lease now instead of waiting out --ttl.
    const client = new Etcd3({ hosts: etcd.endpoints });
    try {
      const res = await client.get(cli.keys.queue('gone')).exec();
      await client.leaseClient.leaseRevoke({ ID: res.kvs[0]!.lease });
    } finally {
      client.close();
    }

    // Reported as the manual lock it was, with its reason: nothing rebooted there.
    const halted = await status();
    expect(halted.paused?.reason).toBe(
      'manual lock of gone (never back) expired without sluicectl unlock',
    );
    expect(halted.holders).toMatchObject([{ node: 'gone', state: 'lost', reason: 'never back' }]);
    expect(halted.available).toBe(0);

    const early = await cli.run(['resume']);
    expect(early.code).toBe(1);
    expect(early.stderr).toContain('sluicectl unlock gone --force');

    // Even as "this node", a lost holder is cleared only with --force.
    const unforced = await cli.run(['unlock', '--node', 'gone']);
    expect(unforced.code).toBe(1);
    expect(unforced.stderr).toContain('sluicectl unlock gone --force');
    expect((await status()).holders).toMatchObject([{ node: 'gone', state: 'lost' }]);

    expect((await cli.run(['unlock', 'gone', '--force'])).code).toBe(0);
    expect((await cli.run(['resume'])).code).toBe(0);
    const clear = await status();
    expect(clear.paused).toBeNull();
    expect(clear.holders).toEqual([]);
    const records = await history();
    expect(records[0]).toMatchObject({
      node: 'gone',
      outcome: 'lost',
      manual: true,
      reason: 'never back',
    });
    expect(records[0]!.by).toMatch(/^tester@/);
    expect((await cli.run(['history'])).stdout).toMatch(
      /^gone .* lost \(manual lock\) +tester@\S+ +never back$/m,
    );
  });
});

describe('sluicectl watch', () => {
  it('prints a new status after an etcdctl put and exits 0 on SIGTERM', async () => {
    const watch = cli.start(['watch']);
    await watch.waitForOutput(/^Max: +1$/m);
    const seen = watch.stdout.length;
    await etcd.etcdctl(['put', cli.keys.max, '6']);
    await watch.waitForOutput(/^Max: +6$/m, 10_000, seen);
    expect(watch.stdout.slice(seen)).toMatch(/^--- .* revision \d+$/m);
    watch.child.kill('SIGTERM');
    const done = await watch.exited;
    expect(done.code).toBe(0);
  });

  it('sends etcd no requests and prints nothing while nothing changes', async () => {
    const watch = cli.start(['watch']);
    await watch.waitForOutput(/^Max: +1$/m);
    await sleep(500); // Let the start-up requests finish.
    const requests = await unaryRequests(etcd.members[0]!.metricsUrl);
    const printed = watch.stdout.length;
    await sleep(3000);
    expect(await unaryRequests(etcd.members[0]!.metricsUrl)).toBe(requests);
    expect(watch.stdout.slice(printed)).toBe('');
    // Still live: the next change is printed.
    await etcd.etcdctl(['put', cli.keys.max, '2']);
    await watch.waitForOutput(/^Max: +2$/m, 10_000, printed);
    watch.child.kill('SIGTERM');
    expect((await watch.exited).code).toBe(0);
  });

  it('says since when etcd is unreachable while it is down, and clears it on reconnect', async () => {
    const own = await startEtcd();
    const runner = new CliRunner(own.endpoints);
    try {
      const table = runner.start(['watch'], { timeoutMs: 60_000 });
      const json = runner.start(['watch', '-o', 'json'], { timeoutMs: 60_000 });
      await table.waitForOutput(/^Max: +1$/m);
      await json.waitForOutput(/\n/);
      expect(JSON.parse(json.stdout.split('\n')[0]!).etcdUnreachableSince).toBeNull();
      const up = table.stdout.length;
      const upJson = json.stdout.length;

      await own.members[0]!.stop();
      const line =
        /^etcd unreachable since (\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ), showing the last state$/m;
      await table.waitForOutput(line, 10_000, up);
      await json.waitForOutput(/"etcdUnreachableSince":"[^"]+"/, 10_000, upJson);
      // The last state is shown under the line.
      expect(table.stdout.slice(up)).toMatch(/^Max: +1$/m);
      const since = Date.parse(line.exec(table.stdout.slice(up))![1]!.replace(' ', 'T'));
      expect(Math.abs(Date.now() - since)).toBeLessThan(10_000);
      const down = table.stdout.length;
      const downJson = json.stdout.length;

      await own.members[0]!.start();
      await table.waitForOutput(/^--- .* revision \d+$/m, 30_000, down);
      await json.waitForOutput(/"etcdUnreachableSince":null/, 30_000, downJson);
      // Live again: a change made after the reconnect shows, without the line.
      await own.etcdctl(['put', runner.keys.max, '4']);
      await table.waitForOutput(/^Max: +4$/m, 10_000, down);
      expect(table.stdout.slice(down)).not.toContain('unreachable');
      await json.waitForOutput(/"max":4/, 10_000, downJson);

      table.child.kill('SIGTERM');
      json.child.kill('SIGTERM');
      expect((await table.exited).code).toBe(0);
      const lines = (await json.exited).stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
      for (const l of lines) StatusJsonSchema.parse(l);
      expect(lines.some((l) => typeof l.etcdUnreachableSince === 'string')).toBe(true);
      expect(lines.at(-1).etcdUnreachableSince).toBeNull();
    } finally {
      await runner.cleanup();
      await own.stop();
    }
  });

  it('prints one JSON status per change with -o json, and exits 0 on SIGINT', async () => {
    const watch = cli.start(['watch', '-o', 'json']);
    await watch.waitForOutput(/\n/);
    await etcd.etcdctl(['put', cli.keys.paused, 'stop']);
    await watch.waitForOutput(/"reason":"stop"/);
    watch.child.kill('SIGINT');
    const done = await watch.exited;
    expect(done.code).toBe(0);
    const lines = done.stdout
      .trim()
      .split('\n')
      .map((l) => StatusJsonSchema.parse(JSON.parse(l)));
    expect(lines[0]!.paused).toBeNull();
    expect(lines.at(-1)!.paused?.reason).toBe('stop');
  });
});
