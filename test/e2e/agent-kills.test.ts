/**
 * Agents SIGKILLed at random moments, in every state (queued, holding, draining, rebooting, after
 * boot), and restarted a moment later as systemd would: the rollout still finishes, every node
 * reboots exactly once, and never without a slot. Slow checks and a slow drain widen the states worth
 * hitting. Replay a failure with SLUICE_E2E_SEED=<seed>.
 */
import { Fleet, Random } from '@sluice/sim';
import { afterEach, expect, it, vi } from 'vitest';
import { expectInvariants, sleep } from './support.js';

// The fleet's own waits fail first, with the fleet's state in the message.
vi.setConfig({ testTimeout: 240_000 });

let fleet: Fleet | undefined;
afterEach(async () => {
  await fleet?.stop();
  fleet = undefined;
});

const SEED = Number(process.env.SLUICE_E2E_SEED ?? 20251125);

/** The states a kill aims at, in turn; each kill picks a random node among those in it. */
const TARGETS: string[][] = [
  ['queued', 'checking'],
  ['holding', 'draining'],
  ['rebooting'],
  ['post-checking', 'recovering', 'releasing'],
  [],
];

it(`finishes the rollout despite random agent kills (seed ${SEED})`, async () => {
  const random = new Random(SEED);
  fleet = await Fleet.start({
    nodes: 6,
    max: 2,
    rebootSeconds: 1.5,
    extraYaml: [
      'checks:',
      '  pre:',
      '    - { command: "sleep 0.2" }',
      '  drain: { command: "sleep 0.6" }',
      '  post:',
      '    - { command: "sleep 0.4" }',
    ].join('\n'),
  });
  const f = fleet;
  // logind refuses each node's first Reboot call: the agent waits in `rebooting` for its retry
  // (1 s), a state worth killing it in (it must ask again after the restart, never twice at once).
  for (const n of f.nodes) n.refuseReboots = 1;
  await f.stageAll('2.0.0');
  const killed: string[] = [];
  for (let i = 0; i < 24 && !f.rolloutDone('2.0.0') && killed.length < 12; i++) {
    await sleep(random.between(250, 700));
    const wanted = TARGETS[i % TARGETS.length]!;
    const running = f.nodes.filter((n) => n.agentRunning && n.machine === 'up');
    const inState = running.filter((n) => wanted.includes(n.agentState));
    const pool = inState.length > 0 ? inState : wanted.length === 0 ? running : [];
    if (pool.length === 0) continue;
    const node = random.pick(pool);
    killed.push(`${node.id}:${node.agentState}`);
    await f.killAgent(node.id, { restartAfterMs: Math.round(random.between(200, 2000)) });
  }
  await f.waitForRollout('2.0.0', { timeoutMs: 90_000 });
  await expectInvariants(f);
  expect(f.reboots).toHaveLength(6);
  // The kills hit nodes that held a slot, not only waiters.
  expect(
    killed.some((k) => /holding|draining|rebooting/.test(k)),
    killed.join(' '),
  ).toBe(true);
  expect(killed.length, killed.join(' ')).toBeGreaterThanOrEqual(6);
});
