/**
 * The one back-off sluice uses between attempts: cockatiel's exponential back-off with
 * decorrelated jitter, so a fleet that fails together does not retry in step. Waiting for a slot,
 * re-reading a group after its watch broke, restarting an update source and reading the node's
 * record at start all use it.
 */
import { ExponentialBackoff, type IBackoff } from 'cockatiel';

/** How a Backoff grows. */
export interface BackoffOptions {
  /** The first delay, in ms. Default 250. */
  initialMs?: number;
  /** The longest delay, in ms. Default 30 s. */
  maxMs?: number;
}

/** Successive delays of one retry loop; `reset()` after a success. */
export class Backoff {
  readonly #factory: ExponentialBackoff<unknown>;
  #current: IBackoff<unknown> | null = null;
  /** Attempts since the last reset. */
  attempts = 0;

  constructor(options: BackoffOptions = {}) {
    this.#factory = new ExponentialBackoff({
      initialDelay: options.initialMs ?? 250,
      maxDelay: options.maxMs ?? 30_000,
    });
  }

  /** The delay before the next attempt, in ms. */
  next(): number {
    this.#current = this.#current ? this.#current.next(undefined) : this.#factory.next();
    this.attempts++;
    return this.#current.duration;
  }

  /** Starts again from the first delay. */
  reset(): void {
    this.#current = null;
    this.attempts = 0;
  }
}

/** `ms` spread by up to ±`spread` (a fraction), so timers of many nodes do not fire together. */
export function jitter(ms: number, spread = 0.3): number {
  return ms * (1 - spread + Math.random() * 2 * spread);
}
