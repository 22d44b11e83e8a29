/**
 * `sluicectl set-max N`: how many nodes of the group may hold a slot at once.
 */
import { MAX_LIMIT, parseMax, quoteValue, SluiceError } from '@sluice/core';
import { GroupAdmin } from '@sluice/etcd';
import { type Context, EXIT } from '../context.js';

/**
 * Validates N as the agents will, writes it, and prints the old and new value. With `-o json`:
 * `{"group","key","old": number|null,"oldInvalid": string|null,"new": number}`.
 */
export async function setMax(ctx: Context, n: string): Promise<number> {
  const keys = await ctx.keys();
  // Refuse a bad N before touching etcd, with the same rules the agents apply to the key.
  const parsed = parseMax(n, 'N');
  if (!parsed.ok) {
    throw new SluiceError(
      'invalid-config',
      `N is ${quoteValue(n)}: max must be a plain decimal from 0 to ${MAX_LIMIT}, without a sign or leading zeros (0 stops all admissions)`,
      'N',
    );
  }
  await ctx.requireGroup('write');
  const result = await new GroupAdmin(await ctx.client(), keys).setMax(n, ctx.operator);
  if (ctx.json) {
    // Both as numbers. `old` is null when the key was unset (agents then use 1) or did not parse;
    // `oldInvalid` keeps the text in the second case.
    const old = result.old === null ? null : parseMax(result.old, keys.max);
    ctx.outJson({
      group: keys.group,
      key: keys.max,
      old: old?.ok ? old.value : null,
      oldInvalid: old && !old.ok ? result.old : null,
      new: result.new,
    });
    return EXIT.ok;
  }
  const old = result.old === null ? 'unset (1)' : result.old;
  ctx.out(`max of group ${keys.group}: ${old} -> ${result.new}`);
  ctx.out(`(the same as: etcdctl put ${keys.max} ${result.new})`);
  return EXIT.ok;
}
