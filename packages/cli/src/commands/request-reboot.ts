/**
 * `sluicectl request-reboot`: ask a node's agent for a coordinated reboot. The agent still waits
 * for its window and a slot like any other reboot.
 */
import type { RebootRequest } from '@sluice/core';
import { GroupAdmin } from '@sluice/etcd';
import { type Context, checkNodeName, EXIT } from '../context.js';

/** Writes a reboot request for NODE (default: this node), or with `cancel` withdraws it. */
export async function requestReboot(
  ctx: Context,
  nodeArg: string | undefined,
  opts: { node?: string; reason: string; cancel?: boolean },
): Promise<number> {
  const node = nodeArg ? checkNodeName(nodeArg, 'NODE') : await ctx.selfNode(opts.node);
  const keys = await ctx.keys();
  if (opts.cancel) {
    const cancelled = await new GroupAdmin(await ctx.client(), keys).cancelRebootRequest(
      node,
      ctx.operator,
    );
    if (ctx.json) ctx.outJson({ group: keys.group, node, cancelled });
    else if (cancelled) ctx.out(`cancelled the reboot request of ${node} in group ${keys.group}`);
    else {
      ctx.err(
        `sluicectl: ${node} has no reboot request in group ${keys.group} (its agent may have acted on it already)`,
      );
    }
    return cancelled ? EXIT.ok : EXIT.refused;
  }
  const request: RebootRequest = {
    v: 1,
    node,
    reason: opts.reason,
    requestedAt: new Date().toISOString(),
    by: ctx.operator,
  };
  await new GroupAdmin(await ctx.client(), keys).requestReboot(request);
  if (ctx.json) {
    ctx.outJson({ group: keys.group, key: keys.request(node), request });
  } else {
    ctx.out(`requested a reboot of ${node} in group ${keys.group}: ${opts.reason}`);
    ctx.out(
      'Its agent takes a slot when the window is open and one is free; see "sluicectl status".',
    );
  }
  return EXIT.ok;
}
