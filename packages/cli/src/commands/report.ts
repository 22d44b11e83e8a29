/**
 * `sluicectl report --html FILE`: the group's fleet timeline as one self-contained HTML page,
 * drawn from its history in etcd and what is in flight now, with the renderer the demo uses.
 * Reading only: unlike `status`, it never halts a group.
 */
import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { SluiceError } from '@sluice/core';
import { etcdCall, GroupAdmin, readGroup } from '@sluice/etcd';
import { isValidZone, renderTimeline } from '@sluice/report';
import { type Context, EXIT } from '../context.js';
import { reportModel } from '../report.js';
import { parseSince } from '../since.js';

/** Options of `sluicectl report`. */
export interface ReportOptions {
  html: string;
  since: string;
  zone?: string;
}

/** History records read at most: the whole history of a group is capped well below this. */
const MAX_RECORDS = 10_000;

/** Writes the page and says where. */
export async function report(ctx: Context, opts: ReportOptions): Promise<number> {
  const to = Date.now();
  const since = parseSince(opts.since, '--since', new Date(to));
  if (!since.ok) throw since.error;
  const from = since.value.getTime();
  const zone = opts.zone ?? Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (!isValidZone(zone)) {
    throw new SluiceError(
      'invalid-config',
      `--zone ${JSON.stringify(zone)} is not an IANA time zone (such as Europe/Berlin or UTC)`,
      '--zone',
    );
  }
  const keys = await ctx.keys();
  const client = await ctx.client();
  const admin = new GroupAdmin(client, keys);
  const [history, snapshot, windowsText, pausedText, maxText] = await Promise.all([
    admin.readEntries(MAX_RECORDS, new Date(from)),
    readGroup(client, keys),
    etcdCall(`a read of ${keys.windows}`, () => client.get(keys.windows).string()),
    etcdCall(`a read of ${keys.paused}`, () => client.get(keys.paused).string()),
    etcdCall(`a read of ${keys.max}`, () => client.get(keys.max).string()),
  ]);
  const model = reportModel({
    group: keys.group,
    from,
    to,
    zone,
    history: history.entries.flatMap((e) => (e.kind === 'reboot' ? [e.record] : [])),
    actions: history.entries.flatMap((e) => (e.kind === 'action' ? [e.record] : [])),
    errors: history.errors,
    snapshot,
    windowsText,
    pausedText,
    maxText,
  });
  const file = resolve(opts.html);
  try {
    await writeFile(file, renderTimeline(model));
  } catch (error) {
    throw new SluiceError(
      'invalid-config',
      `--html ${opts.html}: cannot write it (${(error as NodeJS.ErrnoException).code ?? String(error)})`,
      '--html',
    );
  }
  const summary = {
    group: keys.group,
    file,
    from: new Date(from).toISOString(),
    to: new Date(to).toISOString(),
    zone,
    nodes: model.lanes.length,
    slots: history.entries.filter((e) => e.kind === 'reboot').length,
    actions: history.entries.filter((e) => e.kind === 'action').length,
    markers: model.markers.length,
    unreadable: history.errors.length,
  };
  if (ctx.json) {
    ctx.outJson(summary);
    return EXIT.ok;
  }
  for (const e of history.errors) {
    ctx.err(`sluicectl: skipped unreadable history record ${e.key}: ${e.message}`);
  }
  ctx.out(
    `wrote the timeline of group ${keys.group} (${summary.slots} slot(s) of ${summary.nodes} node(s) since ${new Date(from).toISOString()}) to ${pathToFileURL(file).href}`,
  );
  return EXIT.ok;
}
