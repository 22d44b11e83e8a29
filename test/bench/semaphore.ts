/**
 * Semaphore benchmark: 200 contenders, max 5, against a real local etcd.
 *
 *   npm run bench:semaphore [-- --contenders 200 --max 5 --hold-ms 20 --json]
 *
 * Prints the handoff latency (a holder's marker deleted -> the next marker created, as seen by an
 * independent watcher), etcd writes per grant (from etcd's revision counter and /metrics), and
 * how many admission txns lost a race (failed compare-and-swaps).
 */
import { parseArgs } from 'node:util';
import { GroupKeys } from '@sluice/core';
import { Semaphore } from '@sluice/etcd';
import { HolderObserver, startEtcd } from '@sluice/testkit';
import { Etcd3 } from 'etcd3';

const { values } = parseArgs({
  options: {
    contenders: { type: 'string', default: '200' },
    max: { type: 'string', default: '5' },
    'hold-ms': { type: 'string', default: '20' },
    json: { type: 'boolean', default: false },
    'shared-client': { type: 'boolean', default: false },
  },
});
const contenders = Number(values.contenders);
const max = Number(values.max);
const holdMs = Number(values['hold-ms']);

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;

const etcd = await startEtcd();
const clients: Etcd3[] = [];
try {
  const keys = new GroupKeys('/bench/', 'g');
  const admin = new Etcd3({ hosts: etcd.endpoints });
  clients.push(admin);
  await admin.put(keys.max).value(String(max));
  const observer = await HolderObserver.start(etcd.endpoints, keys.root);

  // By default each contender has its own client and watch, as each agent on its own node would.
  // With --shared-client they share one connection and one group watch, as the nodes of one
  // process do (the in-process fleet simulator); each still has its own leases and txns.
  const sharedClient = values['shared-client'] ? new Etcd3({ hosts: etcd.endpoints }) : null;
  if (sharedClient) clients.push(sharedClient);
  const sems = Array.from({ length: contenders }, (_, i) => {
    let client = sharedClient;
    if (!client) {
      client = new Etcd3({ hosts: etcd.endpoints });
      clients.push(client);
    }
    return new Semaphore(client, { node: `node-${i}`, prefix: '/bench/', group: 'g' });
  });
  for (const s of sems) await s.enqueue({ reason: 'bench' });

  const startRev = Number((await admin.get('x').exec()).header.revision);
  const startPuts = await etcd.metric('etcd_mvcc_put_total');
  const startDeletes = await etcd.metric('etcd_mvcc_delete_total');
  const startTxns = await etcd.metric('etcd_mvcc_txn_total');
  const rpcs = (method: string) =>
    etcd.metric('grpc_server_handled_total', 0, `grpc_method="${method}"`);
  const startTxnRpcs = await rpcs('Txn');
  const startRangeRpcs = await rpcs('Range');
  const t0 = performance.now();
  await Promise.all(
    sems.map(async (s) => {
      const grant = await s.acquire();
      await new Promise((r) => setTimeout(r, holdMs));
      await s.release(grant);
      s.close();
    }),
  );
  const elapsed = performance.now() - t0;
  const endRev = Number((await admin.get('x').exec()).header.revision);
  const puts = (await etcd.metric('etcd_mvcc_put_total')) - startPuts;
  const deletes = (await etcd.metric('etcd_mvcc_delete_total')) - startDeletes;
  const txns = (await etcd.metric('etcd_mvcc_txn_total')) - startTxns;
  const txnRpcs = (await rpcs('Txn')) - startTxnRpcs;
  const rangeRpcs = (await rpcs('Range')) - startRangeRpcs;
  await observer.stop();

  // Handoff: each change that lowered the holder count, to the next change that raised it.
  const handoffs: number[] = [];
  let prev = observer.timeline[0]?.holders.length ?? 0;
  let releasedAt: number | null = null;
  for (const change of observer.timeline) {
    const n = change.holders.length;
    if (n < prev && releasedAt === null) releasedAt = change.at;
    if (n > prev && releasedAt !== null) {
      handoffs.push(change.at - releasedAt);
      releasedAt = null;
    }
    prev = n;
  }
  handoffs.sort((a, b) => a - b);
  const attempts = sems.reduce((n, s) => n + s.stats.admitAttempts, 0);
  const conflicts = sems.reduce((n, s) => n + s.stats.admitConflicts, 0);
  const reads = sems.reduce((n, s) => n + s.stats.reads, 0);
  const backstops = sems.reduce((n, s) => n + s.stats.backstops, 0);
  const result = {
    contenders,
    sharedClient: values['shared-client'],
    max,
    holdMs,
    peakHolders: observer.peak,
    elapsedMs: Math.round(elapsed),
    handoffMs: {
      p50: percentile(handoffs, 50),
      p99: percentile(handoffs, 99),
      max: handoffs.at(-1) ?? Number.NaN,
      samples: handoffs.length,
    },
    // Every admission and every release is one revision (one txn); so writes per grant is 2 plus
    // the history prune, which runs once per tenth of the history limit.
    revisionsPerGrant: (endRev - startRev) / contenders,
    etcdPutsPerGrant: puts / contenders,
    etcdDeletesPerGrant: deletes / contenders,
    etcdTxnsPerGrant: txns / contenders,
    // What etcd served, by RPC: an admission read is one read-only Txn, the admission one more.
    txnRpcsPerGrant: txnRpcs / contenders,
    rangeRpcsPerGrant: rangeRpcs / contenders,
    admissionReadsPerGrant: reads / contenders,
    backstopReads: backstops,
    admitAttempts: attempts,
    failedCas: conflicts,
  };
  if (values.json) {
    console.log(JSON.stringify(result));
  } else {
    console.log(
      `semaphore benchmark: ${contenders} contenders, max ${max}, hold ${holdMs} ms, ${values['shared-client'] ? 'one shared client and watch' : 'a client and watch each'}, etcd on loopback`,
    );
    console.log(`  peak holders seen by watcher   ${result.peakHolders}`);
    console.log(`  total time                     ${result.elapsedMs} ms`);
    console.log(
      `  handoff latency                p50 ${result.handoffMs.p50} ms, p99 ${result.handoffMs.p99} ms, max ${result.handoffMs.max} ms (${handoffs.length} handoffs)`,
    );
    console.log(`  etcd revisions per grant       ${result.revisionsPerGrant.toFixed(2)}`);
    console.log(
      `  etcd puts/deletes/txns per grant ${result.etcdPutsPerGrant.toFixed(2)} / ${result.etcdDeletesPerGrant.toFixed(2)} / ${result.etcdTxnsPerGrant.toFixed(2)}`,
    );
    console.log(
      `  gRPC Txn / Range per grant     ${result.txnRpcsPerGrant.toFixed(2)} / ${result.rangeRpcsPerGrant.toFixed(2)}`,
    );
    console.log(
      `  admission reads per grant      ${result.admissionReadsPerGrant.toFixed(2)} (backstop: ${backstops})`,
    );
    console.log(`  admission txns                 ${attempts} (failed CAS: ${conflicts})`);
  }
} finally {
  for (const c of clients) c.close();
  await etcd.stop();
}
