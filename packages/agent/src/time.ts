/**
 * Waiting, the agent's way: abortable, and of any length (Node fires a timer longer than about
 * 24.8 days at once, so long waits are chained).
 */
import { throwIfAborted } from '@sluice/core';
import { describeError } from '@sluice/etcd';

/** The longest single timer Node keeps: a longer delay fires at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Waits `ms`. Rejects with an `aborted` SluiceError when `signal` fires first, so whatever was
 * to follow the wait does not happen.
 */
export async function sleep(ms: number, signal: AbortSignal): Promise<void> {
  for (let left = ms; left > 0; left -= MAX_TIMER_MS) {
    throwIfAborted(signal);
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, Math.min(left, MAX_TIMER_MS));
      signal.addEventListener('abort', done, { once: true });
    });
  }
  throwIfAborted(signal);
}

/** Runs `fn` after `ms` (any length up to MAX_TIMER_MS; longer is capped). */
export function after(ms: number, fn: () => void): NodeJS.Timeout {
  return setTimeout(fn, Math.min(Math.max(0, ms), MAX_TIMER_MS));
}

/** An error's message, for logs: etcd's errors as sentences about etcd (see `describeError`). */
export function describe(error: unknown): string {
  return describeError(error);
}
