import { describe, expect, it } from 'vitest';
import { LOCKSMITH_FLAGS, rewriteLocksmithFlags } from './argv.js';
import { buildProgram } from './program.js';

describe('rewriteLocksmithFlags', () => {
  it.each([
    // locksmithctl's Go-style flags, with the value apart or after "="
    [
      ['-endpoint', 'http://e:2379'],
      ['--endpoints', 'http://e:2379'],
    ],
    [['-endpoint=http://e:2379'], ['--endpoints=http://e:2379']],
    [
      ['--endpoint', 'http://e:2379'],
      ['--endpoints', 'http://e:2379'],
    ],
    [
      ['-etcd-cafile', '/ca.pem'],
      ['--cacert', '/ca.pem'],
    ],
    [['-etcd-cafile=/ca.pem'], ['--cacert=/ca.pem']],
    [
      ['-etcd-certfile', '/c.pem'],
      ['--cert', '/c.pem'],
    ],
    [['-etcd-keyfile=/k.pem'], ['--key=/k.pem']],
    [
      ['-etcd-username', 'root'],
      ['--user', 'root'],
    ],
    [['--etcd-username=root'], ['--user=root']],
    [
      ['-etcd-password', 'pw'],
      ['--password', 'pw'],
    ],
    [['-etcd-password='], ['--password=']],
    [
      ['-group', 'lab'],
      ['--group', 'lab'],
    ],
    [['-group=lab'], ['--group=lab']],
    // a whole locksmithctl command line
    [
      ['-endpoint', 'http://e:2379', '-etcd-cafile=/ca.pem', 'status'],
      ['--endpoints', 'http://e:2379', '--cacert=/ca.pem', 'status'],
    ],
  ])('%j becomes %j', (input, output) => {
    expect(rewriteLocksmithFlags(input)).toEqual(output);
  });

  it.each([
    [['--group', 'lab', 'status']],
    [['--group=lab', 'status']],
    [['--endpoints', 'http://e:2379', 'status']],
    [['--endpoints=http://e:2379']],
    [['--user', 'root', '--password-file', '/pw']],
    [['-o', 'json', 'status', '-h']],
    [['lock', '--reason', 'disk', '--ttl', '2h']],
    [['-unknown', 'x']],
    [['windows', 'check', 'Thu 04:00', '--length', '1h30m']],
    // a value that only looks like a flag, after the end of the options
    [['lock', '--reason', 'x', '--', '-endpoint', '-group']],
    [[]],
  ])('leaves %j alone', (input) => {
    expect(rewriteLocksmithFlags(input)).toEqual(input);
  });

  it('does not change its input', () => {
    const input = ['-endpoint', 'http://e:2379'];
    rewriteLocksmithFlags(input);
    expect(input).toEqual(['-endpoint', 'http://e:2379']);
  });

  it('maps every locksmithctl flag to a global flag sluicectl has', () => {
    const program = buildProgram(
      { stdout: { write: () => true }, stderr: { write: () => true }, env: {} },
      async () => {},
    );
    const longs = new Set(program.options.map((o) => o.long));
    for (const [name, target] of Object.entries(LOCKSMITH_FLAGS)) {
      expect(longs.has(target), `-${name} -> ${target}`).toBe(true);
    }
  });
});
