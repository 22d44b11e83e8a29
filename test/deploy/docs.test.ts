/**
 * The docs say what the code does, for the statements operators act on: the example config points
 * to the reference, every window example in docs/sluiced.md parses as described (an END equal to
 * START a 24-hour window, a blank spec refused), the demo checks its --window with the agents'
 * parser and its message about 24:00, and the rule for `max` in README.md is the parser's.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseMax, parseWindowSpec, windowState } from '@sluice/core';
import { describe, expect, it } from 'vitest';
import { DEPLOY, ROOT, run } from './helpers.js';

const read = (path: string) => readFile(join(ROOT, path), 'utf8');

describe('docs and code agree', () => {
  it('deploy/config/sluiced.yaml points to docs/sluiced.md, not to a source file', async () => {
    const example = await readFile(join(DEPLOY, 'config/sluiced.yaml'), 'utf8');
    expect(example).not.toMatch(/packages\/|\.ts\b|module comment/);
    expect(example).toContain('docs/sluiced.md ("Configuration")');
    expect(await read('docs/sluiced.md')).toMatch(/^## Configuration$/m);
  });

  it('every window example in docs/sluiced.md parses, and 04:00-04:00 lasts 24 hours', async () => {
    const doc = await read('docs/sluiced.md');
    const block = /```\n\[DAYS\] START\(-END \| \+LENGTH\) \[ZONE\]\n([\s\S]*?)```/.exec(doc)?.[1];
    expect(block).toBeDefined();
    const examples = block!
      .split('\n')
      .map((line) => line.replace(/#.*$/, '').trim())
      .filter(Boolean);
    expect(examples).toContain('Sat 04:00-04:00');
    for (const text of examples) {
      const parsed = parseWindowSpec(text, 'docs/sluiced.md');
      expect(parsed.ok ? null : parsed.error.message, text).toBeNull();
    }
    const day = parseWindowSpec('Sat 04:00-04:00 UTC', 'docs');
    if (!day.ok) throw day.error;
    const state = windowState(day.value, new Date('2025-11-29T04:00:00Z'));
    expect(state.nextEnd?.toISOString()).toBe('2025-11-30T04:00:00.000Z');
    expect(parseWindowSpec(' ', 'docs').ok).toBe(false);
    expect(doc).toContain('A blank spec (empty, or only white space) is refused everywhere');
  });

  it("the demo refuses a bad --window with the agents' message, before starting anything", async () => {
    const demo = join(ROOT, 'packages/sim/src/demo.ts');
    const tsx = join(ROOT, 'node_modules/.bin/tsx');
    const res = await run(tsx, ['--conditions=source', demo, '--window', 'Mon-Sun 24:00-02:00'], {
      cwd: ROOT,
      timeoutMs: 30_000,
    });
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('24:00 can only end a window, as in 22:00-24:00');
    // Its own example is valid.
    const usage = /--window SPEC .*e\.g\. "([^"]+)"/.exec(await readFile(demo, 'utf8'))?.[1];
    expect(usage && parseWindowSpec(usage, 'usage').ok).toBe(true);
  });

  it("README's rule for max is the parser's", async () => {
    const readme = await read('README.md');
    expect(readme).toContain('digits only, no sign or leading zeros');
    for (const accepted of ['0', '3', ' 3', '3\n', '10000'])
      expect(parseMax(accepted, 'max').ok).toBe(true);
    for (const refused of ['02', '010', '+3', '3.0', '1e2', '10001', ''])
      expect(parseMax(refused, 'max').ok).toBe(false);
  });
});
