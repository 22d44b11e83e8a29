/**
 * The agent runtime without any server: strategy `reboot` needs no etcd, and for `etcd-lock` the
 * slot lock and the group's settings are the testkit's in-memory fakes of those ports. The
 * update source and the Rebooter are in-process fakes too. What needs etcd and D-Bus is in
 * test/agent/.
 */
import { SluiceError } from '@sluice/core';
import { FakeGroupSettings, FakeSlotLock } from '@sluice/testkit';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent } from './agent.js';
import { loadAgentConfig } from './config/index.js';
import { AgentMetrics } from './metrics.js';
import type { UpdateSignal, UpdateSource } from './sources.js';

/** An update source that fails to start `failures` times (a bus that is not up yet), then says a reboot is needed. */
class FlakySource implements UpdateSource {
  readonly name = 'update-engine';
  attempts = 0;
  constructor(private failures: number) {}
  async start(onChange: (s: UpdateSignal) => void): Promise<void> {
    this.attempts++;
    if (this.failures-- > 0) throw new Error('cannot connect to the system bus');
    onChange(this.current());
  }
  current(): UpdateSignal {
    return { needed: true, source: 'update-engine', detail: 'NEED_REBOOT', version: '2.0.0' };
  }
  async close(): Promise<void> {}
}

const agents: Agent[] = [];
afterEach(async () => {
  await Promise.all(agents.splice(0).map((a) => a.stop()));
});

async function agentWith(
  source: UpdateSource,
  reboots: string[],
  opts: {
    window?: string;
    now?: () => Date;
    lock?: FakeSlotLock;
    settings?: FakeGroupSettings;
    sources?: UpdateSource[];
  } = {},
): Promise<Agent> {
  const config = await loadAgentConfig({
    env: {
      SLUICE_STRATEGY: opts.lock ? 'etcd-lock' : 'reboot',
      SLUICE_NODE: 'n1',
      ...(opts.window ? { SLUICE_WINDOW: opts.window } : {}),
    },
    updateConfFiles: [],
  });
  const agent = new Agent({
    config,
    lock: opts.lock ?? null,
    settings: opts.settings ?? null,
    sources: [source, ...(opts.sources ?? [])],
    logger: pino({ level: 'silent' }),
    metrics: new AgentMetrics(),
    bootId: 'boot-1',
    rebooter: {
      reboot: async () => {
        reboots.push('reboot');
        opts.lock?.calls.push('reboot');
      },
    },
    retryDelayMs: 200,
    ...(opts.now ? { now: opts.now } : {}),
  });
  agents.push(agent);
  return agent;
}

describe('agent runtime', () => {
  it('retries an update source that failed to start, and acts on it once it answers', async () => {
    const source = new FlakySource(2);
    const reboots: string[] = [];
    const agent = await agentWith(source, reboots);
    await agent.start();
    expect(source.attempts).toBe(1);
    expect(agent.state.name).toBe('idle');
    await expect.poll(() => reboots.length, { timeout: 8000, interval: 50 }).toBe(1);
    expect(source.attempts).toBe(3);
    expect(agent.state.name).toBe('rebooting');
  });

  it('wakes up by itself when its window opens', async () => {
    // A clock that reads 1.5 s before a full minute, and a window that opens at that minute.
    const real = Date.now();
    const fakeStart = Math.ceil(real / 60_000) * 60_000 + 60_000 - 1500;
    const now = () => new Date(Date.now() - real + fakeStart);
    const opens = new Date(fakeStart + 1500);
    const day = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'][opens.getUTCDay()];
    const hhmm = opens.toISOString().slice(11, 16);
    const reboots: string[] = [];
    const agent = await agentWith(new FlakySource(0), reboots, {
      window: `${day} ${hhmm}+1h UTC`,
      now,
    });
    await agent.start();
    expect(agent.state).toMatchObject({ name: 'waiting-window', nextOpen: opens.toISOString() });
    await new Promise((r) => setTimeout(r, 800));
    expect(reboots).toHaveLength(0);
    await expect.poll(() => reboots.length, { timeout: 5000, interval: 50 }).toBe(1);
    expect(now().getTime()).toBeGreaterThanOrEqual(opens.getTime());
  });

  it('stops retrying once stopped', async () => {
    const source = new FlakySource(100);
    const agent = await agentWith(source, []);
    await agent.start();
    await agent.stop();
    const attempts = source.attempts;
    await new Promise((r) => setTimeout(r, 1500));
    expect(source.attempts).toBe(attempts);
  });
});

describe('agent runtime with a slot lock (in-memory fakes of the ports)', () => {
  it('confirms the slot right before the reboot, and only then reboots', async () => {
    const lock = new FakeSlotLock('n1');
    const reboots: string[] = [];
    const agent = await agentWith(new FlakySource(0), reboots, {
      lock,
      settings: new FakeGroupSettings(),
    });
    await agent.start();
    await expect.poll(() => reboots.length, { timeout: 5000, interval: 20 }).toBe(1);
    // No drain command and no warning delay: the drain takes no time and is not recorded.
    expect(lock.calls).toEqual(['recover', 'acquire', 'confirm:rebooting', 'reboot']);
    expect(agent.state.name).toBe('rebooting');
  });

  it('retries on time after its clock steps back while it works out when to retry', async () => {
    // The clock is two hours ahead, and NTP puts it right while the agent reads the group's
    // window for the transition after a failed queue attempt (soak seed 1666).
    let offset = 2 * 3600_000;
    const lock = new FakeSlotLock('n1');
    lock.acquireFails = new SluiceError('etcd-unavailable', 'etcd did not answer a lease grant');
    const settings = new FakeGroupSettings();
    const read = settings.window.bind(settings);
    settings.window = async () => {
      if (lock.calls.includes('acquire')) offset = 0;
      return read();
    };
    const reboots: string[] = [];
    const agent = await agentWith(new FlakySource(0), reboots, {
      lock,
      settings,
      now: () => new Date(Date.now() + offset),
    });
    await agent.start();
    // The retry comes after the retry delay (200 ms), not two hours later.
    await expect.poll(() => reboots.length, { timeout: 3000, interval: 20 }).toBe(1);
    expect(lock.calls.filter((c) => c === 'acquire')).toHaveLength(2);
  });

  it('never reboots when the slot is gone at the last confirmation', async () => {
    const lock = new FakeSlotLock('n1');
    const reboots: string[] = [];
    const agent = await agentWith(new FlakySource(0), reboots, {
      lock,
      settings: new FakeGroupSettings(),
    });
    const seen: string[] = [];
    agent.onTransition((state, edge) => {
      seen.push(`${state.name} (${edge})`);
      // Draining now; the slot is lost before the reboot's confirmation.
      if (state.name === 'draining') lock.confirmFails = 'refused';
    });
    await agent.start();
    await expect
      .poll(() => seen, { timeout: 5000, interval: 20 })
      .toContain('update-staged (slot-lost)');
    expect(reboots).toEqual([]);
    expect(lock.calls.filter((c) => c === 'reboot')).toEqual([]);
  });

  it('keeps the slot and asks again when etcd cannot confirm it, and reboots once it can', async () => {
    const lock = new FakeSlotLock('n1');
    const reboots: string[] = [];
    const agent = await agentWith(new FlakySource(0), reboots, {
      lock,
      settings: new FakeGroupSettings(),
    });
    agent.onTransition((state) => {
      if (state.name === 'draining') lock.confirmFails = new Error('etcd did not answer');
    });
    await agent.start();
    await expect
      .poll(() => agent.state, { timeout: 5000, interval: 20 })
      .toMatchObject({
        name: 'rebooting',
        retryAt: expect.any(String),
      });
    expect(reboots).toEqual([]);
    lock.confirmFails = null;
    await expect.poll(() => reboots.length, { timeout: 5000, interval: 20 }).toBe(1);
    const confirms = lock.calls.filter((c) => c === 'confirm:rebooting');
    expect(confirms.length).toBeGreaterThanOrEqual(2);
    expect(lock.calls.at(-2)).toBe('confirm:rebooting');
    expect(lock.calls.at(-1)).toBe('reboot');
  });

  it('clears a pending reboot request in the confirmation right before the reboot that serves it', async () => {
    const lock = new FakeSlotLock('n1');
    const settings = new FakeGroupSettings();
    settings.setRequest(
      JSON.stringify({ v: 1, node: 'n1', reason: 'kernel', requestedAt: new Date().toISOString() }),
    );
    const reboots: string[] = [];
    const { ManualRequestSource } = await import('./update-sources.js');
    const agent = await agentWith(new FlakySource(0), reboots, {
      lock,
      settings,
      sources: [new ManualRequestSource(settings)],
    });
    await agent.start();
    await expect.poll(() => reboots.length, { timeout: 5000, interval: 20 }).toBe(1);
    // Not a call of its own between the confirmation and the reboot: part of the confirming write.
    expect(settings.calls).toEqual([]);
    expect(lock.calls.slice(-2)).toEqual(['confirm:rebooting+clear-request', 'reboot']);
  });
});
