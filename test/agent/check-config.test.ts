/**
 * `sluiced --check-config` as a process: every setting with where it came from, secrets
 * redacted, exit 0 or 2; and locksmith's window from an untouched update.conf read in the node's
 * local zone, found from TZ or from /etc/localtime (pointed elsewhere with --localtime-file):
 * the sixteen locksmith and DST cases, evaluated on the window sluiced resolved.
 */
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseWindowSpec, windowState } from '@sluice/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CASES_ZONE, LOCKSMITH_WINDOW_CASES } from '../locksmith-windows.js';
import { killAll, runToEnd, SLUICED } from '../process.js';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluiced-check-'));
  await writeFile(join(dir, 'machine-id'), 'check-node\n');
  await writeFile(join(dir, 'none.yaml'), '');
  await symlink(`/usr/share/zoneinfo/${CASES_ZONE}`, join(dir, 'localtime'));
});
afterAll(async () => {
  await killAll();
  await rm(dir, { recursive: true, force: true });
});

interface Report {
  ok: boolean;
  settings?: { key: string; value: string; from: string }[];
  warnings?: string[];
  error?: { kind: string; message: string; where?: string };
}

async function check(args: string[], env: NodeJS.ProcessEnv = {}) {
  const res = await runToEnd(
    SLUICED,
    [
      '--check-config',
      '-o',
      'json',
      '--machine-id-file',
      join(dir, 'machine-id'),
      '--localtime-file',
      join(dir, 'no-localtime'),
      ...args,
    ],
    env,
  );
  return { code: res.code, report: JSON.parse(res.stdout) as Report, stderr: res.stderr };
}

function setting(report: Report, key: string) {
  return report.settings?.find((s) => s.key === key);
}

/** Runs `fn` over `items`, at most `limit` at a time (the machine has two cores). */
async function pool<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>) {
  const queue = [...items];
  await Promise.all(
    Array.from({ length: limit }, async () => {
      for (let item = queue.shift(); item !== undefined; item = queue.shift()) await fn(item);
    }),
  );
}

describe('sluiced --check-config', () => {
  it('prints each setting with its origin, secrets redacted, and exits 0', async () => {
    const conf = join(dir, 'origins.conf');
    await writeFile(
      conf,
      'GROUP=stable\nREBOOT_STRATEGY=reboot\nLOCKSMITHD_ETCD_PASSWORD=hunter2-pw\n',
    );
    const yaml = join(dir, 'origins.yaml');
    await writeFile(yaml, 'log:\n  level: warn\netcd:\n  prefix: /fleet/\n');
    const { code, report } = await check(
      ['--config', yaml, '--update-conf', conf, '--group', 'web'],
      { SLUICE_HOLD_TTL: '2h' },
    );
    expect(code).toBe(0);
    expect(report.ok).toBe(true);
    expect(setting(report, 'strategy')).toEqual({
      key: 'strategy',
      value: 'reboot',
      from: `${conf}:2 (REBOOT_STRATEGY)`,
    });
    expect(setting(report, 'log.level')).toEqual({
      key: 'log.level',
      value: 'warn',
      from: `config file ${yaml}:2`,
    });
    expect(setting(report, 'etcd.group')?.from).toBe('flag --group');
    expect(setting(report, 'etcd.holdTTL')).toMatchObject({
      value: '2h',
      from: 'environment SLUICE_HOLD_TTL',
    });
    expect(setting(report, 'etcd.sessionTTL')).toMatchObject({ value: '30s', from: 'default' });
    expect(setting(report, 'node.id')).toMatchObject({
      value: 'check-node',
      from: `file ${join(dir, 'machine-id')}`,
    });
    expect(setting(report, 'etcd.password')).toMatchObject({ value: '(redacted)' });
    expect(JSON.stringify(report)).not.toContain('hunter2-pw');
  });

  it('lists the update sources, reboot guards and notifications too, webhook tokens redacted', async () => {
    const yaml = join(dir, 'more.yaml');
    await writeFile(
      yaml,
      [
        'sources:',
        '  rpmOstree: true',
        '  bootc: { interval: 2m }',
        '  sysupdate: { component: os, timeout: 1m }',
        'reboot:',
        '  softReboot: never',
        '  inhibitors: ignore',
        '  inhibitorWait: 3m',
        '  loopLimit: 5',
        'notify:',
        '  webhooks: [https://hooks.example/T0/B0/s3cr3t-token]',
        '  events: [group-halted, node-lost]',
        '  attempts: 2',
        '',
      ].join('\n'),
    );
    const { code, report } = await check(['--config', yaml, '--update-conf', join(dir, 'none')]);
    expect(code).toBe(0);
    const at = (line: number) => `config file ${yaml}:${line}`;
    const expected: [string, string, string][] = [
      ['sources.rpmOstree', 'true', at(2)],
      ['sources.bootc', 'every 2m', at(3)],
      ['sources.sysupdate', 'every 5m, timeout 1m, component os', at(4)],
      ['sources.needrestart', 'off', 'default'],
      ['sources.dnf', 'off', 'default'],
      ['reboot.softReboot', 'never', at(6)],
      ['reboot.inhibitors', 'ignore', at(7)],
      ['reboot.inhibitorWait', '3m', at(8)],
      ['reboot.loopLimit', '5', at(9)],
      ['notify.webhooks', 'https://hooks.example/(redacted)', at(11)],
      ['notify.events', 'group-halted, node-lost', at(12)],
      ['notify.attempts', '2', at(13)],
      ['notify.timeout', '10s', 'default'],
      ['notify.template', 'off', 'default'],
    ];
    for (const [key, value, from] of expected) {
      expect(setting(report, key), key).toEqual({ key, value, from });
    }
    expect(JSON.stringify(report)).not.toContain('s3cr3t-token');
  });

  it('prints a table by default, and exits 2 with the error (JSON too) on a bad config', async () => {
    const table = await runToEnd(SLUICED, [
      '--check-config',
      '--config',
      join(dir, 'none.yaml'),
      '--machine-id-file',
      join(dir, 'machine-id'),
    ]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^sluiced: the configuration is valid/);
    expect(table.stdout).toMatch(/^strategy +etcd-lock +default$/m);

    const bad = join(dir, 'bad.yaml');
    await writeFile(bad, 'strategy: sometimes\n');
    const { code, report } = await check(['--config', bad]);
    expect(code).toBe(2);
    expect(report).toEqual({
      ok: false,
      error: {
        kind: 'invalid-config',
        message: `config file ${bad}, line 1: strategy: expected etcd-lock, reboot, off or best-effort, got "sometimes"`,
        where: bad,
      },
    });
  });

  it('keeps a locksmith window from update.conf, unquoted as systemd allows, with a warning for a skipped line', async () => {
    const conf = join(dir, 'unquoted.conf');
    await writeFile(
      conf,
      'REBOOT_WINDOW_START=Thu 04:00\nREBOOT_WINDOW_LENGTH=1h30m\nexport FOO=1\n',
    );
    const { code, report } = await check(
      ['--config', join(dir, 'none.yaml'), '--update-conf', conf],
      {
        TZ: CASES_ZONE,
      },
    );
    expect(code).toBe(0);
    expect(setting(report, 'windows')).toEqual({
      key: 'windows',
      value: `Thu 04:00+1h30m ${CASES_ZONE}`,
      from: `${conf}:1 (REBOOT_WINDOW_START)`,
    });
    expect(setting(report, 'windowZone (locksmith syntax)')).toMatchObject({
      value: CASES_ZONE,
      from: `local zone: TZ=${CASES_ZONE}`,
    });
    expect(report.warnings).toEqual([
      `${conf}:3: ignoring an assignment to an invalid variable name (systemd ignores it too; "export" is shell syntax, not an EnvironmentFile's)`,
    ]);
  });
});

describe("locksmith's window cases through sluiced's resolved config", () => {
  for (const how of ['TZ', '/etc/localtime'] as const) {
    it(`reads all sixteen in the local zone from ${how}`, async () => {
      const wrong: string[] = [];
      await pool(LOCKSMITH_WINDOW_CASES, 4, async (c) => {
        const conf = join(
          dir,
          `case-${how === 'TZ' ? 'tz' : 'lt'}-${LOCKSMITH_WINDOW_CASES.indexOf(c)}.conf`,
        );
        // Unquoted, as a locksmith user may well have written it.
        await writeFile(
          conf,
          `GROUP=stable\nREBOOT_STRATEGY=etcd-lock\nREBOOT_WINDOW_START=${c.start}\nREBOOT_WINDOW_LENGTH=${c.length}\n`,
        );
        const args = ['--config', join(dir, 'none.yaml'), '--update-conf', conf];
        const { code, report, stderr } = await (how === 'TZ'
          ? check(args, { TZ: CASES_ZONE })
          : check([...args, '--localtime-file', join(dir, 'localtime')]));
        expect(code, stderr).toBe(0);
        const spec = parseWindowSpec(setting(report, 'windows')!.value, 'check-config');
        if (!spec.ok) throw spec.error;
        const state = windowState(spec.value, new Date(c.at));
        const next = (state.open ? state.nextEnd : state.nextStart)?.toISOString();
        if (state.open !== c.open || next !== c.next)
          wrong.push(`${c.name}: ${state.open} ${next}`);
      });
      expect(wrong).toEqual([]);
    });
  }
});
