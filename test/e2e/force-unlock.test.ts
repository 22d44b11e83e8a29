/**
 * An operator force-unlocks a node that has just confirmed its reboot, while the confirmation's
 * answer is still on its way over a slow link. The node reboots anyway (it cannot know), with no
 * marker, and the next node reboots on the freed slot while it is down: two down against max 1.
 * sluicectl made the operator acknowledge exactly that (`--yes`), and the invariant checker,
 * reading etcd's revisions itself, leaves these two reboots to the operator and nothing else.
 */
import { Fleet } from '@sluice/sim';
import { afterEach, expect, it, vi } from 'vitest';
import { downAt, expectInvariants, sleep } from './support.js';

vi.setConfig({ testTimeout: 120_000 });

let fleet: Fleet | undefined;
afterEach(async () => {
  await fleet?.stop();
  fleet = undefined;
});

it('leaves to the operator a reboot whose slot was force-unlocked after the node confirmed it', async () => {
  fleet = await Fleet.start({
    nodes: 2,
    max: 1,
    rebootSeconds: 10,
    links: true,
    slotCheckMs: 5000,
    // A drain long enough to slow n01's link during it.
    extraYaml: 'checks:\n  drain: { command: "sleep 2" }',
  });
  const f = fleet;
  await f.stageAll('2.0.0', { nodes: ['n01'] });
  const n1 = f.node('n01');
  await f.waitFor(() => n1.agentState === 'draining', 'n01 to drain', 30_000);
  // n02 queues behind n01, so that the slot the unlock frees is taken at once.
  await f.stageAll('2.0.0', { nodes: ['n02'] });
  // Answers from etcd now take a second to reach n01: its confirmation commits at once, and n01
  // hears of it a second later. Seen committed, n01's agent is paused (SIGSTOP) until 1.2 s
  // after the operator's unlock is done, as a stalled process would be: the reboot comes too
  // long after the unlock to count as racing it (1 s), and is the operator's all the same.
  await f.prepareUnlock();
  f.link('n01').setLatency({ down: 1000 });
  const confirmed = () => f.timeline.records.get('n01')?.at(-1)?.state === 'rebooting';
  await f.waitFor(confirmed, "n01's record to say rebooting", 20_000);
  f.freezeAgent('n01', 'the unlock');
  const frozenAt = Date.now();
  expect(n1.machine).toBe('up');
  expect(await f.forceUnlock('n01')).toBe(0);
  await sleep(1200);
  f.thawAgent('n01');
  // The pause must end within the agent's etcd call deadline (5 s from the confirmation): past
  // it, the thawed agent's deadline timer fires before it reads the answer waiting on its
  // socket, the retried confirmation is refused (the marker is gone), and n01 rightly does not
  // reboot on that slot. That is another scenario, so it is named rather than judged here.
  expect(Date.now() - frozenAt, 'n01 paused past its etcd call deadline').toBeLessThan(4000);
  await f.stageAll('2.0.0', { nodes: ['n02'] });
  await f.waitFor(() => f.reboots.length === 2, 'both nodes to reboot', 60_000);
  f.link('n01').clear();
  // Whichever went down second, the other was still down then.
  const last = Math.max(...f.reboots.map((r) => r.downAt));
  expect(downAt(f, last).sort()).toEqual(['n01', 'n02']);
  const unlock = f.unlocks[0]!;
  expect(unlock.toRevision).toBeGreaterThan(unlock.fromRevision!);
  await f.waitFor(() => f.reboots.every((r) => r.upAt !== null), 'both nodes up', 60_000);
  await expectInvariants(f);
  expect(f.check({ complete: true }).notes.join('\n')).toMatch(
    /n01 rebooted \(#1\) after confirming its slot \(record rebooting at revision \d+\), which an operator then force-unlocked/,
  );
});
