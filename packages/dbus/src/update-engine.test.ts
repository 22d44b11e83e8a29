import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isSluiceError } from '@sluice/core';
import { ExponentialBackoff } from 'cockatiel';
import { afterEach, beforeEach, describe, expect, it, onTestFinished } from 'vitest';
import { type DbusDaemon, startDbusDaemon } from '../../testkit/src/dbus-daemon.js';
import { FakeUpdateEngine } from '../../testkit/src/fake-update-engine.js';
import {
  NEED_REBOOT,
  needsReboot,
  parseStatus,
  UpdateEngineClient,
  type UpdateStatus,
} from './update-engine.js';

const fastReconnect = new ExponentialBackoff({ initialDelay: 20, maxDelay: 200 });

describe('needsReboot', () => {
  const status = (currentOperation: string): UpdateStatus => ({
    lastCheckedTime: 0,
    progress: 1,
    currentOperation,
    newVersion: '1.0.0',
    newSize: 0,
  });

  it('is true only for UPDATE_STATUS_UPDATED_NEED_REBOOT', () => {
    expect(needsReboot(status(NEED_REBOOT))).toBe(true);
    expect(needsReboot(status('UPDATE_STATUS_IDLE'))).toBe(false);
    expect(needsReboot(status('UPDATE_STATUS_DOWNLOADING'))).toBe(false);
    expect(needsReboot(status('UPDATE_STATUS_FINALIZING'))).toBe(false);
  });
});

describe('parseStatus', () => {
  it('converts D-Bus 64-bit integers to numbers', () => {
    const parsed = parseStatus('xdssx', [1_700_000_000n, 0.5, 'UPDATE_STATUS_IDLE', '', 42n]);
    expect(parsed).toEqual({
      ok: true,
      value: {
        lastCheckedTime: 1_700_000_000,
        progress: 0.5,
        currentOperation: 'UPDATE_STATUS_IDLE',
        newVersion: '',
        newSize: 42,
      },
    });
  });

  it('rejects another signature', () => {
    const parsed = parseStatus('s', ['UPDATE_STATUS_IDLE']);
    expect(parsed.ok).toBe(false);
  });
});

describe('UpdateEngineClient', () => {
  let daemon: DbusDaemon | undefined;
  let engine: FakeUpdateEngine | undefined;
  let client: UpdateEngineClient | undefined;

  beforeEach(async () => {
    daemon = await startDbusDaemon();
    engine = new FakeUpdateEngine(daemon.address, { newVersion: '1.0.0' });
  });

  afterEach(async () => {
    await client?.close();
    await engine?.stop();
    await daemon?.stop();
    client = undefined;
  });

  const newClient = (address = daemon!.address) => {
    client = new UpdateEngineClient({
      address,
      callTimeoutMs: 1_000,
      reconnectBackoff: fastReconnect,
    });
    return client;
  };

  it('reads GetStatus at start', async () => {
    engine!.setStatus({ lastCheckedTime: 1_700_000_000, newSize: 1234 });
    await engine!.start();
    const c = newClient();
    const seen: UpdateStatus[] = [];
    c.on('status', (s) => seen.push(s));
    await c.start();
    const expected = {
      lastCheckedTime: 1_700_000_000,
      progress: 0,
      currentOperation: 'UPDATE_STATUS_IDLE',
      newVersion: '1.0.0',
      newSize: 1234,
    };
    expect(c.status).toEqual(expected);
    expect(typeof c.status?.newSize).toBe('number');
    expect(seen).toEqual([expected]);
    expect(engine!.getStatusCalls).toBe(1);
    expect(c.serviceUp).toBe(true);
  });

  it('follows StatusUpdate through a staged update until a reboot is needed', async () => {
    await engine!.start();
    const c = newClient();
    await c.start();
    const operations: string[] = [];
    c.on('status', (s) => operations.push(s.currentOperation));
    const staged = c.waitFor(needsReboot);
    await engine!.stageUpdate('2.0.0');
    const status = await staged;
    expect(status.newVersion).toBe('2.0.0');
    expect(needsReboot(c.status!)).toBe(true);
    expect(operations).toContain('UPDATE_STATUS_DOWNLOADING');
    expect(operations.at(-1)).toBe(NEED_REBOOT);
    expect(engine!.getStatusCalls).toBe(1);
  });

  it('starts without update_engine and reads its status when it appears', async () => {
    const c = newClient();
    await c.start();
    expect(c.status).toBeUndefined();
    expect(c.serviceUp).toBe(false);
    engine!.setStatus({ currentOperation: NEED_REBOOT, newVersion: '3.0.0' });
    const up = once(c, 'service-up');
    await engine!.start();
    await up;
    const status = await c.waitFor(needsReboot);
    expect(status.newVersion).toBe('3.0.0');
  });

  it('keeps following when update_engine restarts', async () => {
    await engine!.start();
    const c = newClient();
    await c.start();
    const down = once(c, 'service-down');
    await engine!.stop();
    await down;
    expect(c.serviceUp).toBe(false);

    // Changed while it was away: only GetStatus after the restart can tell.
    engine!.setStatus({ currentOperation: 'UPDATE_STATUS_UPDATE_AVAILABLE', newVersion: '4.0.0' });
    const up = once(c, 'service-up');
    await engine!.start();
    await up;
    await c.waitFor((s) => s.newVersion === '4.0.0');
    expect(engine!.getStatusCalls).toBe(2);

    await engine!.stageUpdate('4.0.0');
    await c.waitFor(needsReboot);
  });

  it('reconnects when the dbus-daemon dies and a new one listens on the same socket', async () => {
    // Cleanups registered here run even if the test times out.
    const dir = await mkdtemp(join(tmpdir(), 'sluice-bus-restart-'));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const socketPath = join(dir, 'bus');
    const first = await startDbusDaemon({ socketPath });
    onTestFinished(() => first.stop());
    const fake = new FakeUpdateEngine(first.address, { newVersion: '1.0.0' });
    onTestFinished(() => fake.stop());
    await fake.start();
    const c = newClient(first.address);
    await c.start();
    const problems: string[] = [];
    c.on('problem', (e) => problems.push(e.message));

    const disconnected = once(c, 'disconnected');
    await first.stop({ signal: 'SIGKILL' });
    const [error] = await disconnected;
    expect(isSluiceError(error) && error.kind).toBe('dbus-unavailable');
    expect(c.connected).toBe(false);

    // Let a few attempts fail against the dead socket before the new daemon comes up.
    await new Promise((resolve) => setTimeout(resolve, 100));
    const connected = once(c, 'connected');
    const second = await startDbusDaemon({ socketPath });
    onTestFinished(() => second.stop());
    await fake.start();
    await connected;
    expect(problems.length).toBeGreaterThan(0);

    await fake.stageUpdate('5.0.0');
    const status = await c.waitFor(needsReboot);
    expect(status.newVersion).toBe('5.0.0');
  });

  it('fails to start with dbus-unavailable when the bus is not there', async () => {
    const c = newClient('unix:path=/nonexistent/sluice/bus');
    await expect(c.start()).rejects.toMatchObject({ kind: 'dbus-unavailable' });
  });

  it('stops cleanly on close: no more events, waiters cancelled', async () => {
    await engine!.start();
    const c = newClient();
    await c.start();
    const cancelled = expect(c.waitFor(needsReboot)).rejects.toMatchObject({ kind: 'aborted' });
    const events: string[] = [];
    c.on('status', () => events.push('status'));
    c.on('disconnected', () => events.push('disconnected'));
    await c.close();
    await c.close();
    await cancelled;
    expect(c.connected).toBe(false);
    await engine!.stageUpdate('6.0.0');
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(events).toEqual([]);
  });
});
