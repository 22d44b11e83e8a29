/**
 * `sluicectl history`: the group's finished reboots, newest first, and any history record that
 * cannot be read (named by key: on stderr for the table, under `errors` in JSON).
 */
import { SluiceError } from '@sluice/core';
import { GroupAdmin } from '@sluice/etcd';
import { type Context, EXIT } from '../context.js';
import { human, instant, table } from '../format.js';

/** One line of `history -o json`. */
export interface HistoryLine {
  node: string;
  hostname: string;
  outcome: string;
  /** When the slot was granted; null for a node that left before it was admitted. */
  start: string | null;
  end: string;
  /** From start to end, in whole seconds; null without a start. */
  durationSeconds: number | null;
  reason: string;
  /** Who released it with sluicectl (unlock, forced or not), as `user@host`; null for an agent. */
  by: string | null;
}

/** What `history -o json` prints. */
export interface HistoryJson {
  group: string;
  /** The newest `--limit` readable records. */
  records: HistoryLine[];
  /** Records that could not be read, by key; they do not count against `--limit`. */
  errors: { key: string; message: string }[];
}

/** Prints the newest `--limit` readable history records, and names the unreadable ones. */
export async function history(ctx: Context, opts: { limit: string }): Promise<number> {
  const limit = Number(opts.limit);
  if (!/^\d+$/.test(opts.limit) || limit < 1 || limit > 10_000) {
    throw new SluiceError(
      'invalid-config',
      `--limit ${JSON.stringify(opts.limit)}: must be a whole number from 1 to 10000`,
      '--limit',
    );
  }
  const keys = await ctx.keys();
  const { records, errors } = await new GroupAdmin(await ctx.client(), keys).readHistory(limit);
  const lines: HistoryLine[] = records.map((r) => {
    const start = r.grantedAt ?? null;
    return {
      node: r.node,
      hostname: r.hostname,
      outcome: r.outcome,
      start,
      end: r.endedAt,
      durationSeconds:
        start === null ? null : Math.round((Date.parse(r.endedAt) - Date.parse(start)) / 1000),
      reason: r.reason,
      by: r.by ?? null,
    };
  });
  if (ctx.json) {
    ctx.outJson({ group: keys.group, records: lines, errors } satisfies HistoryJson);
    return EXIT.ok;
  }
  for (const e of errors)
    ctx.err(`sluicectl: skipped unreadable history record ${e.key}: ${e.message}`);
  if (lines.length === 0) {
    ctx.out(
      errors.length > 0
        ? `no readable history in group ${keys.group}`
        : `no history in group ${keys.group} yet`,
    );
    return EXIT.ok;
  }
  ctx.out(
    table(
      ['NODE', 'HOSTNAME', 'START', 'END', 'DURATION', 'OUTCOME', 'BY', 'REASON'],
      lines.map((l) => [
        l.node,
        l.hostname || '-',
        l.start ? instant(l.start) : '-',
        instant(l.end),
        l.durationSeconds === null ? '-' : human(l.durationSeconds * 1000),
        l.outcome,
        l.by ?? '-',
        l.reason || '-',
      ]),
    ),
  );
  return EXIT.ok;
}
