/**
 * One pass of the agent for fleets that prefer a timer to a daemon (`sluicectl reboot-if-needed`
 * from `sluice-reboot.timer`): recover, look at the update sources once, and if a reboot is
 * needed and the window is open, take a slot and reboot. After boot, `--release-only` (from
 * `sluice-release.service`) runs the post-reboot checks and gives the slot back.
 *
 * It is the same lifecycle as `sluiced`, run until it settles.
 */
import type { AgentState } from '@sluice/core';
import type { Logger } from 'pino';
import type { AgentConfig } from './config.js';
import { type RunningAgent, startAgent } from './wire.js';

/** How a one-shot run ended. `code` is the process exit code for it. */
export interface OnceResult {
  outcome:
    | 'nothing-to-do'
    | 'released'
    | 'rebooting'
    | 'window-closed'
    | 'checks-failed'
    | 'timed-out'
    | 'post-checks-failed';
  code: 0 | 1;
  detail: string;
}

/** Options for `rebootIfNeeded`. */
export interface OnceOptions {
  /** Only recover and release after a reboot; never start a new one. */
  releaseOnly?: boolean;
  /** How long to wait for a slot (or for post-checks) before giving up. Default 10 minutes. */
  waitMs?: number;
  logger?: Logger;
  bootIdFile?: string;
  retryDelayMs?: number;
  signal?: AbortSignal;
}

const SETTLE_MS = 300;

/** Runs the lifecycle once, until it settles, and says how it ended. */
export async function rebootIfNeeded(
  config: AgentConfig,
  opts: OnceOptions = {},
): Promise<OnceResult> {
  // The one-shot is a short-lived command: no metrics listener of its own.
  const running = await startAgent(
    { ...config, metrics: { ...config.metrics, listen: null } },
    {
      ...(opts.logger ? { logger: opts.logger } : {}),
      ...(opts.bootIdFile ? { bootIdFile: opts.bootIdFile } : {}),
      ...(opts.retryDelayMs !== undefined ? { retryDelayMs: opts.retryDelayMs } : {}),
      noSources: opts.releaseOnly ?? false,
      program: `sluicectl reboot-if-needed${opts.releaseOnly ? ' --release-only' : ''}`,
    },
  );
  const edges: string[] = [];
  running.agent.onTransition((_state, edge) => edges.push(edge));
  try {
    await running.ready;
    return await settle(running, edges, opts);
  } finally {
    await running.stop();
  }
}

async function settle(
  running: RunningAgent,
  edges: string[],
  opts: OnceOptions,
): Promise<OnceResult> {
  const deadline = Date.now() + (opts.waitMs ?? 10 * 60_000);
  let last: AgentState | null = null;
  let stableSince = Date.now();
  for (;;) {
    if (opts.signal?.aborted) return leave(running, 'timed-out', 'stopped by a signal');
    const state = running.agent.state;
    if (state !== last) {
      last = state;
      stableSince = Date.now();
    }
    const stable = Date.now() - stableSince >= SETTLE_MS;
    const result = outcomeOf(state, edges, stable, running.agent.rebootsRequested);
    if (result) return result;
    if (Date.now() > deadline) {
      return leave(running, 'timed-out', `gave up after waiting in state ${state.name}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

function outcomeOf(
  state: AgentState,
  edges: string[],
  stable: boolean,
  reboots: number,
): OnceResult | null {
  switch (state.name) {
    case 'rebooting':
      // Done once logind accepted the call; the machine goes down shortly.
      return reboots > 0
        ? { outcome: 'rebooting', code: 0, detail: 'the reboot was asked for' }
        : null;
    case 'idle':
      if (!stable) return null;
      return edges.includes('released')
        ? { outcome: 'released', code: 0, detail: 'post-reboot checks passed; slot released' }
        : { outcome: 'nothing-to-do', code: 0, detail: 'no reboot needed' };
    case 'waiting-window':
      return stable && !state.held
        ? {
            outcome: 'window-closed',
            code: 0,
            detail: `window closed; opens ${state.nextOpen ?? 'not within two weeks'}`,
          }
        : null;
    case 'update-staged':
      return stable && state.lastError
        ? { outcome: 'checks-failed', code: 1, detail: state.lastError }
        : null;
    case 'post-checking':
      return state.failed
        ? {
            outcome: 'post-checks-failed',
            code: 1,
            detail: state.lastError ?? 'post-reboot checks failed',
          }
        : null;
    default:
      return null;
  }
}

/** Gives up: a node still waiting leaves the queue, so it does not hold others up. */
async function leave(
  running: RunningAgent,
  outcome: 'timed-out',
  detail: string,
): Promise<OnceResult> {
  const queued = running.agent.state.name === 'queued';
  // Stop the agent first, so that its wait for a slot does not queue it again.
  await running.agent.stop();
  if (queued) await running.semaphore?.leave('release').catch(() => {});
  return { outcome, code: 1, detail };
}
