/**
 * `sluicectl status`: one group, or every group under the prefix with `--all-groups`.
 */
import { GroupKeys, type GroupStatus, groupsPrefix, SluiceError } from '@sluice/core';
import { etcdCall, GroupAdmin } from '@sluice/etcd';
import { type Context, type EtcdClient, EXIT } from '../context.js';
import { formatStatus } from '../format.js';

/** Prints the status of the selected group, or of all groups; exit 0 even when values are invalid. */
export async function status(ctx: Context, opts: { allGroups?: boolean }): Promise<number> {
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
    if (ctx.json) ctx.outJson(result);
    else ctx.out(formatStatus(result, new Date()));
    return EXIT.ok;
  }
  const groups = await listGroups(client, settings.prefix);
  const results: GroupStatus[] = await Promise.all(
    groups.map((g) => new GroupAdmin(client, new GroupKeys(settings.prefix, g)).status()),
  );
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
