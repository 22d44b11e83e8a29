/**
 * What sluiced's log says, as a process against a real etcd: ISO-8601 times and no key twice on a
 * line; once queued and blocked, why, once per blocker (an invalid key named, paused by whom, the
 * queue); an etcd that denies access reported as a denial naming the user (or its absence) and
 * what to grant; and the one-shot `sluicectl reboot-if-needed` naming itself, not sluiced.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { type EtcdCluster, startEtcd } from '@sluice/testkit';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CliRunner } from '../cli/cli.js';
import { killAll, type Proc, runToEnd, SLUICECTL, SLUICED, start } from '../process.js';

let etcd: EtcdCluster;
let dir: string;
let cli: CliRunner;

beforeAll(async () => {
  etcd = await startEtcd();
});
afterAll(async () => {
  await etcd?.stop();
});
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluiced-logs-'));
  await writeFile(join(dir, 'machine-id'), 'log-node\n');
  await writeFile(join(dir, 'boot_id'), 'boot-1\n');
  // An update is staged: the sentinel file exists.
  await writeFile(join(dir, 'reboot-required'), '');
  cli = new CliRunner(etcd.endpoints);
});
afterEach(async () => {
  await killAll();
  await cli?.cleanup();
  await rm(dir, { recursive: true, force: true });
});

/** The top-level keys of one JSON object text, in order, duplicates kept. */
function topLevelKeys(text: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      if (depth === 1 && expectKey) keys.push(JSON.parse(text.slice(i, j + 1)));
      expectKey = false;
      i = j;
    } else if (c === '{' || c === '[') {
      depth++;
      expectKey = c === '{' && depth === 1;
    } else if (c === '}' || c === ']') depth--;
    else if (c === ',' && depth === 1) expectKey = true;
  }
  return keys;
}

/** The log lines so far, parsed, each checked for duplicate keys. */
function lines(proc: Proc): Record<string, unknown>[] {
  return proc
    .stdout()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => {
      const keys = topLevelKeys(l);
      expect(keys.length, `a key twice in ${l}`).toBe(new Set(keys).size);
      return JSON.parse(l) as Record<string, unknown>;
    });
}

function sluiced(): Proc {
  return start(
    SLUICED,
    [
      '--config',
      join(dir, 'sluiced.yaml'),
      '--machine-id-file',
      join(dir, 'machine-id'),
      '--boot-id-file',
      join(dir, 'boot_id'),
      '--update-conf',
      '',
    ],
    {},
  );
}

async function config(extra: string[] = [], endpoint = etcd.endpoint): Promise<void> {
  await writeFile(
    join(dir, 'sluiced.yaml'),
    [
      `etcd: { endpoints: [${endpoint}], prefix: ${cli.prefix}, sessionTTL: 5s }`,
      `sources: { updateEngine: false, sentinel: ${join(dir, 'reboot-required')} }`,
      'reboot: { method: command, command: "true" }',
      'metrics: { listen: "off" }',
      ...extra,
    ].join('\n'),
  );
}

describe('sluiced logs', () => {
  it('say once why a queued node is not admitted, and again only when that changes', async () => {
    await etcd.etcdctl(['put', cli.keys.max, 'abc']);
    await config();
    const agent = sluiced();
    const warned = (pattern: RegExp) => lines(agent).filter((l) => pattern.test(String(l.msg)));
    await expect
      .poll(() => warned(/^not admitted: /).length, { timeout: 20_000, message: agent.stderr() })
      .toBe(1);
    const invalid = warned(/^not admitted: /)[0]!;
    expect(invalid).toMatchObject({ level: 40, reason: 'invalid-value', key: cli.keys.max });
    expect(String(invalid.msg)).toContain(`${cli.keys.max} is "abc"`);
    // ISO-8601 times, the node once.
    expect(String(invalid.time)).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(invalid.node).toBe('log-node');
    const first = lines(agent).find((l) => l.msg === 'sluiced starting');
    expect(first).toMatchObject({ node: 'log-node', bootId: 'boot-1' });

    // A pause by an operator, while max is still invalid: the invalid key comes first, as in
    // admission; once max is fixed, the pause is the reason, with who paused.
    expect((await cli.run(['pause', '--reason', 'checking the load balancer'])).code).toBe(0);
    await etcd.etcdctl(['put', cli.keys.max, '0']);
    await expect.poll(() => warned(/^not admitted: /).length, { timeout: 10_000 }).toBe(2);
    const paused = warned(/^not admitted: /)[1]!;
    expect(String(paused.msg)).toMatch(
      new RegExp(
        `^not admitted: group paused by tester@${hostname()} since \\S+: checking the load balancer$`,
      ),
    );
    expect(paused).toMatchObject({ level: 40, reason: 'paused', by: `tester@${hostname()}` });

    // Resumed with max 0: an ordinary wait, said once at info.
    expect((await cli.run(['resume'])).code).toBe(0);
    await expect
      .poll(
        () =>
          lines(agent).filter((l) => l.msg === 'waiting: max is 0, so nobody is admitted').length,
      )
      .toBe(1);
    // More events (a second waiter) do not repeat the same blocker.
    await etcd.etcdctl(['put', cli.keys.lossBudget, '1']);
    await new Promise((r) => setTimeout(r, 1000));
    expect(warned(/^not admitted: /)).toHaveLength(2);
    expect(
      lines(agent).filter((l) => l.msg === 'waiting: max is 0, so nobody is admitted'),
    ).toHaveLength(1);
  });

  it('say when holders above max drain and when the group is halted, each once', async () => {
    await etcd.etcdctl(['put', cli.keys.max, '2']);
    for (const node of ['m1', 'm2']) {
      expect((await cli.run(['lock', '--node', node, '--reason', 'disk swap'])).code).toBe(0);
    }
    await etcd.etcdctl(['put', cli.keys.max, '1']);
    await config();
    const agent = sluiced();
    const warned = () => lines(agent).filter((l) => l.level === 40);
    const said = (pattern: RegExp) => lines(agent).filter((l) => pattern.test(String(l.msg)));
    await expect
      .poll(() => said(/^not admitted: 2 holders for max 1/).length, {
        timeout: 20_000,
        message: agent.stdout(),
      })
      .toBe(1);
    expect(said(/^not admitted: 2 holders for max 1/)[0]).toMatchObject({
      level: 40,
      holders: 2,
      max: 1,
    });
    expect(String(said(/^not admitted: 2 holders/)[0]!.msg)).toContain(
      'admitted before max was lowered; nobody is admitted until the one above max drains',
    );

    // A holder lost: the group halts, and the agent says so once, with the lost node (not again
    // when the halt it saw is written as the group's pause).
    const marker = { v: 1, node: 'ghost', createRevision: 1, grantedAt: new Date().toISOString() };
    await etcd.etcdctl(['put', cli.keys.holding('ghost'), JSON.stringify(marker)]);
    await expect
      .poll(() => said(/^not admitted: group halted/).length, {
        timeout: 10_000,
        message: agent.stdout(),
      })
      .toBe(1);
    expect(said(/^not admitted: group halted/)[0]).toMatchObject({
      level: 40,
      reason: 'halted',
      lost: ['ghost'],
    });
    expect(String(said(/^not admitted: group halted/)[0]!.msg)).toContain('(lost now: ghost)');
    await new Promise((r) => setTimeout(r, 500));
    expect(said(/^not admitted: group halted/)).toHaveLength(1);
    expect((await cli.run(['unlock', 'ghost', '--force'])).code).toBe(0);
    expect((await cli.run(['resume'])).code).toBe(0);

    // A blocker is said again only once another came in between (over max, halted, over max
    // again once resumed), and nothing a library says about itself.
    await new Promise((r) => setTimeout(r, 1000));
    const messages = warned().map((l) => String(l.msg));
    expect(
      messages.map((m) => m.slice(0, 30)),
      messages.join('\n'),
    ).toEqual([
      'not admitted: 2 holders for ma',
      'not admitted: group halted: 1 ',
      'not admitted: 2 holders for ma',
    ]);
    expect(agent.stdout()).not.toMatch(/circuit breaker|Resolution note/);

    // The group's window closes while the node still waits behind the holders above max: it
    // gives up its place and waits for the window (the window is checked before the queue). Two
    // watches see the change (the group's and the window's); should both miss it, the window
    // mirror's self-check (every 15 s ± 30 %) catches it, hence the long timeout.
    const opens = new Date(Date.now() + 2 * 3600_000);
    const hhmm = `${String(opens.getUTCHours()).padStart(2, '0')}:${String(opens.getUTCMinutes()).padStart(2, '0')}`;
    expect((await cli.run(['windows', 'set', `Mon-Sun ${hhmm}+1m UTC`])).code).toBe(0);
    await expect
      .poll(() => lines(agent).filter((l) => l.edge === 'window-closed').length, {
        timeout: 30_000,
        message: agent.stdout(),
      })
      .toBe(1);
    expect(lines(agent).find((l) => l.edge === 'window-closed')).toMatchObject({
      from: 'queued',
      to: 'waiting-window',
    });
  });

  it('report an etcd denial as one, naming the user or its absence', async () => {
    const auth = await startEtcd();
    try {
      await auth.etcdctl(['user', 'add', 'root', '--new-user-password=r00t']);
      await auth.etcdctl(['user', 'add', 'nobody', '--new-user-password=nobody-pw']);
      await auth.etcdctl(['auth', 'enable']);
      await config([], auth.endpoint);
      const anonymous = sluiced();
      await expect
        .poll(() => lines(anonymous).find((l) => /etcd denied/.test(String(l.err)))?.err, {
          timeout: 20_000,
          message: anonymous.stderr(),
        })
        .toMatch(
          /etcd has authentication enabled and no user is configured .*set the user and its password \(sluiced: etcd\.username and etcd\.passwordFile/,
        );
      // A denial is not mistaken for a closed window or an open circuit breaker.
      expect(anonymous.stdout()).not.toMatch(/window-closed|circuit breaker|Resolution note/);
      anonymous.child.kill('SIGKILL');

      await writeFile(join(dir, 'pw'), 'nobody-pw\n');
      await writeFile(
        join(dir, 'sluiced.yaml'),
        [
          `etcd: { endpoints: [${auth.endpoint}], prefix: ${cli.prefix}, username: nobody, passwordFile: ${join(dir, 'pw')} }`,
          `sources: { updateEngine: false, sentinel: ${join(dir, 'reboot-required')} }`,
          'reboot: { method: command, command: "true" }',
          'metrics: { listen: "off" }',
        ].join('\n'),
      );
      const unprivileged = sluiced();
      await expect
        .poll(() => lines(unprivileged).find((l) => /etcd denied/.test(String(l.err)))?.err, {
          timeout: 20_000,
          message: unprivileged.stderr(),
        })
        .toMatch(
          /user "nobody" lacks the permission \(.*permission denied\); grant its role read and write on the sluice prefix/,
        );
      const all = unprivileged.stdout();
      expect(all).not.toContain('nobody-pw');
      expect(all).not.toContain('Resolution note');
    } finally {
      await auth.stop();
    }
  });
});

describe('sluicectl reboot-if-needed logs', () => {
  it('name the one-shot, not sluiced', async () => {
    await rm(join(dir, 'reboot-required'));
    await config(['log: { level: info }']);
    const res = await runToEnd(SLUICECTL, [
      'reboot-if-needed',
      '--config',
      join(dir, 'sluiced.yaml'),
      '--update-conf',
      '',
      '--machine-id-file',
      join(dir, 'machine-id'),
      '--boot-id-file',
      join(dir, 'boot_id'),
    ]);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toMatch(/^nothing-to-do: /m);
    expect(res.stderr).toContain('"msg":"sluicectl reboot-if-needed starting"');
    expect(res.stderr).toContain('"msg":"sluicectl reboot-if-needed stopped"');
    expect(res.stderr).not.toContain('sluiced stopped');
    expect(res.stderr).not.toContain('sluiced starting');
  });
});
