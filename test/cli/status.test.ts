/**
 * sluicectl's read and settings commands as processes against a real etcd: status (table and
 * JSON), set-max, pause and resume, request-reboot, history, settings from flags and environment
 * (locksmithctl's names included), and the exit codes.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
    // Nobody can be admitted while max does not parse, and status says so.
    expect(status.available).toBe(0);
    expect(status.blocker).toMatchObject({ kind: 'invalid-value', key: cli.keys.max });
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
      { node: 'n2', hostname: 'host-2', position: 1, since: record.since, heldBack: null },
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

  it('--group and --all-groups conflict (exit 2); a group from the environment does not', async () => {
    await etcd.etcdctl(['put', `${cli.prefix}groups/alpha/max`, '2']);
    for (const args of [
      ['status', '--group', 'alpha', '--all-groups'],
      ['--group=alpha', 'status', '--all-groups'],
      ['-group', 'alpha', 'status', '--all-groups'],
    ]) {
      const res = await cli.run(args);
      expect(res.code, args.join(' ')).toBe(2);
      expect(res.stderr).toContain('--all-groups');
      expect(res.stdout).toBe('');
    }
    const env = await cli.run(['status', '--all-groups'], { env: { SLUICE_GROUP: 'alpha' } });
    expect(env.code).toBe(0);
    expect(env.stdout).toMatch(/^Group: +alpha$/m);
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
      expect(res.stderr).toContain('max must be a plain decimal');
    }
    expect(await etcd.etcdctl(['get', cli.keys.max, '--print-value-only'])).toBe('5\n');
  });

  it('set-max -o json gives old and new as numbers, old null when unset or unreadable', async () => {
    const key = cli.keys.max;
    expect(await cli.json(['set-max', '3'])).toEqual({
      group: 'default',
      key,
      old: null,
      oldInvalid: null,
      new: 3,
    });
    expect(await cli.json(['set-max', '5'])).toEqual({
      group: 'default',
      key,
      old: 3,
      oldInvalid: null,
      new: 5,
    });
    await etcd.etcdctl(['put', key, 'three']);
    expect(await cli.json(['set-max', '1'])).toEqual({
      group: 'default',
      key,
      old: null,
      oldInvalid: 'three',
      new: 1,
    });
    const table = await cli.run(['set-max', '2']);
    expect(table.stdout).toContain('1 -> 2');
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
      by: null,
    });
  });

  it('pause without --reason is a usage error', async () => {
    const res = await cli.run(['pause']);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('--reason');
  });

  it('pause, lock and request-reboot refuse an empty or blank --reason (exit 2)', async () => {
    for (const reason of ['', '   ', '\t']) {
      for (const args of [
        ['pause', '--reason', reason],
        ['lock', '--reason', reason],
        ['lock', `--reason=${reason}`],
        ['request-reboot', '--reason', reason],
      ]) {
        const res = await cli.run(args);
        expect(res.code, JSON.stringify(args)).toBe(2);
        expect(res.stderr).toContain('--reason');
      }
    }
    const status = StatusJsonSchema.parse(await cli.json(['status']));
    expect(status.paused).toBeNull();
    expect(status.holders).toEqual([]);
    expect(await etcd.etcdctl(['get', '--prefix', cli.keys.requestsPrefix])).toBe('');
  });

  it('request-reboot writes a RebootRequest for this node or a named one', async () => {
    // Both nodes registered, as their agents do (a request for an unknown node is refused).
    for (const node of ['node-self', 'n7']) {
      await etcd.etcdctl(['put', cli.keys.registration(node), JSON.stringify({ v: 1, node })]);
    }
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
    expect(HistoryJsonSchema.parse(await cli.json(['history']))).toEqual({
      group: 'default',
      records: [],
      actions: [],
      errors: [],
    });
    expect((await cli.run(['history', '--limit', 'x'])).code).toBe(2);
  });

  it('history names unreadable records and reads on until --limit good ones', async () => {
    const record = (node: string, at: number) =>
      JSON.stringify({
        v: 1,
        node,
        hostname: node,
        group: 'default',
        outcome: 'released',
        grantedAt: new Date(at - 60_000).toISOString(),
        endedAt: new Date(at).toISOString(),
        reason: 'update',
      });
    const t = Date.parse('2026-01-05T10:00:00Z');
    const put = (key: string, value: string) => etcd.etcdctl(['put', key, '--', value]);
    await put(cli.keys.history(t, 'n1'), record('n1', t));
    await put(cli.keys.history(t + 1000, 'n2'), record('n2', t + 1000));
    await put(cli.keys.history(t + 2000, 'n3'), record('n3', t + 2000));
    // Newer than all of them: two records written by hand, one not JSON, one missing fields.
    const notJson = cli.keys.history(t + 3000, 'x1');
    const incomplete = cli.keys.history(t + 4000, 'x2');
    await put(notJson, 'not json');
    await put(incomplete, '{"v":1,"node":"x2"}');

    const json = HistoryJsonSchema.parse(await cli.json(['history', '--limit', '2']));
    expect(json.records.map((r) => r.node)).toEqual(['n3', 'n2']);
    expect(json.errors.map((e) => e.key)).toEqual([incomplete, notJson]);
    for (const e of json.errors) expect(e.message).not.toBe('');

    const all = HistoryJsonSchema.parse(await cli.json(['history']));
    expect(all.records.map((r) => r.node)).toEqual(['n3', 'n2', 'n1']);
    expect(all.errors).toHaveLength(2);

    const table = await cli.run(['history', '--limit', '2']);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^n3 +n3 /m);
    expect(table.stdout).toMatch(/^n2 +n2 /m);
    expect(table.stdout).not.toContain('x1');
    expect(table.stderr).toContain(notJson);
    expect(table.stderr).toContain(incomplete);
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

  it('exit 2 for an endpoint that is not an http(s) URL with a host, naming the flag or variable', async () => {
    for (const bad of [
      'ht!tp://::bad',
      'http://',
      'https://:2379',
      '://127.0.0.1:2379',
      'ftp://127.0.0.1:2379',
      'unix:///run/etcd.sock',
      'http://127.0.0.1:2379/v3/kv',
    ]) {
      const started = Date.now();
      const res = await cli.run(['--endpoints', bad, 'status']);
      expect(res.code, bad).toBe(2);
      expect(res.stderr, bad).toContain('--endpoints');
      // Quoted up to its authority: a path, query or fragment may carry a token.
      const shown = bad.replace(/^([a-z]+:\/\/[^/?#]*)[/?#].+$/, '$1/…');
      expect(res.stderr, bad).toContain(JSON.stringify(shown));
      expect(res.stderr, bad).not.toContain('Name resolution');
      expect(Date.now() - started).toBeLessThan(5000);
    }
    const list = await cli.run(['status'], {
      env: { SLUICE_ENDPOINTS: `${etcd.endpoint},ht!tp://::bad` },
    });
    expect(list.code).toBe(2);
    expect(list.stderr).toContain('SLUICE_ENDPOINTS');
    // Credentials never go in the URL, and are not echoed back.
    const creds = await cli.run(['--endpoints', 'http://root:pa55word@127.0.0.1:2379', 'status']);
    expect(creds.code).toBe(2);
    expect(creds.stderr).toContain('--password-file');
    expect(creds.stderr).not.toContain('pa55word');
    // host:port without a scheme is still fine, as with etcdctl.
    const bare = await cli.run(['--endpoints', etcd.endpoint.replace('http://', ''), 'status']);
    expect(bare.code, bare.stderr).toBe(0);
  });

  it('exit 2 for a CA file that is not PEM, naming the file and the flag or variable', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sluicectl-pem-'));
    try {
      const notPem = join(dir, 'ca.der');
      await writeFile(notPem, Buffer.from([0x30, 0x82, 0x01, 0x0a, 0x02, 0x82]));
      const flag = await cli.run(['--cacert', notPem, 'status']);
      expect(flag.code).toBe(2);
      expect(flag.stderr).toContain('--cacert');
      expect(flag.stderr).toContain(notPem);
      expect(flag.stderr).toContain('PEM');
      const env = await cli.run(['status'], { env: { SLUICE_CACERT: notPem } });
      expect(env.code).toBe(2);
      expect(env.stderr).toContain('SLUICE_CACERT');
      expect(env.stderr).toContain(notPem);
      const missing = await cli.run(['--cacert', join(dir, 'missing.pem'), 'status']);
      expect(missing.code).toBe(2);
      expect(missing.stderr).toContain(join(dir, 'missing.pem'));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("accepts locksmithctl's environment and single-dash flags", async () => {
    await etcd.etcdctl(['put', `${cli.prefix}groups/ls/max`, '9']);
    const port = await freePort();
    const dead = `http://127.0.0.1:${port}`;
    const noSluice = { SLUICE_ENDPOINTS: '' };

    // LOCKSMITHCTL_ENDPOINT is used when SLUICE_ENDPOINTS is not set...
    const viaEnv = await cli.json(['status'], {
      env: { ...noSluice, LOCKSMITHCTL_ENDPOINT: etcd.endpoint, LOCKSMITHCTL_GROUP: 'ls' },
    });
    expect(StatusJsonSchema.parse(viaEnv).max).toBe(9);
    const deadEnv = await cli.run(['status'], {
      env: { ...noSluice, LOCKSMITHCTL_ENDPOINT: dead },
    });
    expect(deadEnv.code).toBe(3);
    expect(deadEnv.stderr).toContain(`127.0.0.1:${port}`);
    // ... and is validated like the others, named in the error.
    const badEnv = await cli.run(['status'], {
      env: { ...noSluice, LOCKSMITHCTL_ENDPOINT: 'ht!tp://::bad' },
    });
    expect(badEnv.code).toBe(2);
    expect(badEnv.stderr).toContain('LOCKSMITHCTL_ENDPOINT');

    const dir = await mkdtemp(join(tmpdir(), 'sluicectl-ls-'));
    try {
      const notPem = join(dir, 'ca.txt');
      await writeFile(notPem, 'not a certificate\n');
      const caEnv = await cli.run(['status'], { env: { LOCKSMITHCTL_ETCD_CAFILE: notPem } });
      expect(caEnv.code).toBe(2);
      expect(caEnv.stderr).toContain('LOCKSMITHCTL_ETCD_CAFILE');
      expect(caEnv.stderr).toContain(notPem);
      for (const form of [['-etcd-cafile', notPem], [`-etcd-cafile=${notPem}`]]) {
        const res = await cli.run([...form, 'status']);
        expect(res.code, form.join(' ')).toBe(2);
        expect(res.stderr).toContain(notPem);
      }
      // A certificate without its key: the variable is named.
      const certOnly = await cli.run(['status'], {
        env: { LOCKSMITHCTL_ETCD_CERTFILE: notPem },
      });
      expect(certOnly.code).toBe(2);
      expect(certOnly.stderr).toContain('LOCKSMITHCTL_ETCD_CERTFILE');
      const keyOnly = await cli.run(['-etcd-keyfile', notPem, 'status']);
      expect(keyOnly.code).toBe(2);
      expect(keyOnly.stderr).toContain('--key: cert and key must be given together');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
