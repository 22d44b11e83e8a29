/**
 * Says in the log why a queued node is not admitted: once when a blocker appears, and again only
 * when it changes (an invalid key named, paused by whom and since when, halted, this node's own
 * lost marker, its clock too far from etcd's, the window closed until when, holders above max
 * after a decrease). Waiting behind full slots is normal and said
 * once at info; everything else is a warning, since nothing reboots until someone acts or time
 * passes. The semaphore calls it after each decision while the node waits.
 */
import {
  type Decision,
  describeBlocker,
  type GroupSnapshot,
  groupAdmission,
  queuePosition,
} from '@sluice/core';
import type { Logger } from 'pino';

/** Logs the blocker of one waiting node. */
export class BlockerLog {
  #last: string | null = null;
  /** The nodes lost so far in the halt said last. */
  #haltLost = new Set<string>();

  constructor(
    private readonly logger: Logger,
    private readonly node: string,
  ) {}

  /** After every decision while waiting. */
  decision(decision: Decision, snapshot: GroupSnapshot, now = new Date()): void {
    if (decision.kind !== 'wait') {
      this.#last = null;
      return;
    }
    if (decision.reason === 'not-queued') return;
    const admission = groupAdmission(snapshot, now);
    const blocker = admission.blocker;
    let key: string;
    let fields: Record<string, unknown> = { reason: decision.reason };
    let message: string;
    let level: 'info' | 'warn' = 'warn';
    switch (decision.reason) {
      case 'invalid-value':
        key = `invalid:${decision.detail}`;
        if (blocker?.kind === 'invalid-value') fields = { ...fields, key: blocker.key };
        message = `not admitted: ${decision.detail}`;
        break;
      case 'paused':
      case 'halted':
        if (blocker?.kind === 'paused') {
          key = `paused:${blocker.reason}:${blocker.by}`;
          fields = { ...fields, pause: blocker.reason, by: blocker.by, since: blocker.since };
          message = `not admitted: group ${describeBlocker(blocker)}`;
        } else if (blocker?.kind === 'halted') {
          // One halt is one blocker until the group is resumed: the lost nodes seen name it, not
          // the reason's text, which changes once the halt is written as the group's pause. A
          // node lost later is news; a lost node cleared (before the resume) is not.
          const lost = this.#last?.startsWith('halted:') ? this.#haltLost : new Set<string>();
          for (const node of blocker.lost) lost.add(node);
          this.#haltLost = lost;
          key = `halted:${lost.size > 0 ? [...lost].sort().join(',') : blocker.reason}`;
          fields = { ...fields, halt: blocker.reason, lost: blocker.lost, since: blocker.since };
          message = `not admitted: group ${describeBlocker(blocker)}`;
        } else {
          key = `${decision.reason}:${decision.detail}`;
          message = `not admitted: ${decision.detail}`;
        }
        break;
      case 'lost-marker':
      case 'clock-skew':
        // This node's own blocker: its earlier slot's lost marker, or its clock.
        key = `${decision.reason}:${decision.detail}`;
        message = `not admitted: ${decision.detail}`;
        break;
      case 'window-closing':
        key = `window-closing:${decision.wakeAt?.toISOString() ?? null}`;
        fields = { ...fields, opensAt: decision.wakeAt?.toISOString() ?? null };
        level = 'info';
        message = `waiting: ${decision.detail}; next window at ${decision.wakeAt?.toISOString() ?? 'none in the next 16 days'}`;
        break;
      case 'window-closed': {
        const until = decision.wakeAt?.toISOString() ?? null;
        const blackout = decision.blackout ?? null;
        key = `window:${until}`;
        fields = { ...fields, opensAt: until, ...(blackout ? { blackout } : {}) };
        const why = blackout ? ` (blackout ${blackout})` : '';
        message = until
          ? `not admitted: the reboot window is closed${why} until ${until}`
          : `not admitted: the reboot window is closed${why} and does not open in the next 16 days`;
        break;
      }
      default: {
        const position = queuePosition(snapshot, this.node);
        const max = snapshot.max.ok ? snapshot.max.value : 0;
        if (admission.overMax > 0) {
          key = `over-max:${max}`;
          fields = { ...fields, holders: admission.holders, max, position };
          message = `not admitted: ${admission.holders} holders for max ${max}, admitted before max was lowered; nobody is admitted until ${admission.overMax === 1 ? 'the one above max drains' : `the ${admission.overMax} above max drain`}`;
        } else {
          key = 'queue';
          level = 'info';
          fields = { ...fields, position, max };
          message =
            max === 0
              ? 'waiting: max is 0, so nobody is admitted'
              : `waiting for a slot: position ${position ?? '?'} in the queue, all ${max} slot(s) taken`;
        }
      }
    }
    if (key === this.#last) return;
    this.#last = key;
    this.logger[level](fields, message);
  }
}
