/**
 * FleetLock poll-storm benchmark: 500 clients send pre-reboot at the same instant to the built
 * sluice-fleetlock (as a process) against a real local etcd, round after round, as a fleet whose
 * timers line up would.
 *
 *   npm run bench:fleetlock [-- --clients 500 --max 10 --rounds 5 --replicas 1 --json]
 *
 * Round 1 queues every id (new keys); the later rounds are the steady state, where each poll
 * moves a waiting id onto a fresh lease and asks for admission. Prints requests per second served
 * (all requests of a round over its wall time), latency percentiles, and the answers' kinds; any
 * 5xx or more holders than max (seen by an independent observer) fails the run.
 */
import { randomUUID } from 'node:crypto';
import { Agent, request } from 'node:http';
import { parseArgs } from 'node:util';
import { GroupKeys } from '@sluice/core';
import { HolderObserver, startEtcd } from '@sluice/testkit';
import { Etcd3 } from 'etcd3';
import { startServer } from '../fleetlock/support.js';
import { killAll } from '../process.js';

const { values } = parseArgs({
  options: {
    clients: { type: 'string', default: '500' },
    max: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '5' },
    replicas: { type: 'string', default: '1' },
    json: { type: 'boolean', default: false },
  },
});
const clients = Number(values.clients);
const max = Number(values.max);
const rounds = Number(values.rounds);
const replicas = Number(values.replicas);

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;

/** One connection per client, as 500 machines would have. */
const agent = new Agent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY });

function preReboot(
  url: string,
  id: string,
  group: string,
): Promise<{ status: number; kind: string; ms: number }> {
  const body = JSON.stringify({ client_params: { id, group } });
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(
      `${url}/v1/pre-reboot`,
      {
        method: 'POST',
        agent,
        headers: { 'fleet-lock-protocol': 'true', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => {
          text += c.toString();
        });
        res.on('end', () => {
          let kind = 'unparsed';
          try {
            kind = JSON.parse(text).kind;
          } catch {}
          resolve({ status: res.statusCode ?? 0, kind, ms: performance.now() - t0 });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const etcd = await startEtcd();
const admin = new Etcd3({ hosts: etcd.endpoints });
let failed = false;
try {
  const prefix = `/bench-fl-${randomUUID().slice(0, 8)}/`;
  const keys = new GroupKeys(prefix, 'default');
  await admin.put(keys.max).value(String(max));
  const servers = await Promise.all(
    Array.from({ length: replicas }, () =>
      startServer(etcd.endpoints, prefix, ['--log-level', 'warn']),
    ),
  );
  const observer = await HolderObserver.start(etcd.endpoints, keys.root);
  const ids = Array.from({ length: clients }, (_, i) => `m${String(i).padStart(4, '0')}`);
  const results: {
    round: number;
    requests: number;
    seconds: number;
    perSecond: number;
    p50: number;
    p99: number;
    max: number;
    kinds: Record<string, number>;
  }[] = [];
  for (let round = 1; round <= rounds; round++) {
    const t0 = performance.now();
    const answers = await Promise.all(
      ids.map((id, i) => preReboot(servers[i % servers.length]!.url, id, keys.group)),
    );
    const seconds = (performance.now() - t0) / 1000;
    const ms = answers.map((a) => a.ms).sort((a, b) => a - b);
    const kinds: Record<string, number> = {};
    for (const a of answers) kinds[a.kind] = (kinds[a.kind] ?? 0) + 1;
    if (answers.some((a) => a.status >= 500)) failed = true;
    results.push({
      round,
      requests: answers.length,
      seconds,
      perSecond: answers.length / seconds,
      p50: percentile(ms, 50),
      p99: percentile(ms, 99),
      max: ms.at(-1) ?? Number.NaN,
      kinds,
    });
  }
  const peak = observer.check();
  await observer.stop();
  if (peak > max) failed = true;
  const steady = results.slice(1);
  const summary = {
    clients,
    max,
    replicas,
    peakHolders: peak,
    firstRound: results[0],
    steady: {
      perSecond:
        steady.reduce((s, r) => s + r.requests, 0) / steady.reduce((s, r) => s + r.seconds, 0),
      p50: Math.max(...steady.map((r) => r.p50)),
      p99: Math.max(...steady.map((r) => r.p99)),
    },
    rounds: results,
  };
  if (values.json) {
    process.stdout.write(`${JSON.stringify(summary)}\n`);
  } else {
    process.stdout.write(
      `fleetlock poll storm: ${clients} clients at once, max ${max}, ${replicas} server(s), ${rounds} rounds, etcd on loopback\n`,
    );
    for (const r of results) {
      const kinds = Object.entries(r.kinds)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ');
      process.stdout.write(
        `  round ${r.round}${r.round === 1 ? ' (queue every id)' : ''}: ${r.perSecond.toFixed(0)} req/s, p50 ${r.p50.toFixed(0)} ms, p99 ${r.p99.toFixed(0)} ms, max ${r.max.toFixed(0)} ms  [${kinds}]\n`,
      );
    }
    process.stdout.write(
      `  steady polls: ${summary.steady.perSecond.toFixed(0)} req/s, worst round p99 ${summary.steady.p99.toFixed(0)} ms; peak holders ${peak} (max ${max})\n`,
    );
  }
} finally {
  agent.destroy();
  await killAll();
  admin.close();
  await etcd.stop();
}
if (failed) {
  process.stderr.write('fleetlock bench: a 5xx answer or more holders than max\n');
  process.exit(1);
}
