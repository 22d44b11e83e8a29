/**
 * `sluicectl canary [set K SOAK | clear | reset | skip]`: the group's canary, `groups/<g>/canary`.
 * For each new update version, the first K nodes reboot into it alone; nobody else goes until
 * they are all back with their post-checks passed and SOAK has passed (see canary.ts in core).
 */
import {
  type CanaryStatus,
  formatCanary,
  parseCanary,
  quoteValue,
  SluiceError,
} from '@sluice/core';
import { GroupAdmin } from '@sluice/etcd';
import { type Context, EXIT } from '../context.js';
import { canaryLine } from '../format.js';

/** Shows the canary setting and where the current canary stands. */
export async function showCanary(ctx: Context): Promise<number> {
  const keys = await ctx.keys();
  await ctx.requireGroup('read');
  const status = await new GroupAdmin(await ctx.client(), keys).status();
  const errors = status.errors.filter((e) => e.key === keys.canary || e.key === keys.canaryState);
  if (ctx.json) {
    ctx.outJson({
      group: keys.group,
      key: keys.canary,
      canary: status.canary,
      errors,
    });
    return EXIT.ok;
  }
  for (const e of errors) ctx.out(`group ${keys.group}: ${e.message}`);
  if (errors.length > 0) return EXIT.ok;
  if (status.canary === null) {
    ctx.out(`group ${keys.group} has no canary`);
    ctx.out('(set one with: sluicectl canary set 2 30m)');
    return EXIT.ok;
  }
  ctx.out(`Group:   ${keys.group}`);
  ctx.out(`Canary:  ${canaryLine(status.canary, new Date())}`);
  const proven = status.canary.done;
  if (proven.length > 0) ctx.out(`Proven:  ${proven.join(', ')}`);
  for (const line of hint(status.canary)) ctx.out(line);
  return EXIT.ok;
}

function hint(canary: CanaryStatus): string[] {
  if (canary.phase !== 'failed') return [];
  return [
    '',
    'Nobody is admitted until you decide: sluicectl canary reset (the next nodes of the version are',
    'its canaries again) or sluicectl canary skip (accept the version); then sluicectl resume.',
  ];
}

/** Validates K and SOAK as the agents read them and stores `{"count":K,"soak":"..."}`. */
export async function setCanary(ctx: Context, count: string, soak: string): Promise<number> {
  const n = /^[1-9][0-9]{0,3}$/.test(count) ? Number(count) : Number.NaN;
  const text = JSON.stringify({ count: n, soak });
  const parsed = Number.isNaN(n) ? null : parseCanary(text, 'canary');
  if (!parsed?.ok || !parsed.value) {
    const why = parsed && !parsed.ok ? parsed.error.message.replace(/^canary is \S+: /, '') : '';
    throw new SluiceError(
      'invalid-config',
      Number.isNaN(n)
        ? `K is ${quoteValue(count)}: the canary count must be a whole number from 1 to 1000`
        : `SOAK is ${quoteValue(soak)}: ${why}`,
      Number.isNaN(n) ? 'K' : 'SOAK',
    );
  }
  const keys = await ctx.keys();
  await ctx.requireGroup('write');
  const value = formatCanary(parsed.value);
  await new GroupAdmin(await ctx.client(), keys).setCanary(value, ctx.operator);
  if (ctx.json) {
    ctx.outJson({ group: keys.group, key: keys.canary, value });
    return EXIT.ok;
  }
  ctx.out(`canary of group ${keys.group}: ${value}`);
  ctx.out(`(the same as: etcdctl put ${keys.canary} '${value}')`);
  return EXIT.ok;
}

/** Removes the canary setting: new versions go out as max allows. */
export async function clearCanary(ctx: Context): Promise<number> {
  const keys = await ctx.keys();
  await ctx.requireGroup('write');
  const cleared = await new GroupAdmin(await ctx.client(), keys).clearCanary(ctx.operator);
  if (ctx.json) {
    ctx.outJson({ group: keys.group, key: keys.canary, cleared });
    return EXIT.ok;
  }
  ctx.out(cleared ? `canary of group ${keys.group} removed` : `group ${keys.group} had no canary`);
  return EXIT.ok;
}

/** `reset` or `skip`: ends the current canary (see GroupAdmin.endCanary). */
export async function endCanary(ctx: Context, how: 'reset' | 'skip'): Promise<number> {
  const keys = await ctx.keys();
  await ctx.requireGroup('write');
  const { version } = await new GroupAdmin(await ctx.client(), keys).endCanary(how, ctx.operator);
  if (ctx.json) {
    ctx.outJson({ group: keys.group, how, version });
    return EXIT.ok;
  }
  if (version === null) {
    ctx.out(`group ${keys.group} has no canary to ${how}`);
    return EXIT.ok;
  }
  ctx.out(
    how === 'reset'
      ? `canary of ${version} in group ${keys.group} reset: the next nodes of ${version} are its canaries`
      : `canary of ${version} in group ${keys.group} skipped: ${version} counts as proven`,
  );
  ctx.out('(a halt it caused stays until: sluicectl resume)');
  return EXIT.ok;
}
