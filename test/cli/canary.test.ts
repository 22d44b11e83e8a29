/**
 * The canary as an operator meets it, through sluicectl processes against a real etcd: `canary
 * set` validates and stores the setting, status shows the phase and what holds the group back,
 * a failed canary is reset or skipped, history keeps each action, and a malformed value written
 * with etcdctl fails closed.
 */
import { type EtcdCluster, startEtcd } from '@sluice/testkit';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CliRunner } from './cli.js';

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

const now = () => new Date().toISOString();

/** A canary of 2.0 seated for `node`, as an admission txn writes it. */
async function seat(node: string, fields: Record<string, unknown> = {}): Promise<void> {
  const state = { v: 1, version: '2.0', seats: 1, startedAt: now(), done: ['1.9'] };
  await etcd.etcdctl(['put', cli.keys.canaryState, JSON.stringify(state)]);
  const record = { v: 1, node, version: '2.0', grantedAt: now(), ...fields };
  await etcd.etcdctl(['put', cli.keys.canaryRecord(node), JSON.stringify(record)]);
}

describe('sluicectl canary', () => {
  it('sets, shows and clears the canary; refuses a bad K or SOAK before touching etcd', async () => {
    const set = await cli.run(['canary', 'set', '2', '90m']);
    expect(set.code, set.stderr).toBe(0);
    expect(await etcd.etcdctl(['get', cli.keys.canary, '--print-value-only'])).toBe(
      '{"count":2,"soak":"1h30m"}\n',
    );
    for (const [k, soak, named] of [
      ['0', '30m', 'K is "0"'],
      ['two', '30m', 'K is "two"'],
      ['2', 'soon', 'SOAK is "soon"'],
      ['2', '40d', 'SOAK is "40d"'],
    ]) {
      const bad = await cli.run(['canary', 'set', k!, soak!]);
      expect(bad.code, `${k} ${soak}`).toBe(2);
      expect(bad.stderr).toContain(named);
    }
    expect(await etcd.etcdctl(['get', cli.keys.canary, '--print-value-only'])).toBe(
      '{"count":2,"soak":"1h30m"}\n',
    );
    const shown = await cli.run(['canary']);
    expect(shown.stdout).toContain('2 per new version, soak 1h30m; no version canaried yet');
    expect((await cli.run(['status'])).stdout).toMatch(/^Canary: +2 per new version/m);
    expect((await cli.json(['canary'])) as object).toMatchObject({
      canary: { count: 2, soak: '1h30m', phase: 'waiting', version: null },
    });
    expect((await cli.run(['canary', 'clear'])).stdout).toContain('removed');
    expect((await etcd.etcdctl(['get', cli.keys.canary])).trim()).toBe('');
    const history = (await cli.json(['history', '--kind', 'action'])) as {
      actions: { action: string; new: string | null }[];
    };
    expect(history.actions.map((a) => a.action)).toEqual(
      expect.arrayContaining(['canary-set', 'canary-clear']),
    );
  });

  it('status says a group waits for its canary, and the canary can be skipped', async () => {
    await etcd.etcdctl(['put', cli.keys.max, '3']);
    await etcd.etcdctl(['put', cli.keys.canary, '{"count":1,"soak":"30m"}']);
    // a holds a slot (taken by hand here) and is seated as 2.0's canary.
    expect((await cli.run(['lock', '--node', 'a', '--reason', 'canary'])).code).toBe(0);
    await seat('a');
    const status = (await cli.json(['status'])) as {
      available: number;
      blocker: { kind: string; failed: boolean };
      canary: { phase: string; seated: string[] };
    };
    expect(status).toMatchObject({
      available: 0,
      blocker: { kind: 'canary', failed: false },
      canary: { phase: 'rebooting', seated: ['a'] },
    });
    expect((await cli.run(['status'])).stdout).toMatch(
      /^Available: +0: canary of 2.0: 0 of 1 back/m,
    );
    const skip = await cli.run(['canary', 'skip']);
    expect(skip.code, skip.stderr).toBe(0);
    expect(skip.stdout).toContain('2.0 counts as proven');
    const after = (await cli.json(['canary'])) as { canary: { phase: string; done: string[] } };
    expect(after.canary).toMatchObject({ phase: 'done', done: ['1.9', '2.0'] });
    expect((await etcd.etcdctl(['get', '--prefix', cli.keys.canariesPrefix])).trim()).toBe('');
  });

  it('a failed canary stops the group until reset; a malformed value fails closed, named', async () => {
    await etcd.etcdctl(['put', cli.keys.max, '3']);
    await etcd.etcdctl(['put', cli.keys.canary, '{"count":1,"soak":"30m"}']);
    await seat('a', { outcome: 'failed', endedAt: now(), problem: 'nginx down' });
    const shown = await cli.run(['canary']);
    expect(shown.stdout).toContain('2.0 FAILED: a nginx down');
    const check = await cli.run(['status', '--check']);
    expect(check.code).toBe(1);
    expect(check.stdout + check.stderr).toContain('the canary of 2.0 failed');
    const reset = await cli.run(['canary', 'reset']);
    expect(reset.stdout).toContain('canary of 2.0 in group');
    const state = await etcd.etcdctl(['get', cli.keys.canaryState, '--print-value-only']);
    expect(JSON.parse(state)).toMatchObject({ version: '2.0', seats: 0, done: ['1.9'] });
    const records = await etcd.etcdctl(['get', '--prefix', cli.keys.canariesPrefix, '--keys-only']);
    expect(records.trim()).toBe('');
    expect(((await cli.json(['status'])) as { blocker: unknown }).blocker).toBeNull();

    await etcd.etcdctl(['put', cli.keys.canary, '{"count":2,"soak":"30 minutes"}']);
    const status = (await cli.json(['status'])) as {
      available: number;
      blocker: { kind: string; key: string };
      errors: { key: string }[];
    };
    expect(status).toMatchObject({
      available: 0,
      blocker: { kind: 'invalid-value', key: cli.keys.canary },
    });
    expect(status.errors.map((e) => e.key)).toContain(cli.keys.canary);
  });
});
