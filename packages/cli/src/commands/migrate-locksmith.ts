/**
 * `sluicectl migrate-locksmith`: moves a group from a live locksmith to sluice without ever
 * having more than max nodes down while the fleet switches node by node. See `migrateLocksmith`
 * in `@sluice/etcd` for what it does and why it is safe.
 */
import { SluiceError } from '@sluice/core';
import { type MigrationPlan, migrateLocksmith, V2Keys } from '@sluice/etcd';
import { type Context, EXIT } from '../context.js';

/** Options of `sluicectl migrate-locksmith`. */
export interface MigrateOptions {
  dryRun?: boolean;
  overwrite?: boolean;
  api?: string;
  max?: string;
}

const list = (nodes: readonly string[]) => (nodes.length === 0 ? 'none' : nodes.join(', '));

/** Reads locksmith's semaphore for the group and migrates it (or, with --dry-run, says how). */
export async function migrate(ctx: Context, opts: MigrateOptions): Promise<number> {
  if (opts.api !== undefined && opts.api !== 'v2' && opts.api !== 'v3') {
    throw new SluiceError('invalid-config', `--api ${opts.api}: want v2 or v3`, '--api');
  }
  let max: number | undefined;
  if (opts.max !== undefined) {
    if (!/^(0|[1-9][0-9]{0,3})$/.test(opts.max) || Number(opts.max) > 10_000) {
      throw new SluiceError('invalid-config', '--max: a whole number from 0 to 10000', '--max');
    }
    max = Number(opts.max);
  }
  const keys = await ctx.keys();
  const client = await ctx.client();
  const plan = await migrateLocksmith(client, keys, {
    ...(opts.dryRun ? { dryRun: true } : {}),
    ...(opts.overwrite ? { overwrite: true } : {}),
    ...(opts.api ? { api: opts.api as 'v2' | 'v3' } : {}),
    ...(max !== undefined ? { max } : {}),
    by: ctx.operator,
    v2: new V2Keys(await ctx.connection()),
  });
  if (ctx.json) {
    ctx.outJson({ dryRun: Boolean(opts.dryRun), ...plan, undo: undo(ctx, plan) });
    return EXIT.ok;
  }
  print(ctx, plan, Boolean(opts.dryRun));
  return EXIT.ok;
}

/** The commands that take the migration back, in order. */
function undo(ctx: Context, plan: MigrationPlan): string[] {
  const steps = plan.migrated.map((n) => ctx.command('unlock', n, '--force'));
  const before = plan.locksmith.before;
  if (before.max !== plan.locksmith.after.max) {
    steps.unshift(
      `locksmithctl${plan.group === 'default' ? '' : ` -group ${plan.group}`} set-max ${before.max}   # locksmith's own locksmithctl (/usr/bin/locksmithctl on Flatcar), not sluice's`,
    );
  }
  return steps;
}

function print(ctx: Context, plan: MigrationPlan, dryRun: boolean): void {
  const ls = plan.locksmith;
  const where = `${ls.api === 'v2' ? 'v2 key /' : 'v3 key '}${ls.key}`;
  if (plan.nothingToDo) {
    ctx.out(
      `group ${plan.group} is migrated already: locksmith's semaphore (${where}) admits nobody (max 0) and its holders are sluice slots`,
    );
    return;
  }
  const would = dryRun ? 'would ' : '';
  ctx.out(
    `${dryRun ? 'dry run: nothing is written. ' : ''}locksmith's semaphore (${where}): max ${ls.before.max}, holders ${list(ls.before.holders)}`,
  );
  ctx.out(
    ls.before.max === ls.after.max
      ? '  locksmith: admits nobody already (max 0)'
      : `  locksmith: ${would}set max ${ls.before.max} -> 0, holders kept: no locksmith node takes a slot from then on`,
  );
  const maxBefore = plan.max.before === null ? 'unset (1)' : plan.max.before;
  ctx.out(
    plan.max.changed
      ? `  sluice:    ${would}set max of group ${plan.group} ${maxBefore} -> ${plan.max.after}`
      : `  sluice:    max of group ${plan.group} stays ${plan.max.after}${plan.max.before !== null ? " (already set; --overwrite sets locksmith's)" : ''}`,
  );
  if (plan.migrated.length > 0) {
    ctx.out(
      plan.migrated.length === 1
        ? `  sluice:    ${would}record ${plan.migrated[0]} as a migrated slot: it counts against max until that node's sluiced starts and gives it back`
        : `  sluice:    ${would}record ${list(plan.migrated)} as migrated slots: they count against max until each node's sluiced starts and gives its slot back`,
    );
  }
  for (const s of plan.skipped) ctx.out(`  skipped:   ${s.node}: ${s.why}`);
  if (plan.taken > plan.max.after) {
    ctx.out(
      `  note:      ${plan.taken} slots are taken, more than max ${plan.max.after}: nobody new is admitted until they drain`,
    );
  }
  if (dryRun) {
    ctx.out(`Run it without --dry-run to migrate: ${ctx.command('migrate-locksmith')}`);
    return;
  }
  ctx.out('To undo it:');
  for (const step of undo(ctx, plan)) ctx.out(`  ${step}`);
}
