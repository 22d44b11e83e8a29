/**
 * A node that never comes back from its reboot: its hold lease runs out, the waiting agents see
 * the lost holder and halt the group with a reason naming it, `sluicectl status -o json` shows
 * it, and after `sluicectl unlock <node> --force` and `sluicectl resume` the others finish.
 */
import { Fleet } from '@sluice/sim';
import { afterEach, expect, it, vi } from 'vitest';
import { expectInvariants, sleep } from './support.js';

// The fleet's own waits fail first, with the fleet's state in the message.
vi.setConfig({ testTimeout: 240_000 });

let fleet: Fleet | undefined;
afterEach(async () => {
  await fleet?.stop();
  fleet = undefined;
});

it('halts on a node lost during its reboot, and finishes after unlock --force and resume', async () => {
  // A hold lease of 8 s: long enough for a 1 s reboot and the agent's start on a busy machine.
  fleet = await Fleet.start({ nodes: 4, max: 1, rebootSeconds: 1, holdTTL: 8 });
  const f = fleet;
  const lost = f.node('n01');
  lost.stuck = true;
  await f.stageAll('2.0.0', { nodes: ['n01'] });
  await f.waitFor(() => lost.machine === 'down', 'n01 to go down');
  await f.stageAll('2.0.0', { nodes: ['n02', 'n03', 'n04'] });

  // The hold lease (8 s) runs out; a waiting agent halts the group.
  await f.waitFor(() => (f.timeline.paused ?? '').includes('n01'), 'the group to halt', 30_000);
  const status = JSON.parse(await f.sluicectlOk(['status', '-o', 'json']));
  expect(status.paused.reason).toMatch(/n01/);
  expect(status.holders).toEqual([expect.objectContaining({ node: 'n01', state: 'lost' })]);
  await sleep(1000);
  expect(f.reboots.map((r) => r.node)).toEqual(['n01']);

  await f.sluicectlOk(['unlock', 'n01', '--force']);
  await f.sluicectlOk(['resume']);
  await f.waitForRollout('2.0.0', { except: ['n01'], timeoutMs: 60_000 });
  await expectInvariants(f);
  expect(lost.machine).toBe('down');
  expect(f.reboots.map((r) => r.node).sort()).toEqual(['n01', 'n02', 'n03', 'n04']);
});
