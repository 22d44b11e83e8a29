/**
 * `sluicectl request-reboot` and `sluicectl cancel-request`: ask a node's agent for a coordinated
 * reboot, or take the request back. The agent still waits for its window and a slot like any
 * other reboot. A request lapses after `--ttl` (default 24h): it sits on a lease of its own, and
 * carries `expiresAt` so the agent ignores it from then on even before etcd deletes it.
 */
import { parseDuration, type RebootRequest, SluiceError } from '@sluice/core';
import { GroupAdmin, nodeKnown } from '@sluice/etcd';
import { type Context, checkNodeName, EXIT } from '../context.js';
import { human } from '../format.js';

/** Options of `sluicectl request-reboot`. */
export interface RequestRebootOptions {
  node?: string;
  reason: string;
  ttl: string;
  allowUnknown?: boolean;
  /** Withdraw the request instead (as `cancel-request` does). */
  cancel?: boolean;
}

/** The longest `--ttl` of a request: a week. A request that old has surely been forgotten. */
const MAX_REQUEST_TTL_SECONDS = 7 * 24 * 3600;

/**
 * Writes a reboot request for NODE (default: this node). Refuses a node the group does not know
 * (not registered, queued or holding) unless `--allow-unknown`: a request for a mistyped name
 * would wait for a node that never comes, or reboot one that joins later under that name.
 */
export async function requestReboot(
  ctx: Context,
  nodeArg: string | undefined,
  opts: RequestRebootOptions,
): Promise<number> {
  const node = nodeArg ? checkNodeName(nodeArg, 'NODE') : await ctx.selfNode(opts.node);
  if (opts.cancel) return cancelRequest(ctx, node);
  const ttl = parseDuration(opts.ttl, '--ttl');
  if (!ttl.ok) throw ttl.error;
  const ttlSeconds = Math.ceil(ttl.value / 1000);
  if (ttlSeconds < 1 || ttlSeconds > MAX_REQUEST_TTL_SECONDS) {
    throw new SluiceError(
      'invalid-config',
      `--ttl ${opts.ttl}: a request lasts from 1s to 168h (a week)`,
      '--ttl',
    );
  }
  await ctx.requireGroup('write');
  const keys = await ctx.keys();
  const client = await ctx.client();
  if (!opts.allowUnknown && !(await nodeKnown(client, keys, node))) {
    throw new SluiceError(
      'invalid-config',
      `${node} is not a known node in group ${keys.group}: no agent has registered under that name, and it is not queued or holding a slot. Check the name (see "${ctx.command('status')}"), or add --allow-unknown to request it anyway`,
      'NODE',
    );
  }
  const now = new Date();
  const request: RebootRequest = {
    v: 1,
    node,
    reason: opts.reason,
    requestedAt: now.toISOString(),
    by: ctx.operator,
    expiresAt: new Date(now.getTime() + ttlSeconds * 1000).toISOString(),
  };
  await new GroupAdmin(client, keys).requestReboot(request, ttlSeconds);
  if (ctx.json) {
    ctx.outJson({ group: keys.group, key: keys.request(node), request });
  } else {
    ctx.out(`requested a reboot of ${node} in group ${keys.group}: ${opts.reason}`);
    ctx.out(
      `Its agent takes a slot when the window is open and one is free; the request lapses in ${human(ttlSeconds * 1000)} if it has not acted by then.`,
    );
    ctx.out(
      `See "${ctx.command('status')}"; take it back with "${ctx.command('cancel-request', node)}".`,
    );
  }
  return EXIT.ok;
}

/**
 * Withdraws NODE's pending reboot request, recording `cancel-request` in history. Exit 1 when
 * there is none (its agent may have acted on it already).
 */
export async function cancelRequest(ctx: Context, nodeArg: string): Promise<number> {
  const node = checkNodeName(nodeArg, 'NODE');
  await ctx.requireGroup('write');
  const keys = await ctx.keys();
  const cancelled = await new GroupAdmin(await ctx.client(), keys).cancelRebootRequest(
    node,
    ctx.operator,
  );
  if (ctx.json) {
    ctx.outJson({ group: keys.group, node, cancelled });
  } else if (cancelled) {
    ctx.out(`cancelled the reboot request of ${node} in group ${keys.group}`);
  } else {
    ctx.err(
      `sluicectl: ${node} has no reboot request in group ${keys.group} (its agent may have acted on it already)`,
    );
  }
  return cancelled ? EXIT.ok : EXIT.refused;
}
