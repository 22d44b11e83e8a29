/**
 * `sluicectl history`: the group's audit trail, newest first. Finished reboots (released, forced,
 * lost, given back) with their node, times and who released them, and operator actions with who,
 * when and what (set-max old → new, pause and resume with the reason, windows set and cleared,
 * manual locks, reboot requests and their cancellation, locksmith migrations, halts). Records
 * that cannot be read are named by key: on stderr for the tables, under `errors` in JSON.
 * `--kind` picks reboots, actions or one action; `--since` how far back; `--limit` how many.
 */
import { ACTIONS, type ActionRecord, SluiceError } from '@sluice/core';
import { GroupAdmin, type HistoryEntry } from '@sluice/etcd';
import { type Context, EXIT } from '../context.js';
import { human, instant, table } from '../format.js';
import { parseSince } from '../since.js';

/** One reboot line of `history -o json`. */
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
  /** True for a slot taken by hand (`sluicectl lock`), also when its lease ran out. */
  manual: boolean;
  /** `fleetlock` when the slot was a FleetLock client's; null for an agent or an operator. */
  client: 'fleetlock' | null;
}

/** One operator action of `history -o json`. */
export interface ActionLine {
  action: string;
  at: string;
  by: string;
  node: string | null;
  /** The value before and after, for set-max and windows; null when absent. */
  old: string | null;
  new: string | null;
  reason: string | null;
}

/** What `history -o json` prints. */
export interface HistoryJson {
  group: string;
  /** The reboots among the newest `--limit` readable records. */
  records: HistoryLine[];
  /** The operator actions among them. */
  actions: ActionLine[];
  /** Records that could not be read, by key; they do not count against `--limit`. */
  errors: { key: string; message: string }[];
}

/** Which entries `--kind` keeps. */
function kindFilter(kind: string | undefined): (e: HistoryEntry) => boolean {
  if (kind === undefined || kind === 'all') return () => true;
  if (kind === 'reboot' || kind === 'reboots') return (e) => e.kind === 'reboot';
  if (kind === 'action' || kind === 'actions') return (e) => e.kind === 'action';
  if ((ACTIONS as readonly string[]).includes(kind)) {
    return (e) => e.kind === 'action' && e.record.action === kind;
  }
  throw new SluiceError(
    'invalid-config',
    `--kind ${JSON.stringify(kind)}: expected reboot, action, or one of ${ACTIONS.join(', ')}`,
    '--kind',
  );
}

/** What an action changed or why, for the table. */
function actionDetail(a: ActionRecord): string {
  const value = (v: string | null | undefined) => (v === null || v === undefined ? 'unset' : v);
  switch (a.action) {
    case 'set-max':
      return `max ${a.old === null || a.old === undefined ? 'unset (1)' : a.old} -> ${value(a.new)}`;
    case 'blackouts-set':
    case 'blackouts-clear':
      return `blackouts ${a.old ?? 'none'} -> ${a.new ?? 'none'}`;
    case 'canary-set':
    case 'canary-clear':
      return `canary ${a.old ?? 'none'} -> ${a.new ?? 'none'}`;
    case 'canary-reset':
    case 'canary-skip':
      return `canary of ${a.old ?? '?'} ${a.action === 'canary-reset' ? 'reset' : 'skipped'}`;
    case 'set-domain-max':
      return `domain-max ${a.old ?? 'unset (no limit)'} -> ${a.new ?? 'unset (no limit)'}`;
    case 'windows-set':
    case 'windows-clear':
      return `windows ${value(a.old)} -> ${a.new === null || a.new === undefined ? 'always open' : a.new}`;
    case 'migrate-locksmith':
      return `max ${a.old === null || a.old === undefined ? 'unset (1)' : a.old} -> ${value(a.new)}; ${a.reason ?? ''}`;
    default:
      return a.reason || '-';
  }
}

/** Prints the newest `--limit` readable history entries, and names the unreadable ones. */
export async function history(
  ctx: Context,
  opts: { limit: string; kind?: string; since?: string },
): Promise<number> {
  const limit = Number(opts.limit);
  if (!/^\d+$/.test(opts.limit) || limit < 1 || limit > 10_000) {
    throw new SluiceError(
      'invalid-config',
      `--limit ${JSON.stringify(opts.limit)}: must be a whole number from 1 to 10000`,
      '--limit',
    );
  }
  const keep = kindFilter(opts.kind);
  let since: Date | null = null;
  if (opts.since !== undefined) {
    const parsed = parseSince(opts.since, '--since', new Date());
    if (!parsed.ok) throw parsed.error;
    since = parsed.value;
  }
  const keys = await ctx.keys();
  const { entries, errors } = await new GroupAdmin(await ctx.client(), keys).readEntries(
    limit,
    since,
    keep,
  );
  const lines: HistoryLine[] = [];
  const actions: ActionLine[] = [];
  for (const e of entries) {
    if (e.kind === 'action') {
      const a = e.record;
      actions.push({
        action: a.action,
        at: a.at,
        by: a.by,
        node: a.node ?? null,
        old: a.old ?? null,
        new: a.new ?? null,
        reason: a.reason ?? null,
      });
      continue;
    }
    const r = e.record;
    const start = r.grantedAt ?? null;
    lines.push({
      node: r.node,
      hostname: r.hostname,
      outcome: r.outcome,
      start,
      end: r.endedAt,
      durationSeconds:
        start === null ? null : Math.round((Date.parse(r.endedAt) - Date.parse(start)) / 1000),
      reason: r.reason,
      by: r.by ?? null,
      manual: r.manual ?? false,
      client: r.client ?? null,
    });
  }
  if (ctx.json) {
    ctx.outJson({ group: keys.group, records: lines, actions, errors } satisfies HistoryJson);
    return EXIT.ok;
  }
  for (const e of errors)
    ctx.err(`sluicectl: skipped unreadable history record ${e.key}: ${e.message}`);
  if (lines.length === 0 && actions.length === 0) {
    ctx.out(
      errors.length > 0
        ? `no readable history in group ${keys.group}`
        : `no history in group ${keys.group} yet`,
    );
    return EXIT.ok;
  }
  const blocks: string[] = [];
  if (lines.length > 0) {
    blocks.push(
      table(
        ['NODE', 'HOSTNAME', 'START', 'END', 'DURATION', 'OUTCOME', 'BY', 'REASON'],
        lines.map((l) => [
          l.node,
          l.hostname || '-',
          l.start ? instant(l.start) : '-',
          instant(l.end),
          l.durationSeconds === null ? '-' : human(l.durationSeconds * 1000),
          l.manual ? `${l.outcome} (manual lock)` : l.outcome,
          l.by ?? (l.client ? `${l.client} client` : '-'),
          l.reason || '-',
        ]),
      ),
    );
  }
  if (actions.length > 0) {
    const rows = entries.flatMap((e) =>
      e.kind === 'action'
        ? [
            [
              instant(e.record.at),
              e.record.action,
              e.record.node ?? '-',
              e.record.by || '-',
              actionDetail(e.record),
            ],
          ]
        : [],
    );
    blocks.push(
      `${lines.length > 0 ? 'OPERATOR ACTIONS\n' : ''}${table(['WHEN', 'ACTION', 'NODE', 'BY', 'WHAT'], rows)}`,
    );
  }
  ctx.out(blocks.join('\n\n'));
  return EXIT.ok;
}
