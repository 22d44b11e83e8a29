/**
 * The demo: a local etcd and a fleet of simulated nodes, each running the real `sluiced`, roll out
 * an OS update with at most `--max` nodes rebooting at once. Shows live progress, then the
 * figures of the rollout, the invariant check and the path of an HTML timeline.
 *
 *   npm run demo -- --nodes 8 --max 2 --reboot-seconds 3
 *   npm run demo -- --os fcos       # Fedora CoreOS nodes: rpm-ostree, finalization locked
 *   npm run demo -- --stay          # keep the fleet and etcd up after the rollout, until Ctrl-C
 *
 * Every process it starts (etcd, dbus-daemons, agents) is stopped at the end, on Ctrl-C, and on
 * SIGTERM. Exit status: 0 when the rollout finished and every invariant held (with `--stay`, also
 * when Ctrl-C ends the stay), 1 otherwise, 2 on a usage error, 130 on Ctrl-C during the rollout.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { MAX_CANARY_COUNT, parseCanary, parseWindowSpec } from '@sluice/core';
import { compactSteps, describeMaxOverTime, isValidZone, maxSeries } from '@sluice/report';
import { startEtcd } from '@sluice/testkit';
import { Fleet } from './fleet.js';
import { renderTimeline } from './html.js';
import { canaryOrder, formatReport } from './invariants.js';
import type { SimOs } from './node.js';
import { installShutdownHandlers, onShutdown, setSignalExitCode } from './procs.js';
import { agentProgram } from './programs.js';
import { ProgressDisplay } from './progress.js';
import { freshSeed, Random } from './random.js';
import { ms, rolloutStats, sampleEtcd, secs } from './report.js';

// npm links sluicectl into the repository's node_modules/.bin, where npx finds it.
const repo = fileURLToPath(new URL('../../..', import.meta.url)).replace(/\/$/, '');
/** Where the HTML timelines go by default: next to the repository, ignored by git. */
const OUTPUT_DIR = join(repo, 'demo-output');

const USAGE = `usage: npm run demo -- [options]

  --nodes N            simulated nodes (default 8)
  --max N              nodes that may reboot at once (default 2)
  --reboot-seconds S   how long a reboot keeps a node down (default 3)
  --window SPEC        a group window spec written to etcd, e.g. "Mon-Fri 22:00-24:00 UTC"
                       (START is 00:00 to 23:59; END may be 24:00; see docs/sluiced.md)
  --domains N          put the nodes in N failure domains, zone-1 to zone-N, round robin
  --domain-max N       at most N nodes of one domain reboot at once (needs --domains)
  --canary K           the first K nodes to take the update reboot alone; the rest wait until
                       they are back and --canary-soak has passed (docs/sluiced.md, "Canaries")
  --canary-soak D      how long the canaries soak before the rest go (default 5s; needs --canary)
  --members N          etcd members: 1 or 3 (default 1)
  --os OS              flatcar (update_engine, logind) or fcos (rpm-ostree, finalization
                       locked: finalized once a node holds its slot) (default flatcar)
  --seed N             seed for the order in which nodes learn of the update
  --html FILE          where to write the HTML timeline (default: a new file in ./demo-output/)
  --zone ZONE          time zone of the timeline's wall-clock times (default: this machine's)
  --stay               after the rollout, keep the fleet and etcd running until Ctrl-C, so that
                       sluicectl commands keep working against them
  --timeout S          give up after this many seconds (default 300)
  --plain              print plain progress lines even on a terminal
  --keep               keep the agents' logs and configs
  --agent KIND         bundle (dist-bundle/sluiced.mjs, what nodes get) or built
                       (packages/agent/dist) (default bundle)
  --no-setup           (scripts/demo.mjs) skip installing and building: both were done already
`;

function fail(message: string): never {
  process.stderr.write(`demo: ${message}\n\n${USAGE}`);
  process.exit(2);
}

let args: ReturnType<typeof parse>;
function parse() {
  return parseArgs({
    options: {
      nodes: { type: 'string', default: '8' },
      max: { type: 'string', default: '2' },
      'reboot-seconds': { type: 'string', default: '3' },
      window: { type: 'string' },
      members: { type: 'string', default: '1' },
      domains: { type: 'string' },
      'domain-max': { type: 'string' },
      canary: { type: 'string' },
      'canary-soak': { type: 'string' },
      os: { type: 'string', default: 'flatcar' },
      seed: { type: 'string' },
      html: { type: 'string' },
      zone: { type: 'string' },
      stay: { type: 'boolean', default: false },
      timeout: { type: 'string', default: '300' },
      plain: { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
      agent: { type: 'string', default: 'bundle' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  }).values;
}
try {
  args = parse();
} catch (error) {
  fail(error instanceof Error ? error.message : String(error));
}
if (args.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}

function number(name: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n < min || n > max)
    fail(`--${name} must be a number from ${min} to ${max}, got "${text}"`);
  return n;
}

// The agents read the window with this parser: refuse a bad one now, with the parser's words.
if (args.window !== undefined) {
  const parsed = parseWindowSpec(args.window, '--window');
  if (!parsed.ok) fail(parsed.error.message);
}

let agent: string;
try {
  agent = agentProgram(args.agent);
} catch (error) {
  fail((error as Error).message);
}
const nodes = Math.floor(number('nodes', args.nodes, 1, 200));
const max = Math.floor(number('max', args.max, 0, 10_000));
const rebootSeconds = number('reboot-seconds', args['reboot-seconds'], 0.1, 600);
const members = Math.floor(number('members', args.members, 1, 5));
const domains =
  args.domains === undefined ? undefined : Math.floor(number('domains', args.domains, 1, 200));
const domainMax =
  args['domain-max'] === undefined
    ? undefined
    : Math.floor(number('domain-max', args['domain-max'], 0, 10_000));
if (domainMax !== undefined && domains === undefined) fail('--domain-max needs --domains');
if (args['canary-soak'] !== undefined && args.canary === undefined)
  fail('--canary-soak needs --canary');
const canary =
  args.canary === undefined
    ? undefined
    : {
        count: Math.floor(number('canary', args.canary, 1, MAX_CANARY_COUNT)),
        soak: args['canary-soak'] ?? '5s',
      };
// The agents read the canary with this parser: refuse a bad soak now, with the parser's words.
if (canary !== undefined) {
  const parsed = parseCanary(JSON.stringify(canary), '--canary-soak');
  if (!parsed.ok) fail(parsed.error.message);
}
if (args.os !== 'flatcar' && args.os !== 'fcos')
  fail(`--os must be flatcar or fcos, got "${args.os}"`);
const os: SimOs = args.os;
const timeoutMs = number('timeout', args.timeout, 1, 86_400) * 1000;
const zone = args.zone ?? Intl.DateTimeFormat().resolvedOptions().timeZone;
if (!isValidZone(zone)) fail(`--zone ${JSON.stringify(zone)} is not an IANA time zone`);
const seed =
  args.seed === undefined ? freshSeed() : Math.floor(number('seed', args.seed, 0, 2 ** 32 - 1));
const random = new Random(seed);
const target = '2.0.0';
const out = process.stdout;
const say = (line = '') => out.write(`${line}\n`);

installShutdownHandlers((text) => out.write(text));

say(
  `sluice demo: ${nodes} simulated nodes, max ${max} at once, reboots take ${rebootSeconds} s (seed ${seed})`,
);
const etcd = await startEtcd({ members });
const stopEtcd = onShutdown(() => etcd.stop());
const endpoint = etcd.endpoints.join(',');
const prefix = '/sluice/v1/';
const group = 'default';
say(`etcd ${members > 1 ? `cluster (${members} members) ` : ''}listening on ${endpoint}`);

const fleet = await Fleet.start({
  etcd,
  nodes,
  max,
  rebootSeconds,
  prefix,
  group,
  random,
  keepDir: args.keep,
  os,
  agent,
  ...(domains === undefined ? {} : { domains }),
  ...(domainMax === undefined ? {} : { domainMax }),
  ...(canary === undefined ? {} : { canary }),
  ...(args.window ? { window: args.window } : {}),
});
say(
  `started ${nodes} nodes, each with its own dbus-daemon, ${os === 'fcos' ? 'rpm-ostreed' : 'update_engine'}, logind and sluiced`,
);
if (args.keep) say(`agent logs and configs: ${fleet.dir}/<node>/`);
if (domains !== undefined) {
  say(
    `failure domains: ${domains} (zone-1 to zone-${domains}, round robin)${domainMax === undefined ? '' : `, at most ${domainMax} of one domain at once`}`,
  );
}
if (canary !== undefined) {
  say(
    `canary: the first ${canary.count} node(s) to take ${target} reboot alone; the rest wait until they are back and ${canary.soak} has passed`,
  );
}
say();
say(`In another terminal, in ${repo}, watch the group or steer it:`);
say(`  npx sluicectl --endpoints ${endpoint} --prefix ${prefix} --group ${group} status`);
say(`  npx sluicectl --endpoints ${endpoint} --prefix ${prefix} --group ${group} watch`);
say(`  etcdctl --endpoints ${endpoint} put ${fleet.keys.max} 3`);
say('or set the connection once for that shell, and leave the flags out:');
say(`  export SLUICE_ENDPOINTS=${endpoint} SLUICE_PREFIX=${prefix} SLUICE_GROUP=${group}`);
say('  npx sluicectl status; npx sluicectl set-max 3; npx sluicectl pause --reason test');
say();

const before = await sampleEtcd(etcd, () => fleet.revision());
const startAt = Date.now();
say(`staging update 1.0.0 -> ${target} on every node`);
const progress = new ProgressDisplay(fleet, {
  out,
  target,
  origin: startAt,
  ...(args.plain ? { tty: false } : {}),
});
progress.start();
// On Ctrl-C, stop drawing before the nodes are stopped (cleanups run newest first).
const stopProgress = onShutdown(() => progress.stop(false));
let finished = true;
try {
  await fleet.stageAll(target, { spreadMs: 500, random });
  await fleet.waitForRollout(target, { timeoutMs });
} catch (error) {
  finished = false;
  progress.stop();
  say(`\nthe rollout did not finish: ${error instanceof Error ? error.message : String(error)}`);
}
if (finished) progress.stop();
await fleet.settle().catch(() => {});
const after = await sampleEtcd(etcd, () => fleet.revision());
const report = fleet.check({ complete: finished });
const stats = rolloutStats({
  nodes,
  max,
  rebootSeconds,
  startAt,
  timeline: fleet.timeline,
  reboots: fleet.reboots,
  transitions: fleet.transitions,
  peakDown: report.peakDown,
  before,
  after,
});
const html = resolve(
  args.html ??
    join(OUTPUT_DIR, `sluice-demo-${new Date(startAt).toISOString().replace(/[:.]/g, '-')}.html`),
);
/** Writes the timeline from the start of the rollout to now. */
async function writeTimeline(): Promise<void> {
  await mkdir(dirname(html), { recursive: true });
  await writeFile(
    html,
    renderTimeline({
      title: `sluice demo: ${nodes} nodes, max ${max}, ${rebootSeconds} s reboots`,
      nodes: fleet.nodes.map((n) => n.id),
      startAt,
      endAt: Date.now(),
      timeline: fleet.timeline,
      reboots: fleet.reboots,
      stages: fleet.stages,
      events: fleet.events,
      stats,
      invariants: report,
      zone,
      domains: fleet.domains,
      notes: [`etcd ${endpoint}, prefix ${prefix}, group ${group}, seed ${seed}`],
    }),
  );
}
await writeTimeline();
// Max as admission obeyed it during the rollout, every value it took: `2`, or `2 → 3`.
const maxOverTime = describeMaxOverTime(
  compactSteps(maxSeries(fleet.timeline.maxChanges.filter((c) => c.at <= Date.now()))),
);

say();
say(
  `rollout time:            ${secs(stats.makespanMs)} (ideal ceil(${nodes}/${max}) × ${rebootSeconds} s = ${secs(stats.idealMs)}; ${(stats.efficiency * 100).toFixed(0)} % of ideal)`,
);
say(`peak nodes down at once: ${report.peakDown} (max ${maxOverTime})`);
if (domains !== undefined) {
  let peakZone = 0;
  for (const r of fleet.reboots) {
    const zones = fleet.reboots
      .filter((o) => o.downAt <= r.downAt && (o.upAt ?? Number.POSITIVE_INFINITY) > r.downAt)
      .map((o) => fleet.domains.get(o.node));
    for (const z of new Set(zones)) {
      peakZone = Math.max(peakZone, zones.filter((x) => x === z).length);
    }
  }
  say(
    `peak down in one domain:  ${peakZone}${domainMax === undefined ? '' : ` (domain-max ${domainMax})`}`,
  );
}
if (canary !== undefined) {
  // Every node takes the one target version, so the demo's reboots are one canary round.
  const { canaries, rest, lastUpAt } = canaryOrder(fleet.reboots, canary.count);
  const next = rest[0];
  say(
    `canary:                  ${canaries.map((r) => r.node).join(', ')} rebooted first${next ? `; the next reboot began ${secs(next.downAt - lastUpAt)} after the last canary was up (soak ${canary.soak})` : ''}`,
  );
}
say(
  `etcd writes per reboot:  ${stats.revisionsPerReboot?.toFixed(1) ?? '-'} (revision delta ${after.revision - before.revision} over ${stats.reboots} reboots; ${stats.proposalsPerReboot?.toFixed(1) ?? '-'} raft proposals per reboot incl. lease grants and revokes)`,
);
say(
  `slot handoff:            release -> next admission p50 ${ms(stats.handoffs.admission.p50)}, p99 ${ms(stats.handoffs.admission.p99)}; release -> next reboot p50 ${ms(stats.handoffs.reboot.p50)}`,
);
say(`invariant check:         ${formatReport(report, startAt)}`);
for (const note of report.notes) say(`  note: ${note}`);
say(`HTML timeline:           ${pathToFileURL(html).href}`);
const status = finished && report.ok ? 0 : 1;

stopProgress();
if (args.stay) {
  say();
  say(
    'The fleet and etcd keep running (--stay): the commands above still work. Ctrl-C stops everything.',
  );
  // Whatever happens while staying (a request-reboot, a pause) goes into the timeline on the way out.
  setSignalExitCode(status);
  onShutdown(async () => {
    await writeTimeline().catch(() => {});
    say(`HTML timeline, up to now:  ${pathToFileURL(html).href}`);
  });
  // Changes while staying are printed as plain lines, below the figures.
  const stayProgress = new ProgressDisplay(fleet, {
    out,
    target,
    origin: startAt,
    tty: false,
    changesOnly: true,
  });
  stayProgress.start();
  onShutdown(() => stayProgress.stop(false));
  // Until a signal ends the process through the shutdown handlers.
  await new Promise(() => setInterval(() => {}, 2 ** 30));
}
await fleet.stop();
stopEtcd();
await etcd.stop();
process.exit(status);
