/**
 * `sluicectl report --html` as a process against a real etcd, and the page it writes loaded in
 * headless Chromium (one launch): the history made by agents, manual locks and a lost node, plus
 * what waits now and the pause in force, drawn with no console error, the script run, and the
 * expected lanes, states, markers and shades in the DOM, with wall-clock times in the zone asked.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type EtcdCluster, startEtcd } from '@sluice/testkit';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { needTool, skipWithout } from '../deploy/helpers.js';
import { TestEnv } from '../helpers.js';
import { CHROMIUM, loadPage } from './chromium.js';
import { CliRunner } from './cli.js';

let etcd: EtcdCluster;
let cli: CliRunner;
let env: TestEnv;
let dir: string;

beforeAll(async () => {
  etcd = await startEtcd();
});
afterAll(async () => {
  await etcd?.stop();
});
beforeEach(async () => {
  cli = new CliRunner(etcd.endpoints);
  env = new TestEnv(etcd.endpoints);
  dir = await mkdtemp(join(tmpdir(), 'sluice-report-'));
});
afterEach(async () => {
  await cli?.cleanup();
  env?.cleanup();
  await rm(dir, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Elements of a dumped DOM matching a start-tag pattern. */
const count = (dom: string, pattern: RegExp) => dom.match(new RegExp(pattern, 'g'))?.length ?? 0;

describe.skipIf(skipWithout(CHROMIUM))('sluicectl report', () => {
  it("draws the group's history and present in a page Chromium loads cleanly", async () => {
    const chromium = needTool(CHROMIUM, 'chromium', 'chromium');
    expect((await cli.run(['set-max', '2'])).code).toBe(0);
    // Two reboots as agents make them, through the semaphore.
    for (const node of ['n1', 'n2']) {
      const sem = env.semaphore(node, { prefix: cli.prefix, group: cli.group, holdTTL: 60 });
      let grant = await sem.acquire({ reason: 'update-engine: 2.0.0', toVersion: '2.0.0' });
      for (const state of ['draining', 'rebooting', 'recovering', 'post-checking'] as const) {
        await sleep(150);
        grant = await sem.setState(grant, state);
      }
      await sleep(150);
      expect(await sem.release(grant)).toBe(true);
    }
    // A manual lock and its unlock; a lost node cleared by force.
    expect((await cli.run(['lock', '--node', 'm1', '--reason', 'BIOS update'])).code).toBe(0);
    await sleep(200);
    expect((await cli.run(['unlock', '--node', 'm1'], { env: { SLUICE_NODE: 'm1' } })).code).toBe(
      0,
    );
    const marker = {
      v: 1,
      node: 'ghost',
      hostname: 'ghost',
      createRevision: 1,
      grantedAt: new Date().toISOString(),
    };
    await env.client().put(cli.keys.holding('ghost')).value(JSON.stringify(marker)).exec();
    expect((await cli.run(['unlock', 'ghost', '--force'])).code).toBe(0);
    // Now: one waits, and the group is paused.
    const lease = (await etcd.etcdctl(['lease', 'grant', '60'])).match(/lease ([0-9a-f]+)/)![1]!;
    const at = new Date().toISOString();
    const waiter = {
      v: 1,
      node: 'n3',
      hostname: 'n3',
      state: 'waiting',
      since: at,
      enqueuedAt: at,
    };
    await etcd.etcdctl(['put', cli.keys.queue('n3'), JSON.stringify(waiter), `--lease=${lease}`]);
    expect((await cli.run(['pause', '--reason', 'look at n2 first'])).code).toBe(0);

    const file = join(dir, 'fleet.html');
    const res = await cli.run([
      'report',
      '--html',
      file,
      '--since',
      '1h',
      '--zone',
      'Europe/Berlin',
    ]);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toMatch(
      /^wrote the timeline of group default \(4 slot\(s\) of 5 node\(s\) since .*\) to file:\/\/\//,
    );
    expect(fileURLToPath(res.stdout.match(/(file:\/\/\S+)/)![1]!)).toBe(file);
    const other = join(dir, 'other.html');
    const json = (await cli.json(['report', '--html', other, '--since', '1h'])) as Record<
      string,
      unknown
    >;
    // Markers: set-max, the lock, its unlock, the forced clear of the lost node, the pause.
    expect(json).toMatchObject({
      group: 'default',
      file: other,
      nodes: 5,
      slots: 4,
      actions: 3,
      markers: 5,
    });

    const page = await loadPage(chromium, file);
    expect(page.console).toEqual([]);
    // The page's script ran to its end.
    expect(page.dom).toMatch(/<html lang="en" data-ready="true">/);
    for (const node of ['n1', 'n2', 'm1', 'ghost', 'n3']) {
      expect(page.dom).toContain(`<g class="lane" data-node="${node}">`);
    }
    expect(count(page.dom, /class="seg" data-state="queued"/)).toBeGreaterThanOrEqual(3);
    expect(count(page.dom, /class="seg" data-state="holding"/)).toBeGreaterThanOrEqual(3);
    expect(count(page.dom, /class="seg" data-state="lost"/)).toBe(1);
    // The agents' reboots in their phases, from the times their records kept.
    for (const state of ['down', 'booting', 'post-checks']) {
      expect(count(page.dom, new RegExp(`class="seg" data-state="${state}"`)), state).toBe(2);
    }
    // Operator actions, numbered, on the chart and in the table, with who did them.
    expect(count(page.dom, /<g class="marker" data-kind="unlock" data-marker="\d+">/)).toBe(2);
    expect(
      count(page.dom, /<g class="marker" data-kind="(max|lock|pause)" data-marker="\d+">/),
    ).toBe(3);
    expect(count(page.dom, /<tr data-marker="\d+">/)).toBe(5);
    expect(page.dom).toContain('lost ghost cleared');
    expect(page.dom).toContain('manual lock of m1 released');
    expect(page.dom).toContain('max unset (1) → 2');
    expect(page.dom).toContain('m1 locked by hand');
    // Max over time: 1 before set-max, 2 after.
    expect(page.dom).toContain('peak nodes down at once: 1 (max 1 → 2)');
    // The pause, shaded with who paused and why.
    expect(page.dom).toMatch(/<rect [^>]*class="shade" data-kind="paused"/);
    expect(page.dom).toContain('paused: look at n2 first (by tester@');
    expect(page.dom).toContain('<path d="M');
    expect(page.dom).toContain('class="down-line"');
    expect(page.dom).toMatch(/\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} CET/);
  });

  it('refuses a bad --since or --zone (exit 2) and writes nothing', async () => {
    const file = join(dir, 'x.html');
    const since = await cli.run(['report', '--html', file, '--since', 'soon']);
    expect(since.code).toBe(2);
    expect(since.stderr).toContain('--since "soon"');
    const zone = await cli.run(['report', '--html', file, '--zone', 'Mars/Olympus']);
    expect(zone.code).toBe(2);
    expect(zone.stderr).toContain('--zone "Mars/Olympus" is not an IANA time zone');
  });
});
