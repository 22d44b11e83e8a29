/**
 * Live progress of a rollout in the terminal. On a TTY it redraws a table of every node (state,
 * place in the queue, version) a few times a second; otherwise (CI, a pipe) it prints one plain
 * line whenever a node changes state, and one for every operator or fault event.
 */
import type { Fleet, FleetEvent, NodeView } from './fleet.js';

const COLOURS: Record<string, string> = {
  waiting: '33',
  holding: '38;5;208',
  draining: '38;5;208',
  rebooting: '31',
  down: '1;31',
  booting: '35',
  'post-checking': '34',
  releasing: '34',
  updated: '32',
  lost: '1;31',
};

/** Where and how to draw. */
export interface ProgressOptions {
  out?: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  /** Force TTY or plain mode; default: whether `out` is a TTY. */
  tty?: boolean;
  /** The version being rolled out, for the "updated n/N" count. */
  target: string;
  /** Redraw interval on a TTY. Default 200 ms. */
  intervalMs?: number;
  /** Times are shown relative to this (ms). Default: when the fleet started. */
  origin?: number;
  /** Plain mode: print only changes from the states at `start()`, not those states themselves. */
  changesOnly?: boolean;
}

/** Shows a fleet's progress until stopped. */
export class ProgressDisplay {
  readonly #fleet: Fleet;
  readonly #out: NonNullable<ProgressOptions['out']>;
  readonly #tty: boolean;
  readonly #target: string;
  readonly #interval: number;
  readonly #origin: number;
  readonly #changesOnly: boolean;
  #timer: NodeJS.Timeout | undefined;
  #drawn = 0;
  #last = new Map<string, string>();
  #unsubscribe: () => void = () => {};
  #peakDown = 0;

  constructor(fleet: Fleet, opts: ProgressOptions) {
    this.#fleet = fleet;
    this.#out = opts.out ?? process.stdout;
    this.#tty = opts.tty ?? Boolean(this.#out.isTTY);
    this.#target = opts.target;
    this.#interval = opts.intervalMs ?? 200;
    this.#origin = opts.origin ?? fleet.startedAt;
    this.#changesOnly = opts.changesOnly ?? false;
  }

  /** Starts drawing (TTY) or printing changes (plain). */
  start(): void {
    if (this.#tty) {
      this.#timer = setInterval(() => this.#draw(), this.#interval);
      this.#draw();
    } else {
      if (this.#changesOnly) {
        for (const v of this.#fleet.view()) this.#last.set(v.id, lineState(v));
      }
      this.#unsubscribe = this.#fleet.onEvent((e) => this.#event(e));
      this.#timer = setInterval(() => this.#lines(), 100);
    }
  }

  /** Stops; with `final` (the default) draws or prints the last changes once more. Idempotent. */
  stop(final = true): void {
    if (this.#timer === undefined) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#unsubscribe();
    if (!final) return;
    if (this.#tty) this.#draw();
    else this.#lines();
  }

  #elapsed(at = Date.now()): string {
    return `+${((at - this.#origin) / 1000).toFixed(1)}s`;
  }

  #summary(views: NodeView[]): string {
    const down = views.filter((v) => v.machine === 'down').length;
    this.#peakDown = Math.max(this.#peakDown, down);
    const updated = views.filter((v) => v.state === 'updated').length;
    const waiting = views.filter((v) => v.state === 'waiting').length;
    const t = this.#fleet.timeline;
    const paused = t.paused;
    return [
      `${this.#elapsed()}`,
      `max ${t.max}`,
      `down ${down} (peak ${this.#peakDown})`,
      `waiting ${waiting}`,
      `updated to ${this.#target}: ${updated}/${views.length}`,
      paused ? `PAUSED: ${pausedReason(paused)}` : 'not paused',
    ].join('  ');
  }

  #paint(state: string): string {
    const base = state.split(/[ ,]/)[0]!;
    const code = COLOURS[base];
    return code ? `\x1b[${code}m${state}\x1b[0m` : state;
  }

  #draw(): void {
    const views = this.#fleet.view();
    const lines = [this.#summary(views), ''];
    lines.push(`${'NODE'.padEnd(8)}${'STATE'.padEnd(22)}${'QUEUE'.padEnd(7)}VERSION`);
    for (const v of views) {
      const queue = v.position ? `#${v.position}` : '';
      const version = v.staged ? `${v.version} -> ${v.staged}` : v.version;
      lines.push(`${v.id.padEnd(8)}${this.#paint(v.state.padEnd(22))}${queue.padEnd(7)}${version}`);
    }
    let text = this.#drawn > 0 ? `\x1b[${this.#drawn}F` : '';
    for (const line of lines) text += `\x1b[2K${line}\n`;
    this.#out.write(text);
    this.#drawn = lines.length;
  }

  #lines(): void {
    const views = this.#fleet.view();
    for (const v of views) {
      const text = lineState(v);
      const before = this.#last.get(v.id);
      if (before === text) continue;
      this.#last.set(v.id, text);
      if (before === undefined && v.state === 'idle') continue;
      this.#out.write(
        `${this.#elapsed()} ${v.id} ${before ?? '-'} -> ${text}  (v${v.version}${v.staged ? ` -> ${v.staged}` : ''})\n`,
      );
    }
  }

  #event(e: FleetEvent): void {
    if (['down', 'up', 'staged', 'agent-start'].includes(e.kind)) return;
    this.#lines();
    this.#out.write(
      `${this.#elapsed(e.at)} ${e.node ? `${e.node} ` : ''}[${e.kind}]${e.detail ? ` ${e.detail}` : ''}\n`,
    );
  }
}

/** A node's state as a plain line shows it: `waiting #2`. */
function lineState(v: NodeView): string {
  return `${v.state}${v.position ? ` #${v.position}` : ''}`;
}

/** The reason of a paused value: sluicectl's JSON form or plain text. */
export function pausedReason(raw: string): string {
  try {
    const parsed = JSON.parse(raw) as { reason?: unknown };
    if (typeof parsed.reason === 'string') return parsed.reason;
  } catch {
    // Plain text.
  }
  return raw;
}
