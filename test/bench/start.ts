/**
 * Agent start benchmark: how soon a `sluiced` that was just started talks to etcd, and what an
 * idle agent costs. One simulated machine (its own dbus-daemon, update_engine and logind) against
 * a real local etcd reached through the testkit proxy, which sees the agent's first byte. The
 * bundle (dist-bundle/sluiced.mjs, built by `npm run bundle`) and the built agent are each started
 * `--runs` times; the last start of each then sits idle for `--idle-seconds`.
 *
 *   npm run bench:start [-- --runs 7 --idle-seconds 20 --settle-seconds 25 --json]
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { SimNode, SLUICED, SLUICED_BUNDLE, spawnTracked } from '@sluice/sim';
import { cpuSeconds, FaultProxy, rssMiB, startEtcd } from '@sluice/testkit';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '7' },
    'idle-seconds': { type: 'string', default: '20' },
    'settle-seconds': { type: 'string', default: '25' },
    json: { type: 'boolean', default: false },
  },
});
const runs = Number(values.runs);
const idleSeconds = Number(values['idle-seconds']);
const programs = [
  { name: 'bundle', file: SLUICED_BUNDLE },
  { name: 'built', file: SLUICED },
].filter((p) => existsSync(p.file));
if (!programs.some((p) => p.name === 'bundle')) {
  process.stderr.write('bench:start: no dist-bundle/sluiced.mjs; run `npm run bundle` first\n');
}

const say = (line: string) => {
  if (!values.json) process.stdout.write(`${line}\n`);
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves with the time `test` first held, polled every millisecond. */
async function until(test: () => boolean, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  while (!test()) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms`);
    await sleep(1);
  }
  return performance.now();
}

/** How long a bare `node -e 0` takes here: the floor under any Node program's start. */
async function nodeFloorMs(): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const child = spawnTracked(process.execPath, ['-e', '0'], {});
    await new Promise((r) => child.once('exit', r));
    times.push(performance.now() - t0);
  }
  return median(times);
}

const etcd = await startEtcd();
const proxy = await FaultProxy.start(etcd.endpoints[0]!);
const dir = await mkdtemp(join(tmpdir(), 'sluice-bench-start-'));
const results: Record<string, unknown>[] = [];
try {
  const floor = await nodeFloorMs();
  say(`agent start benchmark: one machine, etcd on loopback, median of ${runs} starts`);
  say(`  node -e 0                       ${floor.toFixed(0)} ms (Node's own start, the floor)`);
  for (const program of programs) {
    const node = new SimNode(
      {
        id: `bench-${program.name}`,
        dir: join(dir, program.name),
        endpoints: [proxy.endpoint],
        prefix: '/bench/',
        group: 'start',
        sessionTTL: 10,
        holdTTL: 60,
        retryDelay: '1s',
        metrics: false,
        logLevel: 'info',
        version: '1.0.0',
        rebootMs: 1000,
        agent: program.file,
      },
      { reboot: async () => {}, booted: () => {}, transition: () => {}, agentExited: () => {} },
    );
    await node.setup();
    const firstRequest: number[] = [];
    const recovered: number[] = [];
    try {
      for (let i = 0; i < runs; i++) {
        const before = proxy.stats.bytesUp;
        const t0 = performance.now();
        const ready = node.startAgent();
        firstRequest.push((await until(() => proxy.stats.bytesUp > before, 30_000)) - t0);
        await ready;
        recovered.push(performance.now() - t0);
        if (i < runs - 1) await node.killAgent();
      }
      const pid = node.pid;
      if (pid === null) throw new Error(`${program.name}: the agent exited\n${node.tail()}`);
      // Let start-up settle, then sample once a second. V8's memory reducer runs a few full
      // collections in the first 20 s or so after start-up (seen with --trace-gc: three
      // "Mark-Compact (reduce)" between 8 and 18 s); measured from 2 s, they made an idle agent
      // look like 0.3-0.65 % CPU against 0.05 % from 25 s on.
      await sleep(Number(values['settle-seconds']) * 1000);
      const cpu0 = cpuSeconds(pid);
      const rss: number[] = [];
      for (let s = 0; s < idleSeconds; s++) {
        await sleep(1000);
        rss.push(rssMiB(pid));
      }
      const cpuPercent = ((cpuSeconds(pid) - cpu0) / idleSeconds) * 100;
      const row = {
        program: program.name,
        firstRequestMs: Math.round(median(firstRequest)),
        recoveredMs: Math.round(median(recovered)),
        idleRssMiB: Math.round(median(rss) * 10) / 10,
        idleCpuPercent: Math.round(cpuPercent * 1000) / 1000,
      };
      results.push(row);
      say(`  ${program.name}: start -> first etcd byte ${row.firstRequestMs} ms`);
      say(`  ${program.name}: start -> recovered       ${row.recoveredMs} ms`);
      say(
        `  ${program.name}: idle                    RSS median ${row.idleRssMiB} MiB, CPU ${row.idleCpuPercent} % over ${idleSeconds} s`,
      );
    } finally {
      await node.stop();
    }
  }
  if (values.json) {
    process.stdout.write(
      `${JSON.stringify({ runs, idleSeconds, nodeFloorMs: Math.round(floor), results })}\n`,
    );
  }
} finally {
  await proxy.stop();
  await etcd.stop();
  await rm(dir, { recursive: true, force: true });
}
