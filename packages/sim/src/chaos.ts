/**
 * The chaos soak: many short rollouts, each under a seeded schedule of faults, each checked by
 * the invariant checker. Not part of CI (a short smoke of it is); run it before a release:
 *
 *   npm run chaos -- --runs 1000 --seed 1
 *
 * The faults and the checks of one run are in soak.ts. Runs go `--parallel` at a time (default
 * 2), each lane with a 3-member etcd of its own (peer traffic through proxies) that serves all its
 * runs, a fresh key prefix each. Run i uses seed S+i; replay one with `--runs 1 --seed <its seed>`
 * (timing still varies, so a replay is close, not identical). A failing run's directory (every
 * agent's log) is kept and printed.
 *
 * Prints one line per run and a total; exits 1 if any run broke an invariant or did not finish.
 */
import { parseArgs } from 'node:util';
import { installShutdownHandlers, onShutdown } from './procs.js';
import { agentProgram } from './programs.js';
import { freshSeed } from './random.js';
import { type ChaosLane, type ChaosResult, chaosRun, startLane } from './soak.js';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '10' },
      seed: { type: 'string' },
      'fault-seconds': { type: 'string', default: '12' },
      parallel: { type: 'string', default: '2' },
      mix: { type: 'string', default: 'random' },
      json: { type: 'boolean', default: false },
      domains: { type: 'boolean', default: false },
      agent: { type: 'string', default: 'bundle' },
    },
  });
  const runs = Number(values.runs);
  const seed = values.seed === undefined ? freshSeed() : Number(values.seed);
  const mix = values.mix;
  if (
    !Number.isInteger(runs) ||
    runs < 1 ||
    !Number.isInteger(seed) ||
    !(Number(values.parallel) >= 1) ||
    !(Number(values['fault-seconds']) > 0) ||
    (mix !== 'random' && mix !== 'every')
  ) {
    process.stderr.write(
      'usage: chaos.ts --runs N --seed S [--parallel 2] [--fault-seconds 12] [--mix random|every] [--domains] [--agent bundle|built] [--json]\n',
    );
    process.exit(2);
  }
  const parallel = Number(values.parallel);
  let agent: string;
  try {
    agent = agentProgram(values.agent);
  } catch (error) {
    process.stderr.write(`chaos: ${(error as Error).message}\n`);
    process.exit(2);
  }
  const out = (line: string) => process.stdout.write(`${line}\n`);
  installShutdownHandlers((text) => process.stdout.write(text));
  out(
    `chaos: ${runs} runs from seed ${seed}, ${parallel} at a time (each with its own 3-member etcd), faults for ${values['fault-seconds']} s per run`,
  );
  const lanes = await Promise.all(
    Array.from({ length: Math.min(parallel, runs) }, () => startLane()),
  );
  const unregister = onShutdown(() => Promise.all(lanes.map((l) => l.stop())).then(() => {}));
  const results: ChaosResult[] = [];
  const began = Date.now();
  let next = 0;
  const lane = async (l: ChaosLane) => {
    while (next < runs) {
      const i = next++;
      const began = Date.now();
      // A run the harness itself could not carry out (etcd would not start, say) counts as
      // unfinished, and the soak goes on with the next.
      const result = await chaosRun({
        lane: l,
        run: i + 1,
        seed: seed + i,
        faultMs: Number(values['fault-seconds']) * 1000,
        mix,
        domains: values.domains,
        agent,
        log: out,
      }).catch(
        (error: unknown): ChaosResult => ({
          run: i + 1,
          seed: seed + i,
          nodes: 0,
          max: 0,
          lossBudget: 0,
          rebootSeconds: 0,
          faults: {},
          cleanup: {},
          burstRevisions: 0,
          shortBursts: 0,
          reboots: 0,
          finished: false,
          violations: [],
          notes: [],
          ms: Date.now() - began,
          stuck: `the run failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
          harnessError: true,
        }),
      );
      results.push(result);
      out(describeRun(result));
      if (result.stuck) out(result.stuck);
      if (result.dir) out(`  agent logs kept in ${result.dir}`);
      // Keep the cluster small: compact what the finished run wrote.
      const rev = (
        await l.etcd.etcdctl(['endpoint', 'status', '-w', 'json']).catch(() => '')
      ).match(/"revision":(\d+)/)?.[1];
      if (rev) await l.etcd.etcdctl(['compact', rev]).catch(() => {});
    }
  };
  try {
    await Promise.all(lanes.map(lane));
  } finally {
    unregister();
    await Promise.all(lanes.map((l) => l.stop()));
  }
  const violations = results.reduce((n, r) => n + r.violations.length, 0);
  const unfinished = results.filter((r) => !r.finished).length;
  const harnessErrors = results.filter((r) => r.harnessError).length;
  // Wall time per run, with the lanes running side by side.
  const perRun = (Date.now() - began) / results.length / 1000;
  const sum = (pick: (r: ChaosResult) => Record<string, number>) => {
    const total: Record<string, number> = {};
    for (const r of results) {
      for (const [k, v] of Object.entries(pick(r))) total[k] = (total[k] ?? 0) + v;
    }
    return total;
  };
  const failing = results
    .filter((r) => r.violations.length > 0 || !r.finished)
    .sort((a, b) => a.run - b.run);
  const summary = {
    runs: results.length,
    seed,
    violations,
    unfinished,
    harnessErrors,
    reboots: results.reduce((n, r) => n + r.reboots, 0),
    faults: sum((r) => r.faults as Record<string, number>),
    cleanup: sum((r) => r.cleanup),
    burstRevisions: results.reduce((n, r) => n + r.burstRevisions, 0),
    byCheck: sum((r) => {
      const counts: Record<string, number> = {};
      for (const v of r.violations) counts[v.check] = (counts[v.check] ?? 0) + 1;
      return counts;
    }),
    failingSeeds: failing.map((r) => r.seed),
    secondsPerRun: Number(perRun.toFixed(1)),
    minutes: Number(((Date.now() - began) / 60_000).toFixed(1)),
  };
  out(
    `chaos: ${summary.runs} runs, ${summary.reboots} reboots, faults ${JSON.stringify(summary.faults)}, ${summary.burstRevisions} burst revisions: ${violations} invariant violations ${JSON.stringify(summary.byCheck)}, ${unfinished} unfinished rollouts${harnessErrors ? ` (${harnessErrors} of them harness errors)` : ''}, ${summary.secondsPerRun} s per run (${summary.minutes} min)`,
  );
  if (failing.length > 0) out(`failing seeds: ${summary.failingSeeds.join(' ')}`);
  if (values.json) out(JSON.stringify(summary));
  process.exit(violations === 0 && unfinished === 0 ? 0 : 1);
}

/** One line about a run. */
function describeRun(r: ChaosResult): string {
  const faults = Object.entries(r.faults)
    .map(([k, v]) => `${v} ${k}`)
    .join(', ');
  const cleanup = Object.entries(r.cleanup)
    .map(([k, v]) => `${v} ${k}`)
    .join(', ');
  const checks = [...new Set(r.violations.map((v) => v.check))].join(', ');
  return `run ${r.run} seed ${r.seed}: ${r.nodes} nodes, max ${r.max}${r.domains ? `, ${r.domains} domains (domain-max 1)` : ''}, loss budget ${r.lossBudget}, ${r.rebootSeconds} s reboots; faults: ${faults || 'none'}${cleanup ? `; operator after: ${cleanup}` : ''}; ${r.reboots} reboots; ${r.finished ? 'finished' : r.harnessError ? 'DID NOT FINISH (harness error)' : 'DID NOT FINISH'}; ${r.violations.length} violations${checks ? ` (${checks})` : ''}; ${(r.ms / 1000).toFixed(1)} s`;
}

await main();
