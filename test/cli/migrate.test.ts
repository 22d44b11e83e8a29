/**
 * `sluicectl migrate-locksmith` against a real etcd 3.4 started with `--enable-v2`, the way a
 * fleet still on locksmith runs it. locksmith's semaphore is written in locksmith's own JSON with
 * holders; "locksmith nodes" below try to take the lock exactly as locksmith's code does (read,
 * check the free count, add the holder, compare-and-swap). Slots are counted by reading etcd here,
 * not by asking sluice.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { type EtcdCluster, startEtcd } from '@sluice/testkit';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { killAll, SLUICED, start } from '../process.js';
import { CliRunner, HistoryJsonSchema, StatusJsonSchema } from './cli.js';

const SEMAPHORE = 'coreos.com/updateengine/rebootlock/semaphore';
const groupKey = (g: string) => `coreos.com/updateengine/rebootlock/groups/${g}/semaphore`;

let etcd: EtcdCluster;
let cli: CliRunner;
let dir: string;

beforeAll(async () => {
  etcd = await startEtcd({ args: ['--enable-v2'] });
});
afterAll(async () => {
  await etcd?.stop();
});
beforeEach(async () => {
  cli = new CliRunner(etcd.endpoints);
  dir = await mkdtemp(join(tmpdir(), 'sluice-migrate-'));
  // Each test has its own v2 keys: locksmith's keys do not depend on sluice's prefix.
  await v2Delete(SEMAPHORE);
  await v2Delete(groupKey('workers'));
  await v2Delete(groupKey('batch'));
  await etcd.etcdctl(['del', '--prefix', 'coreos.com/']);
});
afterEach(async () => {
  await cli?.cleanup();
  await killAll();
  await rm(dir, { recursive: true, force: true });
});

interface Semaphore {
  semaphore: number;
  max: number;
  holders: string[] | null;
}

const v2Url = (key: string) => `${etcd.endpoints[0]}/v2/keys/${key}`;

async function v2Get(key: string): Promise<{ sem: Semaphore; index: number } | null> {
  const res = await fetch(v2Url(key));
  if (res.status === 404) return null;
  const body = (await res.json()) as { node: { value: string; modifiedIndex: number } };
  return { sem: JSON.parse(body.node.value), index: body.node.modifiedIndex };
}

async function v2Put(key: string, sem: Semaphore, prevIndex?: number): Promise<boolean> {
  const query = prevIndex === undefined ? '' : `?prevIndex=${prevIndex}`;
  const res = await fetch(`${v2Url(key)}${query}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: `value=${encodeURIComponent(JSON.stringify(sem))}`,
  });
  return res.ok;
}

async function v2Delete(key: string): Promise<void> {
  await fetch(v2Url(key), { method: 'DELETE' });
}

/** A locksmith node taking the lock, as locksmith's lock.Lock() does over v2. */
async function locksmithLock(key: string, id: string): Promise<'locked' | 'refused'> {
  for (;;) {
    const got = await v2Get(key);
    if (!got) throw new Error('no semaphore');
    const { sem, index } = got;
    if (sem.semaphore <= 0) return 'refused';
    const holders = [...(sem.holders ?? []), id].sort();
    if (await v2Put(key, { semaphore: sem.semaphore - 1, max: sem.max, holders }, index)) {
      return 'locked';
    }
  }
}

/** Every slot sluice's group holds now, counted from etcd: the holding markers. */
async function sluiceSlots(): Promise<string[]> {
  const out = await etcd.etcdctl(['get', '--prefix', cli.keys.holdingPrefix, '--keys-only']);
  return out
    .split('\n')
    .filter(Boolean)
    .map((k) => k.slice(cli.keys.holdingPrefix.length))
    .sort();
}

async function status() {
  return StatusJsonSchema.parse(await cli.json(['status']));
}

describe('migrate-locksmith from the v2 keys API', () => {
  it('freezes locksmith, records its holders as migrated slots that count, and says how to undo it', async () => {
    await v2Put(SEMAPHORE, { semaphore: 1, max: 2, holders: null });
    expect(await locksmithLock(SEMAPHORE, 'ls-node-1')).toBe('locked');
    expect(await v2Get(SEMAPHORE)).toMatchObject({
      sem: { semaphore: 0, max: 2, holders: ['ls-node-1'] },
    });

    const dry = await cli.run(['migrate-locksmith', '--dry-run']);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toContain('dry run: nothing is written');
    expect(dry.stdout).toContain('would set max 2 -> 0, holders kept');
    expect(await sluiceSlots()).toEqual([]);
    expect((await v2Get(SEMAPHORE))?.sem.max).toBe(2);

    const res = await cli.run(['migrate-locksmith']);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toContain(`v2 key /${SEMAPHORE}`);
    expect(res.stdout).toContain('record ls-node-1 as a migrated slot');
    expect(res.stdout).toContain('To undo it:');
    expect(res.stdout).toContain('locksmithctl set-max 2');
    expect(res.stdout).toContain(`sluicectl unlock ls-node-1 --force --prefix ${cli.prefix}`);

    // locksmith: max 0, holders kept; no locksmith node can take a slot now.
    expect((await v2Get(SEMAPHORE))?.sem).toEqual({
      semaphore: -2,
      max: 0,
      holders: ['ls-node-1'],
    });
    expect(await locksmithLock(SEMAPHORE, 'ls-node-2')).toBe('refused');

    // sluice: max 2, and the migrated holder takes one of the two slots.
    expect(await etcd.etcdctl(['get', cli.keys.max, '--print-value-only'])).toBe('2\n');
    expect(await sluiceSlots()).toEqual(['ls-node-1']);
    const st = await status();
    expect(st).toMatchObject({ max: 2, available: 1, paused: null });
    expect(st.holders).toMatchObject([{ node: 'ls-node-1', state: 'migrated' }]);

    // Two sluice nodes ask; only one fits next to the migrated slot.
    const first = await cli.run(['lock', '--node', 'sl-a', '--reason', 'x']);
    expect(first.code, first.stderr).toBe(0);
    const second = await cli.run(['lock', '--node', 'sl-b', '--reason', 'x']);
    expect(second.code).toBe(1);
    expect(second.stderr).toContain('is full');
    expect(await sluiceSlots()).toEqual(['ls-node-1', 'sl-a']);

    // Running it again changes nothing.
    const again = await cli.run(['migrate-locksmith']);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('is migrated already');

    // The audit trail has the migration once (the dry run and the no-op wrote nothing): who,
    // max before and after, and the holders taken over.
    const history = HistoryJsonSchema.parse(
      await cli.json(['history', '--kind', 'migrate-locksmith']),
    );
    expect(history.actions).toEqual([
      expect.objectContaining({
        action: 'migrate-locksmith',
        by: `tester@${hostname()}`,
        old: null,
        new: '2',
        reason: `from locksmith's v2 key /${SEMAPHORE}: migrated slot(s) ls-node-1`,
      }),
    ]);
    expect((await cli.run(['history'])).stdout).toMatch(
      /^\S+ \S+ +migrate-locksmith +- +tester@\S+ +max unset \(1\) -> 2; from locksmith's v2 key .*: migrated slot\(s\) ls-node-1$/m,
    );
  });

  it("the node's sluiced gives its migrated slot back when it starts", async () => {
    await v2Put(SEMAPHORE, { semaphore: 0, max: 1, holders: ['ls-node-1'] });
    expect((await cli.run(['migrate-locksmith'])).code).toBe(0);
    expect(await sluiceSlots()).toEqual(['ls-node-1']);
    expect((await cli.run(['lock', '--node', 'sl-a', '--reason', 'x'])).code).toBe(1);

    await writeFile(join(dir, 'machine-id'), 'ls-node-1\n');
    await writeFile(join(dir, 'boot_id'), 'boot-2\n');
    await writeFile(join(dir, 'sluiced.yaml'), '');
    const sluiced = start(SLUICED, [
      '--config',
      join(dir, 'sluiced.yaml'),
      '--update-conf',
      join(dir, 'no-update.conf'),
      '--machine-id-file',
      join(dir, 'machine-id'),
      '--boot-id-file',
      join(dir, 'boot_id'),
      '--metrics-listen',
      'off',
      '--sentinel',
      'off',
      '--no-update-engine',
      '--endpoints',
      etcd.endpoints.join(','),
      '--prefix',
      cli.prefix,
    ]);
    await expect
      .poll(() => sluiceSlots(), { timeout: 15_000, message: sluiced.stderr() })
      .toEqual([]);
    const history = JSON.parse((await cli.run(['history', '-o', 'json'])).stdout);
    expect(history.records).toMatchObject([
      {
        node: 'ls-node-1',
        outcome: 'released',
        reason: "slot migrated from locksmith's semaphore",
      },
    ]);
    expect((await cli.run(['lock', '--node', 'sl-a', '--reason', 'x'])).code).toBe(0);
  });

  it("keeps sluice's max when it is set, unless --overwrite", async () => {
    await v2Put(groupKey('workers'), { semaphore: 3, max: 3, holders: null });
    await etcd.etcdctl(['put', `${cli.prefix}groups/workers/max`, '1']);
    const kept = await cli.run(['--group', 'workers', 'migrate-locksmith']);
    expect(kept.code, kept.stderr).toBe(0);
    expect(kept.stdout).toContain('max of group workers stays 1');
    expect((await v2Get(groupKey('workers')))?.sem).toEqual({
      semaphore: 0,
      max: 0,
      holders: null,
    });
    // Frozen now, locksmith's max reads 0: a later change of max must be given.
    const unknown = await cli.run(['--group', 'workers', 'migrate-locksmith', '--overwrite']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('give the max with --max N');
    const given = await cli.run(['--group', 'workers', 'migrate-locksmith', '--max', '3']);
    expect(given.code, given.stderr).toBe(0);
    expect(
      await etcd.etcdctl(['get', `${cli.prefix}groups/workers/max`, '--print-value-only']),
    ).toBe('3\n');

    await v2Put(groupKey('batch'), { semaphore: 4, max: 4, holders: null });
    await etcd.etcdctl(['put', `${cli.prefix}groups/batch/max`, '1']);
    const over = await cli.run(['--group', 'batch', 'migrate-locksmith', '--overwrite']);
    expect(over.code, over.stderr).toBe(0);
    expect(await etcd.etcdctl(['get', `${cli.prefix}groups/batch/max`, '--print-value-only'])).toBe(
      '4\n',
    );
  });

  it('refuses a group locksmith never had, writing nothing', async () => {
    const res = await cli.run(['--group', 'nope', 'migrate-locksmith']);
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('no locksmith semaphore for group nope');
    expect(await etcd.etcdctl(['get', '--prefix', cli.prefix, '--keys-only'])).toBe('');
  });
});

describe('migrate-locksmith from the v3 keyspace (Flatcar v3 locksmith)', () => {
  it('updates the v3 semaphore in the same txn, on its version', async () => {
    await etcd.etcdctl([
      'put',
      SEMAPHORE,
      JSON.stringify({ semaphore: 0, max: 2, holders: ['ls-a', 'ls-b'] }),
    ]);
    const res = await cli.run(['migrate-locksmith', '-o', 'json']);
    expect(res.code, res.stderr).toBe(0);
    const plan = JSON.parse(res.stdout);
    expect(plan).toMatchObject({
      dryRun: false,
      locksmith: { api: 'v3', key: SEMAPHORE, after: { semaphore: -2, max: 0 } },
      migrated: ['ls-a', 'ls-b'],
      max: { before: null, after: 2 },
    });
    const value = JSON.parse(await etcd.etcdctl(['get', SEMAPHORE, '--print-value-only']));
    expect(value).toEqual({ semaphore: -2, max: 0, holders: ['ls-a', 'ls-b'] });
    expect(await sluiceSlots()).toEqual(['ls-a', 'ls-b']);
    // Both slots are taken: a sluice node waits.
    const st = await status();
    expect(st).toMatchObject({ max: 2, available: 0 });
    expect((await cli.run(['lock', '--node', 'sl-a', '--reason', 'x'])).code).toBe(1);
  });
});
