/**
 * Shared pieces of the end-to-end tests: they run the built `sluiced` and `sluicectl` as real
 * processes in a simulated fleet, so `npx turbo run build` must have run first.
 */
import { existsSync } from 'node:fs';
import { type Fleet, formatReport, SLUICECTL, SLUICED } from '@sluice/sim';
import { expect } from 'vitest';

// Both programs are required: without the built sluicectl, the fleet would pause and resume
// through etcdctl and the tests would pass without ever running the operator's commands.
for (const program of [SLUICED, SLUICECTL]) {
  if (!existsSync(program)) {
    throw new Error(`${program} is missing: run "npx turbo run build" before the end-to-end tests`);
  }
}

/** Waits for the slot checks of the last reboots, then asserts that every invariant held. */
export async function expectInvariants(fleet: Fleet, complete = true): Promise<void> {
  await fleet.settle();
  const report = fleet.check({ complete });
  expect(
    report.violations,
    `${formatReport(report, fleet.startedAt)}\n${fleet.describe()}`,
  ).toEqual([]);
}

/** How many nodes are down right now. */
export function downNow(fleet: Fleet): number {
  return fleet.nodes.filter((n) => n.machine === 'down').length;
}

/** Nodes down at instant `at`, from the reboot log. */
export function downAt(fleet: Fleet, at: number): string[] {
  return fleet.reboots
    .filter((r) => r.downAt <= at && (r.upAt === null || r.upAt > at))
    .map((r) => r.node);
}

/** Sleeps for `ms`. */
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A group window spec that is closed now and for hours: one minute, twelve hours from now. */
export function closedWindow(now = new Date()): string {
  const at = new Date(now.getTime() + 12 * 3600_000);
  const day = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'][at.getUTCDay()];
  const hh = String(at.getUTCHours()).padStart(2, '0');
  const mm = String(at.getUTCMinutes()).padStart(2, '0');
  return `${day} ${hh}:${mm}+1m UTC`;
}
