/**
 * How the agent reboots when it builds its own Rebooter: a soft reboot when every source that
 * wants the reboot says that is enough (and only where the soft reboot can be recognised
 * afterwards), and the warning to logged-in users through logind's scheduled shutdown. Strategy
 * `reboot` (no etcd), a real dbus-daemon with simulated logind and systemd.
 */

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type DbusDaemon, FakeLogind, FakeSystemd, startDbusDaemon } from '@sluice/testkit';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from './agent.js';
import { loadAgentConfig } from './config/index.js';
import { AgentMetrics } from './metrics.js';
import { RebootLoopGuard } from './reboot-guard.js';
import type { UpdateSignal, UpdateSource } from './sources.js';

/** A source that says a reboot is needed, soft or not. */
class StubSource implements UpdateSource {
  constructor(
    readonly name: string,
    private readonly softReboot: boolean,
  ) {}
  async start(onChange: (s: UpdateSignal) => void): Promise<void> {
    onChange(this.current());
  }
  current(): UpdateSignal {
    return {
      needed: true,
      source: this.name,
      detail: 'staged',
      version: '10.2',
      ...(this.softReboot ? { softReboot: true } : {}),
    };
  }
  async close(): Promise<void> {}
}

let bus: DbusDaemon;
let logind: FakeLogind;
let systemd: FakeSystemd | null = null;
const agents: Agent[] = [];

beforeAll(async () => {
  bus = await startDbusDaemon();
  logind = new FakeLogind(bus.address);
  await logind.start();
});
afterAll(async () => {
  await logind?.stop();
  await bus?.stop();
});
afterEach(async () => {
  await Promise.all(agents.splice(0).map((a) => a.stop()));
  await systemd?.stop();
  systemd = null;
  logind.reboots.length = 0;
  logind.schedules.length = 0;
});

async function agentWith(
  sources: UpdateSource[],
  env: NodeJS.ProcessEnv = {},
  guard: RebootLoopGuard | null = null,
): Promise<Agent> {
  const config = await loadAgentConfig({
    env: {
      SLUICE_STRATEGY: 'reboot',
      SLUICE_NODE: 'n1',
      SLUICE_DBUS_ADDRESS: bus.address,
      ...env,
    },
    updateConfFiles: [],
  });
  const agent = new Agent({
    config,
    lock: null,
    settings: null,
    sources,
    logger: pino({ level: 'silent' }),
    metrics: new AgentMetrics(),
    bootId: 'boot-1',
    retryDelayMs: 200,
    rebootGuard: guard,
  });
  agents.push(agent);
  return agent;
}

describe('soft reboot when the source says it is enough', () => {
  it('soft-reboots when every source that wants the reboot says userspace is enough', async () => {
    systemd = new FakeSystemd(bus.address);
    await systemd.start();
    const agent = await agentWith([new StubSource('bootc', true)]);
    await agent.start();
    await expect.poll(() => logind.reboots.length, { timeout: 5000 }).toBe(1);
    expect(logind.reboots[0]).toMatchObject({ method: 'RebootWithFlags', kind: 'soft-reboot' });
  });

  it('reboots fully when another source wants a full reboot, or with softReboot: never', async () => {
    systemd = new FakeSystemd(bus.address);
    await systemd.start();
    const mixed = await agentWith([
      new StubSource('bootc', true),
      new StubSource('needrestart', false),
    ]);
    await mixed.start();
    await expect.poll(() => logind.reboots.length, { timeout: 5000 }).toBe(1);
    expect(logind.reboots[0]).toMatchObject({ method: 'Reboot', kind: 'reboot' });
    await mixed.stop();
    logind.reboots.length = 0;
    const never = await agentWith([new StubSource('bootc', true)], { SLUICE_SOFT_REBOOT: 'never' });
    await never.start();
    await expect.poll(() => logind.reboots.length, { timeout: 5000 }).toBe(1);
    expect(logind.reboots[0]).toMatchObject({ method: 'Reboot' });
  });

  it('reboots fully when the soft reboot could not be recognised after (no SoftRebootsCount)', async () => {
    systemd = new FakeSystemd(bus.address, { legacy: true });
    await systemd.start();
    const agent = await agentWith([new StubSource('bootc', true)]);
    await agent.start();
    await expect.poll(() => logind.reboots.length, { timeout: 5000 }).toBe(1);
    expect(logind.reboots[0]).toMatchObject({ method: 'Reboot' });
  });

  it('with method soft-reboot and no SoftRebootsCount it does not reboot at all, and says why', async () => {
    const agent = await agentWith([new StubSource('sysupdate', false)], {
      SLUICE_REBOOT_METHOD: 'soft-reboot',
    });
    await agent.start();
    await expect
      .poll(() => agent.state.name === 'rebooting' && agent.state.retryAt !== null, {
        timeout: 5000,
      })
      .toBe(true);
    expect(logind.reboots).toEqual([]);
  });
});

describe('the reboot-loop guard', () => {
  it('does not count reboot calls that failed', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sluice-guard-agent-'));
    try {
      const guard = new RebootLoopGuard(join(dir, 'reboot-loop.json'), 2);
      logind.rebootError = { name: 'org.freedesktop.DBus.Error.AccessDenied', message: 'no' };
      const agent = await agentWith([new StubSource('sysupdate', false)], {}, guard);
      await agent.start();
      await expect
        .poll(() => logind.reboots.filter((r) => r.failedWith).length, { timeout: 5000 })
        .toBeGreaterThanOrEqual(3);
      logind.rebootError = undefined;
      await expect
        .poll(() => logind.reboots.some((r) => !r.failedWith), { timeout: 5000 })
        .toBe(true);
      expect(guard.count({ source: 'sysupdate', detail: 'staged', version: '10.2' })).toBe(1);
    } finally {
      logind.rebootError = undefined;
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('the warning to logged-in users', () => {
  it('goes through a dry-run scheduled shutdown with the wall message, then the agent reboots', async () => {
    systemd = new FakeSystemd(bus.address);
    await systemd.start();
    const before = Date.now();
    const agent = await agentWith([new StubSource('sysupdate', false)], {
      SLUICE_WARN_DELAY: '1s',
      SLUICE_WARN_MESSAGE: 'Reboot in %s for an OS update',
    });
    await agent.start();
    await expect.poll(() => logind.schedules.length, { timeout: 5000 }).toBe(1);
    expect(logind.schedules[0]).toMatchObject({ type: 'dry-reboot' });
    expect(logind.schedules[0]!.when.getTime()).toBeGreaterThanOrEqual(before + 1000);
    expect(logind.wallMessage).toEqual({
      message: 'Reboot in 1 seconds for an OS update',
      enable: true,
    });
    expect(logind.reboots).toEqual([]);
    await expect.poll(() => logind.reboots.length, { timeout: 5000 }).toBe(1);
    expect(Date.now() - before).toBeGreaterThanOrEqual(1000);
  });
});
