/**
 * `sluicectl lock` and `sluicectl unlock`: taking and giving back a slot by hand.
 *
 * `lock` exits right after taking the slot, so the slot sits on a hold lease that outlives the
 * process (`--ttl`, default 24h) and that nobody keeps alive. If nobody unlocks it within the TTL,
 * the lease expires, the slot counts as a lost holder, and the group halts: the safe outcome,
 * since nobody can tell whether the maintenance finished.
 */
import {
  type Decision,
  isSluiceError,
  NodeRegistrationSchema,
  parseDuration,
  parseRecord,
  SluiceError,
} from '@sluice/core';
import { etcdCall, type Grant, GroupAdmin, readGroup, Semaphore } from '@sluice/etcd';
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

/** Why a slot was not granted, for people. `resume` is the command that resumes the group. */
function refusal(decision: Decision, group: string, resume: string): string {
  if (decision.kind !== 'wait') return `the group changed while taking the slot; try again`;
  switch (decision.reason) {
    case 'queue':
      return `group ${group} is full (${decision.detail}); try again later, or add --wait`;
    case 'window-closed':
      return `the reboot window of group ${group} is closed${decision.wakeAt ? `; it opens ${instant(decision.wakeAt)}` : ''}; add --wait to wait for it`;
    case 'paused':
    case 'halted':
      return `${decision.detail}; resume the group first ("${resume}")`;
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
  await ctx.requireGroup('write');
  const keys = await ctx.keys();
  const client = await ctx.client();
  let lastDetail = '';
  // A manual lock counts in the node's failure domain, as its agent registered it: a lock must
  // not slip past domain-max.
  const registration = await etcdCall(`a read of ${keys.registration(node)}`, () =>
    client.get(keys.registration(node)).string(),
  );
  const registered =
    registration === null ? null : parseRecord(NodeRegistrationSchema, registration);
  const domain = registered?.ok ? registered.value.domain : undefined;
  const semaphore = new Semaphore(client, {
    node,
    ...(domain === undefined ? {} : { domain }),
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
      `sluicectl: ${node} ${what} in group ${keys.group} through its agent; let the agent finish, or remove it with "${ctx.command('unlock', node, '--force')}" first`,
    );
    return EXIT.refused;
  }
  const request = { reason: opts.reason, manual: true };
  let grant: Grant;
  if (!opts.wait) {
    const result = await semaphore.tryAcquire(request);
    if ('kind' in result) {
      ctx.err(
        `sluicectl: no slot for ${node}: ${refusal(result, keys.group, ctx.command('resume'))}`,
      );
      return EXIT.refused;
    }
    grant = result;
  } else {
    try {
      grant = await semaphore.acquire(request, ctx.io.signal);
    } catch (error) {
      if (isSluiceError(error) && error.kind === 'aborted') {
        // Given up: leave the queue, and give back a slot granted at the last moment (recorded
        // with who gave it back, as "sluicectl unlock" would).
        const own = semaphore.own(await semaphore.snapshot());
        if (own?.holding) {
          await new GroupAdmin(client, keys).releaseManual(node, ctx.operator);
          await semaphore.release(); // Releases whatever is left and drops this run's leases.
        } else {
          await semaphore.leave();
        }
        ctx.err(`sluicectl: gave up waiting; ${node} left the queue of group ${keys.group}`);
        return EXIT.refused;
      }
      throw error;
    }
  }

  if (!before?.holding) {
    // Who took it and why, in history; its release is recorded when it is unlocked.
    await new GroupAdmin(client, keys).recordAction('lock', ctx.operator, {
      node,
      reason: opts.reason,
    });
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
    `Release it with "${ctx.command('unlock', ...(opts.node ? ['--node', node] : []))}" before ${until(expiresAt, new Date())};`,
  );
  ctx.out('after that the slot counts as lost and the group halts until an operator resumes it.');
  return EXIT.ok;
}

/** Options of `sluicectl unlock`. */
export interface UnlockOptions {
  node?: string;
  force?: boolean;
  /** With force: also release a holder that is draining or rebooting right now. */
  yes?: boolean;
}

/**
 * Gives a slot back.
 *
 * Without `--force` it releases only a manual lock (one taken with `sluicectl lock`) of this node:
 * `--node`, else SLUICE_NODE, else /etc/machine-id. A slot that an agent holds needs `--force`
 * even on its own node: releasing it under the running agent would break the reboot in progress.
 * The same holds for another node's slot and a lost holder. Every release is recorded in history
 * with who made it; with `--force` as `forced` (or `lost` for a lost holder).
 */
export async function unlock(
  ctx: Context,
  nodeArg: string | undefined,
  opts: UnlockOptions,
): Promise<number> {
  const target = nodeArg ? checkNodeName(nodeArg, 'NODE') : await ctx.selfNode(opts.node);
  await ctx.requireGroup('write');
  const keys = await ctx.keys();
  const forceCommand = ctx.command('unlock', target, '--force');
  if (opts.force) {
    const client = await ctx.client();
    const snapshot = await readGroup(client, keys);
    const wasLost = snapshot.holding.some((h) => h.node === target && h.orphan);
    // A holder whose lease is alive and that is draining or rebooting right now is down, or about
    // to be: freeing its slot lets the next node reboot while it is. Say so, and want --yes.
    const entry = snapshot.queue.find((e) => e.node === target);
    const live = entry?.holding && ['draining', 'rebooting'].includes(entry.record?.state ?? '');
    if (live && !opts.yes) {
      const state = entry.record?.state;
      const what = `${target} is ${state === 'rebooting' ? 'rebooting' : 'draining for its reboot'} now; releasing its slot lets another node reboot while ${target} is down`;
      const asked = ctx.io.confirm ? await ctx.io.confirm(`${what}. Release it anyway?`) : false;
      if (!asked) {
        ctx.err(`sluicectl: ${what}.`);
        ctx.err(
          `Wait for it to come back, or if you are sure, run: ${ctx.command('unlock', target, '--force', '--yes')}`,
        );
        return EXIT.refused;
      }
    }
    const done = await new GroupAdmin(client, keys).forceRelease(target, ctx.operator);
    if (!done) {
      ctx.err(`sluicectl: ${target} holds no slot in group ${keys.group} and is not queued`);
      return EXIT.refused;
    }
    if (ctx.json) {
      ctx.outJson({
        group: keys.group,
        node: target,
        outcome: wasLost ? 'lost' : 'forced',
        by: ctx.operator,
      });
    } else if (wasLost) {
      ctx.out(
        `cleared lost holder ${target} in group ${keys.group} (recorded as lost by ${ctx.operator})`,
      );
      ctx.out(
        `If the group was halted for it, run "${ctx.command('resume')}" to continue the rollout.`,
      );
    } else {
      ctx.out(`released ${target} in group ${keys.group} (recorded as forced by ${ctx.operator})`);
      if (live) {
        ctx.out(
          `${target} was ${entry.record?.state}: the next node may reboot before it is back.`,
        );
      }
    }
    return EXIT.ok;
  }

  const self = nodeArg ? await ctx.selfNode(opts.node) : target;
  if (target !== self) {
    ctx.err(
      `sluicectl: ${target} is not this node (${self}); to release another node's slot add --force: ${forceCommand}`,
    );
    return EXIT.refused;
  }
  const client = await ctx.client();
  const result = await new GroupAdmin(client, keys).releaseManual(self, ctx.operator);
  if ('refused' in result) {
    switch (result.refused) {
      case 'nothing':
        ctx.err(`sluicectl: ${self} holds no slot in group ${keys.group} and is not queued`);
        break;
      case 'agent': {
        // A record that cannot be read may well be an agent's: it is treated as one.
        const whose =
          result.state === null
            ? 'has an unreadable queue record, so it may be its agent\'s and is not known to come from "sluicectl lock"'
            : `is held by its agent (state ${result.state}), not by "sluicectl lock"`;
        const what = result.holding
          ? `${self}'s slot in group ${keys.group} ${whose}`
          : `${self} is queued in group ${keys.group} by its agent, not by "sluicectl lock"`;
        const harm = result.holding
          ? 'releasing it under a running agent breaks the reboot in progress'
          : 'removing it under a running agent loses its place in the queue';
        ctx.err(`sluicectl: ${what}; ${harm}.`);
        ctx.err(
          `Let the agent finish. If the node or its agent is gone for good, run: ${forceCommand}`,
        );
        break;
      }
      case 'lost':
        ctx.err(
          `sluicectl: ${self} was lost during its reboot in group ${keys.group} (its hold lease expired without a release). Check the node, then clear it with: ${forceCommand}`,
        );
        break;
    }
    return EXIT.refused;
  }
  if (ctx.json) {
    ctx.outJson({ group: keys.group, node: self, outcome: result.outcome, by: ctx.operator });
  } else if (result.outcome === 'released') {
    ctx.out(`unlocked: ${self} released its slot in group ${keys.group}`);
  } else {
    ctx.out(`${self} was waiting, not holding; it left the queue of group ${keys.group}`);
  }
  return EXIT.ok;
}
