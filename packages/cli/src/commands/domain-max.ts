/**
 * `sluicectl domain-max [N] [--clear]`: how many nodes of one failure domain (`node.domain`: a
 * rack, a zone) may hold a slot at once, on top of max. Without N it shows the limit and each
 * domain's holders and waiters.
 */
import { MAX_LIMIT, parseDomainMax, quoteValue, SluiceError } from '@sluice/core';
import { GroupAdmin } from '@sluice/etcd';
import { type Context, EXIT } from '../context.js';
import { table } from '../format.js';

/** Options of `sluicectl domain-max`. */
export interface DomainMaxOptions {
  clear?: boolean;
}

/**
 * Shows, sets or clears `domain-max`. With `-o json`: when setting, `{"group","key","old","new"}`
 * (numbers, or null for unset); when showing, `{"group","key","domainMax","domains":[...]}`.
 */
export async function domainMax(
  ctx: Context,
  n: string | undefined,
  opts: DomainMaxOptions,
): Promise<number> {
  const keys = await ctx.keys();
  if (n !== undefined && opts.clear) {
    throw new SluiceError('invalid-config', 'give N or --clear, not both', '--clear');
  }
  if (n === undefined && !opts.clear) return show(ctx);
  // Refuse a bad N before touching etcd, with the same rules the agents apply to the key.
  if (n !== undefined && !parseDomainMax(n, 'N').ok) {
    throw new SluiceError(
      'invalid-config',
      `N is ${quoteValue(n)}: domain-max must be a plain decimal from 0 to ${MAX_LIMIT}, without a sign or leading zeros (0 admits no node that has a domain)`,
      'N',
    );
  }
  await ctx.requireGroup('write');
  const admin = new GroupAdmin(await ctx.client(), keys);
  const result = await admin.setDomainMax(n ?? null, ctx.operator);
  const old = result.old === null ? null : parseDomainMax(result.old, keys.domainMax);
  if (ctx.json) {
    ctx.outJson({
      group: keys.group,
      key: keys.domainMax,
      old: old?.ok ? old.value : null,
      oldInvalid: old && !old.ok ? result.old : null,
      new: result.new,
    });
    return EXIT.ok;
  }
  const shown = (v: string | number | null) => (v === null ? 'unset (no limit)' : String(v));
  ctx.out(`domain-max of group ${keys.group}: ${shown(result.old)} -> ${shown(result.new)}`);
  ctx.out(
    result.new === null
      ? `(the same as: etcdctl del ${keys.domainMax})`
      : `(the same as: etcdctl put ${keys.domainMax} ${result.new})`,
  );
  return EXIT.ok;
}

async function show(ctx: Context): Promise<number> {
  const keys = await ctx.keys();
  await ctx.requireGroup('read');
  const status = await new GroupAdmin(await ctx.client(), keys).status();
  const error = status.errors.find((e) => e.key === keys.domainMax);
  if (ctx.json) {
    ctx.outJson({
      group: keys.group,
      key: keys.domainMax,
      domainMax: status.domainMax,
      error: error?.message ?? null,
      domains: status.domains,
    });
    return EXIT.ok;
  }
  if (error) {
    ctx.out(`domain-max of group ${keys.group} is invalid: ${error.message}`);
    return EXIT.ok;
  }
  if (status.domainMax === null) {
    ctx.out(`domain-max of group ${keys.group}: unset (no limit per failure domain)`);
    return EXIT.ok;
  }
  ctx.out(`domain-max of group ${keys.group}: ${status.domainMax} holder(s) per failure domain`);
  if (status.domains.length > 0) {
    ctx.out(
      table(
        ['DOMAIN', 'HOLDERS', 'WAITING', 'FULL'],
        status.domains.map((d) => [
          d.domain,
          String(d.holders),
          String(d.waiting),
          d.full ? 'yes' : 'no',
        ]),
      ),
    );
  }
  return EXIT.ok;
}
