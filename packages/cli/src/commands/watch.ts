/**
 * `sluicectl watch`: the group's status, printed again on every change. Changes come from an etcd
 * watch on the group (nothing polls); the window opening or closing also brings a new status.
 * While the watch stream is down, the last status stays on screen under a line saying since when
 * etcd has been unreachable; the line goes once the stream is back. On a terminal the screen is
 * redrawn every second from the local clock, so ages (`3s ago`), lease time left and the time to
 * the window's next change keep counting between changes, with no request to etcd.
 */
import type { GroupStatus } from '@sluice/core';
import { GroupAdmin } from '@sluice/etcd';
import { type Context, EXIT } from '../context.js';
import { formatStatus, instant } from '../format.js';

/** Clears the screen and moves the cursor home. */
const CLEAR = '\x1b[H\x1b[2J';

/** How often a terminal's screen is redrawn between changes. */
const TICK_MS = 1000;

/**
 * The status as it stands `now`, for a status built at `at`: each lease has run down by the time
 * since. Everything else that counts (ages, the window) is drawn from `now` already.
 */
export function statusAt(status: GroupStatus, at: number, now: number): GroupStatus {
  const elapsed = Math.max(0, Math.floor((now - at) / 1000));
  if (elapsed === 0) return status;
  return {
    ...status,
    holders: status.holders.map((h) =>
      h.leaseSecondsLeft === null
        ? h
        : { ...h, leaseSecondsLeft: Math.max(0, h.leaseSecondsLeft - elapsed) },
    ),
  };
}

/** The line shown while etcd cannot be reached. */
export function outageLine(since: Date): string {
  return `etcd unreachable since ${instant(since)}, showing the last state`;
}

/**
 * Prints the status now and after every change until SIGINT or SIGTERM. On a terminal it redraws
 * in place; otherwise it prints one block per change (`-o json`: one JSON object per line, each
 * with `etcdUnreachableSince`: null, or when etcd became unreachable). When etcd becomes
 * unreachable, the last status is printed again with the outage line (JSON: with
 * `etcdUnreachableSince` set).
 */
export async function watch(ctx: Context): Promise<number> {
  const keys = await ctx.keys();
  const admin = new GroupAdmin(await ctx.client(), keys);
  const tty = Boolean(ctx.io.stdout.isTTY) && !ctx.json;
  let last: GroupStatus | null = null;
  /** When `last` arrived. */
  let lastAt = 0;
  let down: Date | null = null;
  const draw = () => {
    if (!last) return;
    const now = new Date();
    const banner = down ? `${outageLine(down)}\n` : '';
    if (ctx.json) {
      ctx.out(JSON.stringify({ ...last, etcdUnreachableSince: down?.toISOString() ?? null }));
    } else if (tty) {
      const footer = down
        ? `revision ${last.revision}, last updated before the outage; reconnecting, Ctrl-C to stop`
        : `revision ${last.revision} as of ${instant(new Date(lastAt))}, now ${instant(now)}; watching for changes, Ctrl-C to stop`;
      const shown = statusAt(last, lastAt, now.getTime());
      ctx.io.stdout.write(`${CLEAR}${banner}${formatStatus(shown, now)}\n\n${footer}\n`);
    } else {
      ctx.out(
        `--- ${instant(now)} revision ${last.revision}\n${banner}${formatStatus(last, now)}\n`,
      );
    }
  };
  const handle = await admin.watch(
    (status) => {
      last = status;
      lastAt = Date.now();
      draw();
    },
    {
      onError: (error) => ctx.err(`sluicectl: ${error.message}`),
      onConnection: (connected, at) => {
        if (connected) {
          // A fresh status follows and is drawn without the line.
          down = null;
          return;
        }
        down = at;
        draw();
      },
    },
  );
  ctx.defer(() => handle.close());
  if (tty) {
    // Ages and countdowns keep moving between changes: a redraw from the local clock only.
    const ticker = setInterval(draw, TICK_MS);
    ctx.defer(() => clearInterval(ticker));
  }
  const signal = ctx.io.signal;
  await new Promise<void>((resolve) => {
    if (!signal) return; // Nobody can stop us but the process ending.
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
  return EXIT.ok;
}
