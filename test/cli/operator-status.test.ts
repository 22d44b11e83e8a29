/**
 * What `sluicectl status` and `watch` tell an operator, as processes against a real etcd:
 * Available is what can be admitted now, with the one reason when nothing can (paused by whom and
 * since when, halted, an invalid key, the window closed until when, full); who paused; holders
 * above max after a decrease; one queue numbering for status and lock; `status --check` for
 * scripts; and a watch on a terminal whose ages and lease countdowns keep moving with no etcd
 * traffic between changes.
 */
import { spawn } from 'node:child_process';
import { hostname } from 'node:os';
import { type EtcdCluster, startEtcd } from '@sluice/testkit';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CLI, CliRunner, StatusJsonSchema, unaryRequests } from './cli.js';

let etcd: EtcdCluster;
let cli: CliRunner;

beforeAll(async () => {
  etcd = await startEtcd();
});
afterAll(async () => {
  await etcd?.stop();
});
beforeEach(() => {
  cli = new CliRunner(etcd.endpoints);
});
afterEach(async () => {
  await cli?.cleanup();
});

/** A waiting queue record for `node`, on a fresh lease, as an agent writes it. */
async function waiter(node: string): Promise<void> {
  const lease = (await etcd.etcdctl(['lease', 'grant', '120'])).match(/lease ([0-9a-f]+)/)![1]!;
  const at = new Date().toISOString();
  const record = { v: 1, node, hostname: node, state: 'waiting', since: at, enqueuedAt: at };
  await etcd.etcdctl(['put', cli.keys.queue(node), JSON.stringify(record), `--lease=${lease}`]);
}

const available = (text: string) => text.match(/^Available: +(.*)$/m)?.[1];

describe('sluicectl status', () => {
  it('says what can be admitted now, and the one reason when nothing can', async () => {
    await etcd.etcdctl(['put', cli.keys.max, '2']);
    expect(available((await cli.run(['status'])).stdout)).toBe('2');

    // Paused: who, since when, why, in the table and in JSON.
    expect((await cli.run(['pause', '--reason', 'BIOS update first'])).code).toBe(0);
    const paused = (await cli.run(['status'])).stdout;
    const me = `tester@${hostname()}`;
    expect(available(paused)).toMatch(
      new RegExp(
        `^0: paused by ${me.replace('.', '\\.')} since \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\dZ \\(\\d+s ago\\): BIOS update first$`,
      ),
    );
    expect(paused).toMatch(
      new RegExp(`^Paused: +yes, by ${me.replace('.', '\\.')}, since .*: BIOS update first$`, 'm'),
    );
    const json = StatusJsonSchema.parse(await cli.json(['status']));
    expect(json.paused).toMatchObject({ reason: 'BIOS update first', by: me });
    expect(json).toMatchObject({ available: 0, blocker: { kind: 'paused', by: me } });
    await etcd.etcdctl(['del', cli.keys.paused]);

    // An invalid loss budget admits nobody, though slots are free and nothing is paused.
    await etcd.etcdctl(['put', cli.keys.lossBudget, 'many']);
    expect(available((await cli.run(['status'])).stdout)).toBe(
      `0: nobody is admitted while ${cli.keys.lossBudget} is invalid (see errors)`,
    );
    await etcd.etcdctl(['del', cli.keys.lossBudget]);

    // A closed window: until when (it opens in about two hours, whatever the time of day).
    const opens = new Date(Date.now() + 2 * 3600_000);
    const hh = String(opens.getUTCHours()).padStart(2, '0');
    await etcd.etcdctl(['put', cli.keys.windows, `Mon-Sun ${hh}:00+1m UTC`]);
    expect(available((await cli.run(['status'])).stdout)).toMatch(
      new RegExp(
        `^0: the reboot window is closed until \\d{4}-\\d\\d-\\d\\d ${hh}:00:00Z \\(in \\d+h\\d\\dm\\)$`,
      ),
    );
    await etcd.etcdctl(['del', cli.keys.windows]);

    // Halted by a lost holder.
    const marker = { v: 1, node: 'ghost', createRevision: 1, grantedAt: new Date().toISOString() };
    await etcd.etcdctl(['put', cli.keys.holding('ghost'), JSON.stringify(marker)]);
    expect(available((await cli.run(['status'])).stdout)).toMatch(
      /^0: halted since .*: node ghost lost during reboot \(lost: ghost\); unlock the lost node with --force, then resume$/,
    );
  });

  it('flags holders above max after a decrease, and numbers the queue one way', async () => {
    await etcd.etcdctl(['put', cli.keys.max, '2']);
    for (const node of ['n1', 'n2']) {
      expect((await cli.run(['lock', '--node', node, '--reason', 'maintenance'])).code).toBe(0);
    }
    await etcd.etcdctl(['put', cli.keys.max, '1']);
    await waiter('w1');
    await waiter('w2');
    const text = (await cli.run(['status'])).stdout;
    expect(available(text)).toBe(
      '0: 2 holders for max 1, 1 admitted before max went 2 → 1 (draining)',
    );
    expect(text).toMatch(/^n2 +n2 +holding \(above max\) /m);
    expect(text).toMatch(/^n1 +n1 +holding +/m);
    expect(text).toContain('n2 was admitted before max went 2 → 1; draining');
    const json = StatusJsonSchema.parse(await cli.json(['status']));
    expect(json.holdersOverMax).toBe(1);
    // The old max comes from etcd's history of the key.
    expect(json.maxBefore).toBe(2);
    expect(json.holders.map((h) => [h.node, h.aboveMax])).toEqual([
      ['n1', false],
      ['n2', true],
    ]);
    expect(json.waiting.map((w) => [w.node, w.position])).toEqual([
      ['w1', 1],
      ['w2', 2],
    ]);
    expect(text).toMatch(/^1 +w1 /m);
    expect(text).toMatch(/^2 +w2 /m);
    // A third waiter would be third: lock says so in the same numbering.
    const refused = await cli.run(['lock', '--node', 'n3', '--reason', 'disk']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('position 3 in the queue, all 1 slot(s) taken');

    // Once etcd has compacted the old max away, status says only that max was lowered.
    const rev = JSON.parse(await etcd.etcdctl(['get', cli.keys.max, '-w', 'json'])).header.revision;
    await etcd.etcdctl(['compact', String(rev)]);
    const compacted = (await cli.run(['status'])).stdout;
    expect(compacted).toContain('n2 was admitted before max was lowered to 1; draining');
    expect(StatusJsonSchema.parse(await cli.json(['status'])).maxBefore).toBeNull();
  });

  it('says which waiter waits for the next window because its slot would outlast this one', async () => {
    // Open since an hour ago, closing in 10 minutes.
    const start = new Date(Date.now() - 3600_000);
    const hhmm = `${String(start.getUTCHours()).padStart(2, '0')}:${String(start.getUTCMinutes()).padStart(2, '0')}`;
    expect((await cli.run(['windows', 'set', `Mon-Sun ${hhmm}+70m UTC`])).code).toBe(0);
    const at = new Date().toISOString();
    const waiter = (node: string, expectedSlotMs?: number) =>
      JSON.stringify({
        v: 1,
        node,
        hostname: node,
        state: 'waiting',
        since: at,
        enqueuedAt: at,
        reason: 'update',
        ...(expectedSlotMs ? { expectedSlotMs } : {}),
      });
    await etcd.etcdctl(['put', cli.keys.queue('slow'), waiter('slow', 30 * 60_000)]);
    await etcd.etcdctl(['put', cli.keys.queue('quick'), waiter('quick', 60_000)]);
    const text = (await cli.run(['status'])).stdout;
    expect(text).toMatch(
      /^slow waits for the next window: its slot \(expected 30m\) does not fit before the window closes at \S+Z$/m,
    );
    expect(text).not.toMatch(/^quick waits/m);
    const json = StatusJsonSchema.parse(await cli.json(['status']));
    expect(json.waiting.map((w) => [w.node, w.heldBack !== null])).toEqual([
      ['slow', true],
      ['quick', false],
    ]);
  });

  it('--check exits 1 for a halted group, naming the lost node, and 0 once resumed', async () => {
    // A holding marker without its queue key: a node lost during its reboot.
    const marker = { v: 1, node: 'ghost', createRevision: 1, grantedAt: new Date().toISOString() };
    await etcd.etcdctl(['put', cli.keys.holding('ghost'), JSON.stringify(marker)]);
    const halted = await cli.run(['status', '--check']);
    expect(halted.code).toBe(1);
    expect(halted.stdout.split('\n')[0]).toMatch(/^group default: \d problem\(s\)$/);
    expect(halted.stdout).toMatch(/^ {2}- halted.*node ghost lost during reboot/m);
    expect(halted.stdout).toMatch(/ghost/);
    const json = await cli.run(['status', '--check', '-o', 'json']);
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({ healthy: false });
    expect((await cli.run(['unlock', 'ghost', '--force', '--yes'])).code).toBe(0);
    expect((await cli.run(['resume'])).code).toBe(0);
    const healthy = await cli.run(['status', '--check']);
    expect(healthy.code, healthy.stdout).toBe(0);
  });

  it('--check exits 0 for a healthy group and 1 with every reason it is not', async () => {
    const healthy = await cli.run(['status', '--check']);
    expect(healthy.code, healthy.stderr).toBe(0);
    expect(healthy.stdout).toBe('group default: healthy (1 slot(s) free now)\n');
    expect(await cli.json(['status', '--check'])).toEqual({
      group: 'default',
      healthy: true,
      problems: [],
    });

    await etcd.etcdctl(['put', cli.keys.max, '2']);
    for (const node of ['n1', 'n2']) {
      expect((await cli.run(['lock', '--node', node, '--reason', 'maintenance'])).code).toBe(0);
    }
    await etcd.etcdctl(['put', cli.keys.max, '1']);
    // A holder whose post-reboot checks fail past their deadline (as its agent records it).
    const key = cli.keys.queue('n1');
    const record = JSON.parse(await etcd.etcdctl(['get', key, '--print-value-only']));
    const lease = (await etcd.etcdctl(['get', key, '-w', 'json'])).match(/"lease":(\d+)/)![1]!;
    const problem = 'post-reboot checks failing past their deadline: app: HTTP 503';
    await etcd.etcdctl([
      'put',
      key,
      JSON.stringify({ ...record, state: 'post-checking', problem }),
      `--lease=${BigInt(lease).toString(16)}`,
    ]);
    await etcd.etcdctl(['put', cli.keys.windows, 'Funday 25:00']);
    expect((await cli.run(['pause', '--reason', 'app is sick'])).code).toBe(0);

    const sick = await cli.run(['status', '--check']);
    expect(sick.code).toBe(1);
    const lines = sick.stdout.trim().split('\n');
    expect(lines[0]).toBe('group default: 4 problem(s)');
    expect(lines.slice(1)).toEqual([
      expect.stringMatching(/^ {2}- paused by tester@.* since .*: app is sick$/),
      expect.stringMatching(new RegExp(`^  - ${cli.keys.windows}: `)),
      '  - 1 holder(s) above max 1: n2, admitted before max went 2 → 1',
      `  - n1: ${problem}`,
    ]);
    const json = await cli.run(['status', '--check', '-o', 'json']);
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({ group: 'default', healthy: false });
  });
});

describe('sluicectl watch on a terminal', () => {
  it('keeps ages and lease time left moving between changes, without asking etcd', async () => {
    expect((await cli.run(['lock', '--node', 'n1', '--reason', 'disk', '--ttl', '10m'])).code).toBe(
      0,
    );
    // A pseudo-terminal from util-linux's script(1), so that watch redraws in place.
    const line = [process.execPath, CLI, '--prefix', cli.prefix, 'watch'].join(' ');
    const child = spawn('script', ['-qfec', line, '/dev/null'], {
      env: cli.env({ TERM: 'xterm' }),
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
    });
    try {
      await expect.poll(() => out.includes('watching for changes'), { timeout: 15_000 }).toBe(true);
      const before = await unaryRequests(etcd.members[0]!.metricsUrl);
      const frames = () => out.split('\x1b[H\x1b[2J').filter((f) => f.includes('HOLDERS'));
      const start = frames().length;
      await new Promise((r) => setTimeout(r, 3500));
      const after = await unaryRequests(etcd.members[0]!.metricsUrl);
      // At least three redraws in 3.5 s, and not one request to etcd for them.
      const shown = frames().slice(start);
      expect(shown.length).toBeGreaterThanOrEqual(3);
      expect(after - before).toBe(0);
      const lease = (frame: string) => frame.match(/^n1 .* (\d+m\d\ds) +disk\r?$/m)?.[1];
      const ages = new Set(shown.map((f) => f.match(/^n1 .*\((\d+s) ago\)/m)?.[1]));
      const leases = new Set(shown.map(lease));
      expect(ages.size).toBeGreaterThanOrEqual(3);
      expect(leases.size).toBeGreaterThanOrEqual(3);
      expect([...leases].every((l) => l?.startsWith('9m'))).toBe(true);
    } finally {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // Gone already.
      }
    }
  });
});
