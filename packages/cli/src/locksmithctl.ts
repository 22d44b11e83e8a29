/**
 * `locksmithctl`, backed by sluice: scripts and habits written for locksmith's `locksmithctl`
 * keep working on a fleet that runs sluice. It takes locksmithctl's commands (`status`, `set-max`,
 * `lock`, `unlock`, `help`) and Go-style flags (`-endpoint`, `-etcd-cafile`, `-etcd-certfile`,
 * `-etcd-keyfile`, `-etcd-username`, `-etcd-password`, `-group`, `-help`, `-version`, and the
 * `LOCKSMITHCTL_*` variables), runs the sluicectl command that does the same on sluice's keys, and
 * prints locksmithctl's output layout:
 *
 * ```text
 * $ locksmithctl status          $ locksmithctl set-max 2
 * Available: 1                   Old-Max: 1
 * Max: 2                         Max: 2
 *
 * MACHINE ID
 * 0123456789abcdef
 * ```
 *
 * `lock` and `unlock` print nothing when they succeed and `Error locking: ...` when they fail,
 * exit 1, as locksmithctl does. Where sluice is stricter, the message says so: unlocking another
 * machine's slot takes `-force` (locksmithctl had none), and a manual lock runs out after 24h.
 */
import { type CliIO, EXIT } from './context.js';
import { run } from './program.js';

/** locksmithctl's global flags with a value, and sluicectl's flag for each. */
const VALUE_FLAGS: Readonly<Record<string, string>> = {
  endpoint: '--endpoints',
  'etcd-cafile': '--cacert',
  'etcd-certfile': '--cert',
  'etcd-keyfile': '--key',
  'etcd-username': '--user',
  'etcd-password': '--password',
  group: '--group',
};

/** Switches: locksmithctl's, and the ones sluice adds (`-force`, `-create`). */
const SWITCHES = new Set(['help', 'h', 'version', 'debug', 'force', 'create']);

const COMMANDS: readonly [string, string, string][] = [
  ['help', '[COMMAND]', 'Show a list of commands or help for one command'],
  ['lock', '[MACHINE-ID]', 'Lock this machine or a given machine-id for reboot.'],
  ['set-max', 'MAX', 'Set the maximum number of lock holders'],
  ['status', '', 'Get the status of the cluster wide reboot lock.'],
  ['unlock', '[MACHINE-ID]', 'Unlock this machine or a given machine-id for reboot.'],
];

function usage(): string {
  const commands = COMMANDS.map(([name, , summary]) => `\t${name}\t${summary}`).join('\n');
  return `NAME:
\tlocksmithctl - Manage the cluster wide reboot lock (sluice's locksmithctl: sluice's keys in etcd).

USAGE:
\tlocksmithctl [global options] <command> [command options] [arguments...]

COMMANDS:
${commands}

GLOBAL OPTIONS:
\t-endpoint=URL\t\tetcd endpoint(s), comma-separated [LOCKSMITHCTL_ENDPOINT]
\t-etcd-cafile=FILE\tCA of etcd's certificates [LOCKSMITHCTL_ETCD_CAFILE]
\t-etcd-certfile=FILE\tclient certificate [LOCKSMITHCTL_ETCD_CERTFILE]
\t-etcd-keyfile=FILE\tclient key [LOCKSMITHCTL_ETCD_KEYFILE]
\t-etcd-username=NAME\tetcd user [LOCKSMITHCTL_ETCD_USERNAME]
\t-etcd-password=PASS\tetcd password [LOCKSMITHCTL_ETCD_PASSWORD]
\t-group=NAME\t\tlock group (default: the default group) [LOCKSMITHCTL_GROUP]
\t-create\t\t\tlet set-max or lock start a group that has no keys yet
\t-version\t\tprint the version

sluice is stricter than locksmith in two places: "unlock" of another machine needs -force,
and a lock taken with "lock" runs out after 24h (then it counts as lost and halts the group).
Everything else: sluicectl --help.

Run "locksmithctl help <command>" for more details on a specific command.
`;
}

function commandUsage(name: string): string | null {
  const found = COMMANDS.find(([n]) => n === name);
  if (!found) return null;
  const [, args, summary] = found;
  const extra =
    name === 'unlock'
      ? "\n\nOPTIONS:\n\t-force\trelease a slot that is not this machine's manual lock (another machine's, or one its agent holds)"
      : '';
  return `NAME:\n\t${name} - ${summary}\n\nUSAGE:\n\tlocksmithctl ${name} ${args}${extra}\n`;
}

/** A CliIO that keeps what a sluicectl run writes, for reshaping into locksmithctl's layout. */
function capture(io: CliIO): { io: CliIO; out: () => string; err: () => string } {
  let out = '';
  let err = '';
  return {
    io: {
      env: io.env,
      ...(io.signal ? { signal: io.signal } : {}),
      stdout: {
        write: (s: string) => {
          out += s;
          return true;
        },
      },
      stderr: {
        write: (s: string) => {
          err += s;
          return true;
        },
      },
    },
    out: () => out,
    err: () => err,
  };
}

/** locksmithctl's name for each sluicectl flag a message may start with. */
const FLAG_NAMES = new Map(Object.entries(VALUE_FLAGS).map(([go, flag]) => [flag, `-${go}`]));

/**
 * sluicectl's message without its program prefix, one line. A message about a flag
 * (`--cert: ...`) names locksmithctl's flag instead (`-etcd-certfile: ...`).
 */
function reason(text: string): string {
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) =>
      l
        .replace(/^sluicectl: /, '')
        .replace(/^(--[a-z-]+):/, (_all, flag: string) => `${FLAG_NAMES.get(flag) ?? flag}:`),
    )
    .join('; ');
}

interface Parsed {
  global: string[];
  switches: Set<string>;
  args: string[];
  bad?: string;
}

/** Reads Go-style flags (`-flag value`, `-flag=value`, `--flag`) before and after the command. */
function parse(argv: readonly string[]): Parsed {
  const global: string[] = [];
  const switches = new Set<string>();
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      args.push(...argv.slice(i + 1));
      break;
    }
    const match = /^--?([a-z][a-z-]*)(?:=(.*))?$/.exec(arg);
    if (!match) {
      args.push(arg);
      continue;
    }
    const [, name = '', value] = match;
    const target = VALUE_FLAGS[name];
    if (target) {
      const v = value ?? argv[++i];
      if (v === undefined)
        return { global, switches, args, bad: `flag needs an argument: -${name}` };
      global.push(target, v);
    } else if (SWITCHES.has(name)) {
      switches.add(name === 'h' ? 'help' : name);
    } else {
      return { global, switches, args, bad: `flag provided but not defined: -${name}` };
    }
  }
  return { global, switches, args };
}

/**
 * Runs locksmithctl with `argv` (the arguments after the program name) and resolves with the exit
 * code: 0 done, 1 refused or failed, 2 usage. Never throws and never exits the process.
 */
export async function runLocksmithctl(argv: readonly string[], io: CliIO): Promise<number> {
  const say = (s: string) => io.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
  const complain = (s: string) => io.stderr.write(s.endsWith('\n') ? s : `${s}\n`);
  const parsed = parse(argv);
  if (parsed.bad) {
    complain(parsed.bad);
    complain(usage());
    return EXIT.usage;
  }
  const { global, switches, args } = parsed;
  if (switches.has('version')) return run(['--version'], io);
  const [command = 'help', ...rest] = switches.has('help') ? ['help', ...args] : args;
  const extra = switches.has('create') ? ['--create'] : [];
  const sluicectl = async (cmd: string[]) => {
    const c = capture(io);
    const code = await run([...global, ...extra, ...cmd], c.io);
    return { code, out: c.out(), err: c.err() };
  };

  switch (command) {
    case 'help': {
      if (rest[0] === undefined) {
        say(usage());
        return EXIT.ok;
      }
      const text = commandUsage(rest[0]);
      if (text === null) {
        say(`Unrecognized command: ${rest[0]}`);
        return EXIT.refused;
      }
      say(text);
      return EXIT.ok;
    }
    case 'status': {
      const res = await sluicectl(['status', '-o', 'json']);
      if (res.code !== 0) {
        complain(`Error getting status: ${reason(res.err)}`);
        return EXIT.refused;
      }
      const status = JSON.parse(res.out) as { max: number | null; holders: { node: string }[] };
      const max = status.max ?? 0;
      // locksmith's "Available" is its free count: max minus holders, below 0 after max fell.
      say(`Available: ${max - status.holders.length}`);
      say(`Max: ${status.max ?? 'invalid (see sluicectl status)'}`);
      if (status.holders.length > 0) {
        say('');
        say('MACHINE ID');
        for (const h of status.holders) say(h.node);
      }
      return EXIT.ok;
    }
    case 'set-max': {
      if (rest.length !== 1) {
        complain('New maximum value must be set.');
        return EXIT.refused;
      }
      const res = await sluicectl(['set-max', rest[0]!, '-o', 'json']);
      if (res.code !== 0) {
        complain(`Error setting value: ${reason(res.err)}`);
        return EXIT.refused;
      }
      const result = JSON.parse(res.out) as { old: number | null; new: number };
      // locksmithctl prints these two lines (locksmithctl/set_max.go); an unset max was 1.
      say(`Old-Max: ${result.old ?? 1}`);
      say(`Max: ${result.new}`);
      return EXIT.ok;
    }
    case 'lock': {
      const node = rest[0] ? ['--node', rest[0]] : [];
      const res = await sluicectl(['lock', ...node, '--reason', 'locksmithctl lock', '-o', 'json']);
      if (res.code !== 0) {
        complain(`Error locking: ${reason(res.err)}`);
        return EXIT.refused;
      }
      const lock = JSON.parse(res.out) as { node: string; expiresAt: string };
      complain(
        `note: sluice's lock of ${lock.node} runs out at ${lock.expiresAt}; unlock it before then ("locksmithctl unlock${rest[0] ? ` ${rest[0]}` : ''}")`,
      );
      return EXIT.ok;
    }
    case 'unlock': {
      const force = switches.has('force') ? ['--force'] : [];
      const res = await sluicectl(['unlock', ...(rest[0] ? [rest[0]] : []), ...force]);
      if (res.code !== 0) {
        let why = reason(res.err);
        if (!switches.has('force') && /--force/.test(why)) {
          why +=
            `. sluice is stricter than locksmith here: a slot that is not this machine's own lock from "locksmithctl lock" is released only with -force: locksmithctl unlock -force ${rest[0] ?? ''}`.trimEnd();
        }
        complain(`Error unlocking: ${why}`);
        return EXIT.refused;
      }
      return EXIT.ok;
    }
    case 'reboot':
    case 'send-need-reboot':
      complain(
        `locksmithctl: "${command}" is not part of sluice's locksmithctl; ask for a coordinated reboot with: sluicectl request-reboot`,
      );
      return EXIT.usage;
    default:
      say(`locksmithctl: unknown subcommand: ${JSON.stringify(command)}`);
      say("Run 'locksmithctl help' for usage.");
      return EXIT.usage;
  }
}
