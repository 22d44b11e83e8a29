import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type DbusDaemon, startDbusDaemon } from '../../testkit/src/dbus-daemon.js';
import { FakeLogind } from '../../testkit/src/fake-logind.js';
import { FakeSystemd } from '../../testkit/src/fake-systemd.js';
import { LogindClient, REBOOT_FLAGS } from './logind.js';
import { SystemdClient } from './systemd.js';

let daemon: DbusDaemon;
beforeAll(async () => {
  daemon = await startDbusDaemon();
});
afterAll(async () => {
  await daemon?.stop();
});

describe('SystemdClient.softRebootsCount', () => {
  let systemd: FakeSystemd | undefined;
  afterEach(async () => {
    await systemd?.stop();
    systemd = undefined;
  });
  const client = () => new SystemdClient({ address: daemon.address, callTimeoutMs: 1_000 });

  it('reads SoftRebootsCount, which a soft reboot moves and a full boot resets', async () => {
    systemd = new FakeSystemd(daemon.address);
    await systemd.start();
    await expect(client().softRebootsCount()).resolves.toBe(0);
    systemd.softRebooted();
    systemd.softRebooted();
    await expect(client().softRebootsCount()).resolves.toBe(2);
    systemd.booted();
    await expect(client().softRebootsCount()).resolves.toBe(0);
  });

  it('is null on a systemd older than 254, which has no such property', async () => {
    systemd = new FakeSystemd(daemon.address, { legacy: true });
    await systemd.start();
    await expect(client().softRebootsCount()).resolves.toBeNull();
  });

  it('fails with dbus-unavailable when systemd is not on the bus', async () => {
    await expect(client().softRebootsCount()).rejects.toMatchObject({
      kind: 'dbus-unavailable',
      message: expect.stringContaining("cannot read systemd's SoftRebootsCount"),
    });
  });
});

describe('LogindClient: flags, inhibitors, scheduled shutdowns', () => {
  let logind: FakeLogind;
  beforeAll(async () => {
    logind = new FakeLogind(daemon.address);
    await logind.start();
  });
  afterAll(async () => {
    await logind?.stop();
  });
  afterEach(() => {
    logind.reboots.length = 0;
    logind.inhibitors = [];
    logind.rebootError = undefined;
  });
  const client = () => new LogindClient({ address: daemon.address, callTimeoutMs: 1_000 });

  it('soft-reboots and kexecs with RebootWithFlags', async () => {
    await client().rebootWithFlags(REBOOT_FLAGS.softReboot);
    await client().rebootWithFlags(REBOOT_FLAGS.viaKexec | REBOOT_FLAGS.rootCheckInhibitors);
    expect(logind.reboots.map((r) => [r.method, r.kind, r.flags])).toEqual([
      ['RebootWithFlags', 'soft-reboot', 4n],
      ['RebootWithFlags', 'kexec', 3n],
    ]);
  });

  it('lists inhibitors with what, who, why and mode', async () => {
    await expect(client().listInhibitors()).resolves.toEqual([]);
    const release = logind.inhibit({
      what: 'shutdown:sleep',
      who: 'Unattended Upgrades Shutdown',
      why: 'Stop ongoing upgrades or perform upgrades before shutdown',
      mode: 'block',
      pid: 812,
    });
    logind.inhibit({ what: 'shutdown', who: 'NetworkManager', why: 'save state', mode: 'delay' });
    expect(await client().listInhibitors()).toEqual([
      {
        what: ['shutdown', 'sleep'],
        who: 'Unattended Upgrades Shutdown',
        why: 'Stop ongoing upgrades or perform upgrades before shutdown',
        mode: 'block',
        uid: 0,
        pid: 812,
      },
      expect.objectContaining({ who: 'NetworkManager', mode: 'delay' }),
    ]);
    release();
    expect((await client().listInhibitors()).map((i) => i.who)).toEqual(['NetworkManager']);
  });

  it('refuses a reboot that checks inhibitors while a block lock is held', async () => {
    logind.inhibit({ who: 'backup', why: 'writing the nightly snapshot' });
    await expect(
      client().rebootWithFlags(REBOOT_FLAGS.rootCheckInhibitors | REBOOT_FLAGS.softReboot),
    ).rejects.toThrow(/BlockedByInhibitorLock.*backup/);
  });

  it('schedules a dry shutdown with a wall message, and cancels it', async () => {
    const at = new Date(Date.now() + 300_000);
    await client().setWallMessage('OS update 41.2 (sluice)', true);
    await client().scheduleShutdown('dry-reboot', at);
    expect(logind.wallMessage).toEqual({ message: 'OS update 41.2 (sluice)', enable: true });
    expect(logind.schedules.at(-1)).toMatchObject({ type: 'dry-reboot', when: at });
    await expect(client().cancelScheduledShutdown()).resolves.toBe(true);
    await expect(client().cancelScheduledShutdown()).resolves.toBe(false);
    expect(logind.reboots).toEqual([]);
  });
});
