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
 *    etcd client per 50 (see packages/sim/src/in-process.ts).
 *
 * Every figure comes from the simulator's own records and watchers, and etcd's counters.
 */
import { parseArgs } from 'node:util';
import {
  agentProgram,
  Fleet,
  formatReport,
  InProcessFleet,
  installShutdownHandlers,
  onShutdown,
  type Percentiles,
  percentiles,
  Random,
  type RolloutStats,
  rolloutStats,
  sampleEtcd,
} from '@sluice/sim';
import { startEtcd } from '@sluice/testkit';
import { cpuSeconds, rssMiB } from './proc.js';

const { values } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    only: { type: 'string', default: 'process,inprocess' },
    nodes: { type: 'string', default: '30' },
    max: { type: 'string', default: '5' },
    'reboot-seconds': { type: 'string', default: '3' },
    'idle-seconds': { type: 'string', default: '60' },
    'inproc-nodes': { type: 'string', default: '1000' },
    'inproc-max': { type: 'string', default: '10' },
    'inproc-reboot-seconds': { type: 'string', default: '1' },
    'inproc-clients': { type: 'string' },
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

function describeRollout(label: string, s: RolloutStats, violations: number): void {
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
  say(`  invariant violations       ${violations}`);
}

const result: Record<string, unknown> = {};

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
    );

    // Idle: every node is updated and has nothing pending.
    say(`idle: ${nodes} agents with nothing to do, for ${idleSeconds} s...`);
    await new Promise((r) => setTimeout(r, 2000));
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
      nodes,
      max,
      rebootSeconds,
      makespanSeconds: round(stats.makespanMs / 1000),
      idealSeconds: round(stats.idealMs / 1000),
      efficiency: round(stats.efficiency, 3),
      ratio: round(stats.makespanMs / stats.idealMs, 3),
      overheadPerRoundMs: Math.round(overheadPerRoundMs(stats)),
      peakDown: stats.peakDown,
      handoffAdmissionMs: stats.handoffs.admission,
      handoffRebootMs: stats.handoffs.reboot,
      revisionsPerReboot: round(stats.revisionsPerReboot, 2),
      proposalsPerReboot: round(stats.proposalsPerReboot, 2),
      violations: report.violations.length,
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
  const etcd = await startEtcd();
  const stopEtcd = onShutdown(() => etcd.stop());
  say(`starting ${nodes} in-process agents...`);
  const setupStart = Date.now();
  const fleet = await InProcessFleet.start({
    etcd,
    nodes,
    max,
    rebootSeconds,
    ...(values['inproc-clients'] ? { clients: Number(values['inproc-clients']) } : {}),
  });
  const stopFleet = onShutdown(() => fleet.stop());
  try {
    const setupMs = Date.now() - setupStart;
    const before = await sampleEtcd(etcd, () => fleet.revision());
    const startAt = Date.now();
    const cpu0 = process.cpuUsage();
    await fleet.stageAll('2.0.0', { spreadMs, random: new Random(Number(values.seed)) });
    let unfinished: string | null = null;
    try {
      const idealMs = Math.ceil(nodes / max) * rebootSeconds * 1000;
      await fleet.waitForRollout('2.0.0', Math.max(600_000, 6 * idealMs));
    } catch (error) {
      unfinished = error instanceof Error ? error.message : String(error);
      say(`  ROLLOUT DID NOT FINISH: ${unfinished}`);
    }
    const cpu = process.cpuUsage(cpu0);
    const report = await fleet.check(unfinished === null);
    const after = await sampleEtcd(etcd, () => fleet.revision());
    if (!report.ok) say(formatReport(report, startAt));
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
    );
    const cpuSecondsUsed = (cpu.user + cpu.system) / 1e6;
    const problems = [...fleet.problems].reduce((n, [, v]) => n + v, 0);
    say(
      `  agent warnings and errors  ${problems} (top: ${[...fleet.problems].sort((a, b) => b[1] - a[1])[0]?.[0].slice(0, 100) ?? 'none'})`,
    );
    say(
      `  simulator process          ${cpuSecondsUsed.toFixed(1)} CPU s during the rollout, RSS ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB; setup ${(setupMs / 1000).toFixed(1)} s`,
    );
    result.inprocess = {
      nodes,
      max,
      rebootSeconds,
      stagedOverSeconds: spreadMs / 1000,
      makespanSeconds: round(stats.makespanMs / 1000),
      idealSeconds: round(stats.idealMs / 1000),
      efficiency: round(stats.efficiency, 3),
      ratio: round(stats.makespanMs / stats.idealMs, 3),
      overheadPerRoundMs: Math.round(overheadPerRoundMs(stats)),
      peakDown: stats.peakDown,
      handoffAdmissionMs: stats.handoffs.admission,
      handoffRebootMs: stats.handoffs.reboot,
      revisionsPerReboot: round(stats.revisionsPerReboot, 2),
      proposalsPerReboot: round(stats.proposalsPerReboot, 2),
      violations: report.violations.length,
      unfinished,
      agentProblems: Object.fromEntries(
        [...fleet.problems].sort((a, b) => b[1] - a[1]).slice(0, 5),
      ),
      simulatorCpuSeconds: round(cpuSecondsUsed),
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
