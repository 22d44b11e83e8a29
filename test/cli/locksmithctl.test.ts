/**
 * sluice's `locksmithctl` as a process against a real etcd: locksmithctl's commands, Go-style
 * flags and output layout, on sluice's keys. Where sluice is stricter (unlocking another machine),
 * it says so.
 */
import { type EtcdCluster, freePort, startEtcd } from '@sluice/testkit';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CliRunner, LOCKSMITHCTL, type RunOptions } from './cli.js';

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

/** locksmithctl with the runner's prefix (a sluice setting, given as SLUICE_PREFIX). */
function ctl(args: string[], options: RunOptions = {}) {
  return cli.run(args, {
    ...options,
    noPrefix: true,
    script: LOCKSMITHCTL,
    env: { SLUICE_PREFIX: cli.prefix, ...options.env },
  });
}

describe('locksmithctl on sluice', () => {
  it("status and set-max print locksmithctl's layout", async () => {
    expect((await ctl(['status'])).stdout).toBe('Available: 1\nMax: 1\n');
    const set = await ctl(['set-max', '2']);
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout).toBe('Old-Max: 1\nMax: 2\n');
    expect((await ctl(['set-max', '3'])).stdout).toBe('Old-Max: 2\nMax: 3\n');

    const locked = await ctl(['lock', 'ab12cd']);
    expect(locked.code, locked.stderr).toBe(0);
    expect(locked.stdout).toBe('');
    expect((await ctl(['status'])).stdout).toBe('Available: 2\nMax: 3\n\nMACHINE ID\nab12cd\n');
    // The keys are sluice's: sluicectl sees the same.
    expect((await cli.json(['status'])) as object).toMatchObject({ max: 3, available: 2 });
  });

  it('lock and unlock this machine; another machine needs -force, and it says why', async () => {
    expect((await ctl(['lock'])).code).toBe(0);
    const own = await ctl(['unlock']);
    expect(own.code, own.stderr).toBe(0);
    expect(own.stdout).toBe('');

    expect((await ctl(['lock', 'other-1'])).code).toBe(0);
    const refused = await ctl(['unlock', 'other-1']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^Error unlocking: other-1 is not this node/);
    expect(refused.stderr).toContain('sluice is stricter than locksmith here');
    expect(refused.stderr).toContain('locksmithctl unlock -force other-1');
    const forced = await ctl(['unlock', '-force', 'other-1']);
    expect(forced.code, forced.stderr).toBe(0);
    expect((await ctl(['status'])).stdout).toBe('Available: 1\nMax: 1\n');

    const full = await ctl(['lock', 'a']);
    expect(full.code).toBe(0);
    const second = await ctl(['lock', 'b']);
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(/^Error locking: no slot for b: group default is full/);
  });

  it("takes locksmithctl's flags, in both Go spellings, and its environment", async () => {
    const port = await freePort();
    const dead = { SLUICE_ENDPOINTS: `http://127.0.0.1:${port}` };
    const flag = await ctl(['-endpoint', etcd.endpoints[0]!, 'status'], { env: dead });
    expect(flag.code, flag.stderr).toBe(0);
    const eq = await ctl([`-endpoint=${etcd.endpoints[0]}`, 'status'], { env: dead });
    expect(eq.code, eq.stderr).toBe(0);
    const env = await ctl(['status'], {
      env: { SLUICE_ENDPOINTS: '', LOCKSMITHCTL_ENDPOINT: etcd.endpoints[0]! },
    });
    expect(env.code, env.stderr).toBe(0);

    await etcd.etcdctl(['put', `${cli.prefix}groups/workers/max`, '4']);
    expect((await ctl(['-group', 'workers', 'status'])).stdout).toBe('Available: 4\nMax: 4\n');
    expect((await ctl(['status'], { env: { LOCKSMITHCTL_GROUP: 'workers' } })).stdout).toBe(
      'Available: 4\nMax: 4\n',
    );
    // An unknown group is refused, as sluicectl refuses it; -create starts one.
    const typo = await ctl(['-group', 'wrokers', 'set-max', '2']);
    expect(typo.code).toBe(1);
    expect(typo.stderr).toContain('no such group "wrokers"');
    expect((await ctl(['-group', 'wrokers', '-create', 'set-max', '2'])).code).toBe(0);

    const ca = await ctl(['-etcd-cafile', '/nonexistent/ca.pem', 'status']);
    expect(ca.code).toBe(1);
    expect(ca.stderr).toContain('/nonexistent/ca.pem');
    const pair = await ctl(['-etcd-certfile=/nonexistent/c.pem', 'status']);
    expect(pair.stderr).toBe(
      'Error getting status: -etcd-certfile: cert and key must be given together for mutual TLS\n',
    );
    const user = await ctl(['-etcd-username', 'root', '-etcd-password', 'pw-not-shown', 'status']);
    expect(user.code).toBe(1);
    expect(user.stderr).not.toContain('pw-not-shown');
  });

  it('answers -help, help and help COMMAND; refuses unknown commands and flags', async () => {
    for (const args of [['-help'], ['-h'], ['help'], []]) {
      const res = await ctl(args);
      expect(res.code).toBe(0);
      expect(res.stdout).toMatch(/^NAME:\n\tlocksmithctl - /);
      expect(res.stdout).toContain('\tset-max\t');
    }
    const unlock = await ctl(['help', 'unlock']);
    expect(unlock.stdout).toContain('locksmithctl unlock [MACHINE-ID]');
    expect(unlock.stdout).toContain('-force');
    const unknown = await ctl(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stdout).toContain('unknown subcommand: "frobnicate"');
    const badFlag = await ctl(['-nope', 'status']);
    expect(badFlag.code).toBe(2);
    expect(badFlag.stderr).toContain('flag provided but not defined: -nope');
    expect((await ctl(['-version'])).stdout).toMatch(/^\d+\.\d+\.\d+/);
  });
});

describe('sluicectl help forms', () => {
  it('accepts -help, --help, help and help COMMAND', async () => {
    for (const args of [['-help'], ['--help'], ['help']]) {
      const res = await cli.run(args);
      expect(res.code, res.stderr).toBe(0);
      expect(res.stdout).toMatch(/^Usage: sluicectl /);
    }
    const status = await cli.run(['help', 'status']);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/^Usage: sluicectl status /);
    expect((await cli.run(['status', '-help'])).stdout).toMatch(/^Usage: sluicectl status /);
  });
});
