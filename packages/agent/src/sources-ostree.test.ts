import { type DbusDaemon, FakeRpmOstree, FakeTools, startDbusDaemon } from '@sluice/testkit';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { UpdateSignal, UpdateSource } from './sources.js';
import {
  BootcSource,
  interpretBootc,
  parseBootcStatus,
  RpmOstreeSource,
} from './sources-ostree.js';

const open: UpdateSource[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()));
});

async function follow(source: UpdateSource): Promise<UpdateSignal[]> {
  open.push(source);
  const seen: UpdateSignal[] = [];
  await source.start((s) => seen.push(s));
  await expect.poll(() => seen.length, { timeout: 5000, interval: 20 }).toBeGreaterThan(0);
  return seen;
}
const settle = (source: UpdateSource, test: (s: UpdateSignal) => boolean) =>
  expect.poll(() => test(source.current()), { timeout: 5000, interval: 20 }).toBe(true);

describe('RpmOstreeSource', () => {
  let daemon: DbusDaemon;
  let fake: FakeRpmOstree;
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
    await Promise.all(open.splice(0).map((s) => s.close()));
    await fake.dispose();
  });

  it('not needed while the booted deployment is the default and nothing is staged', async () => {
    await fake.start();
    const source = new RpmOstreeSource(daemon.address);
    const seen = await follow(source);
    expect(seen).toEqual([
      {
        needed: false,
        source: 'rpm-ostree',
        detail: 'booted 41.20250101.3.0 is the default; nothing staged',
      },
    ]);
  });

  it('needed once a deployment is staged (followed while running), and the version is known', async () => {
    await fake.start();
    const source = new RpmOstreeSource(daemon.address);
    await follow(source);
    fake.stage('41.20250115.3.0', { locked: true });
    await settle(source, (s) => s.needed);
    expect(source.current()).toMatchObject({
      needed: true,
      version: '41.20250115.3.0',
      detail: expect.stringContaining('staged with finalization locked'),
    });
    fake.clearStaged();
    await settle(source, (s) => !s.needed);
  });

  it('needed when the default deployment is not the booted one (a rollback without staging)', async () => {
    await fake.start();
    fake.deploy('41.20241201.3.0');
    const source = new RpmOstreeSource(daemon.address);
    const seen = await follow(source);
    expect(seen[0]).toMatchObject({
      needed: true,
      version: '41.20241201.3.0',
      detail: expect.stringContaining('is the default for the next boot'),
    });
  });

  it('unknown (never needed) without rpm-ostreed; keeps its reading while rpm-ostreed restarts', async () => {
    const source = new RpmOstreeSource(daemon.address);
    const seen = await follow(source);
    expect(seen[0]).toMatchObject({ needed: false, unknown: true });
    fake.stage('41.2');
    await fake.start();
    await settle(source, (s) => s.needed);
    const count = seen.length;
    await fake.stop();
    await new Promise((r) => setTimeout(r, 100));
    expect(source.current()).toMatchObject({ needed: true, version: '41.2' });
    expect(seen.slice(count).every((s) => s.needed)).toBe(true);
  });

  it('apply() finalizes only a locked staged deployment; anything else is left to the reboot', async () => {
    await fake.start();
    const finalized: string[] = [];
    fake.onFinalize = (call) => {
      finalized.push(call.checksum ?? '');
    };
    const source = new RpmOstreeSource(daemon.address);
    await follow(source);
    const unlocked = fake.stage('41.3', { locked: false });
    await settle(source, (s) => s.needed);
    await expect(source.apply(AbortSignal.timeout(5000))).resolves.toBe('ready');
    expect(finalized).toEqual([]);
    const locked = fake.stage('41.4', { locked: true });
    await settle(source, (s) => s.version === '41.4');
    await expect(source.apply(AbortSignal.timeout(5000))).resolves.toBe('rebooting');
    expect(finalized).toEqual([locked.checksum]);
    expect(unlocked.checksum).not.toBe(locked.checksum);
  });

  it('apply() fails, and nothing reboots, when rpm-ostree cannot finalize', async () => {
    await fake.start();
    fake.transactionError = 'Staged deployment already unlocked';
    const source = new RpmOstreeSource(daemon.address);
    await follow(source);
    fake.stage('41.5', { locked: true });
    await settle(source, (s) => s.needed);
    await expect(source.apply(AbortSignal.timeout(5000))).rejects.toThrow(/already unlocked/);
  });
});

describe('bootc', () => {
  it('reads bootc status JSON: staged, download-only, soft-reboot capable', () => {
    const host = {
      apiVersion: 'org.containers.bootc/v1',
      kind: 'BootcHost',
      status: {
        staged: {
          image: { image: { image: 'quay.io/x/os' }, version: '10.2', imageDigest: 'sha256:aa' },
          softRebootCapable: true,
          downloadOnly: false,
        },
        booted: {
          image: { image: { image: 'quay.io/x/os' }, version: '10.1', imageDigest: 'sha256:bb' },
        },
        rollbackQueued: false,
      },
    };
    expect(parseBootcStatus(JSON.stringify(host))).toEqual({
      ok: true,
      value: {
        staged: {
          image: 'quay.io/x/os',
          version: '10.2',
          digest: 'sha256:aa',
          softRebootCapable: true,
          downloadOnly: false,
        },
        booted: {
          image: 'quay.io/x/os',
          version: '10.1',
          digest: 'sha256:bb',
          softRebootCapable: false,
          downloadOnly: false,
        },
        rollbackQueued: false,
      },
    });
    const run = {
      command: 'bootc status --json',
      code: 0,
      signal: null,
      stopped: null,
      stdout: JSON.stringify(host),
      stderr: '',
    };
    expect(interpretBootc(run, true)).toMatchObject({
      needed: true,
      version: '10.2',
      softReboot: true,
    });
    // Without /run/nextroot set up a soft reboot would come back to the same image.
    expect(interpretBootc(run, false).softReboot).toBeUndefined();
    expect(parseBootcStatus('{"kind":"Other"}')).toMatchObject({ ok: false });
  });

  let tools: FakeTools;
  beforeAll(async () => {
    tools = await FakeTools.create();
  });
  afterAll(async () => {
    await tools?.dispose();
  });
  const source = (nextroot = false) =>
    new BootcSource({
      path: tools.path('bootc'),
      intervalMs: 50,
      timeoutMs: 5000,
      nextrootReady: () => nextroot,
    });

  it('needed while an image is staged, not needed once booted, followed while running', async () => {
    await tools.bootc({ booted: { version: '10.1' } });
    const s = source();
    const seen = await follow(s);
    expect(seen[0]).toMatchObject({
      needed: false,
      detail: expect.stringContaining('booted 10.1'),
    });
    await tools.bootc({ booted: { version: '10.1' }, staged: { version: '10.2' } });
    await settle(s, (x) => x.needed);
    expect(s.current()).toMatchObject({
      version: '10.2',
      detail: expect.stringContaining('is staged'),
    });
    await tools.bootc({ booted: { version: '10.1' }, rollbackQueued: true });
    await settle(s, (x) => x.needed && x.detail.includes('rollback is queued'));
  });

  it('says a soft reboot is enough only when bootc says so and /run/nextroot is set up', async () => {
    await tools.bootc({
      booted: { version: '10.1' },
      staged: { version: '10.2', softRebootCapable: true },
    });
    const ready = await follow(source(true));
    expect(ready[0]).toMatchObject({ needed: true, softReboot: true });
    const notReady = await follow(source(false));
    expect(notReady[0]?.softReboot).toBeUndefined();
  });

  it('unknown, never needed, when bootc fails, is missing, or this is not a bootc host', async () => {
    await tools.bootc({ error: 'Acquiring sysroot lock: Resource temporarily unavailable' });
    const failing = await follow(source());
    expect(failing[0]).toMatchObject({
      needed: false,
      unknown: true,
      detail: expect.stringContaining('sysroot lock'),
    });
    await tools.bootc({ notBootc: true });
    const notBootc = await follow(source());
    expect(notBootc[0]).toMatchObject({
      needed: false,
      unknown: true,
      detail: expect.stringContaining('not booted through bootc'),
    });
    const missing = await follow(
      new BootcSource({ path: `${tools.dir}/nope`, intervalMs: 60_000 }),
    );
    expect(missing[0]).toMatchObject({ needed: false, unknown: true });
  });

  it('apply() unlocks an image pulled with --download-only, and only that', async () => {
    await tools.bootc({
      booted: { version: '10.1' },
      staged: { version: '10.2', downloadOnly: true },
    });
    await tools.respond('bootc', ['upgrade', '--from-downloaded'], {
      code: 0,
      stdout: 'Queued for next boot\n',
    });
    const s = source();
    const seen = await follow(s);
    expect(seen[0]).toMatchObject({ needed: true, detail: expect.stringContaining('held back') });
    await expect(s.apply(AbortSignal.timeout(5000))).resolves.toBe('ready');
    expect(await tools.calls('bootc')).toContain('upgrade --from-downloaded');
    await tools.respond('bootc', ['upgrade', '--from-downloaded'], {
      code: 1,
      stderr: 'error: no staged image\n',
    });
    await expect(s.apply(AbortSignal.timeout(5000))).rejects.toThrow(/stays held back/);

    await tools.bootc({ booted: { version: '10.1' }, staged: { version: '10.3' } });
    await settle(s, (x) => x.version === '10.3');
    const before = (await tools.calls('bootc')).filter((c) => c.startsWith('upgrade')).length;
    await expect(s.apply(AbortSignal.timeout(5000))).resolves.toBe('ready');
    expect((await tools.calls('bootc')).filter((c) => c.startsWith('upgrade')).length).toBe(before);
  });
});
