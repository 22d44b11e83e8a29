import { decide } from '@sluice/core';
import { GroupFixture } from '@sluice/core/fixture';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { BlockerLog } from './blocker-log.js';

/** A BlockerLog writing into an array, and what it said. */
function logged() {
  const lines: { level: number; msg: string }[] = [];
  const logger = pino({ base: null }, { write: (line: string) => lines.push(JSON.parse(line)) });
  return { log: new BlockerLog(logger, 'w'), lines };
}

describe('BlockerLog', () => {
  it('says one halt once until resumed: again for a node lost later, not for one cleared', () => {
    const g = new GroupFixture();
    g.put(g.keys.max, '1');
    g.queue('w');
    const { log, lines } = logged();
    const step = () => {
      const snap = g.snapshot();
      log.decision(decide(snap, 'w', g.now), snap, g.now);
    };
    g.marker('ghost');
    step();
    g.halt('node ghost lost during reboot');
    step();
    g.del(g.keys.holding('ghost'));
    step();
    expect(lines.map((l) => l.msg)).toEqual([
      'not admitted: group halted: 1 lost holder(s), loss budget 0 (lost now: ghost); an operator must unlock the lost node with --force and resume',
    ]);
    // Another node lost while halted is news.
    g.marker('other');
    step();
    expect(lines).toHaveLength(2);
    expect(lines[1]!.msg).toContain('(lost now: other)');
    // Resumed, then halted again by the same node: a new halt, said again.
    g.del(g.keys.holding('other'));
    g.del(g.keys.paused);
    step();
    g.marker('other');
    step();
    expect(lines.filter((l) => /halted/.test(l.msg))).toHaveLength(3);
  });
});
