import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExponentialBackoff } from 'cockatiel';
import {
  afterAll,
  afterEach,
  beforeAll,
  beforeEach,
  describe,
  expect,
  it,
  onTestFinished,
} from 'vitest';
import { type DbusDaemon, startDbusDaemon } from '../../testkit/src/dbus-daemon.js';
import { commitFor, FakeRpmOstree } from '../../testkit/src/fake-rpm-ostree.js';
import {
  type Deployment,
  parseDeployments,
  pendingDeployment,
  RpmOstreeClient,
  type SysrootStatus,
} from './rpm-ostree.js';

const fastReconnect = new ExponentialBackoff({ initialDelay: 20, maxDelay: 200 });

const deployment = (patch: Partial<Deployment>): Deployment => ({
  id: 'fedora-coreos-abc.0',
  osname: 'fedora-coreos',
  checksum: 'abc',
  baseChecksum: undefined,
  version: '41.1',
  booted: false,
  staged: false,
  finalizationLocked: false,
  ...patch,
});

describe('parseDeployments', () => {
  it('reads the keys rpm-ostree sends, treating absent flags as false', () => {
    const parsed = parseDeployments([
      {
        id: 'fedora-coreos-b.0',
        osname: 'fedora-coreos',
        checksum: 'b',
        'base-checksum': 'base',
        version: '41.2',
        staged: true,
        'finalization-locked': true,
        booted: false,
      },
      { id: 'fedora-coreos-a.0', checksum: 'a', booted: true },
    ]);
    expect(parsed).toEqual({
      ok: true,
      value: [
        deployment({
          id: 'fedora-coreos-b.0',
          checksum: 'b',
          baseChecksum: 'base',
          version: '41.2',
          staged: true,
          finalizationLocked: true,
        }),
        deployment({
          id: 'fedora-coreos-a.0',
          osname: '',
          checksum: 'a',
          version: undefined,
          booted: true,
        }),
      ],
    });
  });

  it('rejects what is not a list of deployments, saying what is wrong', () => {
    expect(parseDeployments('x')).toMatchObject({ ok: false });
    const noChecksum = parseDeployments([{ id: 'x' }]);
    expect(!noChecksum.ok && noChecksum.error.message).toContain(
      'Deployments[0] has no id or checksum',
    );
  });
});

describe('pendingDeployment', () => {
  it('is the staged deployment, else a default that is not booted, else nothing', () => {
    const booted = deployment({ id: 'a', booted: true });
    const staged = deployment({ id: 's', staged: true });
    expect(pendingDeployment([staged, booted])).toEqual({ deployment: staged, why: 'staged' });
    const other = deployment({ id: 'o' });
    expect(pendingDeployment([other, booted])).toEqual({ deployment: other, why: 'default' });
    expect(pendingDeployment([booted, other])).toBeNull();
    expect(pendingDeployment([])).toBeNull();
  });
});

describe('RpmOstreeClient', () => {
  let daemon: DbusDaemon;
  let fake: FakeRpmOstree;
  let client: RpmOstreeClient | undefined;

  beforeAll(async () => {
    daemon = await startDbusDaemon();
  });
  afterAll(async () => {
    await daemon?.stop();
  });
  beforeEach(() => {
    fake = new FakeRpmOstree(daemon.address, { version: '41.20250101.3.0' });
  });
  afterEach(async () => {
    await client?.close();
    client = undefined;
    await fake.dispose();
  });

  const newClient = (address = daemon.address) => {
    client = new RpmOstreeClient({
      address,
      callTimeoutMs: 1_000,
      reconnectBackoff: fastReconnect,
    });
    return client;
  };
  const until = (c: RpmOstreeClient, test: (s: SysrootStatus) => boolean) =>
    expect.poll(() => (c.status ? test(c.status) : false), { timeout: 5_000 }).toBe(true);

  it('reads the deployments at start and registers itself so rpm-ostreed stays up', async () => {
    await fake.start();
    const c = newClient();
    await c.start();
    expect(c.serviceUp).toBe(true);
    expect(c.status?.booted).toBe('/org/projectatomic/rpmostree1/fedora_coreos');
    expect(c.status?.deployments).toEqual([
      expect.objectContaining({ version: '41.20250101.3.0', booted: true, staged: false }),
    ]);
    expect(fake.registrations).toBe(1);
  });

  it('follows PropertiesChanged as a deployment is staged, locked, and cleared', async () => {
    await fake.start();
    const c = newClient();
    await c.start();
    const seen: SysrootStatus[] = [];
    c.on('status', (s) => seen.push(s));
    fake.stage('41.20250115.3.0', { locked: true });
    await until(c, (s) => s.deployments[0]?.staged === true);
    expect(c.status?.deployments[0]).toMatchObject({
      version: '41.20250115.3.0',
      checksum: commitFor('41.20250115.3.0'),
      finalizationLocked: true,
      booted: false,
    });
    fake.clearStaged();
    await until(c, (s) => s.deployments.every((d) => !d.staged));
    expect(seen.length).toBeGreaterThanOrEqual(2);
  });

  it('starts without rpm-ostreed and reads the deployments once it appears', async () => {
    const c = newClient();
    await c.start();
    expect(c.serviceUp).toBe(false);
    expect(c.status).toBeUndefined();
    fake.stage('41.2', { locked: false });
    const up = once(c, 'service-up');
    await fake.start();
    await up;
    await until(c, (s) => s.deployments[0]?.version === '41.2');
    expect(fake.registrations).toBe(1);
  });

  it('reads again and registers again when rpm-ostreed restarts', async () => {
    await fake.start();
    const c = newClient();
    await c.start();
    const down = once(c, 'service-down');
    await fake.stop();
    await down;
    // Staged while it was away: only a fresh read after the restart can tell.
    fake.stage('41.3');
    await fake.start();
    await until(c, (s) => s.deployments[0]?.version === '41.3');
    expect(fake.registrations).toBe(2);
  });

  it('reloads and reads again on refresh()', async () => {
    await fake.start();
    const c = newClient();
    await c.start();
    // A change rpm-ostreed did not signal (ostree admin run behind its back).
    fake.deployments = [{ ...fake.deployments[0]!, version: '41.9' }];
    const status = await c.refresh();
    expect(status.deployments[0]?.version).toBe('41.9');
    expect(fake.reloads).toBe(1);
  });

  it('reconnects when the dbus-daemon dies and another takes its socket', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sluice-rpmostree-bus-'));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const socketPath = join(dir, 'bus');
    const first = await startDbusDaemon({ socketPath });
    onTestFinished(() => first.stop());
    const own = new FakeRpmOstree(first.address);
    onTestFinished(() => own.dispose());
    await own.start();
    const c = newClient(first.address);
    await c.start();
    const disconnected = once(c, 'disconnected');
    await first.stop({ signal: 'SIGKILL' });
    await disconnected;
    const connected = once(c, 'connected');
    const second = await startDbusDaemon({ socketPath });
    onTestFinished(() => second.stop());
    await own.start();
    await connected;
    own.stage('41.4');
    await until(c, (s) => s.deployments[0]?.version === '41.4');
  });

  describe('finalize', () => {
    it('runs the transaction: unlocks the staged deployment, then rpm-ostree reboots', async () => {
      await fake.start();
      const reboots: string[] = [];
      fake.onFinalize = (call) => {
        reboots.push(call.checksum ?? '');
      };
      const staged = fake.stage('41.5', { locked: true });
      const c = newClient();
      await c.start();
      await until(c, (s) => s.deployments[0]?.finalizationLocked === true);
      await c.finalize(staged.checksum);
      expect(reboots).toEqual([staged.checksum]);
      expect(fake.finalizations).toEqual([
        expect.objectContaining({ checksum: staged.checksum, error: '' }),
      ]);
      await until(c, (s) => s.deployments[0]?.finalizationLocked === false);
    });

    it("fails, naming rpm-ostree's reason, when another deployment is staged", async () => {
      await fake.start();
      fake.onFinalize = () => {
        throw new Error('must not reboot');
      };
      fake.stage('41.6', { locked: true });
      const c = newClient();
      await c.start();
      await expect(c.finalize(commitFor('41.5'))).rejects.toThrow(
        /could not finalize deployment .*Expected staged base checksum/,
      );
      expect(fake.deployments[0]).toMatchObject({ staged: true, finalizationLocked: true });
    });

    it('fails when rpm-ostreed refuses the call, and when the transaction fails', async () => {
      await fake.start();
      const staged = fake.stage('41.7', { locked: true });
      const c = newClient();
      await c.start();
      fake.finalizeError = {
        name: 'org.projectatomic.rpmostreed.Error.Failed',
        message: 'System transaction in progress',
      };
      await expect(c.finalize(staged.checksum)).rejects.toMatchObject({
        kind: 'dbus-unavailable',
        message: expect.stringContaining('System transaction in progress'),
      });
      fake.finalizeError = undefined;
      fake.transactionError = 'error: Bootloader write config failed';
      await expect(c.finalize(staged.checksum)).rejects.toThrow(/Bootloader write config failed/);
      expect(fake.deployments[0]?.finalizationLocked).toBe(true);
    });

    it('is cancelled by its AbortSignal before anything is asked', async () => {
      await fake.start();
      const staged = fake.stage('41.8', { locked: true });
      const c = newClient();
      await c.start();
      await expect(
        c.finalize(staged.checksum, { signal: AbortSignal.abort() }),
      ).rejects.toMatchObject({ kind: 'aborted' });
      expect(fake.finalizations).toEqual([]);
    });
  });
});
