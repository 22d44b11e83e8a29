/**
 * `sluicectl pause` and `sluicectl resume`: the fleet-wide brake.
 */
import { lostHolders, parsePaused } from '@sluice/core';
import { etcdCall, GroupAdmin, readGroup } from '@sluice/etcd';
import { type Context, EXIT } from '../context.js';

/** Pauses the group. An existing pause is left as it is (its reason is kept). */
export async function pause(ctx: Context, opts: { reason: string }): Promise<number> {
  await ctx.requireGroup('write');
  const keys = await ctx.keys();
  const client = await ctx.client();
  const done = await new GroupAdmin(client, keys).pause(opts.reason, ctx.operator);
  if (done) {
    if (ctx.json) ctx.outJson({ group: keys.group, paused: true, changed: true });
    else ctx.out(`paused group ${keys.group}: no new slots until "${ctx.command('resume')}"`);
    return EXIT.ok;
  }
  const current = parsePaused(
    (await etcdCall(`a read of ${keys.paused}`, () => client.get(keys.paused).string())) ??
      undefined,
  );
  if (ctx.json) ctx.outJson({ group: keys.group, paused: true, changed: false });
  else ctx.out(`group ${keys.group} was already paused: ${current?.reason ?? '?'} (left as is)`);
  return EXIT.ok;
}

/**
 * Resumes the group, which also clears a halt written for a lost holder. Refused while lost
 * holders still exceed the loss budget: the next reader would halt the group again at once.
 */
export async function resume(ctx: Context): Promise<number> {
  await ctx.requireGroup('write');
  const keys = await ctx.keys();
  const client = await ctx.client();
  const snapshot = await readGroup(client, keys);
  const lost = lostHolders(snapshot);
  const budget = snapshot.lossBudget.ok ? snapshot.lossBudget.value : 0;
  if (lost.length > budget) {
    const names = lost.map((h) => h.node);
    ctx.err(
      `sluicectl: not resuming group ${keys.group}: ${names.join(', ')} ${names.length === 1 ? 'is' : 'are'} still lost (hold lease expired without a release), so the group would halt again at once.`,
    );
    ctx.err(
      `Check ${names.length === 1 ? 'that node' : 'those nodes'}, then run: ${names.map((n) => ctx.command('unlock', n, '--force')).join('; ')}; and resume again.`,
    );
    return EXIT.refused;
  }
  const resumed = await new GroupAdmin(client, keys).resume(ctx.operator);
  if (ctx.json) ctx.outJson({ group: keys.group, paused: false, changed: resumed });
  else if (resumed) ctx.out(`resumed group ${keys.group}: slots are granted again`);
  else ctx.out(`group ${keys.group} was not paused`);
  return EXIT.ok;
}
