/**
 * Source files stay small enough to read: a file over about 500 lines says at its top why it is
 * one file ("Why one file: ..."), or it is split. And every export says what it is: a doc comment
 * (or a line comment) right above it.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const root = new URL('../../', import.meta.url);
const LIMIT = 520;

function sourceFiles(): string[] {
  return execFileSync('git', ['ls-files', 'packages/*/src/*.ts', 'packages/*/src/**/*.ts'], {
    cwd: root,
    encoding: 'utf8',
  })
    .split('\n')
    .filter((f) => f && !f.endsWith('.test.ts'));
}

describe('source files', () => {
  it('say what each export is', () => {
    const bare: string[] = [];
    for (const file of sourceFiles()) {
      const lines = readFileSync(new URL(file, root), 'utf8').split('\n');
      lines.forEach((line, i) => {
        const m =
          /^export (?:async )?(?:abstract )?(?:function|const|class|interface|type|enum) (\w+)/.exec(
            line,
          );
        const above = (lines[i - 1] ?? '').trim();
        if (m && !above.endsWith('*/') && !above.startsWith('//'))
          bare.push(`${file}:${i + 1} ${m[1]}`);
      });
    }
    expect(bare, 'give these exports a doc comment').toEqual([]);
  });

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
