/**
 * Source files stay small enough to read: a file over about 500 lines says at its top why it is
 * one file ("Why one file: ..."), or it is split.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const root = new URL('../../', import.meta.url);
const LIMIT = 520;

describe('source files', () => {
  it(`over ${LIMIT} lines say why they are one file`, () => {
    const files = execFileSync(
      'git',
      ['ls-files', 'packages/*/src/*.ts', 'packages/*/src/**/*.ts'],
      {
        cwd: root,
        encoding: 'utf8',
      },
    )
      .split('\n')
      .filter((f) => f && !f.endsWith('.test.ts'));
    expect(files.length).toBeGreaterThan(50);
    const unexplained = files.filter((file) => {
      const text = readFileSync(new URL(file, root), 'utf8');
      if (text.split('\n').length <= LIMIT) return false;
      const header = text.slice(0, text.indexOf('\n */\n') + 1);
      return !header.startsWith('/**') || !header.includes('Why one file:');
    });
    expect(unexplained, 'split these files, or say at their top why each is one').toEqual([]);
  });
});
