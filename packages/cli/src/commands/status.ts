/**
 * `sluicectl status`: one group, or every group under the prefix with `--all-groups`. With
 * `--check`, only the verdict, for monitoring and scripts: exit 0 when the group is healthy, 1
 * when it is paused or halted, has invalid or unreadable keys, holders above max or lost, a
 * holder whose post-reboot checks fail past their deadline, a failed canary, or an agent that
 * cannot take part (a second agent with its node id, a clock too far from etcd's), with one line per reason.
 */
import { GroupKeys, type GroupStatus, groupsPrefix, SluiceError } from '@sluice/core';
import { etcdCall, GroupAdmin } from '@sluice/etcd';
import { type Context, type EtcdClient, EXIT } from '../context.js';
import { formatStatus, lowered, since } from '../format.js';

/** Options of `sluicectl status`. */
export interface StatusOptions {
  allGroups?: boolean;
  check?: boolean;
}

/** Why a group is not healthy, one line each; empty when it is. */
export function problems(status: GroupStatus, now: Date): string[] {
  const out: string[] = [];
  const b = status.blocker;
  if (b?.kind === 'halted') {
    out.push(`halted${b.since ? ` since ${since(b.since, now)}` : ''}: ${b.reason}`);
  } else if (status.paused) {
    const p = status.paused;
    out.push(
      `paused${p.by ? ` by ${p.by}` : ''}${p.since ? ` since ${since(p.since, now)}` : ''}: ${p.reason}`,
    );
  }
  for (const e of status.errors) out.push(`${e.key}: ${e.message}`);
  // A failed canary stops the group until an operator resets or skips it (a soaking one is fine).
  if (status.blocker?.kind === 'canary' && status.blocker.failed) out.push(status.blocker.detail);
  if (status.holdersOverMax > 0) {
    out.push(
      `${status.holdersOverMax} holder(s) above max ${status.max}: ${status.holders
        .filter((h) => h.aboveMax)
        .map((h) => h.node)
        .join(', ')}, admitted before ${lowered(status)}`,
    );
  }
  for (const h of status.holders) {
    if (h.problem) out.push(`${h.node}: ${h.problem}`);
  }
  // Agents that cannot take part: a cloned machine's twin, a clock too far off.
  for (const n of status.nodeProblems) out.push(`${n.node}: ${n.problem}`);
  return out;
}

/** Prints the status of the selected group, or of all groups; exit 0 even when values are invalid. */
export async function status(ctx: Context, opts: StatusOptions): Promise<number> {
  // A group from the environment is only a default; one given as a flag asks for that group.
  if (opts.allGroups && ctx.options.group !== undefined) {
    throw new SluiceError(
      'invalid-config',
      `--group ${ctx.options.group} and --all-groups cannot be used together: drop --group to see every group, or --all-groups to see one`,
      '--group',
    );
  }
  const client = await ctx.client();
  const settings = await ctx.settings();
  if (!opts.allGroups) {
    await ctx.requireGroup('read');
    const result = await new GroupAdmin(client, await ctx.keys()).status();
    if (opts.check) return check(ctx, [result], false);
    if (ctx.json) ctx.outJson(result);
    else ctx.out(formatStatus(result, new Date()));
    return EXIT.ok;
  }
  const groups = await listGroups(client, settings.prefix);
  const results: GroupStatus[] = await Promise.all(
    groups.map((g) => new GroupAdmin(client, new GroupKeys(settings.prefix, g)).status()),
  );
  if (opts.check) return check(ctx, results, true);
  if (ctx.json) {
    ctx.outJson(results);
  } else if (results.length === 0) {
    ctx.out(`no groups under ${groupsPrefix(settings.prefix)}`);
  } else {
    const now = new Date();
    ctx.out(results.map((r) => formatStatus(r, now)).join('\n\n'));
  }
  return EXIT.ok;
}

/** Prints the verdict of each group; exit 1 when any is unhealthy. */
function check(ctx: Context, statuses: readonly GroupStatus[], all: boolean): number {
  const now = new Date();
  const verdicts = statuses.map((s) => {
    const found = problems(s, now);
    return { group: s.group, healthy: found.length === 0, problems: found };
  });
  if (ctx.json) {
    ctx.outJson(all ? verdicts : verdicts[0]);
  } else {
    for (const v of verdicts) {
      if (v.healthy) {
        const s = statuses.find((x) => x.group === v.group)!;
        ctx.out(`group ${v.group}: healthy (${s.available} slot(s) free now)`);
      } else {
        ctx.out(`group ${v.group}: ${v.problems.length} problem(s)`);
        for (const p of v.problems) ctx.out(`  - ${p}`);
      }
    }
  }
  return verdicts.every((v) => v.healthy) ? EXIT.ok : EXIT.refused;
}

/** The names of the groups that have any key under `<prefix>groups/`, sorted. */
export async function listGroups(client: EtcdClient, prefix: string): Promise<string[]> {
  const root = groupsPrefix(prefix);
  const keys = await etcdCall(`a read of ${root}`, () => client.getAll().prefix(root).keys());
  const names = new Set<string>();
  for (const key of keys) {
    const name = key.slice(root.length).split('/')[0];
    if (name) names.add(name);
  }
  return [...names].sort();
}
