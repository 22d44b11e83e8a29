/**
 * The window closes while a node drains: at the last check before the reboot the node finds it
 * closed, gives its slot back and waits for the window. Once the window opens again it must take
 * a slot and reboot like everyone else.
 */
import { Fleet } from '@sluice/sim';
import { afterEach, expect, it, vi } from 'vitest';
import { closedWindow, expectInvariants } from './support.js';

// The fleet's own waits fail first, with the fleet's state in the message.
vi.setConfig({ testTimeout: 240_000 });

let fleet: Fleet | undefined;
afterEach(async () => {
  await fleet?.stop();
  fleet = undefined;
});

it('reboots a node that gave its slot back when the window closed during its drain', async () => {
  fleet = await Fleet.start({
    nodes: 3,
    max: 1,
    rebootSeconds: 1,
    extraYaml: 'checks:\n  drain: { command: "sleep 2" }',
  });
  const f = fleet;
  await f.stageAll('2.0.0');
  await f.waitFor(() => f.nodes.some((n) => n.agentState === 'draining'), 'a node to drain');
  const drainer = f.nodes.find((n) => n.agentState === 'draining')!;
  await f.setWindow(closedWindow());
  // The drain ends, the window is closed: the slot goes back without a reboot.
  await f.waitFor(() => f.timeline.holders.length === 0, 'the slot to come back', 10_000);
  expect(f.reboots).toHaveLength(0);
  // The marker goes in the release txn; the agent turns waiting-window once it hears the answer.
  await f.waitFor(() => drainer.agentState === 'waiting-window', 'the drainer to wait', 10_000);
  expect(f.reboots).toHaveLength(0);

  await f.setWindow(null);
  await f.waitForRollout('2.0.0', { timeoutMs: 40_000 });
  await expectInvariants(f);
  expect(f.reboots.filter((r) => r.node === drainer.id)).toHaveLength(1);
});
