/**
 * One pass of the agent for fleets that prefer a timer to a daemon (`sluicectl reboot-if-needed`
 * from `sluice-reboot.timer`): recover, look at the update sources once, and if a reboot is
 * needed and the window is open, take a slot and reboot. After boot, `--release-only` (from
 * `sluice-release.service`) runs the post-reboot checks and gives the slot back.
 *
 * It is the same lifecycle as `sluiced`, run until it settles.
 */
import type { AgentState, Edge } from '@sluice/core';
import type { Logger } from 'pino';
import type { AgentConfig } from './config/index.js';
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
  const edges: Edge[] = [];
  running.agent.onTransition((_state, edge) => edges.push(edge));
  try {
    await running.ready;
    return await settle(running, edges, opts);
  } finally {
    await running.stop();
  }
}

/**
 * Waits, without polling, until the run has an outcome: a transition or the agent settling (no
 * event waiting, no effect running) says so, or the time is up.
 */
function settle(running: RunningAgent, edges: Edge[], opts: OnceOptions): Promise<OnceResult> {
  const agent = running.agent;
  return new Promise<OnceResult>((resolve) => {
    let done = false;
    const finish = (result: OnceResult | Promise<OnceResult>) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      offTransition();
      offSettle();
      opts.signal?.removeEventListener('abort', onAbort);
      void Promise.resolve(result).then(resolve);
    };
    const look = () => {
      const result = outcomeOf(agent.state, edges, agent.settled, agent.rebootsRequested);
      if (result) finish(result);
    };
    const onAbort = () => finish(leave(running, 'timed-out', 'stopped by a signal'));
    const timer = setTimeout(
      () =>
        finish(leave(running, 'timed-out', `gave up after waiting in state ${agent.state.name}`)),
      opts.waitMs ?? 10 * 60_000,
    );
    const offTransition = agent.onTransition(() => look());
    const offSettle = agent.onSettle(() => look());
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    if (opts.signal?.aborted) onAbort();
    else look();
  });
}

function outcomeOf(
  state: AgentState,
  edges: readonly Edge[],
  settled: boolean,
  reboots: number,
): OnceResult | null {
  switch (state.name) {
    case 'rebooting':
      // Done once logind accepted the call; the machine goes down shortly.
      return reboots > 0
        ? { outcome: 'rebooting', code: 0, detail: 'the reboot was asked for' }
        : null;
    case 'idle':
      if (!settled) return null;
      return edges.includes('released')
        ? { outcome: 'released', code: 0, detail: 'post-reboot checks passed; slot released' }
        : { outcome: 'nothing-to-do', code: 0, detail: 'no reboot needed' };
    case 'waiting-window':
      return settled
        ? {
            outcome: 'window-closed',
            code: 0,
            detail: `window closed; opens ${state.nextOpen ?? 'not within two weeks'}`,
          }
        : null;
    case 'update-staged':
      return settled && state.lastError
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
