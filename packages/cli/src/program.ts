/**
 * The `sluicectl` command line: global flags, one sub-command per operator task, and the mapping
 * from outcomes to exit codes. Command modules are imported only when their command runs, so
 * `status` does not pay for D-Bus and `windows check` does not pay for etcd.
 */
import { readFileSync } from 'node:fs';
import { Argument, Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { rewriteLocksmithFlags } from './argv.js';
import { type CliIO, Context, EXIT, exitCodeFor, type GlobalOptions } from './context.js';
import { addEtcdOptions } from './etcd-options.js';

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
    return String(pkg.version);
  } catch {
    return 'unknown';
  }
}

/** Checks a `--reason`: other operators read it in status and history, so it must say something. */
function reasonText(value: string): string {
  const reason = value.trim();
  if (reason === '') {
    throw new InvalidArgumentError('it is empty; say why, e.g. --reason "BIOS update"');
  }
  return reason;
}

/** A command body: gets the run's context and returns the exit code. */
type Body = (ctx: Context) => Promise<number>;

/**
 * Builds the commander program. `exec` runs a command body with a fresh Context and records its
 * exit code. Exported for the completion generator and for tests that inspect the command tree.
 */
export function buildProgram(
  io: CliIO,
  exec: (cmd: Command, body: Body) => Promise<void>,
): Command {
  const program = new Command('sluicectl');
  program
    .description(
      'Inspect and steer sluice reboot groups in etcd: how many nodes may reboot at once, who holds a slot, who waits, and when.',
    )
    .version(version(), '-v, --version', 'print the version')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
    })
    .showHelpAfterError('(run with --help for usage)')
    .helpOption('-h, --help', 'show help (also -help, help and help COMMAND)')
    .helpCommand('help [command]', 'show help for a command');
  addEtcdOptions(program)
    .option(
      '--create',
      'let a write start a group that has no keys yet (without it, an unknown --group is refused)',
    )
    .addOption(
      new Option('-o, --output <format>', 'output format')
        .choices(['table', 'json'])
        .default('table'),
    )
    .addHelpText(
      'after',
      `
Exit codes: 0 done; 1 refused (group full, nothing held, lost a race, a check failed);
2 usage or configuration error; 3 etcd unreachable, or it refused or denied the request.
Flags override environment variables; locksmithctl's -endpoint URL form is accepted.`,
    );

  program
    .command('status')
    .description('show max, free slots, pause, window, holders, waiters and unreadable keys')
    .option('--all-groups', 'show every group under the prefix (JSON: an array); not with --group')
    .option(
      '--check',
      'only say whether the group is healthy: exit 1 when paused, halted, with invalid keys, holders above max or failing post-checks',
    )
    .action(async (opts: { allGroups?: boolean; check?: boolean }, cmd: Command) =>
      exec(cmd, async (ctx) => (await import('./commands/status.js')).status(ctx, opts)),
    );

  program
    .command('nodes')
    .description(
      "list the group's nodes: registered agents and queued nodes, their state, versions, last reboot and problems",
    )
    .action(async (_opts: unknown, cmd: Command) =>
      exec(cmd, async (ctx) => (await import('./commands/nodes.js')).nodes(ctx)),
    );

  program
    .command('set-max')
    .description('set how many nodes of the group may hold a slot at once')
    .argument('<N>', 'whole number from 0 to 10000; 0 stops all admissions')
    .action(async (n: string, _opts: unknown, cmd: Command) =>
      exec(cmd, async (ctx) => (await import('./commands/set-max.js')).setMax(ctx, n)),
    );

  program
    .command('domain-max')
    .description(
      'show or set how many nodes of one failure domain (node.domain: a rack, a zone) may hold a slot at once, on top of max',
    )
    .argument('[N]', 'whole number from 0 to 10000; 0 admits no node that has a domain')
    .option('--clear', 'remove the limit')
    .action(async (n: string | undefined, opts: { clear?: boolean }, cmd: Command) =>
      exec(cmd, async (ctx) => (await import('./commands/domain-max.js')).domainMax(ctx, n, opts)),
    );

  program
    .command('pause')
    .description('stop granting slots in the group (the fleet-wide brake)')
    .requiredOption('--reason <text>', 'why; shown by status', reasonText)
    .action(async (opts: { reason: string }, cmd: Command) =>
      exec(cmd, async (ctx) => (await import('./commands/pause.js')).pause(ctx, opts)),
    );

  program
    .command('resume')
    .description('grant slots again; also clears a halt after a lost holder was force-unlocked')
    .action(async (_opts: unknown, cmd: Command) =>
      exec(cmd, async (ctx) => (await import('./commands/pause.js')).resume(ctx)),
    );

  program
    .command('lock')
    .description('take a slot by hand for maintenance (recorded as manual)')
    .option('--node <id>', 'node to lock for (default: this node, SLUICE_NODE or /etc/machine-id)')
    .requiredOption('--reason <text>', 'why; shown by status and history', reasonText)
    .option('--wait', 'wait for a free slot instead of failing when the group is full')
    .option(
      '--ttl <duration>',
      'how long the slot is held without an unlock; after that it counts as lost and halts the group',
      '24h',
    )
    .addHelpText(
      'after',
      `
The slot outlives this command: it sits on a hold lease of --ttl that nobody renews.
Give it back with "sluicectl unlock". A manual lock that expires counts as a lost
holder and halts the group (the safe outcome: nobody knows whether the work finished);
clear it with "sluicectl unlock NODE --force", then "sluicectl resume".`,
    )
    .action(
      async (opts: { node?: string; reason: string; wait?: boolean; ttl: string }, cmd: Command) =>
        exec(cmd, async (ctx) => (await import('./commands/lock.js')).lock(ctx, opts)),
    );

  program
    .command('unlock')
    .description(
      "give back this node's manual lock (from sluicectl lock); any other slot needs --force",
    )
    .argument('[node]', 'node to release (default: this node)')
    .option('--node <id>', 'who "this node" is (default: SLUICE_NODE or /etc/machine-id)')
    .option(
      '--force',
      "release a slot an agent holds, another node's, or a lost holder; recorded as forced (or lost)",
    )
    .option(
      '--yes',
      'with --force: release even a node that is draining or rebooting right now (asked on a terminal)',
    )
    .addHelpText(
      'after',
      `
Without --force, unlock releases only a lock taken with "sluicectl lock" on this node.
A slot held by an agent needs --force even on its own node: releasing it under the
running agent breaks the reboot in progress. Every release is recorded in history
with who did it (see "sluicectl history").`,
    )
    .action(
      async (
        node: string | undefined,
        opts: { node?: string; force?: boolean; yes?: boolean },
        cmd: Command,
      ) => exec(cmd, async (ctx) => (await import('./commands/lock.js')).unlock(ctx, node, opts)),
    );

  program
    .command('request-reboot')
    .description("ask a node's agent for a coordinated reboot (it still waits for a slot)")
    .argument('[node]', 'node to reboot (default: this node)')
    .option('--node <id>', 'who "this node" is (default: SLUICE_NODE or /etc/machine-id)')
    .option(
      '--reason <text>',
      'why; shown by status and history',
      reasonText,
      'requested with sluicectl',
    )
    .option(
      '--ttl <duration>',
      'how long the request stands if the agent does not act on it',
      '24h',
    )
    .option('--allow-unknown', 'request a node that is not registered, queued or holding a slot')
    .option('--cancel', "withdraw the node's request (as cancel-request does)")
    .action(
      async (
        node: string | undefined,
        opts: import('./commands/request-reboot.js').RequestRebootOptions,
        cmd: Command,
      ) =>
        exec(cmd, async (ctx) =>
          (await import('./commands/request-reboot.js')).requestReboot(ctx, node, opts),
        ),
    );

  program
    .command('cancel-request')
    .description('take back a reboot request made with request-reboot')
    .argument('<node>', 'node whose request to remove')
    .action(async (node: string, _opts: unknown, cmd: Command) =>
      exec(cmd, async (ctx) =>
        (await import('./commands/request-reboot.js')).cancelRequest(ctx, node),
      ),
    );

  program
    .command('reboot-if-needed')
    .description(
      'one pass of the agent (for sluice-reboot.timer): reboot holding a slot if an update is staged and the window is open',
    )
    .option(
      '--release-only',
      'only post-check and release after a reboot (for sluice-release.service)',
    )
    .option('--wait <duration>', 'how long to wait for a slot or for post-reboot checks', '10m')
    .option(
      '--config <file>',
      "the agent's YAML config (default /etc/sluice/sluiced.yaml) [SLUICE_CONFIG]",
    )
    .option(
      '--update-conf <paths>',
      'locksmith update.conf files, colon-separated [SLUICE_UPDATE_CONF]',
    )
    .option('--machine-id-file <path>', 'where the node id is read (default /etc/machine-id)')
    .option(
      '--boot-id-file <path>',
      'where the boot id is read (default /proc/sys/kernel/random/boot_id)',
    )
    .option('--node <id>', "this node's id (default: SLUICE_NODE or /etc/machine-id)")
    .option(
      '--token-file <path>',
      "the agent's instance token file (default /var/lib/sluice/instance) [SLUICE_TOKEN_FILE]",
    )
    .action(
      async (opts: import('./commands/reboot-if-needed.js').RebootIfNeededOptions, cmd: Command) =>
        exec(cmd, async (ctx) =>
          (await import('./commands/reboot-if-needed.js')).rebootIfNeeded(ctx, {
            ...opts,
            ...(opts.updateConf === undefined && ctx.io.env.SLUICE_UPDATE_CONF !== undefined
              ? { updateConf: ctx.io.env.SLUICE_UPDATE_CONF }
              : {}),
          }),
        ),
    );

  const windows = program
    .command('windows')
    .description("show the group's reboot windows, whether they are open, and the next openings")
    .option('--count <n>', 'how many upcoming openings to list', '3')
    .action(async (opts: { count: string }, cmd: Command) =>
      exec(cmd, async (ctx) => (await import('./commands/windows.js')).showWindows(ctx, opts)),
    );
  windows
    .command('set')
    .description('set the group\'s window spec, e.g. "Mon-Fri 22:00-02:00 Europe/Berlin"')
    .argument('<spec>', 'window spec; several entries separated by ";"')
    .option('--zone <zone>', 'time zone for entries that name none (an IANA zone)', 'UTC')
    .action(async (spec: string, opts: { zone: string }, cmd: Command) =>
      exec(cmd, async (ctx) => (await import('./commands/windows.js')).setWindows(ctx, spec, opts)),
    );
  windows
    .command('clear')
    .description("remove the group's window: always open")
    .action(async (_opts: unknown, cmd: Command) =>
      exec(cmd, async (ctx) => (await import('./commands/windows.js')).clearWindows(ctx)),
    );
  windows
    .command('check')
    .description('check a spec without etcd: open at an instant, next start and end')
    .argument('<spec>', 'window spec, or with --length locksmith\'s start ("Thu 04:00")')
    .option('--at <time>', 'ISO-8601 instant to check (default: now)')
    .option('--length <duration>', "treat SPEC as locksmith's REBOOT_WINDOW_START with this length")
    .option(
      '--zone <zone>',
      "zone for entries that name none, or local; default UTC, and this node's zone with --length",
    )
    .option(
      '--blackouts <spec>',
      'blackout dates that shut the window, e.g. "2026-12-24..2026-12-26"',
    )
    .action(
      async (
        spec: string,
        opts: { at?: string; length?: string; zone?: string; blackouts?: string },
        cmd: Command,
      ) =>
        exec(cmd, async (ctx) =>
          (await import('./commands/windows.js')).checkWindows(ctx, spec, opts),
        ),
    );

  const blackouts = program
    .command('blackouts')
    .description(
      "show the group's blackouts: dates on which its windows stay shut (freezes, holidays)",
    )
    .action(async (_opts: unknown, cmd: Command) =>
      exec(cmd, async (ctx) => (await import('./commands/blackouts.js')).showBlackouts(ctx)),
    );
  blackouts
    .command('set')
    .description("set the group's blackouts (validated, stored with every entry's zone)")
    .argument(
      '<spec>',
      'dates and ranges with zones: "2026-12-24..2026-12-26 Europe/Berlin; 2027-01-01"',
    )
    .option('--zone <zone>', 'zone of entries that name none (default UTC)', 'UTC')
    .action(async (spec: string, opts: { zone: string }, cmd: Command) =>
      exec(cmd, async (ctx) =>
        (await import('./commands/blackouts.js')).setBlackouts(ctx, spec, opts),
      ),
    );
  blackouts
    .command('clear')
    .description("remove the group's blackouts")
    .action(async (_opts: unknown, cmd: Command) =>
      exec(cmd, async (ctx) => (await import('./commands/blackouts.js')).clearBlackouts(ctx)),
    );

  const canary = program
    .command('canary')
    .description(
      "show the group's canary: the first nodes of each new version reboot alone, and nobody else goes until they are back and soaked",
    )
    .action(async (_opts: unknown, cmd: Command) =>
      exec(cmd, async (ctx) => (await import('./commands/canary.js')).showCanary(ctx)),
    );
  canary
    .command('set')
    .description('canary K nodes of each new version, then soak (validated as the agents read it)')
    .argument('<K>', 'canaries per version, 1 to 1000')
    .argument('<SOAK>', 'how long after the last canary is back before the rest go: 30m, 2h, 1d')
    .action(async (k: string, soak: string, _opts: unknown, cmd: Command) =>
      exec(cmd, async (ctx) => (await import('./commands/canary.js')).setCanary(ctx, k, soak)),
    );
  canary
    .command('clear')
    .description("remove the group's canary: new versions go out as max allows")
    .action(async (_opts: unknown, cmd: Command) =>
      exec(cmd, async (ctx) => (await import('./commands/canary.js')).clearCanary(ctx)),
    );
  for (const [how, what] of [
    [
      'reset',
      'forget the current canary (after a failure): the next nodes of the version are its canaries again',
    ],
    ['skip', "accept the current canary's version as proven: the rest go as max allows"],
  ] as const) {
    canary
      .command(how)
      .description(what)
      .action(async (_opts: unknown, cmd: Command) =>
        exec(cmd, async (ctx) => (await import('./commands/canary.js')).endCanary(ctx, how)),
      );
  }

  program
    .command('migrate-locksmith')
    .description(
      "take over a group from a live locksmith: its holders become sluice slots, sluice's max is locksmith's, and locksmith admits nobody more",
    )
    .option('--dry-run', 'say what it would do, and write nothing')
    .option('--overwrite', "set sluice's max to locksmith's even when it is set already")
    .option('--api <api>', 'where locksmith keeps its semaphore: v2 or v3 (default: look in both)')
    .option('--max <n>', "sluice's max to set instead of locksmith's")
    .addHelpText(
      'after',
      `
Reads locksmith's semaphore for the group (coreos.com/updateengine/rebootlock/semaphore, or
.../groups/<group>/semaphore; --group default is locksmith's default semaphore) from etcd's v3
keyspace or v2 keys API. In one guarded step it records each locksmith holder as a migrated
sluice slot, sets sluice's max, and sets locksmith's max to 0 with a compare-and-swap (holders
kept), so nodes still on locksmithd take no slot while nodes switch to sluiced. A migrated slot
is given back by that node's sluiced when it starts. See deploy/README.md.`,
    )
    .action(async (opts: import('./commands/migrate-locksmith.js').MigrateOptions, cmd: Command) =>
      exec(cmd, async (ctx) =>
        (await import('./commands/migrate-locksmith.js')).migrate(ctx, opts),
      ),
    );

  program
    .command('history')
    .description(
      'finished reboots (node, start, end, duration, outcome) and operator actions (who, when, what)',
    )
    .option('--limit <n>', 'how many, newest first', '20')
    .option(
      '--kind <kind>',
      'reboot, action, or one action: set-max, set-domain-max, pause, resume, windows-set, windows-clear, blackouts-set, blackouts-clear, canary-set, canary-clear, canary-reset, canary-skip, lock, request-reboot, cancel-request, migrate-locksmith, halt',
    )
    .option('--since <when>', 'only from then on: a duration back (7d, 36h) or an instant')
    .action(async (opts: { limit: string; kind?: string; since?: string }, cmd: Command) =>
      exec(cmd, async (ctx) => (await import('./commands/history.js')).history(ctx, opts)),
    );

  program
    .command('report')
    .description(
      "write the group's fleet timeline as an HTML page: reboots per node, nodes down against max, operator actions, pauses",
    )
    .requiredOption('--html <file>', 'where to write the page')
    .option('--since <duration>', 'how far back', '7d')
    .option('--zone <zone>', "time zone of the wall-clock times (default: this machine's)")
    .action(async (opts: import('./commands/report.js').ReportOptions, cmd: Command) =>
      exec(cmd, async (ctx) => (await import('./commands/report.js')).report(ctx, opts)),
    );

  program
    .command('watch')
    .description('live status, redrawn on every etcd change, until Ctrl-C')
    .action(async (_opts: unknown, cmd: Command) =>
      exec(cmd, async (ctx) => (await import('./commands/watch.js')).watch(ctx)),
    );

  program
    .command('exporter')
    .description(
      'serve group metrics for Prometheus (paused, halted, lost holders, holders over max, queue) until Ctrl-C',
    )
    .option(
      '--listen <host:port>',
      'where to serve /metrics (loopback unless --allow-remote)',
      '127.0.0.1:9467',
    )
    .option('--all-groups', 'export every group under the prefix; not with --group')
    .option(
      '--discover-every <duration>',
      'with --all-groups: how often to look for new groups',
      '5m',
    )
    .option('--allow-remote', 'allow a --listen address beyond this host')
    .action(async (opts: import('./commands/exporter.js').ExporterCommandOptions, cmd: Command) =>
      exec(cmd, async (ctx) => (await import('./commands/exporter.js')).exporter(ctx, opts)),
    );

  program
    .command('doctor')
    .description(
      'check etcd access, permissions, clock skew, and logind and update_engine on D-Bus',
    )
    .option(
      '--dbus-address <address>',
      'D-Bus to check: "system" or a unix:path= address',
      'system',
    )
    .option('--no-dbus', 'skip the D-Bus checks (on an operator workstation)')
    .action(async (opts: { dbusAddress: string; dbus: boolean }, cmd: Command) =>
      exec(cmd, async (ctx) => (await import('./commands/doctor.js')).doctor(ctx, opts)),
    );

  program
    .command('completion')
    .description('print a shell completion script: source <(sluicectl completion bash)')
    .addArgument(new Argument('<shell>', 'shell').choices(['bash', 'zsh']))
    .action(async (shell: 'bash' | 'zsh', _opts: unknown, cmd: Command) =>
      exec(cmd, async (ctx) =>
        (await import('./commands/completion.js')).completion(ctx, program, shell),
      ),
    );

  return program;
}

/**
 * Runs sluicectl with `argv` (the arguments after the script path) and resolves with the exit
 * code. Never throws and never exits the process: `main.ts` does that, so tests can call it too.
 */
export async function run(argv: readonly string[], io: CliIO): Promise<number> {
  let code: number = EXIT.ok;
  const exec = async (cmd: Command, body: Body): Promise<void> => {
    const ctx = new Context(io, cmd.optsWithGlobals() as GlobalOptions);
    try {
      code = await body(ctx);
    } catch (error) {
      code = exitCodeFor(error);
      const message = error instanceof Error ? error.message : String(error);
      ctx.err(`sluicectl: ${message}`);
      if (!(error instanceof Error) || !('kind' in error)) {
        ctx.err('sluicectl: this is a bug; please report it with the command you ran');
      }
    } finally {
      await ctx.close();
    }
  };
  const program = buildProgram(io, exec);
  try {
    await program.parseAsync(rewriteLocksmithFlags(argv), { from: 'user' });
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? EXIT.ok : EXIT.usage;
    io.stderr.write(`sluicectl: ${error instanceof Error ? error.message : String(error)}\n`);
    return EXIT.refused;
  }
  return code;
}
