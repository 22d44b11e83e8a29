import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type DbusDaemon, startDbusDaemon } from '../../testkit/src/dbus-daemon.js';
import { FakeLogind, type RebootCall } from '../../testkit/src/fake-logind.js';
import { LogindClient } from './logind.js';

describe('LogindClient', () => {
  let daemon: DbusDaemon | undefined;
  let logind: FakeLogind | undefined;

  beforeEach(async () => {
    daemon = await startDbusDaemon();
    logind = new FakeLogind(daemon.address);
  });

  afterEach(async () => {
    await logind?.stop();
    await daemon?.stop();
  });

  const client = () => new LogindClient({ address: daemon!.address, callTimeoutMs: 1_000 });

  it('calls Reboot(false), which the fake records', async () => {
    await logind!.start();
    const hooked: RebootCall[] = [];
    logind!.onReboot = (call) => {
      hooked.push(call);
    };
    const before = Date.now();
    await client().reboot();
    expect(logind!.reboots).toHaveLength(1);
    const [call] = logind!.reboots;
    expect(call?.interactive).toBe(false);
    expect(call?.failedWith).toBeUndefined();
    expect(call?.at.getTime()).toBeGreaterThanOrEqual(before);
    expect(hooked).toEqual(logind!.reboots);
  });

  it('turns a D-Bus error from Reboot into dbus-unavailable naming the error', async () => {
    await logind!.start();
    logind!.rebootError = {
      name: 'org.freedesktop.DBus.Error.AccessDenied',
      message: 'Interactive authentication required.',
    };
    const rebooting = client().reboot();
    await expect(rebooting).rejects.toMatchObject({ kind: 'dbus-unavailable' });
    await expect(rebooting).rejects.toThrow(/AccessDenied: Interactive authentication required/);
    expect(logind!.reboots).toEqual([
      expect.objectContaining({ failedWith: 'org.freedesktop.DBus.Error.AccessDenied' }),
    ]);
  });

  it('says logind is not running when nobody owns org.freedesktop.login1', async () => {
    const rebooting = client().reboot();
    await expect(rebooting).rejects.toMatchObject({ kind: 'dbus-unavailable' });
    await expect(rebooting).rejects.toThrow(
      `cannot ask logind to reboot: logind (org.freedesktop.login1) is not running on the bus at ${daemon!.address}`,
    );
    const available = await client().available();
    expect(available.ok).toBe(false);
    expect(!available.ok && available.error.message).toContain('is not running');
  });

  it('reports logind available when it answers a ping', async () => {
    await logind!.start();
    await expect(client().available()).resolves.toEqual({ ok: true, value: undefined });
    await expect(client().ping()).resolves.toBeUndefined();
    expect(logind!.reboots).toEqual([]);
  });

  it('fails with dbus-unavailable when there is no bus at all', async () => {
    const missing = new LogindClient({ address: 'unix:path=/nonexistent/sluice/bus' });
    await expect(missing.reboot()).rejects.toMatchObject({ kind: 'dbus-unavailable' });
    const available = await missing.available();
    expect(!available.ok && available.error.kind).toBe('dbus-unavailable');
  });

  it('is cancelled by its AbortSignal', async () => {
    await logind!.start();
    await expect(client().reboot(AbortSignal.abort())).rejects.toMatchObject({ kind: 'aborted' });
    expect(logind!.reboots).toEqual([]);
  });
});
