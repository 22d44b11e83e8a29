import { describe, expect, it } from 'vitest';
import { type LocksmithSettings, parseUpdateConf, parseUpdateConfs } from './locksmith.js';

const PATH = '/etc/flatcar/update.conf';

function parse(text: string) {
  const result = parseUpdateConf(text, PATH);
  if (!result.ok) throw result.error;
  return result.value;
}

function failure(text: string): string {
  const result = parseUpdateConf(text, PATH);
  if (result.ok) throw new Error('expected a parse error');
  expect(result.error.kind).toBe('invalid-config');
  expect(result.error.where).toBe(PATH);
  return result.error.message;
}

describe('parseUpdateConf: locksmith compatibility', () => {
  const cases: { name: string; text: string; settings: Partial<LocksmithSettings> }[] = [
    {
      name: 'Flatcar default file (update_engine keys only)',
      text: 'GROUP=stable\nSERVER=https://public.update.flatcar-linux.net/v1/update/\n',
      settings: {},
    },
    {
      name: 'etcd-lock with window start and length',
      text: [
        '# managed by ignition',
        'GROUP=stable',
        'REBOOT_STRATEGY=etcd-lock',
        'LOCKSMITHD_REBOOT_WINDOW_START="Thu 04:00"',
        'LOCKSMITHD_REBOOT_WINDOW_LENGTH=1h30m',
      ].join('\n'),
      settings: { strategy: 'etcd-lock', windowStart: 'Thu 04:00', windowLength: '1h30m' },
    },
    {
      name: 'daily window (no day)',
      text: 'REBOOT_STRATEGY=reboot\nLOCKSMITHD_REBOOT_WINDOW_START=04:00\nLOCKSMITHD_REBOOT_WINDOW_LENGTH=2h\n',
      settings: { strategy: 'reboot', windowStart: '04:00', windowLength: '2h' },
    },
    {
      name: 'unprefixed window forms (CoreOS docs)',
      text: "REBOOT_STRATEGY=best-effort\nREBOOT_WINDOW_START='Sunday 23:30'\nREBOOT_WINDOW_LENGTH=45m\n",
      settings: { strategy: 'best-effort', windowStart: 'Sunday 23:30', windowLength: '45m' },
    },
    {
      name: 'prefixed window keys win over unprefixed ones in any order',
      text: [
        'LOCKSMITHD_REBOOT_WINDOW_START="Mon 01:00"',
        'REBOOT_WINDOW_START="Tue 02:00"',
        'REBOOT_WINDOW_LENGTH=1h',
      ].join('\n'),
      settings: { windowStart: 'Mon 01:00', windowLength: '1h' },
    },
    {
      name: 'CA-only TLS with several endpoints',
      text: [
        'REBOOT_STRATEGY=etcd-lock',
        'LOCKSMITHD_ENDPOINT=https://10.0.0.1:2379,https://10.0.0.2:2379',
        'LOCKSMITHD_ETCD_CAFILE=/etc/ssl/etcd/ca.pem',
      ].join('\n'),
      settings: {
        strategy: 'etcd-lock',
        endpoints: ['https://10.0.0.1:2379', 'https://10.0.0.2:2379'],
        cacert: '/etc/ssl/etcd/ca.pem',
      },
    },
    {
      name: 'mutual TLS, user, password and group',
      text: [
        'LOCKSMITHD_ENDPOINT="https://etcd:2379"',
        'LOCKSMITHD_ETCD_CAFILE=/etc/ssl/ca.pem',
        'LOCKSMITHD_ETCD_CERTFILE=/etc/ssl/client.pem',
        'LOCKSMITHD_ETCD_KEYFILE=/etc/ssl/client-key.pem',
        'LOCKSMITHD_ETCD_USERNAME=locksmith',
        "LOCKSMITHD_ETCD_PASSWORD='s3cr3t with spaces'",
        'LOCKSMITHD_GROUP=workers   ',
      ].join('\n'),
      settings: {
        endpoints: ['https://etcd:2379'],
        cacert: '/etc/ssl/ca.pem',
        cert: '/etc/ssl/client.pem',
        key: '/etc/ssl/client-key.pem',
        username: 'locksmith',
        password: 's3cr3t with spaces',
        group: 'workers',
      },
    },
    {
      name: 'strategy off, CRLF line ends, blank lines, indented comments',
      text: '\r\n  # comment\r\nREBOOT_STRATEGY="off"\r\n\r\n',
      settings: { strategy: 'off' },
    },
    {
      name: 'a later line wins; an empty value unsets',
      text: 'REBOOT_STRATEGY=reboot\nREBOOT_STRATEGY=etcd-lock\nLOCKSMITHD_GROUP=a\nLOCKSMITHD_GROUP=\n',
      settings: { strategy: 'etcd-lock' },
    },
    {
      name: 'double-quote escapes and joined pieces',
      text: 'LOCKSMITHD_ETCD_USERNAME="a\\"b"\'c d\'e\n',
      settings: { username: 'a"bc de' },
    },
  ];

  it.each(cases)('$name', ({ text, settings }) => {
    const parsed = parse(text);
    expect(parsed.settings).toEqual(settings);
    expect(parsed.warnings).toEqual([]);
  });

  it('records the line and key of each setting', () => {
    const parsed = parse(
      'GROUP=stable\n\nREBOOT_STRATEGY=reboot\nREBOOT_WINDOW_START=04:00\nREBOOT_WINDOW_LENGTH=1h\n',
    );
    expect(parsed.origins.strategy).toEqual({ path: PATH, line: 3, key: 'REBOOT_STRATEGY' });
    expect(parsed.origins.windowStart).toEqual({ path: PATH, line: 4, key: 'REBOOT_WINDOW_START' });
  });

  it('warns about unknown LOCKSMITHD_ and REBOOT_ keys, and ignores other programs’ keys', () => {
    const parsed = parse(
      'LOCKSMITHD_FOO=1\nREBOOT_STRATEGI=reboot\nDOWNLOAD_USER_AGENT=x\nSERVER=y\n',
    );
    expect(parsed.settings).toEqual({});
    expect(parsed.warnings).toEqual([
      `${PATH}:1: ignoring unknown key LOCKSMITHD_FOO`,
      `${PATH}:2: ignoring unknown key REBOOT_STRATEGI`,
    ]);
  });
});

describe('parseUpdateConf: errors name the file and line', () => {
  it('refuses an unknown strategy', () => {
    expect(failure('GROUP=stable\nREBOOT_STRATEGY=etcdlock\n')).toBe(
      `${PATH}:2: REBOOT_STRATEGY: unknown strategy "etcdlock" (want etcd-lock, reboot, off or best-effort)`,
    );
  });

  it('refuses a window start without a length', () => {
    const message = failure('REBOOT_STRATEGY=reboot\nLOCKSMITHD_REBOOT_WINDOW_START="Thu 04:00"\n');
    expect(message).toMatch(
      /^\/etc\/flatcar\/update\.conf:2: LOCKSMITHD_REBOOT_WINDOW_START: invalid reboot window: .*without a window length/,
    );
  });

  it('refuses a bad window day and a bad length', () => {
    expect(failure('REBOOT_WINDOW_START="Thx 04:00"\nREBOOT_WINDOW_LENGTH=1h\n')).toMatch(
      /^\/etc\/flatcar\/update\.conf:1: REBOOT_WINDOW_START: .*unknown day "Thx"/,
    );
    expect(failure('REBOOT_WINDOW_START=04:00\nREBOOT_WINDOW_LENGTH=1d\n')).toMatch(/:1: .*"d"/);
  });

  it('skips lines that are not assignments, as systemd does, with a warning', () => {
    const parsed = parse('GROUP=stable\nthis is not valid\nexport REBOOT_STRATEGY=off\n');
    expect(parsed.settings).toEqual({});
    expect(parsed.warnings).toEqual([
      `${PATH}:2: ignoring a line without "=" (systemd ignores it too)`,
      `${PATH}:3: ignoring an assignment to an invalid variable name (systemd ignores it too; "export" is shell syntax, not an EnvironmentFile's)`,
    ]);
  });

  it('reads unterminated quotes and unquoted spaces as systemd does, never quoting the value', () => {
    const secret = 'hunter2-secret';
    expect(parse(`LOCKSMITHD_ETCD_PASSWORD=${secret} more\n`).settings.password).toBe(
      `${secret} more`,
    );
    for (const text of [
      `LOCKSMITHD_ETCD_PASSWORD="${secret}\n`,
      `LOCKSMITHD_ETCD_PASSWORD='${secret}\n`,
    ]) {
      const parsed = parse(text);
      expect(parsed.settings.password).toBe(`${secret}\n`);
      expect(parsed.warnings).toHaveLength(1);
      expect(parsed.warnings[0]).toMatch(
        /:1: the quote opened in LOCKSMITHD_ETCD_PASSWORD's value/,
      );
      expect(parsed.warnings[0]).not.toContain(secret);
    }
  });

  it('reads several files in order, as locksmithd.service does, the later one winning', () => {
    const result = parseUpdateConfs([
      { path: '/usr/share/flatcar/update.conf', content: 'REBOOT_STRATEGY=reboot\nGROUP=stable\n' },
      { path: PATH, content: 'REBOOT_STRATEGY=etcd-lock\nLOCKSMITHD_GROUP=web\n' },
    ]);
    expect(result.ok && result.value.settings).toEqual({ strategy: 'etcd-lock', group: 'web' });
    expect(result.ok && result.value.origins.strategy).toEqual({
      path: PATH,
      line: 1,
      key: 'REBOOT_STRATEGY',
    });
  });

  it('uses REBOOT_WINDOW_START when LOCKSMITHD_REBOOT_WINDOW_START is empty, as locksmithd does', () => {
    const parsed = parse(
      'LOCKSMITHD_REBOOT_WINDOW_START=\nREBOOT_WINDOW_START=Thu 04:00\nREBOOT_WINDOW_LENGTH=1h\n',
    );
    expect(parsed.settings).toEqual({ windowStart: 'Thu 04:00', windowLength: '1h' });
  });

  it('refuses an endpoint list with no endpoint', () => {
    expect(failure('LOCKSMITHD_ENDPOINT=" , "\n')).toBe(
      `${PATH}:1: LOCKSMITHD_ENDPOINT: no endpoint in the list`,
    );
  });
});
