import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  CommandSource,
  SentinelFileSource,
  type UpdateSignal,
  type UpdateSource,
} from './sources.js';

let dir: string;
const open: UpdateSource[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-sources-'));
});

afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()));
  await rm(dir, { recursive: true, force: true });
});

/** Starts a source and records every signal it reports. */
async function follow(source: UpdateSource): Promise<UpdateSignal[]> {
  open.push(source);
  const seen: UpdateSignal[] = [];
  await source.start((s) => seen.push(s));
  return seen;
}

describe('SentinelFileSource', () => {
  it('notices creation and removal within a second', async () => {
    const path = join(dir, 'reboot-required');
    const source = new SentinelFileSource(path);
    const seen = await follow(source);
    expect(seen).toEqual([{ needed: false, source: 'sentinel', detail: `no ${path}` }]);

    await writeFile(path, '*** System restart required ***\n');
    await expect.poll(() => source.current().needed, { timeout: 1000, interval: 20 }).toBe(true);
    expect(source.current()).toEqual({
      needed: true,
      source: 'sentinel',
      detail: '*** System restart required ***',
    });
    expect(seen.at(-1)).toEqual(source.current());

    await rm(path);
    await expect.poll(() => source.current().needed, { timeout: 1000, interval: 20 }).toBe(false);
    expect(seen.map((s) => s.needed)).toEqual([false, true, false]);
  });

  it("names the packages of Debian's .pkgs list as the reason, and follows it changing", async () => {
    const path = join(dir, 'reboot-required');
    await writeFile(path, '*** System restart required ***\n');
    await writeFile(`${path}.pkgs`, 'linux-image-6.1.0-18-amd64\nlibc6\nlibc6\n');
    const source = new SentinelFileSource(path);
    const seen = await follow(source);
    expect(seen).toEqual([
      {
        needed: true,
        source: 'sentinel',
        detail: `${path}: required by linux-image-6.1.0-18-amd64, libc6`,
      },
    ]);
    await writeFile(`${path}.pkgs`, 'linux-image-6.1.0-18-amd64\nlibc6\ndbus\n');
    await expect
      .poll(() => source.current().detail, { timeout: 1000, interval: 20 })
      .toBe(`${path}: required by linux-image-6.1.0-18-amd64, libc6, dbus`);
    await rm(path);
    await expect.poll(() => source.current().needed, { timeout: 1000, interval: 20 }).toBe(false);
  });

  it('reports a version on the first line, and an empty file as needed', async () => {
    const path = join(dir, 'reboot-required');
    await writeFile(path, '4081.2.0\nkernel update\n');
    const source = new SentinelFileSource(path);
    const seen = await follow(source);
    expect(seen).toEqual([
      { needed: true, source: 'sentinel', detail: '4081.2.0 kernel update', version: '4081.2.0' },
    ]);
    await writeFile(path, '');
    await expect
      .poll(() => source.current().detail, { timeout: 1000, interval: 20 })
      .toBe(`${path} exists (empty)`);
    expect(source.current().needed).toBe(true);
  });

  it('copes with a directory that does not exist yet, and one that is replaced', async () => {
    const parent = join(dir, 'run', 'sluice');
    const path = join(parent, 'reboot-required');
    const source = new SentinelFileSource(path, { recheckMs: 100 });
    const seen = await follow(source);
    expect(seen).toEqual([{ needed: false, source: 'sentinel', detail: `no ${path}` }]);

    await mkdir(parent, { recursive: true });
    await writeFile(path, 'yes');
    await expect.poll(() => source.current().needed, { timeout: 1000, interval: 20 }).toBe(true);

    await rm(parent, { recursive: true });
    await expect.poll(() => source.current().needed, { timeout: 1000, interval: 20 }).toBe(false);

    // A new directory at the same path: the watch follows it.
    await mkdir(parent, { recursive: true });
    await new Promise((resolve) => setTimeout(resolve, 250));
    await writeFile(path, 'again');
    await expect.poll(() => source.current().detail, { timeout: 1000, interval: 20 }).toBe('again');
  });

  it('stops reporting after close', async () => {
    const path = join(dir, 'reboot-required');
    const source = new SentinelFileSource(path);
    const seen = await follow(source);
    await source.close();
    await writeFile(path, 'late');
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(seen).toHaveLength(1);
    expect(source.current().needed).toBe(false);
  });
});

describe('CommandSource', () => {
  it('reports needed on exit 0 and not needed otherwise, re-running every interval', async () => {
    const flag = join(dir, 'flag');
    const source = new CommandSource(`test -e ${flag} && cat ${flag}`, 50);
    const seen = await follow(source);
    await expect.poll(() => seen.length, { timeout: 1000, interval: 20 }).toBe(1);
    expect(seen[0]).toEqual({ needed: false, source: 'command', detail: 'exit code 1' });

    await writeFile(flag, '1.2.3\n');
    await expect.poll(() => source.current().needed, { timeout: 1000, interval: 20 }).toBe(true);
    expect(source.current()).toEqual({
      needed: true,
      source: 'command',
      detail: '1.2.3',
      version: '1.2.3',
    });

    await rm(flag);
    await expect.poll(() => source.current().needed, { timeout: 1000, interval: 20 }).toBe(false);
    expect(seen.map((s) => s.needed)).toEqual([false, true, false]);
  });

  it('fails closed when the command times out', async () => {
    const source = new CommandSource('echo hanging; sleep 30', 60_000, { timeoutMs: 200 });
    const seen = await follow(source);
    await expect.poll(() => seen.length, { timeout: 2000, interval: 20 }).toBe(1);
    expect(seen[0]).toEqual({
      needed: false,
      source: 'command',
      detail: 'timed out after 200ms (killed); not rebooting: hanging',
    });
  });

  it('close stops a running command promptly', async () => {
    const source = new CommandSource('sleep 30', 60_000);
    await follow(source);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const started = Date.now();
    await source.close();
    expect(Date.now() - started).toBeLessThan(1500);
    expect(source.current()).toEqual({ needed: false, source: 'command', detail: 'not run yet' });
  });
});
