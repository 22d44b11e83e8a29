/**
 * sluicectl's read and settings commands as processes against a real etcd: status (table and
 * JSON), set-max, pause and resume, request-reboot, history, settings from flags and environment,
 * and the exit codes.
 */
import { type EtcdCluster, freePort, startEtcd } from '@sluice/testkit';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CliRunner, HistoryJsonSchema, StatusJsonSchema } from './cli.js';

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

describe('sluicectl status', () => {
  it('prints an empty group as a table and as the documented JSON', async () => {
    const table = await cli.run(['status']);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^Group: +default$/m);
    expect(table.stdout).toMatch(/^Max: +1$/m);
    expect(table.stdout).toMatch(/^Available: +1$/m);
    expect(table.stdout).toMatch(/^Paused: +no$/m);
    expect(table.stdout).toMatch(/^Window: +always open/m);

    const status = StatusJsonSchema.parse(await cli.json(['status']));
    expect(status).toMatchObject({
      group: 'default',
      max: 1,
      available: 1,
      paused: null,
      window: { open: true, nextChange: null },
      holders: [],
      waiting: [],
      errors: [],
    });
  });

  it('reads max written by etcdctl, and shows an invalid max in errors with exit 0', async () => {
    await etcd.etcdctl(['put', cli.keys.max, '4']);
    expect(StatusJsonSchema.parse(await cli.json(['status'])).max).toBe(4);

    await etcd.etcdctl(['put', cli.keys.max, 'abc']);
    const res = await cli.run(['status', '-o', 'json']);
    expect(res.code).toBe(0);
    const status = StatusJsonSchema.parse(JSON.parse(res.stdout));
    expect(status.max).toBeNull();
    expect(status.available).toBeNull();
    expect(status.errors).toEqual([
      { key: cli.keys.max, message: expect.stringContaining('"abc"') },
    ]);

    const table = await cli.run(['status']);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^ERRORS$/m);
    expect(table.stdout).toContain(cli.keys.max);
  });

  it('shows holders with lease time left and waiters in queue order', async () => {
    expect((await cli.run(['lock', '--node', 'n1', '--reason', 'disk swap'])).code).toBe(0);
    // A waiter: a queue record on a lease, as an agent would write it.
    const lease = (await etcd.etcdctl(['lease', 'grant', '60'])).match(/lease ([0-9a-f]+)/)![1]!;
    const record = {
      v: 1,
      node: 'n2',
      hostname: 'host-2',
      state: 'waiting',
      since: new Date().toISOString(),
      enqueuedAt: new Date().toISOString(),
      reason: 'update 4081.2.0',
    };
    await etcd.etcdctl(['put', cli.keys.queue('n2'), JSON.stringify(record), `--lease=${lease}`]);

    const status = StatusJsonSchema.parse(await cli.json(['status']));
    expect(status.available).toBe(0);
    expect(status.holders).toHaveLength(1);
    expect(status.holders[0]).toMatchObject({ node: 'n1', hostname: 'n1', state: 'holding' });
    expect(status.holders[0]!.leaseSecondsLeft).toBeGreaterThan(23 * 3600);
    expect(status.waiting).toEqual([
      { node: 'n2', hostname: 'host-2', position: 1, since: record.since },
    ]);

    const table = (await cli.run(['status'])).stdout;
    expect(table).toMatch(/^HOLDERS$/m);
    expect(table).toMatch(/^n1 +n1 +holding .* 23h59m +disk swap$/m);
    expect(table).toMatch(/^WAITING$/m);
    expect(table).toMatch(/^1 +n2 +host-2 .* update 4081\.2\.0$/m);
  });

  it('--all-groups prints every group under the prefix (JSON: an array)', async () => {
    await etcd.etcdctl(['put', `${cli.prefix}groups/alpha/max`, '2']);
    await etcd.etcdctl(['put', `${cli.prefix}groups/beta/max`, '3']);
    const all = await cli.json(['status', '--all-groups']);
    const statuses = StatusJsonSchema.array().parse(all);
    expect(statuses.map((s) => [s.group, s.max])).toEqual([
      ['alpha', 2],
      ['beta', 3],
    ]);
    const table = (await cli.run(['status', '--all-groups'])).stdout;
    expect(table).toMatch(/^Group: +alpha$/m);
    expect(table).toMatch(/^Group: +beta$/m);
  });
});

describe('sluicectl set-max, pause, resume, request-reboot', () => {
  it('set-max prints old and new value and the etcdctl equivalent; refuses a bad N with 2', async () => {
    const first = await cli.run(['set-max', '3']);
    expect(first.code).toBe(0);
    expect(first.stdout).toContain('unset (1) -> 3');
    expect(first.stdout).toContain(`etcdctl put ${cli.keys.max} 3`);
    expect(await etcd.etcdctl(['get', cli.keys.max, '--print-value-only'])).toBe('3\n');

    const second = await cli.run(['set-max', '5']);
    expect(second.stdout).toContain('3 -> 5');

    for (const bad of ['abc', '-1', '2.5', '10001']) {
      const res = await cli.run(['set-max', bad]);
      expect(res.code, bad).toBe(2);
      expect(res.stderr).toContain('whole number');
    }
    expect(await etcd.etcdctl(['get', cli.keys.max, '--print-value-only'])).toBe('5\n');
  });

  it('pause records reason, since and who; resume clears it', async () => {
    const paused = await cli.run(['pause', '--reason', 'bad update 4081.2.0']);
    expect(paused.code).toBe(0);
    const status = StatusJsonSchema.parse(await cli.json(['status']));
    expect(status.paused?.reason).toBe('bad update 4081.2.0');
    expect(Date.now() - Date.parse(status.paused!.since!)).toBeLessThan(60_000);
    const stored = JSON.parse(await etcd.etcdctl(['get', cli.keys.paused, '--print-value-only']));
    expect(stored.by).toMatch(/^tester@/);

    const again = await cli.run(['pause', '--reason', 'other']);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('already paused: bad update 4081.2.0');

    expect((await cli.run(['resume'])).code).toBe(0);
    expect(StatusJsonSchema.parse(await cli.json(['status'])).paused).toBeNull();
    expect((await cli.run(['resume'])).stdout).toContain('was not paused');

    // A pause written with etcdctl is plain text and shows without a since.
    await etcd.etcdctl(['put', cli.keys.paused, 'maintenance']);
    expect(StatusJsonSchema.parse(await cli.json(['status'])).paused).toEqual({
      reason: 'maintenance',
      since: null,
    });
  });

  it('pause without --reason is a usage error', async () => {
    const res = await cli.run(['pause']);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('--reason');
  });

  it('request-reboot writes a RebootRequest for this node or a named one', async () => {
    expect((await cli.run(['request-reboot', '--reason', 'kernel'])).code).toBe(0);
    const own = JSON.parse(
      await etcd.etcdctl(['get', cli.keys.request('node-self'), '--print-value-only']),
    );
    expect(own).toMatchObject({ v: 1, node: 'node-self', reason: 'kernel' });
    expect(own.by).toMatch(/^tester@/);

    expect((await cli.run(['request-reboot', 'n7'])).code).toBe(0);
    const other = JSON.parse(
      await etcd.etcdctl(['get', cli.keys.request('n7'), '--print-value-only']),
    );
    expect(other).toMatchObject({ v: 1, node: 'n7', reason: 'requested with sluicectl' });

    const bad = await cli.run(['request-reboot', 'no/slash']);
    expect(bad.code).toBe(2);
  });

  it('history is empty at first, in JSON too', async () => {
    expect((await cli.run(['history'])).stdout).toContain('no history');
    expect(HistoryJsonSchema.parse(await cli.json(['history']))).toEqual([]);
    expect((await cli.run(['history', '--limit', 'x'])).code).toBe(2);
  });
});

describe('settings and exit codes', () => {
  it('exit 3 within seconds when etcd is unreachable, naming what to check', async () => {
    const port = await freePort();
    const started = Date.now();
    const res = await cli.run(['status'], {
      env: { SLUICE_ENDPOINTS: `http://127.0.0.1:${port}` },
    });
    expect(res.code).toBe(3);
    expect(res.stderr).toContain('Check that the endpoints are reachable');
    expect(Date.now() - started).toBeLessThan(8000);
  });

  it('exit 2 for usage errors and invalid settings, naming the flag or variable', async () => {
    expect((await cli.run(['no-such-command'])).code).toBe(2);
    expect((await cli.run(['status', '--bogus'])).code).toBe(2);
    expect((await cli.run(['status', '-o', 'yaml'])).code).toBe(2);
    expect((await cli.run([])).code).toBe(2);

    const badGroup = await cli.run(['status', '--group', 'bad/name']);
    expect(badGroup.code).toBe(2);
    expect(badGroup.stderr).toContain('--group');

    const badEnv = await cli.run(['status'], { env: { SLUICE_GROUP: 'bad group' } });
    expect(badEnv.code).toBe(2);
    expect(badEnv.stderr).toContain('SLUICE_GROUP');

    const badPrefix = await cli.run(['status', '--prefix', 'no-slash'], { noPrefix: true });
    expect(badPrefix.code).toBe(2);
    expect(badPrefix.stderr).toContain('--prefix');

    const certOnly = await cli.run(['status', '--cert', '/tmp/x.pem']);
    expect(certOnly.code).toBe(2);
    expect(certOnly.stderr).toContain('--cert');
  });

  it('--help and --version exit 0', async () => {
    const help = await cli.run(['--help']);
    expect(help.code).toBe(0);
    for (const cmd of ['status', 'set-max', 'pause', 'resume', 'lock', 'unlock', 'windows']) {
      expect(help.stdout).toContain(cmd);
    }
    expect((await cli.run(['--version'])).stdout).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('flags override the environment; locksmithctl env names and -endpoint work', async () => {
    await etcd.etcdctl(['put', `${cli.prefix}groups/fromflag/max`, '7']);
    await etcd.etcdctl(['put', `${cli.prefix}groups/fromenv/max`, '8']);
    const flag = StatusJsonSchema.parse(
      await cli.json(['status', '--group', 'fromflag'], { env: { SLUICE_GROUP: 'fromenv' } }),
    );
    expect(flag.max).toBe(7);
    const env = StatusJsonSchema.parse(
      await cli.json(['status'], { env: { LOCKSMITHCTL_GROUP: 'fromenv' } }),
    );
    expect(env.max).toBe(8);

    // locksmithctl's -endpoint URL overrides a dead endpoint from the environment.
    const port = await freePort();
    const deadEnv = { SLUICE_ENDPOINTS: `http://127.0.0.1:${port}` };
    expect((await cli.run(['status'], { env: deadEnv })).code).toBe(3);
    for (const form of [
      ['-endpoint', etcd.endpoint],
      [`-endpoint=${etcd.endpoint}`],
      ['--endpoints', etcd.endpoint],
    ]) {
      const res = await cli.run([...form, '-group', 'fromflag', 'status', '-o', 'json'], {
        env: deadEnv,
      });
      expect(res.code, form.join(' ')).toBe(0);
      expect(JSON.parse(res.stdout).max).toBe(7);
    }
  });

  it('never prints the password, even when etcd refuses it', async () => {
    const res = await cli.run(['--user', 'root', '--password', 's3cr3t-pw', 'doctor', '--no-dbus']);
    expect(`${res.stdout}${res.stderr}`).not.toContain('s3cr3t-pw');
  });
});
