/**
 * deploy/monitoring/ against the real tools: `promtool check rules` and `promtool test rules` on
 * the alert rules, and one real Prometheus (Debian's `prometheus`) that scrapes a running
 * `sluiced` and a running `sluicectl exporter` with the example scrape config and the real rules.
 * Every metric the dashboard and the rules name must be in those scrapes, every dashboard query
 * must evaluate, and a node lost in etcd must fire the lost-node alert and start the halt alert.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type EtcdCluster, freePort, startEtcd } from '@sluice/testkit';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { findTool, needTool, ROOT, run, skipWithout } from '../deploy/helpers.js';
import { TestEnv } from '../helpers.js';
import { killAll, SLUICECTL, SLUICED, start } from '../process.js';

const MONITORING = join(ROOT, 'deploy/monitoring');
const RULES = join(MONITORING, 'sluice-alerts.yml');
const PROMTOOL = findTool(['/usr/bin/promtool']);
const PROMETHEUS = findTool(['/usr/bin/prometheus']);

let etcd: EtcdCluster;
let dir: string;
let env: TestEnv;
const children: ChildProcess[] = [];

beforeAll(async () => {
  etcd = await startEtcd();
  dir = await mkdtemp(join(tmpdir(), 'sluice-monitoring-'));
  env = new TestEnv(etcd.endpoints);
});
afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    const gone = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await gone;
  }
  await killAll();
});
afterAll(async () => {
  env?.cleanup();
  await etcd?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Every `sluice_*` metric (and `up`) a PromQL expression names. */
function metricNames(expr: string): string[] {
  return [...expr.matchAll(/\b(sluice_[a-z0-9_]+|up)\b/g)].map((m) => m[1]!);
}

/** The PromQL of the dashboard: every panel target and every templating query. */
async function dashboardQueries(): Promise<string[]> {
  const dash = JSON.parse(await readFile(join(MONITORING, 'grafana-dashboard.json'), 'utf8'));
  const out: string[] = [];
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) node.forEach(walk);
    else if (node && typeof node === 'object') {
      for (const [key, value] of Object.entries(node)) {
        if (key === 'expr' && typeof value === 'string') out.push(value);
        else walk(value);
      }
    }
  };
  walk(dash.panels);
  for (const v of dash.templating.list) {
    const q = typeof v.query === 'string' ? v.query : v.query?.query;
    if (v.type === 'query' && q) out.push(q);
  }
  return out;
}

/** The alert rules' expressions, by alert name. */
async function ruleExpressions(): Promise<Map<string, string>> {
  const doc = parseYaml(await readFile(RULES, 'utf8')) as {
    groups: { rules: { alert: string; expr: string }[] }[];
  };
  return new Map(doc.groups.flatMap((g) => g.rules.map((r) => [r.alert, r.expr] as const)));
}

/** The metric names a /metrics page declares (its `# TYPE` lines). */
async function scrapeNames(url: string): Promise<Set<string>> {
  const text = await (await fetch(url)).text();
  return new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!));
}

/** Resolves once `url` answers 200. */
async function until200(url: string, proc: { stderr(): string } | null, ms = 15_000) {
  await expect
    .poll(async () => (await fetch(url).catch(() => null))?.status ?? 0, {
      timeout: ms,
      message: `${url} did not answer${proc ? `:\n${proc.stderr()}` : ''}`,
    })
    .toBe(200);
}

describe.skipIf(skipWithout(PROMTOOL))('the alert rules', () => {
  it('pass promtool check rules and their unit tests', async () => {
    const promtool = needTool(PROMTOOL, 'promtool', 'prometheus');
    const check = await run(promtool, ['check', 'rules', RULES]);
    expect(check.code, check.stdout + check.stderr).toBe(0);
    const rules = await ruleExpressions();
    expect(check.stdout).toContain(`SUCCESS: ${rules.size} rules found`);
    // The alerts operators asked for, by name.
    for (const alert of [
      'SluiceGroupHalted',
      'SluiceGroupPausedTooLong',
      'SluiceNodeLost',
      'SluicePostChecksFailing',
      'SluiceCanaryFailed',
      'SluiceHoldersOverMax',
      'SluiceNodesQueuedTooLong',
      'SluiceAgentDown',
    ]) {
      expect(rules.has(alert), alert).toBe(true);
    }
    const unit = await run(promtool, ['test', 'rules', 'sluice-alerts.test.yml'], {
      cwd: MONITORING,
    });
    expect(unit.code, unit.stdout + unit.stderr).toBe(0);
    expect(unit.stdout).toContain('SUCCESS');
    // Every alert has a unit test.
    const tests = await readFile(join(MONITORING, 'sluice-alerts.test.yml'), 'utf8');
    for (const alert of rules.keys()) expect(tests, alert).toContain(`alertname: ${alert}`);
  });
});

describe.skipIf(skipWithout(PROMETHEUS))('a real scrape', () => {
  it("of sluiced and sluicectl exporter has every metric the dashboard and rules name; Prometheus fires a lost node's alerts", async () => {
    const prometheus = needTool(PROMETHEUS, 'prometheus', 'prometheus');
    const agentPort = await freePort();
    const exporterPort = await freePort();
    const promPort = await freePort();
    const keys = env.keys;

    // A real agent: no D-Bus (reboots by command, no update_engine), metrics on loopback.
    await writeFile(join(dir, 'machine-id'), 'mon-node\n');
    await writeFile(join(dir, 'boot_id'), 'boot-1\n');
    await writeFile(
      join(dir, 'sluiced.yaml'),
      [
        'etcd:',
        `  endpoints: [${etcd.endpoints.join(', ')}]`,
        `  prefix: ${env.prefix}`,
        `  group: ${env.group}`,
        'sources: { updateEngine: false, sentinel: off }',
        'reboot: { method: command, command: "true" }',
        `metrics: { listen: "127.0.0.1:${agentPort}" }`,
      ].join('\n'),
    );
    const agent = start(SLUICED, [
      '--config',
      join(dir, 'sluiced.yaml'),
      '--machine-id-file',
      join(dir, 'machine-id'),
      '--boot-id-file',
      join(dir, 'boot_id'),
      '--update-conf',
      '',
    ]);
    const exporter = start(
      SLUICECTL,
      [
        '--prefix',
        env.prefix,
        '--group',
        env.group,
        'exporter',
        '--listen',
        `127.0.0.1:${exporterPort}`,
      ],
      { SLUICE_ENDPOINTS: etcd.endpoints.join(',') },
    );
    const agentMetrics = `http://127.0.0.1:${agentPort}/metrics`;
    const exporterMetrics = `http://127.0.0.1:${exporterPort}/metrics`;
    await until200(agentMetrics, { stderr: () => agent.stderr() + agent.stdout() });
    await until200(exporterMetrics, exporter);

    // Every metric name the dashboard and the rules use is exported by one of the two.
    const exported = new Set([
      ...(await scrapeNames(agentMetrics)),
      ...(await scrapeNames(exporterMetrics)),
      'up',
    ]);
    const queries = await dashboardQueries();
    const rules = await ruleExpressions();
    expect(queries.length).toBeGreaterThan(20);
    const used = new Set([...queries, ...rules.values()].flatMap(metricNames));
    expect([...used].filter((name) => !exported.has(name))).toEqual([]);
    // The group-level and agent-level families really come from each side.
    expect(await scrapeNames(exporterMetrics)).toContain('sluice_group_halted');
    expect(await scrapeNames(agentMetrics)).toContain('sluice_agent_post_checks_failing');

    // Prometheus with the example scrape config, pointed at the two, and the real rules.
    const example = parseYaml(await readFile(join(MONITORING, 'prometheus.yml'), 'utf8')) as {
      scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[];
    };
    const targets: Record<string, string> = {
      sluiced: `127.0.0.1:${agentPort}`,
      'sluice-exporter': `127.0.0.1:${exporterPort}`,
    };
    expect(example.scrape_configs.map((c) => c.job_name).sort()).toEqual(
      Object.keys(targets).sort(),
    );
    const config = {
      global: { scrape_interval: '1s', evaluation_interval: '1s' },
      rule_files: [RULES],
      scrape_configs: example.scrape_configs.map((c) => ({
        job_name: c.job_name,
        static_configs: [{ targets: [targets[c.job_name]] }],
      })),
    };
    await writeFile(join(dir, 'prometheus.yml'), JSON.stringify(config));
    const prom = spawn(
      prometheus,
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'tsdb')}`,
        `--web.listen-address=127.0.0.1:${promPort}`,
        '--log.level=warn',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    children.push(prom);
    let promLog = '';
    prom.stderr?.setEncoding('utf8').on('data', (d: string) => {
      promLog += d;
    });
    const api = `http://127.0.0.1:${promPort}/api/v1`;
    await until200(`http://127.0.0.1:${promPort}/-/ready`, { stderr: () => promLog }, 20_000);
    const query = async (q: string) => {
      const res = await fetch(`${api}/query?query=${encodeURIComponent(q)}`);
      return (await res.json()) as {
        status: string;
        error?: string;
        data: { result: { metric: Record<string, string>; value: [number, string] }[] };
      };
    };
    // Both targets up.
    await expect
      .poll(async () => (await query('sum(up)')).data.result[0]?.value[1], { timeout: 15_000 })
      .toBe('2');

    // A lost holder: a marker whose queue key is gone, as when a node never comes back.
    const client = env.client();
    await client
      .put(keys.holding('ghost'))
      .value(
        JSON.stringify({
          v: 1,
          node: 'ghost',
          hostname: 'ghost',
          createRevision: 1,
          grantedAt: new Date().toISOString(),
        }),
      )
      .exec();
    type Alert = { labels: Record<string, string>; state: string };
    const alerts = async (): Promise<Alert[]> =>
      ((await (await fetch(`${api}/alerts`)).json()) as { data: { alerts: Alert[] } }).data.alerts;
    // Lost fires at once; the halt the exporter wrote is pending for its first minute.
    await expect
      .poll(
        async () =>
          (await alerts())
            .filter((a) => a.labels.group === env.group)
            .map((a) => `${a.labels.alertname} ${a.state}`)
            .sort(),
        { timeout: 20_000, interval: 250 },
      )
      .toEqual(['SluiceGroupHalted pending', 'SluiceNodeLost firing']);
    // The exporter halted the group itself, as sluicectl status would have.
    expect(await etcd.etcdctl(['get', keys.paused, '--print-value-only'])).toContain(
      'node ghost lost during reboot',
    );

    // Every dashboard query evaluates, with the group variable at "all".
    for (const q of queries) {
      // Grafana's label_values(SELECTOR, LABEL): the values of LABEL in the series SELECTOR finds.
      const values = /^label_values\((.+),\s*(\w+)\)$/.exec(q);
      const result = await query((values ? values[1]! : q).replaceAll('$group', '.*'));
      expect(result.status, `${q}: ${result.error}`).toBe('success');
      if (values) {
        expect(
          result.data.result.map((r) => r.metric[values[2]!]),
          q,
        ).toContain(env.group);
      }
    }
    const lost = await query('sum(sluice_group_lost_holders{group=~".*"})');
    expect(lost.data.result[0]?.value[1]).toBe('1');
    const reason = await query('max by (group, reason) (sluice_group_blocked) == 1');
    expect(reason.data.result.map((r) => r.metric.reason)).toEqual(['halted']);
  }, 90_000);
});
