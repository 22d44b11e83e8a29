/**
 * Fleet benchmarks, against a real local etcd:
 *
 *   npm run bench [-- --json] [-- --only process,inprocess] [-- --agent bundle|built]
 *
 * 1. process: a rollout with real `sluiced` processes (default 30 nodes, max 5, 3 s reboots):
 *    makespan against the ideal ceil(N/max) × reboot time, handoff latency, etcd writes per
 *    reboot. Then the same agents sit idle (default 60 s): etcd writes per idle node per hour
 *    (from the revision counter and raft proposals; the target is 0), and each idle agent's RSS
 *    and CPU from /proc.
 * 2. inprocess: a rollout with agents in this process (default 1000 nodes, max 10, 1 s
 *    reboots): the real Agent and Semaphore against real etcd, D-Bus simulated, nodes sharing one
 *    etcd client per 50 (see packages/sim/src/in-process.ts). `--inproc-processes K` splits them
 *    over K simulator processes (packages/sim/src/split-fleet.ts), for groups one process cannot
 *    drive: `-- --only inprocess --inproc-nodes 10000 --inproc-max 50 --inproc-reboot-seconds 10
 *    --inproc-processes 4`.
 *
 * 3. start and status (first, unless `--only` leaves them out): test/bench/start.ts (start of one
 *    agent to its first etcd request, idle RSS and CPU) and test/bench/status.ts (`sluicectl
 *    status` of a 1000- and a 20,000-node group), run as they are alone and reported here too, so
 *    that one `npm run bench -- --json` prints every figure.
 *
 * Every figure comes from the simulator's own records and watchers, and etcd's counters.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import {
  agentProgram,
  Fleet,
  formatReport,
  type GroupEventsPerReboot,
  groupEventsPerReboot,
  InProcessFleet,
  installShutdownHandlers,
  onShutdown,
  type Percentiles,
  percentiles,
  Random,
  type RolloutStats,
  rolloutStats,
  SplitFleet,
  sampleEtcd,
} from '@sluice/sim';
import { cpuSeconds, rssMiB, startEtcd } from '@sluice/testkit';

const { values } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    only: { type: 'string', default: 'start,status,process,inprocess' },
    nodes: { type: 'string', default: '30' },
    max: { type: 'string', default: '5' },
    'reboot-seconds': { type: 'string', default: '3' },
    'idle-seconds': { type: 'string', default: '60' },
    'inproc-nodes': { type: 'string', default: '1000' },
    'inproc-max': { type: 'string', default: '10' },
    'inproc-reboot-seconds': { type: 'string', default: '1' },
    'inproc-clients': { type: 'string' },
    'inproc-processes': { type: 'string', default: '1' },
    'inproc-spread-seconds': { type: 'string', default: '10' },
    seed: { type: 'string', default: '1' },
    agent: { type: 'string', default: 'bundle' },
  },
});
// The real-process fleet runs the agent as nodes get it (the bundle) unless `--agent built` asks
// for packages/agent/dist.
const agent = agentProgram(values.agent);
const only = new Set(values.only.split(','));
const json = values.json;
const say = (line: string) => {
  if (!json) process.stdout.write(`${line}\n`);
};
installShutdownHandlers((text) => process.stderr.write(text));

const round = (n: number | null, digits = 1) =>
  n === null || !Number.isFinite(n) ? null : Number(n.toFixed(digits));

/** How many rounds of `max` reboots the ideal rollout takes. */
const rounds = (s: RolloutStats) => Math.ceil(s.nodes / Math.max(1, s.max));

/** What a round costs beyond the reboot itself: the fixed cost of a slot changing hands. */
const overheadPerRoundMs = (s: RolloutStats) => (s.makespanMs - s.idealMs) / rounds(s);

function describeRollout(
  label: string,
  s: RolloutStats,
  violations: number,
  groupEvents: GroupEventsPerReboot | null,
): void {
  say(`${label}`);
  say(
    `  makespan                   ${(s.makespanMs / 1000).toFixed(1)} s (ideal ceil(${s.nodes}/${s.max}) × ${s.rebootSeconds} s = ${(s.idealMs / 1000).toFixed(1)} s; ratio ${(s.makespanMs / s.idealMs).toFixed(2)}, efficiency ${(s.efficiency * 100).toFixed(0)} %)`,
  );
  say(
    `  beyond the reboots         ${Math.round(overheadPerRoundMs(s))} ms per round of max reboots (${rounds(s)} rounds)`,
  );
  say(`  peak nodes down at once    ${s.peakDown} (max ${s.max})`);
  say(
    `  handoff release->admission p50 ${s.handoffs.admission.p50} ms, p99 ${s.handoffs.admission.p99} ms, max ${s.handoffs.admission.max} ms (${s.handoffs.admission.count} handoffs)`,
  );
  say(
    `  handoff release->reboot    p50 ${s.handoffs.reboot.p50} ms, p99 ${s.handoffs.reboot.p99} ms`,
  );
  const phase = (p: Percentiles) => `p50 ${p.p50} ms, p99 ${p.p99} ms`;
  say(`  slot: admission->reboot    ${phase(s.phases.beforeReboot)}`);
  say(`  slot: down                 ${phase(s.phases.down)}`);
  say(`  slot: boot->release        ${phase(s.phases.afterBoot)}`);
  say(
    `  etcd writes per reboot     ${s.revisionsPerReboot?.toFixed(1)} revisions, ${s.proposalsPerReboot?.toFixed(1)} raft proposals`,
  );
  say(`  etcd watch events sent     ${s.watchEventsPerReboot?.toFixed(0)} per reboot, every watch`);
  if (groupEvents) {
    const kinds = Object.entries(groupEvents.byKind)
      .map(([kind, n]) => `${kind} ${n}`)
      .join(', ');
    say(`  one watch of the group     ${groupEvents.total} events per reboot (${kinds})`);
  }
  say(`  etcd CPU                   ${s.etcdCpuSecondsPerReboot?.toFixed(3)} s per reboot`);
  say(`  invariant violations       ${violations}`);
}

/** The figures of a rollout that both fleets report, for `--json`. */
function rolloutJson(
  s: RolloutStats,
  violations: number,
  groupEvents: GroupEventsPerReboot | null,
) {
  return {
    nodes: s.nodes,
    max: s.max,
    rebootSeconds: s.rebootSeconds,
    makespanSeconds: round(s.makespanMs / 1000),
    idealSeconds: round(s.idealMs / 1000),
    efficiency: round(s.efficiency, 3),
    ratio: round(s.makespanMs / s.idealMs, 3),
    overheadPerRoundMs: Math.round(overheadPerRoundMs(s)),
    peakDown: s.peakDown,
    handoffAdmissionMs: s.handoffs.admission,
    handoffRebootMs: s.handoffs.reboot,
    bootToReleaseMs: s.phases.afterBoot,
    revisionsPerReboot: round(s.revisionsPerReboot, 2),
    proposalsPerReboot: round(s.proposalsPerReboot, 2),
    watchEventsPerReboot: round(s.watchEventsPerReboot, 0),
    etcdCpuSecondsPerReboot: round(s.etcdCpuSecondsPerReboot, 4),
    groupWatchEventsPerReboot: groupEvents,
    violations,
  };
}

const result: Record<string, unknown> = {};

/** Runs another benchmark of test/bench with `--json` and returns what it printed. */
async function benchScript(name: string, args: string[] = []): Promise<unknown> {
  const file = fileURLToPath(new URL(`./${name}.ts`, import.meta.url));
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--import', 'tsx', '--conditions=source', file, '--json', ...args],
    { maxBuffer: 64 * 1024 * 1024 },
  );
  return JSON.parse(stdout.trim().split('\n').at(-1)!);
}

if (only.has('start')) {
  say('agent start (test/bench/start.ts)...');
  const start = (await benchScript('start')) as {
    nodeFloorMs: number;
    results: {
      program: string;
      firstRequestMs: number;
      recoveredMs: number;
      idleRssMiB: number;
      idleCpuPercent: number;
    }[];
  };
  say(`  node -e 0                  ${start.nodeFloorMs} ms (the floor under any Node program)`);
  for (const r of start.results) {
    say(
      `  ${r.program.padEnd(7)} start->first etcd request ${r.firstRequestMs} ms, ->recovered ${r.recoveredMs} ms; idle RSS ${r.idleRssMiB} MiB, CPU ${r.idleCpuPercent} %`,
    );
  }
  result.start = start;
}

if (only.has('status')) {
  say('sluicectl status (test/bench/status.ts)...');
  const status = (await benchScript('status')) as {
    results: { nodes: number; program: string; output: string; medianMs: number }[];
  };
  for (const r of status.results) {
    say(
      `  ${`${r.nodes} nodes, ${r.program}, ${r.output}`.padEnd(27)}median ${r.medianMs.toFixed(0)} ms`,
    );
  }
  result.status = status;
}

if (only.has('process')) {
  const nodes = Number(values.nodes);
  const max = Number(values.max);
  const rebootSeconds = Number(values['reboot-seconds']);
  const idleSeconds = Number(values['idle-seconds']);
  const etcd = await startEtcd();
  const stopEtcd = onShutdown(() => etcd.stop());
  say(`starting ${nodes} sluiced processes (${values.agent})...`);
  const fleet = await Fleet.start({ etcd, nodes, max, rebootSeconds, agent });
  try {
    const before = await sampleEtcd(etcd, () => fleet.revision());
    const startAt = Date.now();
    await fleet.stageAll('2.0.0');
    await fleet.waitForRollout('2.0.0', { timeoutMs: 600_000 });
    await fleet.settle();
    const after = await sampleEtcd(etcd, () => fleet.revision());
    const report = fleet.check();
    if (!report.ok) say(formatReport(report, startAt));
    const groupEvents = groupEventsPerReboot(fleet.timeline, fleet.reboots.length, startAt);
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
    describeRollout(
      `real processes (${values.agent}): ${nodes} nodes, max ${max}, ${rebootSeconds} s reboots`,
      stats,
      report.violations.length,
      groupEvents,
    );

    // Idle: every node is updated and has nothing pending.
    say(`idle: ${nodes} agents with nothing to do, for ${idleSeconds} s...`);
    // The last agents started a few seconds ago: let V8's post-start collections pass first (see
    // test/bench/start.ts).
    await new Promise((r) => setTimeout(r, 25_000));
    const pids = fleet.nodes.map((n) => n.pid).filter((p): p is number => p !== null);
    const idleBefore = await sampleEtcd(etcd, () => fleet.revision());
    const cpuBefore = pids.map(cpuSeconds);
    const rss: number[][] = pids.map(() => []);
    const t0 = Date.now();
    while (Date.now() - t0 < idleSeconds * 1000) {
      await new Promise((r) => setTimeout(r, 5000));
      for (const [i, pid] of pids.entries()) rss[i]!.push(rssMiB(pid));
    }
    const elapsed = (Date.now() - t0) / 1000;
    const cpuAfter = pids.map(cpuSeconds);
    // The fleet's own revision read is one read, not a write; nothing else touches etcd.
    const idleAfter = await sampleEtcd(etcd, () => fleet.revision());
    const perHour = 3600 / elapsed / pids.length;
    const revisions = idleAfter.revision - idleBefore.revision;
    const proposals =
      idleAfter.proposals !== null && idleBefore.proposals !== null
        ? idleAfter.proposals - idleBefore.proposals
        : null;
    const cpuPercent = cpuAfter.map((c, i) => ((c - cpuBefore[i]!) / elapsed) * 100);
    const meanRss = rss.map((r) => r.reduce((a, b) => a + b, 0) / Math.max(1, r.length));
    const rssP = percentiles(meanRss);
    const cpuP = percentiles(cpuPercent);
    say(
      `  etcd writes while idle     ${revisions} revisions, ${proposals ?? '-'} raft proposals in ${elapsed.toFixed(0)} s = ${(revisions * perHour).toFixed(2)} writes per idle node per hour`,
    );
    say(
      `  idle sluiced footprint     RSS median ${rssP.p50?.toFixed(1)} MiB (max ${rssP.max?.toFixed(1)}); CPU median ${cpuP.p50?.toFixed(3)} % (max ${cpuP.max?.toFixed(3)} %) over ${elapsed.toFixed(0)} s`,
    );
    say(
      `  one agent (n01, pid ${pids[0]})      RSS ${meanRss[0]?.toFixed(1)} MiB, CPU ${(cpuAfter[0]! - cpuBefore[0]!).toFixed(2)} s in ${elapsed.toFixed(0)} s`,
    );
    result.process = {
      agent: values.agent,
      ...rolloutJson(stats, report.violations.length, groupEvents),
      idle: {
        seconds: round(elapsed, 0),
        nodes: pids.length,
        revisions,
        proposals,
        writesPerIdleNodePerHour: round(revisions * perHour, 3),
        rssMiB: { median: round(rssP.p50), max: round(rssP.max) },
        cpuPercent: { median: round(cpuP.p50, 3), max: round(cpuP.max, 3) },
      },
    };
  } finally {
    await fleet.stop();
    stopEtcd();
    await etcd.stop();
  }
}

if (only.has('inprocess')) {
  const nodes = Number(values['inproc-nodes']);
  const max = Number(values['inproc-max']);
  const rebootSeconds = Number(values['inproc-reboot-seconds']);
  const spreadMs = Number(values['inproc-spread-seconds']) * 1000;
  const processes = Number(values['inproc-processes']);
  const seed = Number(values.seed);
  const etcd = await startEtcd();
  const stopEtcd = onShutdown(() => etcd.stop());
  say(
    `starting ${nodes} in-process agents${processes > 1 ? ` in ${processes} simulator processes` : ''}...`,
  );
  const setupStart = Date.now();
  const options = {
    etcd,
    nodes,
    max,
    rebootSeconds,
    ...(values['inproc-clients'] ? { clients: Number(values['inproc-clients']) } : {}),
  };
  const fleet =
    processes > 1
      ? await SplitFleet.start({ ...options, processes })
      : await InProcessFleet.start(options);
  const stopFleet = onShutdown(() => fleet.stop());
  try {
    const setupMs = Date.now() - setupStart;
    const before = await sampleEtcd(etcd, () => fleet.revision());
    const startAt = Date.now();
    const cpu0 = process.cpuUsage();
    const idealMs = Math.ceil(nodes / max) * rebootSeconds * 1000;
    const timeoutMs = Math.max(600_000, 6 * idealMs);
    let unfinished: string | null = null;
    try {
      if (fleet instanceof SplitFleet) {
        fleet.stageAll('2.0.0', { spreadMs, seed });
        // A long run says how it goes every 30 s (on stderr, so --json stays one line).
        const ticker = setInterval(() => {
          const problems = [...fleet.problemsSoFar()].sort((a, b) => b[1] - a[1]);
          const total = problems.reduce((n, [, v]) => n + v, 0);
          process.stderr.write(
            `  +${Math.round((Date.now() - startAt) / 1000)} s: ${fleet.timeline.markers.filter((m) => m.deletedAt !== null).length} slots released, ${JSON.stringify(fleet.states())}, ${total} agent problems${total > 0 ? ` (top: ${problems[0]![0].slice(0, 160)})` : ''}\n`,
          );
        }, 30_000);
        try {
          await fleet.waitForRollout(timeoutMs);
        } finally {
          clearInterval(ticker);
        }
      } else {
        await fleet.stageAll('2.0.0', { spreadMs, random: new Random(seed) });
        await fleet.waitForRollout('2.0.0', timeoutMs);
      }
    } catch (error) {
      unfinished = error instanceof Error ? error.message : String(error);
      say(`  ROLLOUT DID NOT FINISH: ${unfinished}`);
    }
    const cpu = process.cpuUsage(cpu0);
    const after = await sampleEtcd(etcd, () => fleet.revision());
    const report = await fleet.check(unfinished === null);
    if (!report.ok) say(formatReport(report, startAt));
    const groupEvents = groupEventsPerReboot(fleet.timeline, fleet.reboots.length, startAt);
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
    describeRollout(
      `in-process agents: ${nodes} nodes, max ${max}, ${rebootSeconds} s reboots, update staged over ${spreadMs / 1000} s`,
      stats,
      report.violations.length,
      groupEvents,
    );
    // A split fleet's workers report their CPU from their start; one process, from the staging.
    const workers = fleet instanceof SplitFleet ? fleet.workers : [];
    const cpuSecondsUsed =
      workers.length > 0
        ? workers.reduce((n, w) => n + w.cpuSeconds, 0)
        : (cpu.user + cpu.system) / 1e6;
    const rss =
      workers.length > 0
        ? workers.reduce((n, w) => n + w.rssMiB, 0)
        : process.memoryUsage().rss / 2 ** 20;
    const problems = [...fleet.problems].reduce((n, [, v]) => n + v, 0);
    say(
      `  agent warnings and errors  ${problems} (top: ${[...fleet.problems].sort((a, b) => b[1] - a[1])[0]?.[0].slice(0, 100) ?? 'none'})`,
    );
    say(
      workers.length > 0
        ? `  simulator processes        ${processes}: ${cpuSecondsUsed.toFixed(1)} CPU s from their start, RSS ${rss.toFixed(0)} MiB in all; setup ${(setupMs / 1000).toFixed(1)} s`
        : `  simulator process          ${cpuSecondsUsed.toFixed(1)} CPU s during the rollout, RSS ${rss.toFixed(0)} MiB; setup ${(setupMs / 1000).toFixed(1)} s`,
    );
    result.inprocess = {
      stagedOverSeconds: spreadMs / 1000,
      simulatorProcesses: processes,
      ...rolloutJson(stats, report.violations.length, groupEvents),
      unfinished,
      agentProblems: Object.fromEntries(
        [...fleet.problems].sort((a, b) => b[1] - a[1]).slice(0, 5),
      ),
      simulatorCpuSeconds: round(cpuSecondsUsed),
      simulatorRssMiB: round(rss, 0),
      setupSeconds: round(setupMs / 1000),
    };
  } finally {
    stopFleet();
    await fleet.stop();
    stopEtcd();
    await etcd.stop();
  }
}

if (json) process.stdout.write(`${JSON.stringify(result)}\n`);
// Figures from a rollout that broke an invariant or did not finish are no figures: exit 1, so
// that a script or CI that runs the benchmark fails.
const runs = [result.process, result.inprocess].filter(
  (r): r is { violations: number; unfinished?: string | null } => r !== undefined,
);
const failed = runs.filter((r) => r.violations > 0 || (r.unfinished ?? null) !== null);
if (failed.length > 0) {
  process.stderr.write('fleet benchmark: invariant violations or an unfinished rollout (above)\n');
}
process.exit(failed.length > 0 ? 1 : 0);
