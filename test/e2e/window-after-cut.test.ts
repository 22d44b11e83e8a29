/**
 * A node waiting for the group's window is cut off from etcd (its link reset, then blackholed for
 * longer than its session lease) while an operator opens the window. Once the link heals, the
 * node must see the open window and reboot, not wait for the next opening of the old window.
 */
import { Fleet } from '@sluice/sim';
import { afterEach, expect, it, vi } from 'vitest';
import { sleep } from '../helpers.js';
import { closedWindow, expectInvariants } from './support.js';

vi.setConfig({ testTimeout: 120_000 });

let fleet: Fleet | undefined;
afterEach(async () => {
  await fleet?.stop();
  fleet = undefined;
});

it('a waiter that was cut off while the window opened reboots once its link heals', async () => {
  fleet = await Fleet.start({ nodes: 2, max: 1, rebootSeconds: 1, links: true, sessionTTL: 2 });
  const f = fleet;
  await f.setWindow(closedWindow());
  await f.stageAll('2.0.0', { nodes: ['n01'] });
  const n1 = f.node('n01');
  await f.waitFor(() => n1.agentState === 'waiting-window', 'n01 to wait for the window', 20_000);
  const link = f.link('n01');
  link.reset();
  link.blackhole();
  await sleep(5_000);
  await f.setWindow(null);
  await sleep(1_000);
  link.clear();
  // The agent sees the open window within a few seconds of the heal (the window's next opening
  // by the old spec is 12 hours away).
  // Up again: the machine stays down until the simulator's own reads of the slot have answered.
  await f.waitFor(() => f.reboots[0]?.upAt != null, 'n01 to reboot and boot', 45_000);
  expect(f.reboots.map((r) => r.node)).toEqual(['n01']);
  await expectInvariants(f, false);
});
