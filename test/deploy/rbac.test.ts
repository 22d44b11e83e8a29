/**
 * deploy/etcd/setup-rbac.sh against a real etcd, then the bundled programs under each identity:
 * the agent's user takes and gives back a slot with sluicectl and goes through a whole reboot
 * with sluiced, the read-only user can look but not touch, and anyone else is turned away with
 * exit 3.
 */
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type EtcdCluster,
  FakeLogind,
  FakeUpdateEngine,
  startDbusDaemon,
  startEtcd,
} from '@sluice/testkit';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { killAll, runToEnd, start } from '../process.js';
import { agentNode, type Bundle, buildBundle, DEPLOY, type Ran, run, TempDirs } from './helpers.js';

const dirs = new TempDirs();
let bundle: Bundle;
let etcd: EtcdCluster;
let creds: string;
/** The first run of setup-rbac.sh, which turned auth on. */
let first: Ran;

const SETUP = join(DEPLOY, 'etcd/setup-rbac.sh');

function setup(env: Record<string, string> = {}): Promise<Ran> {
  return run('/bin/sh', [SETUP], {
    env: { PATH: process.env.PATH, ENDPOINTS: etcd.endpoint, CREDENTIALS_DIR: creds, ...env },
  });
}

/** Runs the bundled sluicectl as `user` (its password file from setup-rbac.sh, or a password). */
function ctl(args: string[], as?: { user: string; password?: string }) {
  const auth = as
    ? [
        '--user',
        as.user,
        ...(as.password !== undefined
          ? ['--password', as.password]
          : ['--password-file', join(creds, `${as.user}.password`)]),
      ]
    : [];
  return runToEnd(bundle.sluicectl, ['--endpoints', etcd.endpoint, ...auth, ...args]);
}

const agent = { user: 'sluice-agent' };
const reader = { user: 'sluice-reader' };

beforeAll(async () => {
  [bundle, etcd] = await Promise.all([dirs.make('bundle').then(buildBundle), startEtcd()]);
  creds = join(await dirs.make('creds'), 'out');
  first = await setup();
});
afterEach(() => killAll());
afterAll(async () => {
  await etcd?.stop();
  await dirs.removeAll();
});

describe('setup-rbac.sh', () => {
  it('creates the roles and users, enables auth, and writes private password files', async () => {
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain('auth enabled');
    expect(first.stdout).toContain('checked: sluice-agent can read /sluice/v1/');
    for (const user of ['root', 'sluice-agent', 'sluice-reader']) {
      const file = join(creds, `${user}.password`);
      expect((await stat(file)).mode & 0o777).toBe(0o600);
      const password = (await readFile(file, 'utf8')).trim();
      expect(password).toMatch(/^[A-Za-z0-9]{32}$/);
      // Never printed.
      expect(first.stdout + first.stderr).not.toContain(password);
    }
    expect((await stat(creds)).mode & 0o777).toBe(0o700);
  });

  it('grants the agent role read and write on the prefix only, and the reader read only', async () => {
    const root = [
      '--user',
      'root',
      '--password',
      (await readFile(join(creds, 'root.password'), 'utf8')).trim(),
    ];
    const agentRole = await etcd.etcdctl(['role', 'get', 'sluice-agent'], root);
    expect(agentRole).toMatch(
      /KV Read:\s+\[\/sluice\/v1\/, \/sluice\/v10\) \(prefix \/sluice\/v1\/\)/,
    );
    expect(agentRole).toMatch(
      /KV Write:\s+\[\/sluice\/v1\/, \/sluice\/v10\) \(prefix \/sluice\/v1\/\)/,
    );
    const readerRole = await etcd.etcdctl(['role', 'get', 'sluice-reader'], root);
    expect(readerRole).toMatch(/KV Read:\s+\[\/sluice\/v1\/, \/sluice\/v10\)/);
    expect(readerRole).toMatch(/KV Write:\s*$/);
  });

  it('runs again as root without changing anything', async () => {
    const again = await setup();
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain('auth is already enabled: working as root');
    expect(again.stdout).toContain('user sluice-agent exists (password unchanged)');
    expect(again.stdout).not.toContain('created');
  });

  it('refuses to guess when auth is on and root password is unknown', async () => {
    const other = join(await dirs.make('creds'), 'none');
    const result = await run('/bin/sh', [SETUP, '--endpoints', etcd.endpoint, '--out', other], {
      env: { PATH: process.env.PATH },
    });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('set ROOT_PASSWORD');
  });
});

describe('sluicectl under each identity', () => {
  it("the agent's user takes a slot and gives it back", async () => {
    const lock = await ctl(['lock', '--node', 'n1', '--reason', 'rbac test'], agent);
    expect(lock.code, lock.stderr).toBe(0);
    expect(lock.stdout).toContain('locked: n1 holds a slot');
    const status = await ctl(['status', '-o', 'json'], agent);
    expect(JSON.parse(status.stdout).holders).toMatchObject([{ node: 'n1', reason: 'rbac test' }]);
    const unlock = await ctl(['unlock', '--node', 'n1'], agent);
    expect(unlock.code, unlock.stderr).toBe(0);
    expect(unlock.stdout).toContain('n1 released its slot');
  });

  it('the read-only user sees the group but cannot change it (exit 3)', async () => {
    const status = await ctl(['status', '-o', 'json'], reader);
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ group: 'default', holders: [] });
    const setMax = await ctl(['set-max', '2'], reader);
    expect(setMax.code).toBe(3);
    expect(setMax.stderr).toMatch(/denied a write of \/sluice\/v1\/groups\/default\/max/);
    expect(setMax.stderr).toContain('permission denied');
  });

  it('the read-only user still sees a lost holder it may not halt the group for', async () => {
    const lock = await ctl(
      ['--group', 'lossy', '--create', 'lock', '--node', 'gone', '--reason', 'x', '--ttl', '10s'],
      agent,
    );
    expect(lock.code, lock.stderr).toBe(0);
    await new Promise((r) => setTimeout(r, 11_500));
    const seen = await ctl(['--group', 'lossy', 'status', '-o', 'json'], reader);
    expect(seen.code, seen.stderr).toBe(0);
    expect(JSON.parse(seen.stdout)).toMatchObject({
      paused: null,
      holders: [{ node: 'gone', state: 'lost' }],
    });
    // A reader with write access halts the group.
    const halted = await ctl(['--group', 'lossy', 'status', '-o', 'json'], agent);
    // A slot taken with sluicectl lock is named as the manual lock it was, not as a lost reboot.
    expect(JSON.parse(halted.stdout).paused.reason).toBe(
      'manual lock of gone (x) expired without sluicectl unlock',
    );
  });

  it('a user without a sluice role, a wrong password and no user at all are denied (exit 3)', async () => {
    const rootPassword = (await readFile(join(creds, 'root.password'), 'utf8')).trim();
    await etcd.etcdctl(
      ['user', 'add', 'outsider', '--new-user-password', 'outsider-pw'],
      ['--user', 'root', '--password', rootPassword],
    );
    const outsider = await ctl(['status'], { user: 'outsider', password: 'outsider-pw' });
    expect(outsider.code).toBe(3);
    expect(outsider.stderr).toContain('permission denied');

    const wrong = await ctl(['status'], { user: 'sluice-agent', password: 'not-it' });
    expect(wrong.code).toBe(3);
    expect(wrong.stderr).toContain('authentication failed');

    const anonymous = await ctl(['status']);
    expect(anonymous.code).toBe(3);
    expect(anonymous.stderr).toContain('user name is empty');
  });
});

describe("sluiced under the agent's user", () => {
  it('goes through a whole reboot, and never shows the password', async () => {
    const password = (await readFile(join(creds, 'sluice-agent.password'), 'utf8')).trim();
    const group = ['--group', 'rbac-agent'];
    const node = await agentNode(dirs, 'rbac-node');
    const { dir } = node;
    const args = [
      ...node.args,
      '--log-level',
      'debug',
      '--endpoints',
      etcd.endpoint,
      '--user',
      agent.user,
      '--password-file',
      join(creds, `${agent.user}.password`),
      ...group,
    ];
    const bus = await startDbusDaemon();
    const logind = new FakeLogind(bus.address);
    const updateEngine = new FakeUpdateEngine(bus.address, { newVersion: '1.0.0' });
    const outputs: string[] = [];
    try {
      await Promise.all([logind.start(), updateEngine.start()]);
      const env = { SLUICE_DBUS_ADDRESS: bus.address };

      // Before the reboot: update_engine stages an update, sluiced takes a slot and asks logind.
      const before = start(bundle.sluiced, args, env);
      const output = () => `${before.stdout()}\n${before.stderr()}`;
      await expect
        .poll(() => before.stdout(), { timeout: 10_000, message: output() })
        .toContain('"msg":"sluiced starting"');
      await updateEngine.stageUpdate('2.0.0');
      await expect
        .poll(() => logind.reboots.length, { timeout: 20_000, message: output() })
        .toBe(1);
      const holding = await ctl([...group, 'status', '-o', 'json'], reader);
      expect(JSON.parse(holding.stdout).holders).toMatchObject([{ node: 'rbac-node' }]);
      // The machine goes down (systemd stops sluiced) and comes up with a new boot id and the
      // new version installed.
      before.child.kill('SIGTERM');
      expect(await before.exited, output()).toBe(0);
      outputs.push(output());
      await writeFile(join(dir, 'boot_id'), 'boot-2\n');
      updateEngine.setIdle('2.0.0');

      // After boot: sluiced finds its slot from its record, and gives it back. Its history
      // record is written under the agent's user too.
      const after = start(bundle.sluiced, args, env);
      const afterOutput = () => `${after.stdout()}\n${after.stderr()}`;
      const asRoot = [
        '--user',
        'root',
        '--password',
        (await readFile(join(creds, 'root.password'), 'utf8')).trim(),
      ];
      const history = async () =>
        (
          await etcd.etcdctl(
            ['get', '/sluice/v1/history/rbac-agent/', '--prefix', '--print-value-only'],
            asRoot,
          )
        )
          .split('\n')
          .filter(Boolean)
          .map((line) => JSON.parse(line));
      await expect
        .poll(history, { timeout: 20_000, interval: 250, message: afterOutput() })
        .toMatchObject([{ node: 'rbac-node', outcome: 'released' }]);
      const left = await etcd.etcdctl(
        ['get', '/sluice/v1/groups/rbac-agent/', '--prefix', '--keys-only'],
        asRoot,
      );
      // Only the running agent's registration is left, written under the agent's own role...
      expect(left.split('\n').filter(Boolean)).toEqual([
        '/sluice/v1/groups/rbac-agent/nodes/rbac-node',
      ]);
      expect(logind.reboots).toHaveLength(1);
      after.child.kill('SIGTERM');
      expect(await after.exited, afterOutput()).toBe(0);
      // ...and removed by it when it stops.
      const gone = await etcd.etcdctl(
        ['get', '/sluice/v1/groups/rbac-agent/', '--prefix', '--keys-only'],
        asRoot,
      );
      expect(gone.split('\n').filter(Boolean)).toEqual([]);
      outputs.push(afterOutput());

      expect(password).toMatch(/^[A-Za-z0-9]{32}$/);
      for (const text of outputs) {
        // It did log (at debug level), and its settings, but never the password itself.
        expect(text).toContain('"msg":"sluiced starting"');
        expect(text).not.toContain(password);
      }
    } finally {
      await killAll();
      await Promise.all([logind.stop(), updateEngine.stop()]);
      await bus.stop();
    }
  }, 60_000);
});
