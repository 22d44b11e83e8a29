/**
 * `sluicectl blackouts`: the group's maintenance calendar, `groups/<g>/blackouts`. Dates and date
 * ranges, each in a time zone, on which the group's windows stay shut (see blackouts.ts in core).
 */
import {
  type Blackout,
  blackoutAt,
  blackoutSpan,
  describeBlackout,
  formatBlackouts,
  parseBlackouts,
  SluiceError,
} from '@sluice/core';
import { type Context, EXIT } from '../context.js';
import { instant, table } from '../format.js';

/** Shows the group's blackouts: each with its start and end, and the one in force. */
export async function showBlackouts(ctx: Context): Promise<number> {
  const { etcdCall } = await import('@sluice/etcd');
  await ctx.requireGroup('read');
  const keys = await ctx.keys();
  const client = await ctx.client();
  const text = await etcdCall(`a read of ${keys.blackouts}`, () =>
    client.get(keys.blackouts).string(),
  );
  const parsed = text === null ? null : parseBlackouts(text, `etcd key ${keys.blackouts}`);
  const now = new Date();
  const list: Blackout[] = parsed?.ok ? parsed.value : [];
  const current = blackoutAt(list, now);
  if (ctx.json) {
    ctx.outJson({
      group: keys.group,
      key: keys.blackouts,
      spec: text,
      error: parsed && !parsed.ok ? parsed.error.message : null,
      blackouts: list.map((b) => ({ ...b, ...spanOf(b) })),
      now: current ? describeBlackout(current) : null,
    });
    return EXIT.ok;
  }
  if (parsed === null) {
    ctx.out(`group ${keys.group} has no blackouts`);
    ctx.out('(set them with: sluicectl blackouts set "2026-12-24..2026-12-26 Europe/Berlin")');
    return EXIT.ok;
  }
  if (!parsed.ok) {
    ctx.out(`group ${keys.group}: ${parsed.error.message}`);
    ctx.out(
      'Nobody is admitted until it is fixed: sluicectl blackouts set SPEC, or blackouts clear.',
    );
    return EXIT.ok;
  }
  ctx.out(`Group:     ${keys.group}`);
  ctx.out(`Blackouts: ${formatBlackouts(list)}`);
  ctx.out(`Now:       ${current ? `in blackout ${describeBlackout(current)}` : 'no blackout'}`);
  ctx.out('');
  ctx.out(
    table(
      ['BLACKOUT', 'FROM', 'UNTIL'],
      list.map((b) => {
        const span = spanOf(b);
        return [describeBlackout(b), instant(span.start), instant(span.end)];
      }),
    ),
  );
  return EXIT.ok;
}

function spanOf(b: Blackout): { start: string; end: string } {
  const span = blackoutSpan(b);
  return { start: new Date(span.start).toISOString(), end: new Date(span.end).toISOString() };
}

/** Validates SPEC as the agents read it and stores it in canonical form, each entry with its zone. */
export async function setBlackouts(
  ctx: Context,
  text: string,
  opts: { zone: string },
): Promise<number> {
  if (opts.zone === 'local') {
    throw new SluiceError(
      'invalid-config',
      '--zone local: group blackouts need an explicit zone, since nodes in many zones share them',
      '--zone',
    );
  }
  const parsed = parseBlackouts(text, 'SPEC', opts.zone);
  if (!parsed.ok) throw parsed.error;
  const canonical = formatBlackouts(parsed.value);
  const { GroupAdmin } = await import('@sluice/etcd');
  await ctx.requireGroup('write');
  const keys = await ctx.keys();
  await new GroupAdmin(await ctx.client(), keys).setBlackouts(canonical, ctx.operator);
  if (ctx.json) {
    ctx.outJson({ group: keys.group, key: keys.blackouts, spec: canonical });
    return EXIT.ok;
  }
  ctx.out(`blackouts of group ${keys.group} set to: ${canonical}`);
  ctx.out(`(the same as: etcdctl put ${keys.blackouts} '${canonical}')`);
  return EXIT.ok;
}

/** Removes the group's blackouts. */
export async function clearBlackouts(ctx: Context): Promise<number> {
  const { GroupAdmin } = await import('@sluice/etcd');
  await ctx.requireGroup('write');
  const keys = await ctx.keys();
  const removed = await new GroupAdmin(await ctx.client(), keys).clearBlackouts(ctx.operator);
  if (ctx.json) ctx.outJson({ group: keys.group, key: keys.blackouts, removed });
  else if (removed) ctx.out(`removed the blackouts of group ${keys.group}`);
  else ctx.out(`group ${keys.group} had no blackouts`);
  return EXIT.ok;
}
