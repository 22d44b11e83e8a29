/**
 * update.conf as systemd reads it through locksmithd.service's `EnvironmentFile=`: each case
 * cites the rule of systemd.exec(5) ("EnvironmentFile=") or of systemd's env-file parser it
 * checks. A line systemd skips is skipped here too, with a warning naming file:line, and never
 * stops the agent.
 */
import { describe, expect, it } from 'vitest';
import { parseEnvironmentFile } from './locksmith.js';

const PATH = '/etc/flatcar/update.conf';

function env(text: string): Record<string, string> {
  const parsed = parseEnvironmentFile(text, PATH);
  return Object.fromEntries(parsed.assignments.map((a) => [a.key, a.value]));
}

function warnings(text: string): string[] {
  return parseEnvironmentFile(text, PATH).warnings;
}

describe('parseEnvironmentFile: what systemd accepts', () => {
  it.each<[string, string, Record<string, string>]>([
    [
      'systemd.exec(5): "a text file ... of variable assignments"; one KEY=VALUE per line',
      'GROUP=stable\nREBOOT_STRATEGY=etcd-lock\n',
      { GROUP: 'stable', REBOOT_STRATEGY: 'etcd-lock' },
    ],
    [
      'unquoted values keep inner white space: REBOOT_WINDOW_START=Thu 04:00 is valid',
      'REBOOT_WINDOW_START=Thu 04:00\n',
      { REBOOT_WINDOW_START: 'Thu 04:00' },
    ],
    [
      'trailing white space of an unquoted value is removed',
      'A=value \t \nB=x  y  \n',
      { A: 'value', B: 'x  y' },
    ],
    [
      'white space before the key, around "=" and before the value is skipped',
      '   A = 1\n\tB\t=\t2\n',
      { A: '1', B: '2' },
    ],
    [
      'systemd.exec(5): "Empty lines, lines without an \\"=\\" separator, or lines starting with ; or # will be ignored"',
      '# comment\n; also a comment\n   # indented comment\n\nA=1\n',
      { A: '1' },
    ],
    [
      'a "#" after an unquoted value is part of the value (no trailing comments)',
      'LOCKSMITHD_GROUP=workers # web\n',
      { LOCKSMITHD_GROUP: 'workers # web' },
    ],
    [
      'double quotes keep white space and may span lines',
      'A="  Thu 04:00  "\nB="line one\nline two"\n',
      { A: '  Thu 04:00  ', B: 'line one\nline two' },
    ],
    [
      'single quotes are literal: no escapes, may span lines',
      "A='a\\\\b \"c\" $d'\nB='x\ny'\n",
      { A: 'a\\\\b "c" $d', B: 'x\ny' },
    ],
    [
      'in double quotes a backslash escapes " \\ ` and $ (SHELL_NEED_ESCAPE), and stays before other characters',
      'A="a\\"b\\\\c\\`d\\$e"\nB="x\\ny\\t"\n',
      { A: 'a"b\\c`d$e', B: 'x\\ny\\t' },
    ],
    [
      'systemd.exec(5): "a backslash at the end of a line ... continues the line" (unquoted)',
      'A=first \\\n  second\n',
      { A: 'first   second' },
    ],
    [
      'a backslash-newline inside double quotes is removed (continuation)',
      'A="one\\\ntwo"\n',
      { A: 'onetwo' },
    ],
    [
      'outside quotes a backslash takes the next character literally',
      'A=a\\ b\\"c\\\\d\nB=x\\ \n',
      { A: 'a b"c\\d', B: 'x ' },
    ],
    [
      'quoted and unquoted pieces join into one value; white space after a closing quote is dropped',
      'A="Thu"\' 04:00\'\nB="Thu" 04:00\n',
      { A: 'Thu 04:00', B: 'Thu04:00' },
    ],
    ['an empty value sets the variable to the empty string', 'A=\nB=""\n', { A: '', B: '' }],
    ['a later assignment of the same key wins', 'A=1\nA=2\n', { A: '2' }],
    ['CR LF line ends are line ends', 'A=1\r\nB="x"\r\n', { A: '1', B: 'x' }],
    ['the last line needs no newline', 'A=1\nB=Thu 04:00', { A: '1', B: 'Thu 04:00' }],
    [
      'since systemd 254 a comment ending in a backslash does not swallow the next line',
      '# comment \\\nA=1\n',
      { A: '1' },
    ],
    ['a value may hold "=" and UTF-8', 'A=a=b=c\nB=Zürich\n', { A: 'a=b=c', B: 'Zürich' }],
  ])('%s', (_rule, text, expected) => {
    expect(env(text)).toEqual(expected);
    expect(warnings(text)).toEqual([]);
  });
});

describe('parseEnvironmentFile: lines systemd skips, with a warning naming file:line', () => {
  it.each<[string, string, Record<string, string>, string[]]>([
    [
      'a line without "=" is ignored',
      'A=1\nthis is not an assignment\nB=2\n',
      { A: '1', B: '2' },
      [`${PATH}:2: ignoring a line without "=" (systemd ignores it too)`],
    ],
    [
      'an invalid variable name ("Ignoring invalid environment assignment") is ignored: export, dashes, digits first',
      'export A=1\nB-C=2\n1D=3\nE=4\n',
      { E: '4' },
      [
        `${PATH}:1: ignoring an assignment to an invalid variable name (systemd ignores it too; "export" is shell syntax, not an EnvironmentFile's)`,
        `${PATH}:2: ignoring an assignment to an invalid variable name (systemd ignores it too)`,
        `${PATH}:3: ignoring an assignment to an invalid variable name (systemd ignores it too)`,
      ],
    ],
  ])('%s', (_rule, text, expected, expectedWarnings) => {
    const parsed = parseEnvironmentFile(text, PATH);
    expect(Object.fromEntries(parsed.assignments.map((a) => [a.key, a.value]))).toEqual(expected);
    expect(parsed.warnings).toEqual(expectedWarnings);
  });

  it('a file that is not valid UTF-8 is refused: systemd would skip all of it', () => {
    const parsed = parseEnvironmentFile(Buffer.from('A=1\nB=\xff\xfe\n', 'latin1'), PATH);
    expect(parsed.error).toBe(
      `${PATH}:2: B: the value is not valid UTF-8, so systemd would not load this file at all; fix or remove the line`,
    );
  });

  it('an unclosed quote takes the rest of the file, as in systemd, and says so', () => {
    const parsed = parseEnvironmentFile('A=1\nB="open\nC=3\n', PATH);
    expect(Object.fromEntries(parsed.assignments.map((a) => [a.key, a.value]))).toEqual({
      A: '1',
      B: 'open\nC=3\n',
    });
    expect(parsed.warnings).toEqual([
      `${PATH}:2: the quote opened in B's value is never closed: the value runs to the end of the file (systemd reads it the same way)`,
    ]);
  });

  it('counts lines across continuations, quotes and CR LF line ends', () => {
    const parsed = parseEnvironmentFile(
      'A=one \\\r\ntwo\r\nB="x\r\ny"\r\n# c\r\nno equals\r\nC=\\\r\n3\r\nD=4\r\n',
      PATH,
    );
    expect(parsed.assignments).toEqual([
      { key: 'A', value: 'one two', line: 1 },
      { key: 'B', value: 'x\r\ny', line: 3 },
      { key: 'C', value: '3', line: 7 },
      { key: 'D', value: '4', line: 9 },
    ]);
    expect(parsed.warnings).toEqual([
      `${PATH}:6: ignoring a line without "=" (systemd ignores it too)`,
    ]);
  });

  it('records the line each assignment starts on and never quotes a value in a warning', () => {
    const secret = 'hunter2-secret';
    const parsed = parseEnvironmentFile(
      `# x\nLOCKSMITHD_ETCD_PASSWORD="${secret}\nGROUP=stable\n`,
      PATH,
    );
    expect(parsed.assignments.map((a) => [a.key, a.line])).toEqual([
      ['LOCKSMITHD_ETCD_PASSWORD', 2],
    ]);
    for (const w of parsed.warnings) expect(w).not.toContain(secret);
    const bad = parseEnvironmentFile(`${secret} line\n${secret}-x=1\n`, PATH);
    for (const w of bad.warnings) expect(w).not.toContain(secret);
  });
});
