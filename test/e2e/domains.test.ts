/**
 * Failure domains with real agents (the simulator's fleet: processes, D-Bus, logind reboots):
 * three zones, max 2, domain-max 1. Never two nodes of one zone down at once, as the simulator's
 * reboot log shows, while two zones reboot side by side; every node reboots once.
 */
import { Fleet } from '@sluice/sim';
import { afterEach, expect, it, vi } from 'vitest';
import { expectInvariants } from './support.js';

vi.setConfig({ testTimeout: 240_000 });

let fleet: Fleet | undefined;
afterEach(async () => {
  await fleet?.stop();
  fleet = undefined;
});

it('reboots at most domain-max per zone, and max overall', async () => {
  fleet = await Fleet.start({ nodes: 6, max: 2, rebootSeconds: 1.5, domains: 3, domainMax: 1 });
  const f = fleet;
  expect([...f.domains.values()]).toEqual([
    'zone-1',
    'zone-2',
    'zone-3',
    'zone-1',
    'zone-2',
    'zone-3',
  ]);
  await f.stageAll('2.0.0');
  await f.waitForRollout('2.0.0', { timeoutMs: 120_000 });
  // The checker counts nodes down per zone from the reboot log and the zones given above.
  await expectInvariants(f);
  expect(f.reboots).toHaveLength(6);
  // Independently of the checker: the most nodes of one zone down at one instant, and overall.
  let peakZone = 0;
  let peak = 0;
  for (const r of f.reboots) {
    const down = f.reboots.filter((o) => o.downAt <= r.downAt && (o.upAt ?? Infinity) > r.downAt);
    peak = Math.max(peak, down.length);
    const zones = down.map((o) => f.domains.get(o.node));
    for (const z of new Set(zones))
      peakZone = Math.max(peakZone, zones.filter((x) => x === z).length);
  }
  expect(peakZone).toBe(1);
  expect(peak).toBe(2);
  const status = JSON.parse(await f.sluicectlOk(['status', '-o', 'json']));
  expect(status.domainMax).toBe(1);
  // Each agent registered its domain: sluicectl nodes shows it.
  const nodes = JSON.parse(await f.sluicectlOk(['nodes', '-o', 'json']));
  expect(
    nodes.nodes.map((n: { node: string; domain: string | null }) => [n.node, n.domain]),
  ).toEqual([...f.domains.entries()]);
  expect(await f.sluicectlOk(['nodes'])).toMatch(/^NODE +HOSTNAME +DOMAIN +STATE/m);
});
