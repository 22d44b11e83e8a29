/**
 * Operator typos and bad input, as processes against a real etcd: a blank window spec, a date
 * that does not exist, a mistyped group or node, credentials in an endpoint, and a closed output
 * pipe. Each either does exactly what was meant or exits 2 having written nothing.
 */

import { spawn } from 'node:child_process';
import { type EtcdCluster, startEtcd } from '@sluice/testkit';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { CLI, CliRunner, StatusJsonSchema } from './cli.js';

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

/** Every key under the runner's prefix, for "wrote nothing" checks. */
async function keysUnderPrefix(): Promise<string[]> {
  const out = await etcd.etcdctl(['get', '--prefix', cli.prefix, '--keys-only']);
  return out.split('\n').filter(Boolean).sort();
}

/** Registers a node in a group the way an agent does: a record at groups/<g>/nodes/<id>. */
async function register(group: string, node: string): Promise<void> {
  const key = `${cli.prefix}groups/${group}/nodes/${node}`;
  await etcd.etcdctl(['put', key, JSON.stringify({ v: 1, node, hostname: node })]);
}

describe('blank window specs and dates that do not exist', () => {
  it.each([[''], [' '], ['\t\n']])('windows set %j exits 2 and writes nothing', async (spec) => {
    const res = await cli.run(['windows', 'set', spec]);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('the spec is empty');
    expect(res.stdout).toBe('');
    expect(await keysUnderPrefix()).toEqual([]);
  });

  it('windows check refuses a blank spec and a blank locksmith start', async () => {
    expect((await cli.run(['windows', 'check', ' '])).code).toBe(2);
    expect((await cli.run(['windows', 'check', '', '--length', '1h'])).code).toBe(2);
  });

  it.each(['2025-02-30T00:00:00Z', '2025-04-31T04:30:00Z', '2025-01-01T24:00:00Z'])(
    '--at %s exits 2',
    async (at) => {
      const res = await cli.run(['windows', 'check', 'Thu 04:00', '--length', '1h30m', '--at', at]);
      expect(res.code).toBe(2);
      expect(res.stderr).toContain(`--at "${at}": want an existing ISO-8601 instant`);
    },
  );
});

describe('a mistyped --group', () => {
  const refused =
    'no such group "defualt" (known groups: default, web); add --create to start a new group';

  it.each<[string, string[]]>([
    ['pause', ['pause', '--reason', 'stop all']],
    ['resume', ['resume']],
    ['set-max', ['set-max', '2']],
    ['windows set', ['windows', 'set', 'Mon 04:00+1h']],
    ['windows clear', ['windows', 'clear']],
    ['lock', ['lock', '--node', 'web-1', '--reason', 'firmware']],
    ['unlock', ['unlock', 'web-1', '--force']],
    ['request-reboot', ['request-reboot', 'web-1']],
    ['cancel-request', ['cancel-request', 'web-1']],
  ])('%s on an unknown group exits 2 and writes nothing', async (_name, args) => {
    await register('web', 'web-1');
    const before = await keysUnderPrefix();
    const res = await cli.run(['--group', 'defualt', ...args]);
    expect(res.code, res.stderr).toBe(2);
    expect(res.stderr).toContain(refused);
    expect(await keysUnderPrefix()).toEqual(before);
  });

  it('--create starts a new group; a group with only registered nodes is known', async () => {
    await register('web', 'web-1');
    const created = await cli.run(['--group', 'batch', '--create', 'set-max', '3']);
    expect(created.code, created.stderr).toBe(0);
    expect(await etcd.etcdctl(['get', `${cli.prefix}groups/batch/max`, '--print-value-only'])).toBe(
      '3\n',
    );
    const paused = await cli.run(['--group', 'web', 'pause', '--reason', 'kernel regression']);
    expect(paused.code, paused.stderr).toBe(0);
    // default is always known, even when nothing is stored for it yet.
    expect((await cli.run(['set-max', '2'])).code).toBe(0);
  });

  it('status of an unknown group says so, lists the known ones, and exits 1', async () => {
    await register('web', 'web-1');
    const res = await cli.run(['--group', 'defualt', 'status']);
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('no such group "defualt" (known groups: default, web)');
    expect(res.stdout).not.toMatch(/Available/);
    const json = await cli.run(['--group', 'defualt', 'status', '-o', 'json']);
    expect(json.code).toBe(1);
  });

  it('status under a prefix that holds nothing says so', async () => {
    const res = await cli.run(['status', '--prefix', '/sluice/v1-typo/'], { noPrefix: true });
    expect(res.code).toBe(0);
    expect(res.stderr).toContain('nothing is stored under /sluice/v1-typo/');
  });
});

describe('reboot requests', () => {
  it('refuses a node that is not registered, unless --allow-unknown', async () => {
    const res = await cli.run(['request-reboot', 'nosuchnode']);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('nosuchnode is not a known node in group default');
    expect(await keysUnderPrefix()).toEqual([]);
    const allowed = await cli.run(['request-reboot', 'nosuchnode', '--allow-unknown']);
    expect(allowed.code, allowed.stderr).toBe(0);
  });

  it('accepts a registered, queued or holding node', async () => {
    await register('default', 'n1');
    expect((await cli.run(['request-reboot', 'n1'])).code).toBe(0);
    await etcd.etcdctl(['put', cli.keys.queue('n2'), '{}']);
    expect((await cli.run(['request-reboot', 'n2'])).code).toBe(0);
    await etcd.etcdctl(['put', cli.keys.holding('n3'), '{}']);
    expect((await cli.run(['request-reboot', 'n3'])).code).toBe(0);
  });

  it('are listed by status, expire after --ttl, and cancel-request removes one', async () => {
    await register('default', 'n1');
    await register('default', 'n2');
    await register('default', 'n3');
    expect((await cli.run(['request-reboot', 'n1', '--reason', 'kernel args'])).code).toBe(0);
    expect((await cli.run(['request-reboot', 'n2', '--ttl', '1h'])).code).toBe(0);

    const status = StatusJsonSchema.parse(await cli.json(['status']));
    expect(status.requests.map((r) => [r.node, r.reason])).toEqual([
      ['n1', 'kernel args'],
      ['n2', 'requested with sluicectl'],
    ]);
    const n1 = status.requests[0]!;
    const hours = (Date.parse(n1.expiresAt!) - Date.now()) / 3_600_000;
    expect(hours).toBeGreaterThan(23.9);
    expect(hours).toBeLessThanOrEqual(24);
    const n2hours = (Date.parse(status.requests[1]!.expiresAt!) - Date.now()) / 3_600_000;
    expect(n2hours).toBeGreaterThan(0.9);
    expect(n2hours).toBeLessThanOrEqual(1);
    const table = await cli.run(['status']);
    expect(table.stdout).toMatch(/^REQUESTS$/m);
    expect(table.stdout).toMatch(/n1 .*kernel args/);

    // A short request: its key is on a lease of --ttl, and etcd deletes it when that runs out
    // (however slowly this machine runs the CLI, the lease's granted TTL is what was asked for).
    expect((await cli.run(['request-reboot', 'n3', '--ttl', '6s'])).code).toBe(0);
    // The lease ID is an int64: read it from the text, JSON.parse would round it.
    const got = await etcd.etcdctl(['get', cli.keys.request('n3'), '-w', 'json']);
    const lease = BigInt(/"lease":(\d+)/.exec(got)?.[1] ?? 0);
    expect(lease).not.toBe(0n);
    const ttl = await etcd.etcdctl(['lease', 'timetolive', lease.toString(16)]);
    expect(ttl).toMatch(/granted with TTL\(6s\)/);
    await vi.waitFor(
      async () =>
        expect(await etcd.etcdctl(['get', cli.keys.request('n3'), '--keys-only'])).toBe(''),
      { timeout: 20_000, interval: 250 },
    );
    const cancelled = await cli.run(['cancel-request', 'n1']);
    expect(cancelled.code, cancelled.stderr).toBe(0);
    expect(StatusJsonSchema.parse(await cli.json(['status'])).requests.map((r) => r.node)).toEqual([
      'n2',
    ]);
    expect((await cli.run(['cancel-request', 'n2'])).code).toBe(0);
    expect(StatusJsonSchema.parse(await cli.json(['status'])).requests).toEqual([]);
    const again = await cli.run(['cancel-request', 'n1']);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('n1 has no reboot request');
  });
});

describe('secrets and closed pipes', () => {
  it.each(['http://u:s3cretpw@127.0.0.1:99999', 'u:s3cretpw@h:99999', 'ftp://u:s3cretpw@h'])(
    'never echoes credentials in an endpoint: %s',
    async (endpoint) => {
      const res = await cli.run(['--endpoints', endpoint, 'status']);
      expect(res.code).toBe(2);
      expect(res.stderr + res.stdout).not.toContain('s3cret');
      expect(res.stderr).toContain('must not carry a user or password');
    },
  );

  /** Runs sluicectl with its stdout pipe closed before it writes anything. */
  function closedStdout(args: string[]): Promise<{ code: number | null; stderr: string }> {
    return new Promise((resolve) => {
      const child = spawn(process.execPath, [CLI, '--prefix', cli.prefix, ...args], {
        env: cli.env(),
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      // Node takes far longer to start than this takes: the pipe is closed before any write.
      child.stdout.destroy();
      let stderr = '';
      child.stderr.setEncoding('utf8').on('data', (d: string) => {
        stderr += d;
      });
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({ code, stderr });
      });
    });
  }

  it.each<[string[], number]>([
    [['windows', 'check', 'Thu 04:00', '--length', '1h30m'], 0],
    [['status'], 0],
    [['doctor', '--no-dbus'], 0],
    [['history'], 0],
  ])('%j with a closed stdout ends quietly', async (args, code) => {
    const res = await closedStdout(args);
    expect(res.stderr).not.toMatch(/EPIPE|Unhandled|bug/);
    expect(res.code).toBe(code);
  });
});
