/**
 * Failure domains as an operator meets them, through sluicectl processes against a real etcd:
 * `domain-max` shown, set, refused when malformed and cleared, recorded in history; a malformed
 * value written with etcdctl fails closed and shows up in status; status names each node's domain
 * and the waiter its domain holds back.
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

/** A queue record for `node` in `domain`, as an agent writes it; with a marker when it holds. */
async function node(name: string, domain: string, holding = false): Promise<void> {
  const lease = (await etcd.etcdctl(['lease', 'grant', '120'])).match(/lease ([0-9a-f]+)/)![1]!;
  const at = new Date().toISOString();
  const state = holding ? 'holding' : 'waiting';
  const record = { v: 1, node: name, hostname: name, state, since: at, enqueuedAt: at, domain };
  await etcd.etcdctl(['put', cli.keys.queue(name), JSON.stringify(record), `--lease=${lease}`]);
  if (!holding) return;
  const kv = JSON.parse(await etcd.etcdctl(['get', cli.keys.queue(name), '-w', 'json'])).kvs[0];
  const marker = {
    v: 1,
    node: name,
    createRevision: Number(kv.create_revision),
    grantedAt: at,
    domain,
  };
  await etcd.etcdctl(['put', cli.keys.holding(name), JSON.stringify(marker)]);
}

describe('sluicectl domain-max', () => {
  it('shows, sets, refuses and clears the limit, and history keeps each change', async () => {
    await etcd.etcdctl(['put', cli.keys.max, '3']);
    expect((await cli.run(['domain-max'])).stdout).toContain('unset (no limit per failure domain)');
    const set = await cli.run(['domain-max', '1']);
    expect(set.code).toBe(0);
    expect(set.stdout).toContain('domain-max of group');
    expect(set.stdout).toContain('unset (no limit) -> 1');
    expect(await etcd.etcdctl(['get', cli.keys.domainMax, '--print-value-only'])).toBe('1\n');
    // A typo is refused before etcd is touched, naming the argument.
    for (const bad of ['-1', '01', 'two', '1.5']) {
      const refused = await cli.run(['domain-max', bad]);
      expect(refused.code, bad).not.toBe(0);
      expect(refused.stderr).toContain('domain-max must be a plain decimal');
    }
    expect(await etcd.etcdctl(['get', cli.keys.domainMax, '--print-value-only'])).toBe('1\n');

    await node('a', 'rack-1', true);
    await node('b', 'rack-1');
    await node('c', 'rack-2');
    const shown = await cli.json(['domain-max']);
    expect(shown).toMatchObject({
      domainMax: 1,
      domains: [
        { domain: 'rack-1', holders: 1, waiting: 1, full: true },
        { domain: 'rack-2', holders: 0, waiting: 1, full: false },
      ],
    });
    const status = (await cli.run(['status'])).stdout;
    expect(status).toMatch(/^Domains: +at most 1 holder\(s\) per failure domain; full: rack-1$/m);
    expect(status).toMatch(
      /^b is held back: its failure domain rack-1 has 1 of 1 slot\(s\) taken/m,
    );
    expect(status).toMatch(/^ *1 +b +b +rack-1 /m);

    expect((await cli.json(['domain-max', '--clear'])) as unknown).toMatchObject({
      old: 1,
      new: null,
    });
    expect((await etcd.etcdctl(['get', cli.keys.domainMax])).trim()).toBe('');
    const history = (await cli.json(['history', '--kind', 'set-domain-max'])) as {
      actions: { old: string | null; new: string | null }[];
    };
    // Newest first.
    expect(history.actions.map((r) => [r.old, r.new])).toEqual([
      ['1', null],
      [null, '1'],
    ]);
  });

  it('fails closed on a malformed value written with etcdctl, and names the key', async () => {
    await etcd.etcdctl(['put', cli.keys.domainMax, 'one']);
    const json = (await cli.json(['status'])) as {
      available: number;
      blocker: { kind: string; key: string };
      errors: { key: string }[];
    };
    expect(json.available).toBe(0);
    expect(json.blocker).toMatchObject({ kind: 'invalid-value', key: cli.keys.domainMax });
    const check = await cli.run(['status', '--check']);
    expect(check.code).toBe(1);
    expect(check.stdout + check.stderr).toContain(cli.keys.domainMax);
    expect((await cli.run(['domain-max'])).stdout).toContain('is invalid');
  });

  it('counts a manual lock in the failure domain its node registered', async () => {
    await etcd.etcdctl(['put', cli.keys.max, '3']);
    await etcd.etcdctl(['put', cli.keys.domainMax, '1']);
    await node('h', 'rack-1', true);
    const at = new Date().toISOString();
    const registration = {
      v: 1,
      node: 'a',
      hostname: 'a',
      token: 't-a',
      startedAt: at,
      domain: 'rack-1',
    };
    await etcd.etcdctl(['put', cli.keys.registration('a'), JSON.stringify(registration)]);
    const refused = await cli.run(['lock', '--node', 'a', '--reason', 'disk swap']);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('failure domain rack-1 has 1 of 1 slot(s) taken');
    // A node of another domain may lock.
    const other = { ...registration, node: 'b', hostname: 'b', token: 't-b', domain: 'rack-2' };
    await etcd.etcdctl(['put', cli.keys.registration('b'), JSON.stringify(other)]);
    const locked = await cli.run(['lock', '--node', 'b', '--reason', 'disk swap']);
    expect(locked.code, locked.stderr).toBe(0);
    expect(await etcd.etcdctl(['get', cli.keys.holding('b'), '--print-value-only'])).toContain(
      '"domain":"rack-2"',
    );
  });
});
