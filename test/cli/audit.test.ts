/**
 * The audit trail as processes against a real etcd: every operator action sluicectl takes is in
 * `sluicectl history` with who, when and what (set-max old → new, pause and resume with the
 * reason, windows set and cleared, a manual lock and its unlock, a reboot request and its
 * cancellation, a forced release), filtered with --kind and --since, as a table and as JSON.
 */
import { hostname } from 'node:os';
import { type EtcdCluster, startEtcd } from '@sluice/testkit';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CliRunner, HistoryJsonSchema } from './cli.js';

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

describe('the audit trail', () => {
  it('records who did what and when, and history shows it', { timeout: 180_000 }, async () => {
    const ok = async (args: string[], env?: Record<string, string>) => {
      const res = await cli.run(args, env ? { env } : {});
      expect(res.code, `${args.join(' ')}: ${res.stderr}`).toBe(0);
    };
    const started = Date.now();
    await ok(['set-max', '2']);
    await ok(['set-max', '3']);
    await ok(['pause', '--reason', 'BIOS update']);
    await ok(['resume']);
    await ok(['windows', 'set', 'Mon-Fri 22:00-02:00']);
    await ok(['windows', 'clear']);
    await ok(['lock', '--node', 'm1', '--reason', 'disk swap']);
    await ok(['unlock'], { SLUICE_NODE: 'm1' });
    await ok(['request-reboot', 'n5', '--reason', 'kernel parameters', '--allow-unknown']);
    await ok(['request-reboot', 'n5', '--cancel']);
    // A second cancel finds nothing to cancel, and says so.
    const again = await cli.run(['request-reboot', 'n5', '--cancel']);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('n5 has no reboot request');

    const me = `tester@${hostname()}`;
    const json = HistoryJsonSchema.parse(await cli.json(['history']));
    expect(json.actions.map((a) => [a.action, a.node, a.old, a.new, a.reason, a.by])).toEqual([
      ['cancel-request', 'n5', null, null, 'kernel parameters', me],
      ['request-reboot', 'n5', null, null, 'kernel parameters', me],
      ['lock', 'm1', null, null, 'disk swap', me],
      ['windows-clear', null, 'Mon-Fri 22:00-02:00 UTC', null, null, me],
      ['windows-set', null, null, 'Mon-Fri 22:00-02:00 UTC', null, me],
      ['resume', null, expect.stringContaining('BIOS update'), null, 'BIOS update', me],
      ['pause', null, null, null, 'BIOS update', me],
      ['set-max', null, '2', '3', null, me],
      ['set-max', null, null, '2', null, me],
    ]);
    for (const a of json.actions) {
      expect(Date.parse(a.at)).toBeGreaterThanOrEqual(started - 1000);
    }
    // The manual lock's release, as a reboot record: a manual lock, with who released it.
    expect(json.records).toEqual([
      expect.objectContaining({
        node: 'm1',
        outcome: 'released',
        manual: true,
        by: me,
        reason: 'disk swap',
      }),
    ]);

    const table = (await cli.run(['history'])).stdout;
    expect(table).toMatch(/^m1 +m1 .* released \(manual lock\) +tester@\S+ +disk swap$/m);
    expect(table).toMatch(/^OPERATOR ACTIONS$/m);
    expect(table).toMatch(/^WHEN +ACTION +NODE +BY +WHAT$/m);
    expect(table).toMatch(/^\S+ \S+ +set-max +- +tester@\S+ +max 2 -> 3$/m);
    expect(table).toMatch(/^\S+ \S+ +set-max +- +tester@\S+ +max unset \(1\) -> 2$/m);
    expect(table).toMatch(/^\S+ \S+ +pause +- +tester@\S+ +BIOS update$/m);
    expect(table).toMatch(
      /^\S+ \S+ +windows-clear +- +tester@\S+ +windows Mon-Fri 22:00-02:00 UTC -> always open$/m,
    );

    // --kind picks reboots, actions, or one action; --since how far back; --limit counts both.
    const maxOnly = HistoryJsonSchema.parse(await cli.json(['history', '--kind', 'set-max']));
    expect(maxOnly.actions.map((a) => a.new)).toEqual(['3', '2']);
    expect(maxOnly.records).toEqual([]);
    const reboots = HistoryJsonSchema.parse(await cli.json(['history', '--kind', 'reboot']));
    expect(reboots.actions).toEqual([]);
    expect(reboots.records).toHaveLength(1);
    const newest = HistoryJsonSchema.parse(await cli.json(['history', '--limit', '2']));
    expect([...newest.actions.map((a) => a.action), ...newest.records.map((r) => r.node)]).toEqual([
      'cancel-request',
      'request-reboot',
    ]);
    const future = new Date(Date.now() + 3_600_000).toISOString();
    const bad = await cli.run(['history', '--since', future]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('it is in the future');
    const recent = HistoryJsonSchema.parse(await cli.json(['history', '--since', '1h']));
    expect(recent.actions).toHaveLength(9);
    const later = HistoryJsonSchema.parse(
      await cli.json(['history', '--since', new Date(Date.now() - 1).toISOString()]),
    );
    expect(later.actions).toEqual([]);
    const unknown = await cli.run(['history', '--kind', 'reboots-and-more']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain(
      '--kind "reboots-and-more": expected reboot, action, or one of',
    );
  });
});
