import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isSluiceError, type SluiceError } from '@sluice/core';
import { interface as dbusInterface, Message, type MessageBus } from 'dbus-next';
import { afterEach, beforeEach, describe, expect, it, onTestFinished } from 'vitest';
import {
  type DbusDaemon,
  type ExportedService,
  exportService,
  startDbusDaemon,
} from '../../testkit/src/dbus-daemon.js';
import { callMethod, closeBus, connectBus, onBusClosed } from './bus.js';

/** A peer whose one method never answers. */
class SilentInterface extends dbusInterface.Interface {
  Hang(): Promise<void> {
    return new Promise(() => {});
  }
}
SilentInterface.configureMembers({ methods: { Hang: {} } });

const hang = () =>
  new Message({
    destination: 'org.example.Silent',
    path: '/org/example/Silent',
    interface: 'org.example.Silent',
    member: 'Hang',
  });

async function caught(promise: Promise<unknown>): Promise<SluiceError> {
  try {
    await promise;
  } catch (error) {
    if (isSluiceError(error)) {
      return error;
    }
    throw error;
  }
  throw new Error('expected a SluiceError, but it resolved');
}

describe('connectBus', () => {
  it('fails with dbus-unavailable naming the address when nothing listens', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sluice-nobus-'));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const address = `unix:path=${dir}/missing`;
    const error = await caught(connectBus(address));
    expect(error.kind).toBe('dbus-unavailable');
    expect(error.message).toContain(address);
  });

  it('rejects unix:abstract= addresses as invalid-config', async () => {
    const error = await caught(connectBus('unix:abstract=/tmp/nope'));
    expect(error.kind).toBe('invalid-config');
  });

  it('is cancelled by its AbortSignal', async () => {
    const error = await caught(connectBus('unix:path=/nonexistent/bus', AbortSignal.abort()));
    expect(error.kind).toBe('aborted');
  });
});

describe('callMethod', () => {
  let daemon: DbusDaemon | undefined;
  let peer: ExportedService | undefined;
  let bus: MessageBus | undefined;

  beforeEach(async () => {
    daemon = await startDbusDaemon();
    peer = await exportService(
      daemon.address,
      'org.example.Silent',
      '/org/example/Silent',
      new SilentInterface('org.example.Silent'),
    );
    bus = await connectBus(daemon.address);
  });

  afterEach(async () => {
    if (bus) await closeBus(bus);
    await peer?.close();
    await daemon?.stop();
  });

  it('times out when the peer never answers', async () => {
    const error = await caught(callMethod(bus!, hang(), { timeoutMs: 100 }));
    expect(error.kind).toBe('dbus-unavailable');
    expect(error.message).toContain('no answer within 100 ms');
  });

  it('turns a D-Bus error answer into dbus-unavailable with the error name', async () => {
    const message = new Message({
      destination: 'org.example.Nobody',
      path: '/',
      interface: 'org.example.Nobody',
      member: 'Hello',
    });
    const error = await caught(callMethod(bus!, message));
    expect(error.kind).toBe('dbus-unavailable');
    expect(error.message).toContain('org.freedesktop.DBus.Error.ServiceUnknown');
  });

  it('fails at once when the connection closes before the answer', async () => {
    const closed = new Promise((resolve) => onBusClosed(bus!, resolve));
    const started = Date.now();
    const pending = caught(callMethod(bus!, hang(), { timeoutMs: 5_000 }));
    await daemon!.stop({ signal: 'SIGKILL' });
    const error = await pending;
    await closed;
    expect(error.kind).toBe('dbus-unavailable');
    expect(error.message).toContain('closed');
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('is cancelled by its AbortSignal', async () => {
    const controller = new AbortController();
    const pending = caught(callMethod(bus!, hang(), { signal: controller.signal }));
    controller.abort();
    expect((await pending).kind).toBe('aborted');
  });
});
