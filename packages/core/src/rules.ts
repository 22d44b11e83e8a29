/**
 * The agent's rules that are not transitions: which update to reboot for when several sources
 * speak, and what the window is when the group's cannot be read. Pure, like the lifecycle that
 * uses them (lifecycle.ts).
 */
import type { Context, UpdateInfo } from './lifecycle.js';
import { type WindowSpec, windowStateAll } from './window.js';

/** One update source's reading, as the agent hears it. */
export interface SourceReading {
  /** The source's name: update-engine, manual, sentinel, command, ... */
  source: string;
  needed: boolean;
  detail: string;
  version?: string | undefined;
  /** True when restarting userspace (a soft reboot) is enough for what this source found. */
  softReboot?: boolean | undefined;
}

/** Sources in order of preference when several say a reboot is needed. */
export const SOURCE_ORDER: readonly string[] = [
  'update-engine',
  'rpm-ostree',
  'bootc',
  'sysupdate',
  'manual',
  'needrestart',
  'dnf',
  'sentinel',
  'command',
];

/**
 * The update to reboot for, from every source's latest reading: the most preferred source that
 * says a reboot is needed (see SOURCE_ORDER; sources not listed come last), or null.
 */
export function pickUpdate(readings: Iterable<SourceReading>): UpdateInfo | null {
  const needed = neededInOrder(readings)[0];
  return needed ? { source: needed.source, detail: needed.detail, version: needed.version } : null;
}

/** The readings that say a reboot is needed, most preferred source first (see SOURCE_ORDER). */
export function neededInOrder<R extends SourceReading>(readings: Iterable<R>): R[] {
  const rank = (source: string) => {
    const i = SOURCE_ORDER.indexOf(source);
    return i === -1 ? SOURCE_ORDER.length : i;
  };
  return [...readings].filter((r) => r.needed).sort((a, b) => rank(a.source) - rank(b.source));
}

/** The window part of a transition's context, and when it next changes. */
export interface WindowContext {
  window: Context['window'];
  /** When the combined window next opens or closes (or the unknown one is read again), or null. */
  nextChange: Date | null;
}

/**
 * The window a node may reboot in: its own windows and the group's must all be open. The group's
 * is `unknown` when it could not be read: closed for any decision to reboot (fail closed), but no
 * reason to give up a place in the queue, and read again after `retryMs`. An unknown group window
 * matters only while the node's own windows are open; if they are shut, they decide.
 */
export function windowContext(
  now: Date,
  local: readonly WindowSpec[],
  group: WindowSpec | null | 'unknown',
  retryMs: number,
): WindowContext {
  if (group === 'unknown' && (local.length === 0 || windowStateAll(local, now).open)) {
    const retry = new Date(now.getTime() + retryMs);
    return { window: { open: false, nextOpen: retry, unknown: true }, nextChange: retry };
  }
  const specs = group && group !== 'unknown' ? [...local, group] : [...local];
  if (specs.length === 0) return { window: { open: true, nextOpen: null }, nextChange: null };
  const state = windowStateAll(specs, now);
  return {
    window: { open: state.open, nextOpen: state.open ? null : state.nextStart },
    nextChange: state.nextChange,
  };
}
