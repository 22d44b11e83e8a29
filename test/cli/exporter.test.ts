/**
 * `sluicectl exporter` as a process against a real etcd: the group gauges follow what operators
 * and agents do (a manual lock, a waiter, a pause, max lowered below the holders), and a listen
 * address beyond loopback needs --allow-remote.
 */
import { type EtcdCluster, freePort, startEtcd } from '@sluice/testkit';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CliRunner } from './cli.js';

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

/** The samples of a /metrics page, by series (`name{labels}`). */
async function scrape(url: string): Promise<Map<string, number>> {
  const text = await (await fetch(url)).text();
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return samples;
}

describe('sluicectl exporter', () => {
  it('exports the group as operators and agents change it', async () => {
    const port = await freePort();
    const exporter = cli.start(['exporter', '--listen', `127.0.0.1:${port}`], {
      timeoutMs: 60_000,
    });
    const url = `http://127.0.0.1:${port}/metrics`;
    await expect
      .poll(async () => (await fetch(url).catch(() => null))?.status, {
        timeout: 10_000,
        message: exporter.stderr,
      })
      .toBe(200);
    expect(exporter.stderr).toMatch(
      /serving metrics of group default on http:\/\/127\.0\.0\.1:\d+\/metrics/,
    );
    const g = (name: string, extra = '') => `${name}{group="default"${extra}}`;
    let m = await scrape(url);
    expect(m.get(g('sluice_group_max'))).toBe(1);
    expect(m.get(g('sluice_group_admittable'))).toBe(1);
    expect(m.get(g('sluice_group_blocked', ',reason="full"'))).toBe(0);
    expect(m.get(g('sluice_exporter_watch_connected'))).toBe(1);

    // A manual lock takes the one slot; a waiter queues behind it, as an agent would.
    expect((await cli.run(['lock', '--node', 'n1', '--reason', 'disk swap'])).code).toBe(0);
    const lease = (await etcd.etcdctl(['lease', 'grant', '60'])).match(/lease ([0-9a-f]+)/)![1]!;
    const enqueuedAt = new Date(Date.now() - 90_000).toISOString();
    const record = {
      v: 1,
      node: 'n2',
      hostname: 'n2',
      state: 'waiting',
      since: enqueuedAt,
      enqueuedAt,
    };
    await etcd.etcdctl(['put', cli.keys.queue('n2'), JSON.stringify(record), `--lease=${lease}`]);
    await expect.poll(async () => (await scrape(url)).get(g('sluice_group_waiting'))).toBe(1);
    m = await scrape(url);
    expect(m.get(g('sluice_group_holders'))).toBe(1);
    expect(m.get(g('sluice_group_admittable'))).toBe(0);
    expect(m.get(g('sluice_group_blocked', ',reason="full"'))).toBe(1);
    expect(m.get(g('sluice_group_admissions_total'))).toBe(1);
    expect(m.get(g('sluice_group_oldest_waiter_since_timestamp_seconds'))).toBe(
      Date.parse(enqueuedAt) / 1000,
    );
    expect(m.has(g('sluice_group_paused_since_timestamp_seconds'))).toBe(false);
    expect(m.has(g('sluice_group_domain_max'))).toBe(false);

    // With domain-max: the limit, and the slots taken per failure domain (n2 waits in rack-2).
    await etcd.etcdctl([
      'put',
      cli.keys.queue('n2'),
      JSON.stringify({ ...record, domain: 'rack-2' }),
      `--lease=${lease}`,
    ]);
    expect((await cli.run(['domain-max', '1'])).code).toBe(0);
    await expect.poll(async () => (await scrape(url)).get(g('sluice_group_domain_max'))).toBe(1);
    m = await scrape(url);
    expect(m.get(g('sluice_group_domain_holders', ',domain="rack-2"'))).toBe(0);
    expect((await cli.run(['domain-max', '--clear'])).code).toBe(0);

    // A canary: its phase, waiting for a first version, then failed once a canary record says so.
    const phase = (p: string) => g('sluice_group_canary_phase', `,phase="${p}"`);
    expect((await cli.run(['canary', 'set', '1', '30m'])).code).toBe(0);
    await expect.poll(async () => (await scrape(url)).get(phase('waiting'))).toBe(1);
    const at = new Date().toISOString();
    const state = { v: 1, version: '2.0', seats: 1, startedAt: at, done: [] };
    await etcd.etcdctl(['put', cli.keys.canaryState, JSON.stringify(state)]);
    const failed = {
      v: 1,
      node: 'n9',
      version: '2.0',
      grantedAt: at,
      outcome: 'failed',
      endedAt: at,
    };
    await etcd.etcdctl(['put', cli.keys.canaryRecord('n9'), JSON.stringify(failed)]);
    await expect.poll(async () => (await scrape(url)).get(phase('failed'))).toBe(1);
    expect((await scrape(url)).get(phase('waiting'))).toBe(0);
    expect((await cli.run(['canary', 'skip'])).code).toBe(0);
    expect((await cli.run(['canary', 'clear'])).code).toBe(0);
    await expect.poll(async () => (await scrape(url)).has(phase('failed'))).toBe(false);

    // A pause says since when; lowering max below the holders counts them as over max.
    const before = Date.now() / 1000;
    expect((await cli.run(['pause', '--reason', 'look first'])).code).toBe(0);
    expect((await cli.run(['set-max', '0'])).code).toBe(0);
    await expect.poll(async () => (await scrape(url)).get(g('sluice_group_paused'))).toBe(1);
    await expect.poll(async () => (await scrape(url)).get(g('sluice_group_max'))).toBe(0);
    m = await scrape(url);
    expect(m.get(g('sluice_group_blocked', ',reason="paused"'))).toBe(1);
    expect(m.get(g('sluice_group_blocked', ',reason="full"'))).toBe(0);
    expect(m.get(g('sluice_group_halted'))).toBe(0);
    expect(m.get(g('sluice_group_holders_over_max'))).toBe(1);
    const since = m.get(g('sluice_group_paused_since_timestamp_seconds'))!;
    expect(since).toBeGreaterThanOrEqual(Math.floor(before) - 1);
    expect(since).toBeLessThanOrEqual(Date.now() / 1000);

    // An invalid max: no max series, the reason says so.
    await etcd.etcdctl(['put', cli.keys.max, 'two']);
    await expect.poll(async () => (await scrape(url)).has(g('sluice_group_max'))).toBe(false);
    m = await scrape(url);
    expect(m.get(g('sluice_group_blocked', ',reason="invalid-value"'))).toBe(1);
    expect(m.get(g('sluice_group_key_errors'))).toBe(1);
  });

  it('refuses a listen address beyond loopback without --allow-remote (exit 2)', async () => {
    const res = await cli.run(['exporter', '--listen', '0.0.0.0:9467']);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('--listen 0.0.0.0:9467 is not a loopback address');
    expect(res.stderr).toContain('--allow-remote');
  });
});
