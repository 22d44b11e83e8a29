import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RebootLoopGuard } from './reboot-guard.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-guard-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const update = { source: 'rpm-ostree', detail: 'staged', version: '41.2' };

describe('RebootLoopGuard', () => {
  it('halts once the same update is still needed after `limit` reboots in a row', async () => {
    const file = join(dir, 'state', 'reboot-loop.json');
    const guard = new RebootLoopGuard(file, 3);
    await guard.load();
    for (let i = 1; i <= 3; i++) {
      expect(guard.halted(update)).toBeNull();
      await guard.noteReboot(update);
    }
    expect(guard.halted(update)).toMatch(
      /rpm-ostree: 41\.2 is still needed after 3 reboots in a row/,
    );
    // It survives the reboot: a new process reads the same count.
    const after = new RebootLoopGuard(file, 3);
    await after.load();
    expect(after.count(update)).toBe(3);
    expect(after.halted(update)).not.toBeNull();
    // A newer update starts again; other nodes are not concerned (nothing leaves this file).
    expect(after.halted({ ...update, version: '41.3' })).toBeNull();
    await after.noteReboot({ ...update, version: '41.3' });
    expect(after.count({ ...update, version: '41.3' })).toBe(1);
    expect(after.count(update)).toBe(0);
  });

  it('clears when nothing is needed after a boot; limit 0 never halts', async () => {
    const file = join(dir, 'reboot-loop.json');
    const guard = new RebootLoopGuard(file, 1);
    await guard.noteReboot(update);
    expect(guard.halted(update)).not.toBeNull();
    await guard.clear();
    expect(guard.halted(update)).toBeNull();
    await expect(readFile(file)).rejects.toMatchObject({ code: 'ENOENT' });
    const off = new RebootLoopGuard(file, 0);
    for (let i = 0; i < 5; i++) await off.noteReboot(update);
    expect(off.halted(update)).toBeNull();
  });

  it('takes a count back for a reboot call that failed', async () => {
    const file = join(dir, 'reboot-loop.json');
    const guard = new RebootLoopGuard(file, 2);
    await guard.noteReboot(update);
    const undo = await guard.noteReboot(update);
    expect(guard.count(update)).toBe(2);
    await undo();
    expect(guard.count(update)).toBe(1);
    const again = new RebootLoopGuard(file, 2);
    await again.load();
    expect(again.count(update)).toBe(1);
  });

  it('treats an unreadable file as a count of 0, and says so', async () => {
    const file = join(dir, 'reboot-loop.json');
    await writeFile(file, 'garbage');
    const guard = new RebootLoopGuard(file, 2);
    await expect(guard.load()).resolves.toContain('is not a reboot count');
    expect(guard.count(update)).toBe(0);
  });
});
