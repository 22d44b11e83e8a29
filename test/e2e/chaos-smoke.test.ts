/**
 * A short, seeded chaos run in CI, so that the soak's machinery keeps working: every fault of the
 * schedule (agent kills and SIGSTOPs, link resets, cuts and latency, write bursts inside a
 * waiter's cut link, a cloned node id, clock offsets, operator actions, etcd leader and follower
 * kills, a member cut off from its peers, an outage) is applied at least once, then the rollout
 * must finish and every invariant hold. The full soak is `npm run chaos`.
 */
import { type ChaosLane, chaosRun, FAULT_KINDS, LIBFAKETIME, startLane } from '@sluice/sim';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { findTool, needTool, skipWithout } from '../deploy/helpers.js';
import './support.js';

vi.setConfig({ testTimeout: 150_000, hookTimeout: 60_000 });

/** The seed of the smoke run. */
const SEED = 7;

const faketime = findTool([LIBFAKETIME]);
let lane: ChaosLane | undefined;

beforeAll(async () => {
  if (!skipWithout(faketime)) lane = await startLane();
});
afterAll(async () => {
  await lane?.stop();
});

it.skipIf(skipWithout(faketime))('applies every fault once and keeps every invariant', async () => {
  needTool(faketime, 'libfaketime', 'faketime');
  const lines: string[] = [];
  const result = await chaosRun({
    lane: lane!,
    run: 1,
    seed: SEED,
    mix: 'every',
    faultMs: 14_000,
    finishTimeoutMs: 60_000,
    keepFailed: false,
    log: (line) => lines.push(line),
  });
  // What failed, with the run's own report (chaosRun logs it when a run fails).
  const summary = [
    `seed ${SEED}: faults ${JSON.stringify(result.faults)}`,
    ...lines,
    ...result.notes,
    result.stuck ?? '',
  ].join('\n');
  expect(Object.keys(result.faults).sort(), summary).toEqual([...FAULT_KINDS].sort());
  expect(result.burstRevisions, summary).toBeGreaterThan(1000);
  expect(result.finished, summary).toBe(true);
  expect(result.violations, summary).toEqual([]);
});
