/**
 * `sluicectl windows`: show, set, clear and check reboot windows. `windows check` needs no etcd:
 * it evaluates a spec (the agent's syntax, or locksmith's start and length) at an instant.
 */
import {
  blackoutAt,
  describeBlackout,
  describeWindow,
  formatBlackouts,
  formatWindowSpec,
  groupWindow,
  parseBlackouts,
  parseInstant as parseInstantText,
  parseLocksmithWindow,
  parseWindowSpec,
  type Result,
  SluiceError,
  type WindowSpec,
  windowState,
} from '@sluice/core';
import { type Context, EXIT } from '../context.js';
import { human, instant, table } from '../format.js';

/** One open period: when it starts (null: already open at the reference time) and ends. */
export interface Opening {
  start: string | null;
  end: string | null;
}

/** The next `count` open periods of a spec after `from`, the current one first if it is open. */
export function upcoming(spec: WindowSpec, from: Date, count: number): Opening[] {
  const out: Opening[] = [];
  if (spec.windows.length === 0 && (spec.blackouts ?? []).length === 0) return out;
  let state = windowState(spec, from);
  if (state.open) {
    out.push({ start: null, end: state.nextEnd?.toISOString() ?? null });
    if (!state.nextEnd) return out;
    state = windowState(spec, state.nextEnd);
  }
  while (out.length < count && state.nextStart) {
    out.push({ start: state.nextStart.toISOString(), end: state.nextEnd?.toISOString() ?? null });
    if (!state.nextEnd) break;
    state = windowState(spec, state.nextEnd);
  }
  return out;
}

/** `Tue 22:00 Europe/Berlin`: an instant as wall-clock time in the zone the windows use. */
function wallClock(iso: string, zone: string): string {
  const parts = new Intl.DateTimeFormat('en-GB', {
    timeZone: zone,
    weekday: 'short',
    hour: '2-digit',
    minute: '2-digit',
    hourCycle: 'h23',
  }).formatToParts(new Date(iso));
  const get = (type: string) => parts.find((p) => p.type === type)?.value ?? '';
  return `${get('weekday')} ${get('hour')}:${get('minute')} ${zone}`;
}

/** The zone all windows of a spec share, if they share one. */
function sharedZone(spec: WindowSpec): string | null {
  const zones = new Set(spec.windows.map((w) => w.zone));
  return zones.size === 1 ? [...zones][0]! : null;
}

/** An instant for people: UTC, plus the wall-clock time in the windows' zone when it is not UTC. */
function when(iso: string | null, spec: WindowSpec): string {
  if (iso === null) return '-';
  const zone = sharedZone(spec);
  return zone && zone !== 'UTC' ? `${instant(iso)} (${wallClock(iso, zone)})` : instant(iso);
}

/** Shows the group's window spec, whether it is open now, and the next openings. */
export async function showWindows(ctx: Context, opts: { count: string }): Promise<number> {
  const count = Number(opts.count);
  if (!/^\d+$/.test(opts.count) || count < 1 || count > 100) {
    throw new SluiceError(
      'invalid-config',
      '--count must be a whole number from 1 to 100',
      '--count',
    );
  }
  const { readWindowKeys } = await import('@sluice/etcd');
  await ctx.requireGroup('read');
  const keys = await ctx.keys();
  const read = await readWindowKeys(await ctx.client(), keys);
  const text = read.windows ?? null;
  const blackoutsText = read.blackouts ?? null;
  const now = new Date();
  if (text === null && blackoutsText === null) {
    if (ctx.json) {
      ctx.outJson({
        group: keys.group,
        spec: null,
        error: null,
        open: true,
        nextChange: null,
        windows: [],
        blackouts: [],
        blackout: null,
        upcoming: [],
      });
    } else {
      ctx.out(`group ${keys.group} has no reboot window: always open`);
      ctx.out(`(set one with: sluicectl windows set "Mon-Fri 22:00-02:00 Europe/Berlin")`);
    }
    return EXIT.ok;
  }
  const parsed = groupWindow(keys, text ?? undefined, blackoutsText ?? undefined);
  if (!parsed.ok || parsed.value === null) {
    const message = parsed.ok ? 'no window' : parsed.error.message;
    if (ctx.json) {
      ctx.outJson({
        group: keys.group,
        spec: text,
        error: message,
        open: false,
        nextChange: null,
        windows: [],
        blackouts: [],
        blackout: null,
        upcoming: [],
      });
    } else {
      ctx.out(`group ${keys.group}: ${message}`);
      ctx.out(
        'Nobody is admitted until it is fixed: sluicectl windows set SPEC or windows clear; sluicectl blackouts set SPEC or blackouts clear.',
      );
    }
    return EXIT.ok;
  }
  const spec = parsed.value;
  const state = windowState(spec, now);
  const next = upcoming(spec, now, count);
  const off = spec.blackouts ?? [];
  const current = blackoutAt(off, now);
  if (ctx.json) {
    ctx.outJson({
      group: keys.group,
      spec: text,
      error: null,
      open: state.open,
      nextChange: state.nextChange?.toISOString() ?? null,
      windows: spec.windows.map(describeWindow),
      blackouts: off.map(describeBlackout),
      blackout: current ? describeBlackout(current) : null,
      upcoming: next,
    });
    return EXIT.ok;
  }
  ctx.out(`Group:     ${keys.group}`);
  ctx.out(`Windows:   ${formatWindowSpec(spec)}`);
  if (off.length > 0) ctx.out(`Blackouts: ${formatBlackouts(off)}`);
  if (spec.windows.length === 0 && off.length === 0) {
    ctx.out('Now:       open (always)');
    return EXIT.ok;
  }
  const change = state.nextChange
    ? `, ${state.open ? 'closes' : 'opens'} ${instant(state.nextChange)} (in ${human(state.nextChange.getTime() - now.getTime())})`
    : '';
  const blackout = current ? ` (blackout ${describeBlackout(current)})` : '';
  ctx.out(`Now:       ${state.open ? 'open' : 'closed'}${blackout}${change}`);
  ctx.out('');
  ctx.out(
    table(
      ['OPENS', 'CLOSES', 'LENGTH'],
      next.map((o) => [
        o.start === null ? 'open now' : when(o.start, spec),
        when(o.end, spec),
        o.start && o.end ? human(Date.parse(o.end) - Date.parse(o.start)) : '-',
      ]),
    ),
  );
  return EXIT.ok;
}

/**
 * Validates SPEC with the agent's parser and stores it in canonical form, every entry with its
 * zone. A group's window is shared by nodes in many zones, so `--zone local` is refused.
 */
export async function setWindows(
  ctx: Context,
  text: string,
  opts: { zone: string },
): Promise<number> {
  if (opts.zone === 'local') {
    throw new SluiceError(
      'invalid-config',
      '--zone local: a group window needs an explicit zone, since it is shared by nodes in many zones; name one, e.g. --zone Europe/Berlin (the default is UTC)',
      '--zone',
    );
  }
  const parsed = parseWindowSpec(text, 'SPEC', opts.zone);
  if (!parsed.ok) throw parsed.error;
  const canonical = formatWindowSpec(parsed.value);
  const { GroupAdmin } = await import('@sluice/etcd');
  await ctx.requireGroup('write');
  const keys = await ctx.keys();
  await new GroupAdmin(await ctx.client(), keys).setWindows(canonical, ctx.operator);
  const state = windowState(parsed.value, new Date());
  if (ctx.json) {
    ctx.outJson({
      group: keys.group,
      key: keys.windows,
      spec: canonical,
      open: state.open,
      nextChange: state.nextChange?.toISOString() ?? null,
    });
    return EXIT.ok;
  }
  ctx.out(`window of group ${keys.group} set to: ${canonical}`);
  ctx.out(
    `now ${state.open ? 'open' : 'closed'}${state.nextChange ? `; ${state.open ? 'closes' : 'opens'} ${instant(state.nextChange)}` : ''}`,
  );
  ctx.out(`(the same as: etcdctl put ${keys.windows} '${canonical}')`);
  return EXIT.ok;
}

/** Removes the group's window: reboots may happen at any time. */
export async function clearWindows(ctx: Context): Promise<number> {
  const { GroupAdmin } = await import('@sluice/etcd');
  await ctx.requireGroup('write');
  const keys = await ctx.keys();
  const removed = await new GroupAdmin(await ctx.client(), keys).clearWindows(ctx.operator);
  if (ctx.json) ctx.outJson({ group: keys.group, key: keys.windows, removed });
  else if (removed) ctx.out(`removed the window of group ${keys.group}: always open now`);
  else ctx.out(`group ${keys.group} had no window: always open`);
  return EXIT.ok;
}

/**
 * Parses `--at`: an existing ISO-8601 instant with a zone (`Z` or an offset), so it is never
 * ambiguous. See `parseInstant` in `@sluice/core`.
 */
export function parseInstant(text: string, flag: string): Result<Date> {
  return parseInstantText(text, flag);
}

/**
 * The zone entries without one are read in, and where it came from: `--zone` (where `local`
 * means this node's zone), else this node's local zone for locksmith's syntax (as locksmithd
 * read its window in the local time), else UTC.
 */
async function checkZone(
  ctx: Context,
  zone: string | undefined,
  locksmith: boolean,
): Promise<{ zone: string; from: string }> {
  if (zone !== undefined && zone !== 'local') return { zone, from: '--zone' };
  if (zone === undefined && !locksmith) return { zone: 'UTC', from: 'default' };
  // The module alone: the whole agent package takes half a second to load.
  const { localZone } = await import('@sluice/agent/localzone');
  const found = await localZone({ env: ctx.io.env });
  if (found.warning) ctx.err(`sluicectl: warning: ${found.warning}`);
  return { zone: found.zone, from: found.from };
}

/**
 * Evaluates a spec at `--at` (default now) without etcd. With `--length`, SPEC is locksmith's
 * REBOOT_WINDOW_START (`Thu 04:00`) and the length its REBOOT_WINDOW_LENGTH, read in this node's
 * local zone unless `--zone` is given.
 */
export async function checkWindows(
  ctx: Context,
  text: string,
  opts: { at?: string; length?: string; zone?: string; blackouts?: string },
): Promise<number> {
  let at = new Date();
  if (opts.at !== undefined) {
    const parsed = parseInstant(opts.at, '--at');
    if (!parsed.ok) throw parsed.error;
    at = parsed.value;
  }
  const locksmith = opts.length !== undefined;
  const zone = await checkZone(ctx, opts.zone, locksmith);
  const parsed =
    opts.length === undefined
      ? parseWindowSpec(text, 'SPEC', zone.zone)
      : parseLocksmithWindow(text, opts.length, 'SPEC and --length', zone.zone);
  if (!parsed.ok) throw parsed.error;
  let spec = parsed.value;
  if (opts.blackouts !== undefined) {
    const off = parseBlackouts(opts.blackouts, '--blackouts', zone.zone);
    if (!off.ok) throw off.error;
    spec = { ...spec, blackouts: off.value };
  }
  const state = windowState(spec, at);
  const current = blackoutAt(spec.blackouts ?? [], at);
  const nextStart = state.nextStart?.toISOString() ?? null;
  const nextEnd = state.nextEnd?.toISOString() ?? null;
  if (ctx.json) {
    const blackout = current ? describeBlackout(current) : null;
    ctx.outJson({
      open: state.open,
      nextStart,
      nextEnd,
      zone: zone.zone,
      zoneFrom: zone.from,
      blackout,
    });
    return EXIT.ok;
  }
  ctx.out(`window: ${formatWindowSpec(spec)}`);
  if (spec.blackouts?.length) ctx.out(`blackouts: ${formatBlackouts(spec.blackouts)}`);
  if (zone.from !== 'default' && zone.from !== '--zone') {
    ctx.out(`zone:   ${zone.zone} (this node's local zone, from ${zone.from})`);
  }
  if (spec.windows.length === 0 && !spec.blackouts?.length) {
    ctx.out(`at ${instant(at)}: open (always)`);
    return EXIT.ok;
  }
  const blackout = current ? ` (blackout ${describeBlackout(current)})` : '';
  ctx.out(`at ${when(at.toISOString(), spec)}: ${state.open ? 'OPEN' : 'CLOSED'}${blackout}`);
  const rows: string[][] = state.open
    ? [
        ['closes', when(nextEnd, spec)],
        ['next opens', when(nextStart, spec)],
      ]
    : [
        ['opens', when(nextStart, spec)],
        ['then closes', when(nextEnd, spec)],
      ];
  for (const [label, value] of rows) ctx.out(`${label!.padEnd(11)} ${value}`);
  return EXIT.ok;
}
