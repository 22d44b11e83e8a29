/**
 * `sluicectl watch`: the group's status, printed again on every change. Changes come from an etcd
 * watch on the group (nothing polls); the window opening or closing also brings a new status.
 */
import type { GroupStatus } from '@sluice/core';
import { GroupAdmin } from '@sluice/etcd';
import { type Context, EXIT } from '../context.js';
import { formatStatus, instant } from '../format.js';

/** Clears the screen and moves the cursor home. */
const CLEAR = '\x1b[H\x1b[2J';

/**
 * Prints the status now and after every change until SIGINT or SIGTERM. On a terminal it redraws
 * in place; otherwise it prints one block per change (`-o json`: one JSON object per line).
 */
export async function watch(ctx: Context): Promise<number> {
  const keys = await ctx.keys();
  const admin = new GroupAdmin(await ctx.client(), keys);
  const tty = Boolean(ctx.io.stdout.isTTY) && !ctx.json;
  const render = (status: GroupStatus) => {
    const now = new Date();
    if (ctx.json) {
      ctx.out(JSON.stringify(status));
    } else if (tty) {
      ctx.io.stdout.write(
        `${CLEAR}${formatStatus(status, now)}\n\nrevision ${status.revision}, updated ${instant(now)}; watching for changes, Ctrl-C to stop\n`,
      );
    } else {
      ctx.out(`--- ${instant(now)} revision ${status.revision}\n${formatStatus(status, now)}\n`);
    }
  };
  const handle = await admin.watch(render, (error) => ctx.err(`sluicectl: ${error.message}`));
  ctx.defer(() => handle.close());
  const signal = ctx.io.signal;
  await new Promise<void>((resolve) => {
    if (!signal) return; // Nobody can stop us but the process ending.
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
  return EXIT.ok;
}
