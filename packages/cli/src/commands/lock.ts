/**
 * `sluicectl lock` and `sluicectl unlock`: taking and giving back a slot by hand.
 *
 * `lock` exits right after taking the slot, so the slot sits on a hold lease that outlives the
 * process (`--ttl`, default 24h) and that nobody keeps alive. If nobody unlocks it within the TTL,
 * the lease expires, the slot counts as a lost holder, and the group halts: the safe outcome,
 * since nobody can tell whether the maintenance finished.
 */
import { type Decision, isSluiceError, parseDuration, SluiceError } from '@sluice/core';
import { type Grant, GroupAdmin, readGroup, Semaphore } from '@sluice/etcd';
import { type Context, checkNodeName, EXIT, localHostname } from '../context.js';
import { human, instant, until } from '../format.js';

/** Options of `sluicectl lock`. */
export interface LockOptions {
  node?: string;
  reason: string;
  wait?: boolean;
  ttl: string;
}

/** The shortest `--ttl` accepted: a manual lock shorter than this is surely a typo. */
const MIN_TTL_SECONDS = 10;

/** Why a slot was not granted, for people. */
function refusal(decision: Decision, group: string): string {
  if (decision.kind !== 'wait') return `the group changed while taking the slot; try again`;
  switch (decision.reason) {
    case 'queue':
      return `group ${group} is full (${decision.detail}); try again later, or add --wait`;
    case 'window-closed':
      return `the reboot window of group ${group} is closed${decision.wakeAt ? `; it opens ${instant(decision.wakeAt)}` : ''}; add --wait to wait for it`;
    case 'paused':
    case 'halted':
      return `${decision.detail}; resume the group first ("sluicectl resume")`;
    default:
      return decision.detail;
  }
}

/** Takes a slot for this node (or `--node`), recorded as manual, and exits holding it. */
export async function lock(ctx: Context, opts: LockOptions): Promise<number> {
  const ttl = parseDuration(opts.ttl, '--ttl');
  if (!ttl.ok) throw ttl.error;
  const holdTTL = Math.ceil(ttl.value / 1000);
  if (holdTTL < MIN_TTL_SECONDS) {
    throw new SluiceError(
      'invalid-config',
      `--ttl ${opts.ttl} is too short: a manual lock must be held at least ${MIN_TTL_SECONDS}s`,
      '--ttl',
    );
  }
  const node = await ctx.selfNode(opts.node);
  const keys = await ctx.keys();
  const client = await ctx.client();
  let lastDetail = '';
  const semaphore = new Semaphore(client, {
    node,
    hostname: opts.node ? opts.node : localHostname(),
    prefix: keys.prefix,
    group: keys.group,
    holdTTL,
    onDecision: (decision) => {
      if (decision.kind !== 'wait' || decision.detail === lastDetail || ctx.json) return;
      lastDetail = decision.detail;
      ctx.err(`waiting for a slot in group ${keys.group}: ${decision.detail}`);
    },
  });
  // Deferred after the client, so it runs first: stop refreshing the leases (never revoke them:
  // the slot must outlive this process), then close the client.
  ctx.defer(() => semaphore.close());

  const before = semaphore.own(await semaphore.snapshot());
  // A key the node's agent wrote is the agent's: taking it over would move it onto our lease.
  if (before && before.record?.manual !== true) {
    const what = before.holding
      ? `already holds a slot (${before.record?.state ?? 'unknown state'})`
      : 'is already queued';
    ctx.err(
      `sluicectl: ${node} ${what} in group ${keys.group} through its agent; let the agent finish, or remove it with "sluicectl unlock ${node} --force" first`,
    );
    return EXIT.refused;
  }
  const request = { reason: opts.reason, manual: true };
  let grant: Grant;
  if (!opts.wait) {
    const result = await semaphore.tryAcquire(request);
    if ('kind' in result) {
      ctx.err(`sluicectl: no slot for ${node}: ${refusal(result, keys.group)}`);
      return EXIT.refused;
    }
    grant = result;
  } else {
    try {
      grant = await semaphore.acquire(request, ctx.io.signal);
    } catch (error) {
      if (isSluiceError(error) && error.kind === 'aborted') {
        // Given up: leave the queue, and give back a slot granted at the last moment.
        const own = semaphore.own(await semaphore.snapshot());
        if (own?.holding) await semaphore.release();
        else await semaphore.leave();
        ctx.err(`sluicectl: gave up waiting; ${node} left the queue of group ${keys.group}`);
        return EXIT.refused;
      }
      throw error;
    }
  }

  const expiresAt = new Date(Date.now() + holdTTL * 1000);
  if (ctx.json) {
    ctx.outJson({
      group: keys.group,
      node,
      revision: grant.revision,
      alreadyHeld: before?.holding ?? false,
      holdTTLSeconds: holdTTL,
      expiresAt: expiresAt.toISOString(),
    });
    return EXIT.ok;
  }
  ctx.out(
    before?.holding
      ? `${node} already held a slot in group ${keys.group}; its hold lease now runs ${human(holdTTL * 1000)}`
      : `locked: ${node} holds a slot in group ${keys.group} (fencing revision ${grant.revision})`,
  );
  ctx.out(
    `Release it with "sluicectl unlock${opts.node ? ` --node ${node}` : ''}" before ${until(expiresAt, new Date())};`,
  );
  ctx.out('after that the slot counts as lost and the group halts until an operator resumes it.');
  return EXIT.ok;
}

/** Options of `sluicectl unlock`. */
export interface UnlockOptions {
  node?: string;
  force?: boolean;
}

/**
 * Releases this node's slot (outcome `released`), or with `--force` any node's (outcome `forced`,
 * or `lost` for a lost holder, recorded with who did it).
 */
export async function unlock(
  ctx: Context,
  nodeArg: string | undefined,
  opts: UnlockOptions,
): Promise<number> {
  const target = nodeArg ? checkNodeName(nodeArg, 'NODE') : await ctx.selfNode(opts.node);
  const keys = await ctx.keys();
  if (opts.force) {
    const client = await ctx.client();
    const snapshot = await readGroup(client, keys);
    const wasLost = snapshot.holding.some((h) => h.node === target && h.orphan);
    const done = await new GroupAdmin(client, keys).forceRelease(target, ctx.operator);
    if (!done) {
      ctx.err(`sluicectl: ${target} holds no slot in group ${keys.group} and is not queued`);
      return EXIT.refused;
    }
    if (ctx.json) {
      ctx.outJson({ group: keys.group, node: target, outcome: wasLost ? 'lost' : 'forced' });
    } else if (wasLost) {
      ctx.out(`cleared lost holder ${target} in group ${keys.group} (recorded as lost)`);
      ctx.out('If the group was halted for it, run "sluicectl resume" to continue the rollout.');
    } else {
      ctx.out(`released ${target} in group ${keys.group} (recorded as forced by ${ctx.operator})`);
    }
    return EXIT.ok;
  }

  const self = nodeArg ? await ctx.selfNode(opts.node) : target;
  if (target !== self) {
    ctx.err(
      `sluicectl: ${target} is not this node (${self}); to release another node's slot add --force: sluicectl unlock ${target} --force`,
    );
    return EXIT.refused;
  }
  const client = await ctx.client();
  const semaphore = new Semaphore(client, { node: self, prefix: keys.prefix, group: keys.group });
  ctx.defer(() => semaphore.close());
  const snapshot = await semaphore.snapshot();
  const own = semaphore.own(snapshot);
  const lost = snapshot.holding.find((h) => h.node === self && h.orphan);
  let outcome: 'released' | 'left' | 'lost';
  if (own?.holding) {
    if (!(await semaphore.release())) {
      throw new SluiceError('refused', `${self}'s slot changed while releasing it; try again`);
    }
    outcome = 'released';
  } else if (own) {
    await semaphore.leave();
    outcome = 'left';
  } else if (lost) {
    await semaphore.release();
    outcome = 'lost';
  } else {
    ctx.err(`sluicectl: ${self} holds no slot in group ${keys.group} and is not queued`);
    return EXIT.refused;
  }
  if (ctx.json) {
    ctx.outJson({ group: keys.group, node: self, outcome });
  } else if (outcome === 'released') {
    ctx.out(`unlocked: ${self} released its slot in group ${keys.group}`);
  } else if (outcome === 'left') {
    ctx.out(`${self} was waiting, not holding; it left the queue of group ${keys.group}`);
  } else {
    ctx.out(`cleared ${self}'s lost slot in group ${keys.group} (recorded as lost)`);
    ctx.out('If the group was halted for it, run "sluicectl resume" to continue the rollout.');
  }
  return EXIT.ok;
}
