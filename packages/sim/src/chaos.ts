/**
 * The chaos soak: many short rollouts, each under a random schedule of faults, each checked by
 * the invariant checker. Not part of CI; run it before a release:
 *
 *   tsx --conditions=source packages/sim/src/chaos.ts --runs 200 --seed 1
 *
 * Faults: agents SIGKILLed in any state (restarted as systemd would), etcd members killed and
 * restarted, whole-cluster outages, max edits, and pauses. Runs go `--parallel` at a time (default
 * 2), each lane with a 3-member etcd cluster of its own that serves all its runs (a fresh key
 * prefix each), so a run costs only its own agents. Run i uses seed S+i; replay one with
 * `--runs 1 --seed <its seed>` (timing still varies, so a replay is close, not identical).
 *
 * Prints one line per run and a total; exits 1 if any run broke an invariant or did not finish.
 */
import { parseArgs } from 'node:util';
import { type EtcdCluster, startEtcd } from '@sluice/testkit';
import { Etcd3 } from 'etcd3';
import { Fleet } from './fleet.js';
import { formatReport, type Violation } from './invariants.js';
import { installShutdownHandlers, onShutdown } from './procs.js';
import { freshSeed, Random } from './random.js';
import { simClientOptions } from './timeline.js';

/** The outcome of one chaos run. */
interface ChaosResult {
  run: number;
  seed: number;
  nodes: number;
  max: number;
  rebootSeconds: number;
  faults: Record<string, number>;
  reboots: number;
  finished: boolean;
  violations: Violation[];
  ms: number;
  /** The fleet's state when the run did not finish. */
  stuck?: string;
}

/** Options of one run. */
interface ChaosRunOptions {
  etcd: EtcdCluster;
  run: number;
  seed: number;
  /** How long to inject faults, in ms. Default 5000. */
  faultMs?: number;
  /** Give up on the rollout after this long once faults stop. Default 90 s. */
  finishTimeoutMs?: number;
  log?: (line: string) => void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves with `p`, or with undefined after `ms` (a write during an outage may hang). */
async function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const result = await Promise.race([
    p.catch(() => undefined),
    new Promise<undefined>((r) => {
      timer = setTimeout(() => r(undefined), ms);
    }),
  ]);
  clearTimeout(timer);
  return result;
}

/** Runs an etcd call until it succeeds (the client's circuit breaker may be open after faults). */
async function persist<T>(what: string, fn: () => Promise<T>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await fn();
    } catch (error) {
      if (Date.now() > deadline) throw new Error(`${what}: ${String(error)}`);
      await sleep(200);
    }
  }
}

/** Starts every stopped member and waits until all are healthy. */
async function heal(etcd: EtcdCluster): Promise<void> {
  await Promise.all(etcd.members.filter((m) => !m.running).map((m) => m.start()));
}

/** One rollout under a random fault schedule. Leaves the etcd cluster healthy. */
async function chaosRun(opts: ChaosRunOptions): Promise<ChaosResult> {
  const random = new Random(opts.seed);
  const etcd = opts.etcd;
  const started = Date.now();
  const nodes = random.int(3, 5);
  const max = random.int(1, 3);
  const rebootSeconds = Math.round(random.between(0.2, 0.8) * 10) / 10;
  const faults: Record<string, number> = {};
  const count = (kind: string) => {
    faults[kind] = (faults[kind] ?? 0) + 1;
  };
  await heal(etcd);
  const fleet = await Fleet.start({
    etcd,
    nodes,
    max,
    rebootSeconds,
    sessionTTL: 2,
    holdTTL: 30,
    retryDelay: '300ms',
    prefix: `/chaos-${opts.seed}/`,
    logLevel: 'info',
    random,
  });
  const client = new Etcd3(simClientOptions(etcd.endpoints));
  const pending = new Set<Promise<unknown>>();
  const later = (ms: number, fn: () => Promise<unknown>) => {
    const p = sleep(ms)
      .then(fn)
      .catch(() => {});
    pending.add(p);
    void p.finally(() => pending.delete(p));
  };
  let finished = false;
  let stuck: string | undefined;
  try {
    await fleet.stageAll('2.0.0', { spreadMs: 300, random });
    const faultUntil = Date.now() + (opts.faultMs ?? 5000);
    let outage = false;
    while (Date.now() < faultUntil && !fleet.rolloutDone('2.0.0')) {
      await sleep(random.between(150, 600));
      const roll = random.next();
      if (roll < 0.45) {
        const up = fleet.nodes.filter((n) => n.agentRunning && n.machine === 'up');
        if (up.length === 0) continue;
        const node = random.pick(up);
        count('agent-kill');
        await fleet.killAgent(node.id, { restartAfterMs: Math.round(random.between(100, 1500)) });
      } else if (roll < 0.6 && !outage) {
        const running = etcd.members.filter((m) => m.running);
        if (running.length < 3) continue;
        const member = random.pick(running);
        count('member-kill');
        fleet.note('etcd-member-kill', undefined, member.name);
        await member.kill();
        later(random.between(300, 2000), async () => {
          if (!outage) await member.start();
          fleet.note('etcd-member-start', undefined, member.name);
        });
      } else if (roll < 0.67 && !outage && etcd.members.every((m) => m.running)) {
        outage = true;
        count('outage');
        fleet.note('etcd-down', undefined, 'every member killed');
        await Promise.all(etcd.members.map((m) => m.kill()));
        later(random.between(500, 3000), async () => {
          await heal(etcd);
          outage = false;
          fleet.note('etcd-up');
        });
      } else if (roll < 0.85) {
        const value = random.int(1, 3);
        count('max');
        const at = Date.now();
        const done = await within(client.put(fleet.keys.max).value(String(value)).exec(), 2000);
        if (done) {
          fleet.maxSets.push({ at, doneAt: Date.now(), value: String(value), via: 'client' });
          fleet.note('max', undefined, `max ${value} (client)`);
        }
      } else {
        count('pause');
        const done = await within(client.put(fleet.keys.paused).value('chaos').exec(), 2000);
        if (done) {
          fleet.note('pause', undefined, 'chaos');
          later(random.between(300, 1500), async () => {
            await persist('resume', () => client.delete().key(fleet.keys.paused).exec());
            fleet.note('resume');
          });
        }
      }
    }
    // Heal everything the schedule broke, then let the rollout finish.
    await Promise.all(pending);
    await heal(etcd);
    await persist('resume', () => client.delete().key(fleet.keys.paused).exec());
    try {
      await fleet.waitForRollout('2.0.0', { timeoutMs: opts.finishTimeoutMs ?? 90_000 });
      finished = true;
    } catch {
      stuck = fleet.describe();
    }
    await fleet.settle().catch(() => {});
    const report = fleet.check({ complete: finished });
    if (!report.ok) opts.log?.(formatReport(report, started));
    return {
      run: opts.run,
      seed: opts.seed,
      nodes,
      max,
      rebootSeconds,
      faults,
      reboots: report.reboots,
      finished,
      violations: report.violations,
      ms: Date.now() - started,
      ...(stuck ? { stuck } : {}),
    };
  } finally {
    await Promise.all(pending);
    client.close();
    await fleet.stop();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '10' },
      seed: { type: 'string' },
      'fault-seconds': { type: 'string', default: '5' },
      parallel: { type: 'string', default: '2' },
      json: { type: 'boolean', default: false },
    },
  });
  const runs = Number(values.runs);
  const seed = values.seed === undefined ? freshSeed() : Number(values.seed);
  if (
    !Number.isInteger(runs) ||
    runs < 1 ||
    !Number.isInteger(seed) ||
    !(Number(values.parallel) >= 1)
  ) {
    process.stderr.write(
      'usage: chaos.ts --runs N --seed S [--parallel 2] [--fault-seconds 5] [--json]\n',
    );
    process.exit(2);
  }
  const parallel = Number(values.parallel);
  const out = (line: string) => process.stdout.write(`${line}\n`);
  installShutdownHandlers((text) => process.stdout.write(text));
  out(
    `chaos: ${runs} runs from seed ${seed}, ${parallel} at a time (each with its own 3-member etcd), faults for ${values['fault-seconds']} s per run`,
  );
  const clusters = await Promise.all(
    Array.from({ length: Math.min(parallel, runs) }, () => startEtcd({ members: 3 })),
  );
  const unregister = onShutdown(() => Promise.all(clusters.map((c) => c.stop())).then(() => {}));
  const results: ChaosResult[] = [];
  const began = Date.now();
  let next = 0;
  const lane = async (etcd: EtcdCluster) => {
    while (next < runs) {
      const i = next++;
      const result = await chaosRun({
        etcd,
        run: i + 1,
        seed: seed + i,
        faultMs: Number(values['fault-seconds']) * 1000,
        log: out,
      });
      results.push(result);
      const faults = Object.entries(result.faults)
        .map(([k, v]) => `${v} ${k}`)
        .join(', ');
      out(
        `run ${result.run} seed ${result.seed}: ${result.nodes} nodes, max ${result.max}, ${result.rebootSeconds} s reboots; faults: ${faults || 'none'}; ${result.reboots} reboots; ${result.finished ? 'finished' : 'DID NOT FINISH'}; ${result.violations.length} violations; ${(result.ms / 1000).toFixed(1)} s`,
      );
      if (result.stuck) out(result.stuck);
      // Keep the cluster small: compact what the finished run wrote.
      const rev = (await etcd.etcdctl(['endpoint', 'status', '-w', 'json']).catch(() => '')).match(
        /"revision":(\d+)/,
      )?.[1];
      if (rev) await etcd.etcdctl(['compact', rev]).catch(() => {});
    }
  };
  try {
    await Promise.all(clusters.map(lane));
  } finally {
    unregister();
    await Promise.all(clusters.map((c) => c.stop()));
  }
  const violations = results.reduce((n, r) => n + r.violations.length, 0);
  const unfinished = results.filter((r) => !r.finished).length;
  // Wall time per run, with the lanes running side by side.
  const perRun = (Date.now() - began) / results.length / 1000;
  const faults: Record<string, number> = {};
  for (const r of results) {
    for (const [k, v] of Object.entries(r.faults)) faults[k] = (faults[k] ?? 0) + v;
  }
  const summary = {
    runs: results.length,
    seed,
    violations,
    unfinished,
    reboots: results.reduce((n, r) => n + r.reboots, 0),
    faults,
    secondsPerRun: Number(perRun.toFixed(1)),
  };
  out(
    `chaos: ${summary.runs} runs, ${summary.reboots} reboots, faults ${JSON.stringify(faults)}: ${violations} invariant violations, ${unfinished} unfinished rollouts, ${summary.secondsPerRun} s per run`,
  );
  if (values.json) out(JSON.stringify(summary));
  process.exit(violations === 0 && unfinished === 0 ? 0 : 1);
}

await main();
